"""Sparse cross-mode correlation models.

For a pair of modes ``(i, j)``, the standardized residuals ``(z_i, z_j)`` of the direct models are
modelled as bivariate normal with unit variances and correlation ``rho = tanh(X_corr @ delta)``,
with the same effect machinery as the mean and log-sd. Only the pairs whose training z-scores
correlate most strongly are modelled (:func:`select_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import ShapeMismatchError, bad_value
from .effects import Design, new_level_mask, relayout
from .inference import ArrayRecord, CorrelationFamily, fit_laplace
from .specs import NormativeModelSpec

__all__ = ["CovarianceParams", "select_pairs", "fit_covariance", "predict_correlation", "adapt_covariance"]


@dataclass
class CovarianceParams(ArrayRecord):
    """Fitted correlation models of ``P`` mode pairs.

    Attributes
    ----------
    pairs : numpy.ndarray of int, shape (P, 2)
        Mode indices ``(i, j)``, ``i < j``.
    theta : numpy.ndarray, shape (P, p_corr)
        MAP coefficients of ``atanh(rho)``.
    cov : numpy.ndarray, shape (P, p_corr, p_corr)
        Laplace posterior covariances.
    tau2 : numpy.ndarray, shape (P, h)
        Hierarchical variances.
    converged : numpy.ndarray of bool, shape (P,)
    """

    pairs: np.ndarray
    theta: np.ndarray
    cov: np.ndarray
    tau2: np.ndarray
    converged: np.ndarray

    @property
    def n_pairs(self) -> int:
        """Number of modelled pairs."""
        return int(self.pairs.shape[0])





def select_pairs(z: np.ndarray, covariance_structure, scale: np.ndarray | None = None) -> np.ndarray:
    """Choose the mode pairs to model.

    Parameters
    ----------
    z : numpy.ndarray, shape (n_subjects, n_modes)
        Training z-scores of the direct models.
    covariance_structure : float, int or array_like of shape (n_pairs, 2)
        A float ``f`` selects the ``round(f * n_modes)`` pairs with the largest absolute
        correlation of z-scores; an int selects that many pairs; an array lists the pairs.
    scale : numpy.ndarray, shape (n_modes,), optional
        Typical sd of each mode. When given, pairs are ranked by ``|corr_ij| * scale_i * scale_j``
        (the size of the covariance term they add to query variances) instead of ``|corr_ij|``.

    Returns
    -------
    numpy.ndarray of int, shape (n_pairs, 2)
        Pairs ``(i, j)`` with ``i < j``, strongest first (for explicit pairs: as given, ordered
        within each pair).
    """
    n_modes = z.shape[1]
    if isinstance(covariance_structure, (list, tuple, np.ndarray)):
        pairs = np.asarray(covariance_structure)
        if pairs.size == 0:
            return np.zeros((0, 2), dtype=np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
            raise bad_value("covariance_structure", f"array of shape {pairs.shape}",
                            "is not an (n_pairs, 2) integer array", "pass mode index pairs as rows",
                            ShapeMismatchError)
        if pairs.min() < 0 or pairs.max() >= n_modes or np.any(pairs[:, 0] == pairs[:, 1]):
            raise bad_value("covariance_structure", "pairs", f"hold indices outside 0..{n_modes - 1} or "
                            "pair a mode with itself", "pass distinct mode indices below n_modes")
        return np.sort(pairs, axis=1).astype(np.int64)
    if isinstance(covariance_structure, bool) or not isinstance(covariance_structure, (int, float, np.number)):
        raise bad_value("covariance_structure", covariance_structure, "is not a number or a pair list",
                        "pass a float fraction of n_modes, an int count, or an (n_pairs, 2) array")
    if isinstance(covariance_structure, (float, np.floating)):
        n_pairs = round(float(covariance_structure) * n_modes)
    else:
        n_pairs = int(covariance_structure)
    max_pairs = n_modes * (n_modes - 1) // 2
    if n_pairs < 0:
        raise bad_value("covariance_structure", covariance_structure, "is negative", "pass a value >= 0")
    n_pairs = min(n_pairs, max_pairs)
    if n_pairs == 0:
        return np.zeros((0, 2), dtype=np.int64)
    zc = (z - z.mean(axis=0)) / np.maximum(z.std(axis=0), 1e-12)
    corr = zc.T @ zc / z.shape[0]
    iu, ju = np.triu_indices(n_modes, k=1)
    strength = np.abs(corr[iu, ju])
    if scale is not None:
        strength = strength * scale[iu] * scale[ju]
    order = np.lexsort((ju, iu, -strength))[:n_pairs]  # strongest first, ties by index
    return np.stack([iu[order], ju[order]], axis=1).astype(np.int64)


def fit_covariance(spec: NormativeModelSpec, z: np.ndarray, covariates: pd.DataFrame, pairs: np.ndarray,
                   **solver_kwargs) -> CovarianceParams:
    """Fit the correlation models of ``pairs`` on training z-scores ``z`` (n_subjects, n_modes)."""
    design = Design(spec, "correlation")
    X, _ = design.matrix(covariates, warn=False)
    P = pairs.shape[0]
    if P == 0:
        p = design.n_columns
        h = len(design.hierarchical_blocks)
        return CovarianceParams(pairs, np.zeros((0, p)), np.zeros((0, p, p)), np.zeros((0, h)),
                                np.zeros(0, bool))
    Z1, Z2 = z[:, pairs[:, 0]], z[:, pairs[:, 1]]
    init = np.zeros((P, design.n_columns))
    r = np.clip(np.mean(Z1 * Z2, axis=0), -0.95, 0.95)
    init[:, 0] = np.arctanh(r)
    fit = fit_laplace(CorrelationFamily(Z1, Z2), [design], [X], [init], **solver_kwargs)
    return CovarianceParams(pairs, fit.theta[0], fit.cov[0], fit.tau2[0], fit.converged)


def predict_correlation(spec: NormativeModelSpec, params: CovarianceParams, covariates: pd.DataFrame,
                        without=(), warn: bool = False) -> np.ndarray:
    """Predicted correlations ``rho`` of shape (n_subjects, n_pairs)."""
    design = Design(spec, "correlation")
    X, _ = design.matrix(covariates, tuple(without or ()), warn=warn)
    return np.tanh(np.clip(X @ params.theta.T, -4.0, 4.0))


def adapt_covariance(old_spec: NormativeModelSpec, new_spec: NormativeModelSpec, params: CovarianceParams,
                     z: np.ndarray, covariates: pd.DataFrame, added: dict, **solver_kwargs) -> CovarianceParams:
    """Learn the correlation effects of new batch levels with every other parameter frozen."""
    old_d, new_d = Design(old_spec, "correlation"), Design(new_spec, "correlation")
    theta = relayout(params.theta, old_d, new_d, (1,))
    cov = relayout(params.cov, old_d, new_d, (1, 2))
    free = new_level_mask(new_d, added)
    if not free.any() or params.n_pairs == 0:
        return CovarianceParams(params.pairs, theta, cov, params.tau2, params.converged)
    X, _ = new_d.matrix(covariates, warn=False)
    Z1, Z2 = z[:, params.pairs[:, 0]], z[:, params.pairs[:, 1]]
    fit = fit_laplace(CorrelationFamily(Z1, Z2), [new_d], [X], [theta], tau2_init=[params.tau2],
                      learn_tau=False, free=[free], **solver_kwargs)
    idx = np.flatnonzero(free)
    cov[:, idx[:, None], idx[None, :]] = fit.cov[0][:, idx[:, None], idx[None, :]]
    return CovarianceParams(params.pairs, fit.theta[0], cov, params.tau2, params.converged & fit.converged)
