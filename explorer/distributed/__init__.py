"""The weight pass, activations and scored points on a Ray cluster (`--ray`); the only place that imports Ray.
Imports explorer.core, explorer.checkpoints, explorer.weights, explorer.evaluation and explorer.activations.
"""
