"""Package version (single source of truth, read by the build backend through pyproject)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
