"""curate: data curation, mixing and ablation for universal multimodal embedding models."""

# A literal, read by setuptools at build time (pyproject's dynamic version): asking
# importlib.metadata at import costs ~30 ms on every command, ingest's benchmark included.
__version__ = "0.1.0"

__all__ = ["__version__"]
