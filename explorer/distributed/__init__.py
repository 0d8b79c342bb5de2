"""The weight pass, activations and scored points on a Ray cluster (`--ray`); the only place that imports Ray.
Imports explorer.core, explorer.checkpoints, explorer.weights and explorer.evaluation; the engine reaches it only
through the runner it installs (explorer.core.runners).
"""
