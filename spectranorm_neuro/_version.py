"""Package version and code address (single source of truth, read by the build backend through pyproject)."""

__all__ = ["__version__", "__url__"]

__version__ = "0.1.0"
#: Where the code is published (``CodeURL`` of the ``GeneratedBy`` of every dataset the package writes).
__url__ = "https://pypi.org/project/spectranorm-neuro/"
