"""Prompt sets, evaluation profiles, scoring of members and projected points, the optional judge.
Imports explorer.core, explorer.checkpoints and explorer.weights.
"""
