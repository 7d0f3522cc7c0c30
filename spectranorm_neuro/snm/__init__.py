"""Facade compatible with the SpectraNorm tutorials: ``from spectranorm_neuro import snm``.

Exposes the engine under the names the SpectraNorm documentation uses:
``snm.SpectralNormativeModel``, ``snm.DirectNormativeModel``, ``snm.NormativeModelSpec``,
``snm.CovariateSpec``, ``snm.NormativePredictions`` and ``snm.utils.gsp.EigenmodeBasis``.
"""

from ..engine.direct import DirectNormativeModel
from ..engine.results import NormativePredictions
from ..engine.specs import CovariateSpec, NormativeModelSpec
from ..engine.spectral import SpectralNormativeModel, SpectralPredictions
from . import utils

__all__ = [
    "CovariateSpec",
    "DirectNormativeModel",
    "NormativeModelSpec",
    "NormativePredictions",
    "SpectralNormativeModel",
    "SpectralPredictions",
    "utils",
]
