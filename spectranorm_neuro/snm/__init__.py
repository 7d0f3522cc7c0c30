"""The reference-compatible API: ``from spectranorm_neuro import snm`` in place of ``from spectranorm import snm``.

Every public name of SpectraNorm 0.1.4's ``snm`` module and of its ``utils`` (``gsp``, ``stats``,
``metrics``, ``nitools``, ``general``, ``parallel``) with the reference's signatures, defaults and
return types, as a thin adapter over the engine (:mod:`spectranorm_neuro.engine`,
:mod:`spectranorm_neuro.basis`), whose own API follows scikit-learn conventions (e.g. the engine's
``adapt_fit`` returns a new model; here it adapts in place, as the reference documents).

Files saved by the reference (``EigenmodeBasis.save``, ``save_model``) load directly, through a
restricted unpickler that rebuilds only arrays, containers and the reference's data classes
(anything else is refused, nothing is executed); :func:`convert_upstream` (and
``spectranorm-neuro convert-upstream``) rewrites them once in this package's safe format.
"""

from ..engine.spectral import SpectralPredictions
from . import utils
from ._covariance import CovarianceNormativeModel
from ._direct import DirectNormativeModel
from ._predictions import NormativePredictions
from ._specs import CovarianceModelSpec, CovariateSpec, NormativeModelSpec, SplineSpec
from ._spectral import SpectralNormativeModel
from ._upstream import convert_upstream, read_upstream

__all__ = [
    "CovarianceModelSpec",
    "CovarianceNormativeModel",
    "CovariateSpec",
    "DirectNormativeModel",
    "NormativeModelSpec",
    "NormativePredictions",
    "SpectralNormativeModel",
    "SpectralPredictions",
    "SplineSpec",
    "convert_upstream",
    "read_upstream",
    "utils",
]
