"""The demo family's recipe and fine-tuning loop, built offline from SmolLM2-135M-Instruct.
Imports explorer.core, explorer.checkpoints and explorer.evaluation.
"""
