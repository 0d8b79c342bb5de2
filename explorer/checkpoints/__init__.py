"""Families, checkpoint sources (folders, hub ids, LoRA adapters, GGUF) and the checks of their files, streaming
tensor stores, the per-architecture module table and model/tokenizer loading. Imports only explorer.core.
"""
