"""The ``spectranorm-neuro`` command line."""

from .main import main

__all__ = ["main"]
