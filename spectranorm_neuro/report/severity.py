"""Multivariate severity of each subject: one calibrated deviation over a set of regional means.

The score is the Mahalanobis distance ``d2`` of a subject's regional means from the model's
predictions (:meth:`~spectranorm_neuro.engine.spectral.SpectralNormativeModel.mahalanobis_maps`,
which includes the residual part of the maps), over ``n_parcels`` spectral parcels: contiguous
regions found by k-means on the basis' low-frequency eigenvectors (a basis-generic parcellation,
finer than the modes so that focal deviations that the modes cannot express still count).

Under the model ``d2 ~ chi2(n_parcels)``. A fitted model is seldom exactly right for a new cohort,
so when control subjects are given the null is recalibrated on them: ``d2 ~ a * chi2(nu)`` with
``a`` and ``nu`` matched to the controls' median and quartile ratio of ``d2`` (robust to a few
outlying controls, which moments are not). The
subject's score is the upper-tail p-value under that null and its z-equivalent
``z = Phi^-1(1 - p)`` (N(0, 1) in calibrated controls; large = more deviant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, sparse, special, stats
from scipy.cluster.vq import kmeans2

from .._util import block_slices, run_tasks

__all__ = ["MultivariateSeverity", "spectral_parcels", "multivariate_severity", "chi2_z_equivalent",
           "DEFAULT_PARCELS_PER_MODE", "MIN_CALIBRATION_CONTROLS"]

#: Parcels per mode of the model's residual part (more parcels than modes: focal deviations count).
DEFAULT_PARCELS_PER_MODE = 1.6
#: Fewest controls for the recalibration of the null (fewer: the model's chi2 is used as is).
MIN_CALIBRATION_CONTROLS = 10
_EIGENVECTORS = 40  # low-frequency eigenvectors that define the parcels
_BLOCK = 64  # subjects per task
#: Floor of the eigenvalues of the mode correlation matrices (the engine's 1e-6 lets near-singular
#: correlations at the edge of the age range give controls d2 ~ 1e5 on demo seed 2; 0.1 keeps them N(0, 1)).
DEFAULT_RIDGE = 0.1


@dataclass(frozen=True)
class MultivariateSeverity:
    """Multivariate deviation of every subject.

    Attributes
    ----------
    d2 : numpy.ndarray, shape (n_subjects,)
        Mahalanobis distance (squared) over the parcels.
    p_value : numpy.ndarray, shape (n_subjects,)
        Upper-tail p-value of ``d2`` under the (recalibrated) null.
    z : numpy.ndarray, shape (n_subjects,)
        z-equivalent of ``p_value`` (``Phi^-1(1 - p)``, from log p; Wilson-Hilferty's normal
        approximation where p underflows, z > 37).
    n_parcels : int
        Number of regional means (the model's degrees of freedom).
    scale, dof : float
        Null ``d2 ~ scale * chi2(dof)`` (``1`` and ``n_parcels`` without recalibration).
    n_controls : int
        Controls the null was recalibrated on (0: the model's chi2).
    """

    d2: np.ndarray
    p_value: np.ndarray
    z: np.ndarray
    n_parcels: int
    scale: float
    dof: float
    n_controls: int

    def describe(self) -> str:
        """One sentence for the report: what the score is and how it was calibrated."""
        null = (f"null recalibrated on {self.n_controls} controls: d² ~ {self.scale:.2f} × χ²({self.dof:.0f})"
                if self.n_controls else f"null χ²({self.n_parcels}) of the model")
        return (f"Multivariate z: Mahalanobis distance of the means of {self.n_parcels} spectral parcels "
                f"(residual part included) as a z-equivalent of its upper-tail p ({null})")


def spectral_parcels(basis: Any, n_parcels: int, seed: int = 0) -> sparse.csr_matrix:
    """Contiguous parcels from the low-frequency eigenvectors, as region-mean query weights.

    Parameters
    ----------
    basis : EigenmodeBasis
        Provides ``eigenvectors``, shape (n_features, n_modes).
    n_parcels : int
        Number of k-means clusters (empty ones are dropped).
    seed : int
        Seed of the k-means initialisation (same seed, same parcels).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_kept, n_features)
        Rows are region means (each sums to 1).
    """
    psi = np.asarray(basis.eigenvectors, dtype=np.float64)
    feats = psi[:, 1:1 + min(_EIGENVECTORS, psi.shape[1] - 1)] if psi.shape[1] > 1 else psi
    sd = feats.std(axis=0)
    feats = feats / np.where(sd > 0, sd, 1.0)
    k = int(min(n_parcels, psi.shape[0]))
    _, labels = kmeans2(feats, k, iter=20, seed=np.random.default_rng(seed), minit="points")
    _, labels = np.unique(labels, return_inverse=True)
    counts = np.bincount(labels)
    n = psi.shape[0]
    return sparse.csr_matrix((1.0 / counts[labels], (labels, np.arange(n))), shape=(counts.size, n))


def _calibrate(d2: np.ndarray, df: int, controls: np.ndarray | None) -> tuple[float, float, int]:
    """Scale and degrees of freedom of ``a * chi2(nu)`` with the controls' median and quartile ratio."""
    if controls is None or int(controls.sum()) < MIN_CALIBRATION_CONTROLS:
        return 1.0, float(df), 0
    q25, q50, q75 = np.percentile(d2[controls], [25, 50, 75])
    if not q25 > 0:
        return 1.0, float(df), 0
    ratio = q75 / q25

    def gap(log_nu: float) -> float:
        nu = np.exp(log_nu)
        return stats.chi2.ppf(0.75, nu) / stats.chi2.ppf(0.25, nu) - ratio

    lo, hi = np.log(0.5), np.log(1e6)
    log_nu = lo if gap(lo) <= 0 else hi if gap(hi) >= 0 else optimize.brentq(gap, lo, hi, xtol=1e-6)
    nu = float(np.exp(log_nu))
    return float(q50 / stats.chi2.median(nu)), nu, int(controls.sum())


def _block_d2(model: Any, maps: np.ndarray, covariates: pd.DataFrame, W, predict_without: list,
              ridge: float) -> np.ndarray:
    d2 = model.mahalanobis_maps(maps, covariates, W, predict_without=predict_without, ridge=ridge)[0]
    return np.asarray(d2, dtype=np.float64)


def multivariate_severity(model: Any, maps: Any, covariates: pd.DataFrame, controls: np.ndarray | None = None,
                          n_parcels: int | None = None, predict_without=(), seed: int = 0,
                          n_jobs: int | None = 1, ridge: float = DEFAULT_RIDGE) -> MultivariateSeverity:
    """Multivariate deviation of every subject (see the module docstring).

    Parameters
    ----------
    model : SpectralNormativeModel
        Fitted, with its residual part (``fit_residual``; model bundles have it).
    maps : array_like, shape (n_subjects, n_features)
        The subjects' maps (not z-scores).
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    controls : numpy.ndarray of bool, shape (n_subjects,), optional
        Subjects the null is recalibrated on (at least ``MIN_CALIBRATION_CONTROLS``).
    n_parcels : int, optional
        Default ``DEFAULT_PARCELS_PER_MODE`` times the residual part's modes.
    predict_without : sequence of str
        Covariates (sites) left out of the predictions, as for the z-scores.
    seed : int
        Seed of the parcels.
    ridge : float
        Floor of the eigenvalues of each subject's mode correlation matrix (``mahalanobis_maps``).
    n_jobs : int or None
        Workers over blocks of subjects (the package's parallel runner); the result does not depend on it.

    Returns
    -------
    MultivariateSeverity
    """
    k = int(model.residual_params.n_modes)
    W = spectral_parcels(model.eigenmode_basis, n_parcels or round(DEFAULT_PARCELS_PER_MODE * k), seed)
    n = len(covariates)
    blocks = block_slices(n, _BLOCK)
    tasks = ((model, np.asarray(maps[rows], dtype=np.float64), covariates.iloc[rows], W, list(predict_without), ridge)
             for rows in blocks)
    d2 = np.concatenate(list(run_tasks(_block_d2, tasks, n_jobs, total=len(blocks)))) if n else np.empty(0)
    mask = None if controls is None else np.asarray(controls, dtype=bool)
    scale, dof, n_controls = _calibrate(d2, W.shape[0], mask)
    p = stats.chi2.sf(d2 / scale, dof)
    return MultivariateSeverity(d2, p, chi2_z_equivalent(d2 / scale, dof), int(W.shape[0]), float(scale), float(dof),
                                n_controls)


def chi2_z_equivalent(x: np.ndarray, dof: float) -> np.ndarray:
    """``Phi^-1(1 - p)`` of chi2(dof) values, from log p; beyond log p's underflow, Wilson-Hilferty."""
    with np.errstate(divide="ignore"):
        z = -special.ndtri_exp(stats.chi2.logsf(x, dof))
    far = ~np.isfinite(z)
    c = 2.0 / (9.0 * dof)
    z[far] = ((x[far] / dof) ** (1.0 / 3.0) - (1.0 - c)) / np.sqrt(c)
    return z
