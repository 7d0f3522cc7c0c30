"""Scoring whole maps: the spectral part plus the per-feature residual part, block by block.

For a query ``w`` over the features (one vertex, a smoothing kernel, a parcel mean) with encoding
``q = Psi' w`` and a subject's map ``y``:

* ``"exact"`` (the default when the model has a residual part) scores the query's value on the
  map itself, ``w' y``, against mean ``q' mu_c + w' mu_r`` and variance
  ``q' S R S q + sum_v w_v^2 var_r,v`` (:mod:`~spectranorm_neuro.engine.residual`): for vertex
  queries the exact per-vertex z-score;
* ``"projected"`` scores the low-pass value ``q' c`` (``c`` the map's spectral coefficients)
  against the spectral moments only: the z-score of the map projected onto the modes, what
  ``SpectralNormativeModel.iter_predict(observed=c)`` gives.

Memory: a block of subjects' maps at a time (``subject_block`` x n_features) and a block of
queries' outputs; never (subjects x features) for the whole cohort nor (subjects x modes x
queries).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd

from ..exceptions import IncompatibleModelError, ShapeMismatchError, bad_value
from .residual import check_maps, predict_residual, query_key, query_weights
from .results import NormativePredictions

__all__ = ["SCORES", "iter_score_maps", "resolve_score", "assemble", "calibrate"]

logger = logging.getLogger("spectranorm_neuro")

SCORES = ("exact", "projected")
MAP_SUBJECT_BLOCK = 64


def resolve_score(model, score: str | None) -> str:
    """The map score to use: ``score`` checked against what the model holds (None: the best available)."""
    if score is None:
        if model.residual_params is None:
            logger.warning("This model has no residual part (fitted on spectral coefficients only, or by an older "
                           "release): maps are scored by their projection onto the modes (the low-pass z). Refit "
                           "with maps (fit(..., maps=...) or fit_residual) for exact per-vertex z-scores.")
            return "projected"
        return "exact"
    if score not in SCORES:
        raise bad_value("score", score, "is not a known map score", f"pass one of {SCORES}")
    if score == "exact" and model.residual_params is None:
        raise bad_value("score", "exact", "needs the model's residual part (what the modes miss), which this "
                        "model lacks: it was fitted on spectral coefficients only (or by an older release)",
                        "refit with SpectralNormativeModel.fit(coefficients, covariates, maps=maps) or call "
                        "model.fit_residual(maps, covariates) (CLI: refit with `fit`), or ask for the low-pass "
                        "z with score='projected' (CLI: --z projected)", IncompatibleModelError)
    return score


def _moments(sp, spec, residual, covariates: pd.DataFrame, without, unseen_batch: str, maps: np.ndarray,
             C: np.ndarray, Q: np.ndarray, W, query_block: int, score: str, kappa) -> Iterator[tuple]:
    """Yield ``(cols, observed, mean, sd)`` of one block of subjects, a block of queries at a time."""
    exact = score == "exact"
    if exact:
        r_mu, r_var = predict_residual(spec, residual, covariates, without, unseen_batch)
    n_q = Q.shape[1]
    for a in range(0, n_q, query_block):
        cols = slice(a, min(a + query_block, n_q))
        mean, sd = sp.query_moments(np.ascontiguousarray(Q[:, cols]))
        if exact:
            if W is None:
                obs = maps[:, cols]
                mean += r_mu[:, cols]
                var = sd**2 + r_var[:, cols]
            else:
                Wb = W[cols]
                obs = np.asarray((Wb @ maps.T).T)
                mean += np.asarray((Wb @ r_mu.T).T)
                var = sd**2 + np.asarray((Wb.multiply(Wb) @ r_var.T).T)
            if kappa is not None:
                var *= kappa[cols]
            sd = np.sqrt(var)
        else:
            obs = C @ Q[:, cols]
        yield cols, obs, mean, sd


def _score_block(*args) -> list:
    """Predictions of one block of subjects for every query block: list of (cols, NormativePredictions)."""
    covariates = args[3]
    out = []
    for cols, obs, mean, sd in _moments(*args):
        pred = NormativePredictions({"mu_estimate": mean, "std_estimate": sd}, index=covariates.index)
        out.append((cols, pred.add_observations(obs)))
    return out


def _calibration_block(*args) -> np.ndarray:
    """Sum over a block of subjects of ``(obs - mean)^2 / var`` per query, shape (n_queries,)."""
    parts = [np.sum(((obs - mean) / sd) ** 2, axis=0) for _, obs, mean, sd in _moments(*args)]
    return np.concatenate(parts)


def iter_score_maps(model, maps, covariates: pd.DataFrame, queries=None, score: str | None = None,
                    predict_without=(), unseen_batch: str = "error", subject_block: int = MAP_SUBJECT_BLOCK,
                    query_block: int = 4096, n_jobs: int | None = 1, names=None
                    ) -> Iterator[tuple[slice, slice, NormativePredictions]]:
    """Stream z-scores of maps (see :meth:`SpectralNormativeModel.iter_evaluate_maps`)."""
    score = resolve_score(model, score)
    model._fitted()
    names = names if names is not None else getattr(maps, "names", None)
    W = query_weights(queries, int(model.eigenmode_basis.n_features))
    kappa = None
    if score == "exact":
        kappa = model.residual_params.calibration.get(query_key(W))
        if kappa is None and W is not None:
            logger.info("These queries were not calibrated at fit time: their residual parts are treated as "
                        "independent across features (declare them to fit_residual(calibrate=...)).")
    return _iter_blocks(_score_block, model, maps, covariates, W, score, predict_without, unseen_batch,
                        subject_block, query_block, n_jobs, names, kappa)


def calibrate(model, maps, covariates: pd.DataFrame, queries=(None,), max_subjects: int = 1000,
              n_jobs: int | None = 1, names=None) -> dict:
    """Per-query variance factors of exact scores on training maps (see ``ResidualParams.calibration``).

    Parameters
    ----------
    model : SpectralNormativeModel
        With a residual part (not yet calibrated for these queries).
    maps : array_like, shape (n_subjects, n_features)
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    queries : sequence
        Query sets (``None`` for one query per feature, or weights (n_queries, n_features)).
    max_subjects : int, optional
        At most this many subjects (evenly spaced rows) are used.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{query_key(W): factor (n_queries,)}``.
    """
    n = len(covariates)
    rows = np.unique(np.linspace(0, n - 1, min(n, max_subjects)).round().astype(np.int64))
    sub_cov = covariates.iloc[rows]
    sub_maps = _RowView(maps, rows)
    out = {}
    for queries_ in queries:
        W = query_weights(queries_, int(model.eigenmode_basis.n_features))
        total = sum(_iter_blocks(_calibration_block, model, sub_maps, sub_cov, W, "exact", (), "population",
                                 MAP_SUBJECT_BLOCK, 4096, n_jobs, None if names is None else
                                 np.asarray(names)[rows], None, per_block=True))
        out[query_key(W)] = total / rows.size
    return out


class _RowView:
    """Rows ``rows`` of a 2-D array (or memmap), read a slice at a time."""

    def __init__(self, maps, rows: np.ndarray):
        self.maps, self.rows = maps, rows
        self.ndim, self.shape = 2, (rows.size, maps.shape[1])

    def __getitem__(self, sl: slice) -> np.ndarray:
        return np.asarray(self.maps[self.rows[sl]])


def _iter_blocks(task, model, maps, covariates, W, score, predict_without, unseen_batch, subject_block,
                 query_block, n_jobs, names, kappa, per_block: bool = False):
    """Run ``task`` over blocks of subjects (see :func:`iter_score_maps`)."""
    from .spectral import _blocks, _check_block, _check_n_jobs, _stream_tasks

    basis = model.eigenmode_basis
    k = int(model.model_params["n_modes"])
    n_feat = int(basis.n_features)
    if maps.ndim != 2 or maps.shape[1] != n_feat or maps.shape[0] != len(covariates):
        raise bad_value("maps", f"array of shape {maps.shape}",
                        f"is not (n_subjects = {len(covariates)} covariate rows, {n_feat} features)",
                        "pass one map per covariate row over the basis' features", ShapeMismatchError)
    residual = model.residual_params
    if score == "exact" and residual.n_features != n_feat:
        raise bad_value("model", f"residual part over {residual.n_features} features",
                        f"does not match the basis' {n_feat} features", "refit the residual part",
                        IncompatibleModelError)
    if score == "exact":
        k = residual.n_modes
    subject_block = _check_block(subject_block, "subject_block")
    query_block = _check_block(query_block, "query_block")
    n_jobs = _check_n_jobs(n_jobs)
    if W is None:
        Q = np.asarray(basis.eigenvectors[:, :k]).T
    else:
        Q = np.asarray(basis.encode_queries(W, n_modes=k))
    Q = np.ascontiguousarray(Q)
    without = list(predict_without or [])
    sp = model.compute_spectral_predictions(covariates, without, k, unseen_batch)
    row_blocks = _blocks(len(covariates), subject_block)

    def arguments():
        for rows in row_blocks:
            ids = None if names is None else names[rows]
            block = check_maps(maps[rows], n_feat, "maps", np.arange(rows.start, rows.stop), ids)
            C = basis.encode(block, n_modes=k)
            yield (sp.subset(rows), model.spec, residual, covariates.iloc[rows], without, unseen_batch,
                   block, C, Q, W, query_block, score, kappa)

    if per_block:
        return _stream_tasks(task, arguments(), n_jobs)

    def generate():
        for rows, parts in zip(row_blocks, _stream_tasks(task, arguments(), n_jobs)):
            for cols, pred in parts:
                yield rows, cols, pred

    return generate()


def assemble(blocks, n_subjects: int, n_queries: int, index) -> NormativePredictions:
    """Join streamed blocks into one NormativePredictions of (n_subjects, n_queries) arrays."""
    out: dict = {}
    for rows, cols, pred in blocks:
        for key, value in pred.predictions.items():
            arr = out.setdefault(key, np.empty((n_subjects, n_queries)))
            arr[rows, cols] = value
    return NormativePredictions(out, index=index)
