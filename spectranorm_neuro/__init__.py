"""spectranorm_neuro: spectral normative modelling of brain maps.

Layers, each importing only from those before it::

    graphs  ->  basis  ->  engine  ->  io  ->  workflow  ->  report, cli

``spectranorm_neuro.snm`` is the facade compatible with the SpectraNorm tutorials
(``from spectranorm_neuro import snm``).
"""

from ._version import __version__
from .exceptions import SpectraNormError

__all__ = ["__version__", "SpectraNormError"]
