"""Facade compatible with the SpectraNorm tutorials: ``from spectranorm_neuro import snm``."""

from . import utils

__all__ = ["utils"]
