"""spectranorm_neuro: spectral normative modelling of brain maps.

Layers, each importing only from those before it::

    graphs  ->  basis  ->  engine  ->  io  ->  workflow  ->  report, cli

``spectranorm_neuro.snm`` is the API of the reference package SpectraNorm 0.1.4: code written for
it runs with ``from spectranorm_neuro import snm`` (or ``import spectranorm_neuro as spectranorm``
and then ``spectranorm.snm``, which is imported on first use).
"""

import importlib

from ._version import __version__
from .exceptions import SpectraNormError

__all__ = ["SpectraNormError", "__version__", "snm"]


def __getattr__(name: str):
    """Import ``snm`` lazily, so that ``import spectranorm_neuro as spectranorm; spectranorm.snm`` works."""
    if name == "snm":
        return importlib.import_module(".snm", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
