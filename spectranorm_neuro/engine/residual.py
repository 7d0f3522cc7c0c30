"""The part of each map the modes miss: per-feature normative models of the projection residual.

For a basis ``Psi`` (n_features, K) with mass matrix ``M`` (identity without one), a map ``y``
splits into its projection and the residual

    y = Psi c + r,   c = Psi' M y,   r = y - Psi c.

The spectral model describes ``c``; this module fits one direct model (the same mean and log-sd
effects, :func:`~spectranorm_neuro.engine.direct.fit_direct`) per feature of ``r``, batched over
blocks of features. A query ``w`` over the features (a vertex, a kernel, a parcel mean) of a
subject then has

    mean = q' mu_c + w' mu_r,      var = q' S R S q + sum_v w_v^2 sd_r,v^2,

``q = Psi' w`` its encoding: the residuals are treated as independent across features (what
``bench/bench_vertex_truth.py`` measures for kernel queries is reported in the README).

Memory: the maps are read a block of subjects (encoding) or a block of features (fitting) at a
time, so a ``numpy.memmap`` of maps on disk is never loaded whole; temporaries are at most
(subjects x feature block) while fitting and (subject block x features) while scoring.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from .._util import block_slices, run_tasks, sha256_array
from ..exceptions import InvalidInputError, ShapeMismatchError, bad_value
from .direct import DirectParams, adapt_direct, fit_direct, predict_direct
from .specs import NormativeModelSpec

__all__ = ["ResidualParams", "check_maps", "encode_maps", "fit_residual", "predict_residual", "adapt_residual",
           "query_weights", "query_key", "FEATURE_BLOCK"]

FEATURE_BLOCK = 512  # features per residual fit task (a task holds ~10 (subjects x block) arrays)
ENCODE_BLOCK = 256  # subjects per encoding block
#: Relative change of the hierarchical variances at which the residual models' empirical Bayes
#: stops (the solver's default is 1e-6): their coefficients then agree with a 1e-6 fit to ~1e-7
#: (``bench/bench_cortex.py``), for a quarter fewer Newton iterations over the many features.
RESIDUAL_EB_TOL = 1e-4


@dataclass
class ResidualParams:
    """Per-feature normative models of the residual ``r = y - Psi Psi' M y``.

    Attributes
    ----------
    direct : DirectParams
        One direct model per feature (``n_targets`` = n_features).
    n_modes : int
        Modes of the projection the residual is taken after.
    calibration : dict of str to numpy.ndarray, shape (n_queries,)
        Per-query variance factors measured on training maps (:func:`query_key` of the query set:
        ``"vertex"`` for one query per feature): the mean of ``(w'y - mean)^2 / var`` over training
        subjects, which carries what the sum of the spectral and residual variances leaves out
        (the covariance of the two parts, residual correlation between neighbouring features).
    """

    direct: DirectParams
    n_modes: int
    calibration: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        """Number of features."""
        return self.direct.n_targets

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays for npz storage."""
        out = self.direct.to_arrays("residual_")
        out["residual_n_modes"] = np.asarray(self.n_modes, dtype=np.int64)
        for key, value in self.calibration.items():
            out[f"calibration_{key}"] = np.asarray(value, dtype=np.float64)
        return out

    @classmethod
    def from_arrays(cls, arrays) -> ResidualParams:
        """Inverse of :meth:`to_arrays`."""
        calibration = {name[len("calibration_"):]: np.asarray(arrays[name]) for name in arrays.files
                       if name.startswith("calibration_")}
        return cls(DirectParams.from_arrays(arrays, "residual_"), int(arrays["residual_n_modes"]), calibration)


def check_maps(block, n_features: int, argument: str = "maps", rows=None, names=None) -> np.ndarray:
    """Check a block of maps (n, n_features): shape and finiteness, with the culprit named.

    Parameters
    ----------
    block : array_like, shape (n, n_features)
    n_features : int
    argument : str
        Name of the argument (or CLI option) in messages.
    rows : array_like of int, optional
        Row numbers of the block in the whole cohort (for messages).
    names : sequence of str, optional
        A name (file, subject) per row of the block, used in messages.
    """
    arr = np.asarray(block, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise bad_value(argument, f"array of shape {arr.shape}", f"is not (n_subjects, {n_features})",
                        "pass one map per row over the basis' features", ShapeMismatchError)
    bad = ~np.isfinite(arr)
    if bad.any():
        counts = bad.sum(axis=1)
        i = int(np.flatnonzero(counts)[0])
        who = names[i] if names is not None else f"row {int(rows[i]) if rows is not None else i}"
        raise bad_value(argument, who, f"has {int(counts[i])} NaN/inf values on modelled features "
                        f"({int((counts > 0).sum())} map(s) of this block affected)",
                        "fix or exclude the map (NaN only outside the basis' mask is allowed)", InvalidInputError)
    return arr


def encode_maps(basis, maps, n_modes: int, argument: str = "maps", names=None) -> np.ndarray:
    """Spectral coefficients (n_subjects, n_modes) of maps, a block of subjects at a time.

    Coefficients the maps carry (``maps.coefficients``, e.g. an ``io.MapStore`` written with the
    basis) are used when they are finite and those of a sample of the maps encoded here agree
    with them (:func:`_stored_coefficients`).
    """
    names = names if names is not None else getattr(maps, "names", None)
    stored = _stored_coefficients(basis, maps, n_modes)
    if stored is not None:
        return stored
    n = maps.shape[0]
    out = np.empty((n, n_modes))
    for a in range(0, n, ENCODE_BLOCK):
        rows = np.arange(a, min(a + ENCODE_BLOCK, n))
        block = check_maps(maps[a:rows[-1] + 1], basis.n_features, argument, rows,
                           None if names is None else names[a:rows[-1] + 1])
        out[a:rows[-1] + 1] = basis.encode(block, n_modes=n_modes)
    return out


def _stored_coefficients(basis, maps, n_modes: int, n_check: int = 16) -> np.ndarray | None:
    """``maps.coefficients[:, :n_modes]`` if present, finite and matching this basis on ``n_check`` maps, else None."""
    stored = getattr(maps, "coefficients", None)
    n = maps.shape[0]
    if stored is None or np.ndim(stored) != 2 or stored.shape[0] != n or stored.shape[1] < n_modes:
        return None
    stored = np.asarray(stored[:, :n_modes], dtype=np.float64)
    if not np.all(np.isfinite(stored)):
        return None
    rows = np.unique(np.linspace(0, n - 1, min(n, n_check)).round().astype(np.int64))
    sample = np.asarray(maps[rows], dtype=np.float64)
    if not np.all(np.isfinite(sample)):
        return None
    check = basis.encode(sample, n_modes=n_modes)
    scale = max(float(np.abs(check).max()), 1e-300)
    return stored if float(np.abs(check - stored[rows]).max()) <= 1e-4 * scale else None


def _residual_columns(basis, maps, C: np.ndarray, cols: slice) -> np.ndarray:
    """Residual (n_subjects, n_cols) of the features ``cols``: ``y - C Psi[cols]'``."""
    psi = np.asarray(basis.eigenvectors[cols, :C.shape[1]])
    return np.asarray(maps[:, cols], dtype=np.float64) - C @ psi.T


def _fit_block(spec, Y: np.ndarray, covariates: pd.DataFrame, kwargs: dict) -> DirectParams:
    return fit_direct(spec, Y, covariates, **kwargs)


def fit_residual(spec: NormativeModelSpec, basis, maps, C: np.ndarray, covariates: pd.DataFrame,
                 n_jobs: int | None = 1, feature_block: int = FEATURE_BLOCK, **solver_kwargs) -> ResidualParams:
    """Fit the per-feature residual models, a block of features per task.

    Parameters
    ----------
    spec : NormativeModelSpec
        The spectral model's specification (same effects on mean and variance).
    basis : EigenmodeBasis
    maps : array_like, shape (n_subjects, n_features)
        Training maps (may be a ``numpy.memmap``; read a block of features at a time).
    C : numpy.ndarray, shape (n_subjects, n_modes)
        Their spectral coefficients (:func:`encode_maps`).
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    n_jobs : int or None, optional
        joblib workers over feature blocks.
    feature_block : int, optional
    **solver_kwargs
        Passed to :func:`~spectranorm_neuro.engine.inference.fit_laplace` (``eb_tol`` defaults to
        :data:`RESIDUAL_EB_TOL`).

    Returns
    -------
    ResidualParams
    """
    n_feat = int(basis.n_features)
    blocks = block_slices(n_feat, feature_block)
    solver_kwargs = {"eb_tol": RESIDUAL_EB_TOL, **solver_kwargs}

    def arguments() -> Iterator[tuple]:
        for cols in blocks:
            R = _residual_columns(basis, maps, C, cols)
            if not np.all(np.isfinite(R)):
                check_maps(np.asarray(maps[:, cols]), cols.stop - cols.start)
            yield spec, R, covariates, solver_kwargs

    parts = list(run_tasks(_fit_block, arguments(), n_jobs))
    return ResidualParams(DirectParams.concatenate(parts), int(C.shape[1]))


def predict_residual(spec: NormativeModelSpec, params: ResidualParams, covariates: pd.DataFrame, without=(),
                     unseen_batch: str = "error", features=slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the residual of ``features``: two (n_subjects, n_features) arrays."""
    mu, sd = predict_direct(spec, params.direct.subset(features), covariates, without, unseen_batch, warn=False)
    return mu, sd**2


def adapt_residual(spec: NormativeModelSpec, params: ResidualParams, basis, maps, covariates: pd.DataFrame,
                   n_jobs: int | None = 1, feature_block: int = FEATURE_BLOCK,
                   **solver_kwargs) -> tuple[NormativeModelSpec, ResidualParams]:
    """Learn the residual effects of new batch levels (sites), everything else frozen."""
    C = encode_maps(basis, maps, params.n_modes)
    blocks = block_slices(int(basis.n_features), feature_block)

    def arguments() -> Iterator[tuple]:
        for cols in blocks:
            yield spec, params.direct.subset(cols), _residual_columns(basis, maps, C, cols), covariates, solver_kwargs

    out = list(run_tasks(_adapt_block, arguments(), n_jobs))
    return out[0][0], ResidualParams(DirectParams.concatenate([p for _, p in out]), params.n_modes,
                                     dict(params.calibration))


def _adapt_block(spec, direct, R, covariates, kwargs):
    new_spec, new_direct, _ = adapt_direct(spec, direct, R, covariates, **kwargs)
    return new_spec, new_direct


def query_weights(queries, n_features: int):
    """Sparse CSR weights (n_queries, n_features) of ``queries``, or ``None`` for one query per feature.

    ``queries`` may be ``None`` (every feature), a scipy sparse or dense (n_queries, n_features)
    array, or an object with ``weights`` (e.g. an ``io.QuerySet``).
    """
    if queries is None:
        return None
    W = getattr(queries, "weights", queries)
    W = sparse.csr_matrix(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[1] != n_features:
        raise bad_value("queries", f"weights of shape {W.shape}", f"are not (n_queries, {n_features})",
                        "pass query weights over the model's features (io.vertex_queries, kernel_queries, ...)",
                        ShapeMismatchError)
    return W


def query_key(W) -> str:
    """Key of a query set in :attr:`ResidualParams.calibration`: ``"vertex"`` or a digest of its weights."""
    if W is None:
        return "vertex"
    W = sparse.csr_matrix(W)
    W.sort_indices()
    return "q" + sha256_array(W.indptr, W.indices, W.data)[:16]
