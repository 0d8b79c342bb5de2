"""Weight-space analyses: updates, subspaces, spectra, projection, update MSO and spot-checks.
Imports explorer.core and explorer.checkpoints.
"""
