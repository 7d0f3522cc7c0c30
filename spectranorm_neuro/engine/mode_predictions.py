"""Mode-level predictions of a spectral model for a set of subjects, and their queries' moments.

:class:`SpectralPredictions` holds each subject's predicted mean and sd of every mode's
coefficient and the modelled cross-mode correlation (pairs and/or a low-rank factor model); a
query's normative mean and sd follow from them by matrix products (:meth:`query_moments`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._util import block_slices
from .lowrank import FactorParams, factor_variance
from .results import NormativePredictions

__all__ = ["SpectralPredictions", "pairs_below", "QUERY_BLOCK"]

QUERY_BLOCK = 4096  # queries per block in predict


@dataclass
class SpectralPredictions:
    """Mode-level predictions for a set of subjects.

    Attributes
    ----------
    mu, sd : numpy.ndarray, shape (n_subjects, n_modes)
        Predictive mean and sd of each mode's coefficient.
    rho : numpy.ndarray, shape (n_subjects, n_pairs)
        Predicted correlation of each modelled pair.
    pairs : numpy.ndarray of int, shape (n_pairs, 2)
    factor : FactorParams, optional
        Low-rank-plus-diagonal correlation of all modes (``R = diag(u) + L L'``); modelled pairs
        then replace the entries of ``R`` they cover.
    """

    mu: np.ndarray
    sd: np.ndarray
    rho: np.ndarray
    pairs: np.ndarray
    factor: FactorParams | None = None

    @property
    def n_modes(self) -> int:
        """Number of modes."""
        return int(self.mu.shape[1])

    @property
    def n_subjects(self) -> int:
        """Number of subjects."""
        return int(self.mu.shape[0])

    def subset(self, rows) -> SpectralPredictions:
        """The predictions of some subjects (a slice, integer positions or a boolean mask)."""
        return SpectralPredictions(self.mu[rows], self.sd[rows], self.rho[rows], self.pairs, self.factor)

    def truncate(self, n_modes: int) -> SpectralPredictions:
        """The predictions of the first ``n_modes`` modes and of the pairs among them."""
        if n_modes >= self.n_modes:
            return self
        keep = pairs_below(self.pairs, n_modes)
        factor = None if self.factor is None else self.factor.subset(slice(0, n_modes))
        return SpectralPredictions(self.mu[:, :n_modes], self.sd[:, :n_modes], self.rho[:, keep], self.pairs[keep],
                                   factor)

    def query_predictions(self, Q: np.ndarray, coefficients: np.ndarray | None = None, index=None,
                          query_block: int = QUERY_BLOCK) -> NormativePredictions:
        """Normative predictions of these subjects for queries ``Q``, a block of queries at a time.

        Parameters
        ----------
        Q : numpy.ndarray, shape (n_modes, n_queries)
            Encoded queries over the same modes.
        coefficients : numpy.ndarray, shape (n_subjects, n_modes), optional
            Spectral coefficients of the observed maps: adds ``z-score``, ``centiles`` and
            ``log-likelihood`` of the observed query values ``coefficients @ Q``.
        index : pandas.Index, optional
            Subject labels.
        query_block : int, optional
            Queries per matrix product (bounds the temporary arrays).

        Returns
        -------
        NormativePredictions
            Arrays of shape (n_subjects, n_queries); the same numbers as
            :meth:`SpectralNormativeModel.predict` / ``evaluate`` for these subjects.
        """
        n_q = Q.shape[1]
        mean = np.empty((self.n_subjects, n_q))
        std = np.empty((self.n_subjects, n_q))
        for b in block_slices(n_q, query_block):
            mean[:, b], std[:, b] = self.query_moments(Q[:, b])
        pred = NormativePredictions({"mu_estimate": mean, "std_estimate": std}, index=index)
        if coefficients is not None:
            pred.add_observations(coefficients @ Q)
        return pred

    def query_moments(self, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of queries ``Q`` (n_modes, n_queries) -> two (n_subjects, n_queries) arrays.

        Matrix products: (subjects x modes) by (modes x queries) for the mean and the diagonal
        part of the variance, (subjects x pairs) by (pairs x queries) for the pair terms, and with
        a low-rank correlation one (subjects x modes) by (modes x queries) product per factor
        (:func:`~spectranorm_neuro.engine.lowrank.factor_variance`).
        """
        mean = self.mu @ Q
        Q2 = Q**2
        diag = (self.sd**2) @ Q2
        var = diag.copy() if self.factor is None else factor_variance(self.sd, Q, self.factor, Q2)
        if self.pairs.shape[0]:
            i, j = self.pairs[:, 0], self.pairs[:, 1]
            rho = self.rho if self.factor is None else self.rho - self._factor_pairs()
            # the factor 2 is exact in floating point, so folding it into the small factor changes nothing
            var += (2.0 * rho * self.sd[:, i] * self.sd[:, j]) @ (Q[i] * Q[j])
        floor = np.maximum(diag, 1e-300, out=diag)
        floor *= 1e-12
        np.maximum(var, floor, out=var)
        return mean, np.sqrt(var, out=var)

    def _factor_pairs(self) -> np.ndarray:
        """Correlation (n_pairs,) the factor model gives the modelled pairs."""
        L = self.factor.loadings
        return np.einsum("pr,pr->p", L[self.pairs[:, 0]], L[self.pairs[:, 1]])

    def correlation(self, subject: int) -> np.ndarray:
        """Modelled (n_modes, n_modes) correlation of one subject's standardized coefficients."""
        R = np.eye(self.n_modes) if self.factor is None else self.factor.correlation()
        if self.pairs.shape[0]:
            i, j = self.pairs[:, 0], self.pairs[:, 1]
            R[i, j] = R[j, i] = self.rho[subject]
        return R

    def covariance(self, subject: int) -> np.ndarray:
        """Modelled (n_modes, n_modes) covariance of one subject's coefficients."""
        s = self.sd[subject]
        return self.correlation(subject) * s[:, None] * s[None, :]


def pairs_below(pairs: np.ndarray, n_modes: int) -> np.ndarray:
    """Mask (n_pairs,) of the pairs whose two modes are both among the first ``n_modes``."""
    return np.all(pairs < n_modes, axis=1)
