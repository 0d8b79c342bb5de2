"""Subspace Explorer's engine: safety-subspace analyses of checkpoint families, importable without Streamlit."""
__version__ = "0.1.0"
