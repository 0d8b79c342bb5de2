"""Activation space: hidden-state extraction, activation MSO, refusal directions, probes, embeddings.
Imports explorer.core, explorer.checkpoints, explorer.weights and explorer.evaluation.
"""
