"""Scoring whole maps: the spectral part plus the per-feature residual part, block by block.

For a query ``w`` over the features (one vertex, a smoothing kernel, a parcel mean) with encoding
``q = Psi' w`` and a subject's map ``y``:

* ``"exact"`` (the default when the model has a residual part) scores the query's value on the
  map itself, ``w' y``, against mean ``q' mu_c + w' mu_r`` and variance
  ``q' S R S q + sum_v w_v^2 var_r,v`` (:mod:`~spectranorm_neuro.engine.residual`): for vertex
  queries the exact per-vertex z-score;
* ``"local"`` scores the same value minus the subject's own coarse modes, ``w' y - q_A' c_A``
  (``A`` the first ``local_modes`` modes, ``c_A`` the map's coefficients on them), against mean
  ``q_B' mu_c + w' mu_r`` and variance ``q_B' S R S q_B + sum_v w_v^2 var_r,v`` (``q_B`` = ``q``
  with the coarse modes zeroed): the deviation from the subject's own broad pattern, which
  broad noise (at the scale of the coarse modes) no longer dominates; calibrated like ``"exact"``
  when the cutoff was declared at fit time;
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
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from .._util import block_slices, check_n_jobs, check_positive_int, run_tasks
from ..exceptions import IncompatibleModelError, ShapeMismatchError, bad_value
from .direct import predict_direct
from .effects import Design
from .mode_predictions import QUERY_BLOCK, SpectralPredictions
from .residual import check_maps, encode_maps, fit_residual, predict_residual, query_key, query_weights
from .results import NormativePredictions

if TYPE_CHECKING:
    from .spectral import SpectralNormativeModel

__all__ = ["SCORES", "MapScoring", "iter_score_maps", "resolve_score", "resolve_local_modes", "check_local_modes",
           "local_key", "calibration_key", "assemble", "calibrate_maps", "loo_moments",
           "shrink_calibration", "MAX_LEVERAGE"]

logger = logging.getLogger("spectranorm_neuro")

SCORES = ("exact", "local", "projected")
MAP_SUBJECT_BLOCK = 64
CALIBRATION_SUBJECTS = 500  # training maps of the per-query calibration (accuracy/cost: see fit_residual)
#: Leverages are capped at this value in :func:`loo_moments` (a row that alone determines a coefficient
#: has no leave-one-out prediction; with hundreds of training rows leverages are ~0.01-0.05).
MAX_LEVERAGE = 0.5


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
    if score != "projected" and model.residual_params is None:
        raise bad_value("score", score, "needs the model's residual part (what the modes miss), which this "
                        "model lacks: it was fitted on spectral coefficients only (or by an older release)",
                        "refit with SpectralNormativeModel.fit(coefficients, covariates, maps=maps) or call "
                        "model.fit_residual(maps, covariates) (CLI: refit with `fit`), or ask for the low-pass "
                        "z with score='projected' (CLI: --z projected)", IncompatibleModelError)
    return score


def local_key(key: str, local_modes: int) -> str:
    """Calibration key of the ``"local"`` score of a query set (``query_key``) with this cutoff."""
    return f"{key}_local{int(local_modes)}"


def calibration_key(W, score: str, k0: int = 0) -> str:
    """Key of the calibration factors of ``score`` for query weights ``W`` (None: vertices)."""
    key = query_key(W)
    return local_key(key, k0) if score == "local" else key


def resolve_local_modes(model, score: str, local_modes: int | None) -> int:
    """Coarse modes the ``"local"`` score removes: ``local_modes`` or the cutoff declared at fit time (0 otherwise)."""
    if score != "local":
        return 0
    if local_modes is None:
        local_modes = (model.model_params.get("residual") or {}).get("local_modes")
        if local_modes is None:
            raise bad_value("local_modes", None, "is needed by score='local' and this model declared no cutoff "
                            "at fit time", "pass local_modes=<coarse modes> (CLI: refit with `fit --local-modes "
                            "N`, which also calibrates the local scores)")
    return check_local_modes(local_modes, int(model.residual_params.n_modes))


def check_local_modes(local_modes, n_modes: int, argument: str = "local_modes") -> int:
    """Validate the coarse modes of the ``"local"`` score: an integer in 1 .. n_modes - 1."""
    local_modes = check_positive_int(local_modes, argument, max(1, min(n_modes - 1, n_modes // 10)))
    if local_modes >= n_modes:
        raise bad_value(argument, local_modes, f"is not below the model's {n_modes} modes",
                        f"pass fewer coarse modes, e.g. {argument} {max(1, n_modes // 10)}")
    return local_modes


def loo_moments(spec, params, Y: np.ndarray, covariates: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Approximate leave-one-out predictive mean and sd of the training rows of ``M`` Normal direct models.

    A training row's own residual is shrunk by the fit (``e_i = (1 - h_i) e_(i)``, ``h_i`` its
    leverage) and its log-sd is pulled towards its own squared residual, so z-scores of training
    rows are smaller than those of new subjects by about twice the degrees of freedom used per
    response over ``n``. One Newton step from the Laplace posterior without row ``i``
    (Sherman-Morrison on the posterior precision) gives, with ``v_i = x_i' C_beta x_i``,
    ``h_i = v_i / sd_i^2``, ``u_i = x_i' C_gamma x_i`` and ``z_i = e_i / sd_i`` (the log-sd has
    Fisher information 2 per row, leverage ``2 u_i``):

    ``e_(i) = e_i / (1 - h_i)``, ``v_(i) = v_i / (1 - h_i)``,
    ``log sd_(i) = log sd_i - u_i (z_i^2 - 1) / (1 - 2 u_i)``, ``u_(i) = u_i / (1 - 2 u_i)``,

    and the predictive variance ``exp(2 log sd_(i) + 2 u_(i)) + v_(i)`` as in
    :func:`~spectranorm_neuro.engine.direct.predict_direct`. SHASHb models get their in-sample
    moments (the Normal step does not apply to their shape).

    Parameters
    ----------
    spec : NormativeModelSpec
    params : DirectParams
        ``M`` models fitted on the rows of ``Y``.
    Y : numpy.ndarray, shape (n, M)
        Their training responses.
    covariates : pandas.DataFrame, shape (n, ...)
        The same rows' covariates.

    Returns
    -------
    mu, sd : numpy.ndarray, shape (n, M)
    """
    if spec.likelihood != "Normal":
        return predict_direct(spec, params, covariates, warn=False)
    (Xm, _), (Xv, _) = (Design(spec, t).matrix(covariates, warn=False) for t in ("mean", "variance"))
    beta, cov_b, _ = params.target("mean")
    gamma, cov_g, _ = params.target("variance")
    log_sd = Xv @ gamma.T
    s2 = np.exp(2.0 * log_sd)
    e = (Y - params.y_mean) / params.y_std - Xm @ beta.T
    v = np.maximum(np.einsum("np,mpq,nq->nm", Xm, cov_b, Xm, optimize=True), 0.0)
    u = np.maximum(np.einsum("np,mpq,nq->nm", Xv, cov_g, Xv, optimize=True), 0.0)
    keep_m = 1.0 - np.minimum(v / s2, MAX_LEVERAGE)
    keep_v = 1.0 - np.minimum(2.0 * u, MAX_LEVERAGE)
    log_sd = log_sd - u * (e**2 / s2 - 1.0) / keep_v
    var = np.exp(2.0 * log_sd + 2.0 * u / keep_v) + v / keep_m
    return Y - params.y_std * (e / keep_m), params.y_std * np.sqrt(var)


def _moments(sp, spec, residual, covariates: pd.DataFrame, without, unseen_batch: str, maps: np.ndarray,
             C: np.ndarray, Q: np.ndarray, W, query_block: int, score: str, kappa, k0: int = 0,
             residual_moments=None) -> Iterator[tuple]:
    """Yield ``(cols, observed, mean, sd)`` of one block of subjects, a block of queries at a time.

    ``residual_moments``: the residual part's mean and variance (two (subjects, features) arrays)
    when computed by the caller (leave-one-out moments of training rows), else predicted here.
    """
    exact = score != "projected"
    if exact:
        r_mu, r_var = residual_moments or predict_residual(spec, residual, covariates, without, unseen_batch)
    n_q = Q.shape[1]
    for a in range(0, n_q, query_block):
        cols = slice(a, min(a + query_block, n_q))
        Qb = np.array(Q[:, cols])
        Qb[:k0] = 0.0  # the "local" score: the coarse modes are the subject's own, not a deviation
        mean, sd = sp.query_moments(Qb)
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
            if k0:
                obs = obs - C[:, :k0] @ Q[:k0, cols]
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
    """Sums over a block of subjects of ``z^2`` and ``z^4`` per query, shape (2, n_queries)."""
    parts = []
    for _, obs, mean, sd in _moments(*args):
        z2 = ((obs - mean) / sd) ** 2
        parts.append(np.stack([z2.sum(axis=0), (z2**2).sum(axis=0)]))
    return np.concatenate(parts, axis=1)


def _centred(W, n_features: int) -> bool:
    """Whether the queries are one per feature, each centred on its own feature (vertices, smoothing kernels)."""
    if W is None:
        return True
    if W.shape[0] != n_features:
        return False
    return bool(np.all(np.asarray(abs(W).argmax(axis=1)).ravel() == np.arange(n_features)))


def shrink_calibration(basis, n_modes: int, z2: np.ndarray, z4: np.ndarray, n: int) -> np.ndarray:
    """Empirical-Bayes shrinkage of per-query factors ``z2 / n`` towards their smooth part over the mesh.

    ``log kappa`` is split into its projection onto the first ``n_modes`` modes (the smooth
    part) and the rest; the rest keeps the fraction ``t / (t + s)`` of its size, ``s`` the
    sampling variance of ``log kappa`` (``(mean z^4 / kappa^2 - 1) / n``, averaged over queries)
    and ``t`` the variance of the rest beyond it: what sampling noise a few hundred training
    maps leave in the factor of every vertex is mostly removed, real local structure kept.

    Parameters
    ----------
    basis : EigenmodeBasis
    n_modes : int
    z2, z4 : numpy.ndarray, shape (n_features,)
        Sums over ``n`` training subjects of ``z^2`` and ``z^4`` of one query per feature.
    n : int

    Returns
    -------
    numpy.ndarray, shape (n_features,)
    """
    kappa = np.maximum(z2 / n, 1e-12)
    log_k = np.log(kappa)
    smooth = np.asarray(basis.eigenvectors[:, :n_modes]) @ basis.encode(log_k[None], n_modes=n_modes)[0]
    rest = log_k - smooth
    s = float(np.mean(np.maximum(z4 / n / kappa**2 - 1.0, 0.0))) / n
    t = max(float(np.mean(rest**2)) - s, 0.0)
    return np.exp(smooth + (t / (t + s) if t + s > 0 else 1.0) * rest)


def iter_score_maps(model, maps, covariates: pd.DataFrame, queries=None, score: str | None = None,
                    predict_without=(), unseen_batch: str = "error", subject_block: int = MAP_SUBJECT_BLOCK,
                    query_block: int = 4096, n_jobs: int | None = 1, names=None, local_modes: int | None = None
                    ) -> Iterator[tuple[slice, slice, NormativePredictions]]:
    """Stream z-scores of maps (see :meth:`SpectralNormativeModel.iter_evaluate_maps`)."""
    score = resolve_score(model, score)
    model._fitted()
    names = names if names is not None else getattr(maps, "names", None)
    W = query_weights(queries, int(model.eigenmode_basis.n_features))
    kappa = None
    k0 = resolve_local_modes(model, score, local_modes)
    if score != "projected":
        kappa = model.residual_params.calibration.get(calibration_key(W, score, k0))
        if kappa is None and (W is not None or k0):
            logger.info("These queries (score %r) were not calibrated at fit time: their residual parts are treated "
                        "as independent across features and of the spectral part (declare them to "
                        "fit_residual(calibrate=..., local_modes=...)).", score)
    return _iter_blocks(_score_block, model, maps, covariates, W, score, predict_without, unseen_batch,
                        subject_block, query_block, n_jobs, names, kappa, k0=k0)


def calibrate_maps(model, maps, covariates: pd.DataFrame, queries=(None,), max_subjects: int = CALIBRATION_SUBJECTS,
              n_jobs: int | None = 1, names=None, local_modes: int | None = None, shrink: bool = True,
              leave_one_out: bool = True) -> dict:
    """Per-query variance factors of exact scores on training maps (see ``ResidualParams.calibration``).

    Each factor is the mean of ``z^2`` over training maps. With ``leave_one_out`` (the default) the
    training maps are scored with their approximate leave-one-out moments (:func:`loo_moments`: the
    spectral and residual parts' means and sds as if each map had not been fitted), so that the
    factor estimates what ``z^2`` of a *new* subject averages: in-sample z-scores are smaller by
    about twice the degrees of freedom per feature over the number of training maps, which put
    the per-vertex exceedance of new controls ~0.005 above its nominal rate.

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
    local_modes : int, optional
        Also calibrate the ``"local"`` score with this many coarse modes removed.
    shrink : bool, optional
        Shrink the factors of queries centred one per feature (vertices, smoothing kernels)
        towards their smooth part over the mesh (:func:`shrink_calibration`); other query sets
        keep their raw factors.
    leave_one_out : bool, optional
        Score the training maps with leave-one-out moments (default); ``False``: in-sample moments.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{query_key(W): factor (n_queries,)}`` (and ``{local_key(...): factor}``).
    """
    n = len(covariates)
    rows = np.unique(np.linspace(0, n - 1, min(n, max_subjects)).round().astype(np.int64))
    sub_cov = covariates.iloc[rows]
    sub_maps = _RowView(maps, rows)
    out = {}
    for queries_ in queries:
        W = query_weights(queries_, int(model.eigenmode_basis.n_features))
        scores = [("exact", 0), *([("local", local_modes)] if local_modes else [])]
        for score, k0 in scores:
            z2, z4 = sum(_iter_blocks(_calibration_block, model, sub_maps, sub_cov, W, score, (), "population",
                                      MAP_SUBJECT_BLOCK, 4096, n_jobs, None if names is None else
                                      np.asarray(names)[rows], None, per_block=True, k0=k0,
                                      loo=leave_one_out))
            n_feat = int(model.eigenmode_basis.n_features)
            out[calibration_key(W, score, k0)] = (
                shrink_calibration(model.eigenmode_basis, model.residual_params.n_modes, z2, z4, rows.size)
                if shrink and _centred(W, n_feat) else z2 / rows.size)
    return out


class _RowView:
    """Rows ``rows`` of a 2-D array (or memmap), read a slice at a time."""

    def __init__(self, maps, rows: np.ndarray):
        self.maps, self.rows = maps, rows
        self.ndim, self.shape = 2, (rows.size, maps.shape[1])

    def __getitem__(self, sl: slice) -> np.ndarray:
        return np.asarray(self.maps[self.rows[sl]])


def _iter_blocks(task, model, maps, covariates, W, score, predict_without, unseen_batch, subject_block,
                 query_block, n_jobs, names, kappa, per_block: bool = False, k0: int = 0, loo: bool = False):
    """Run ``task`` over blocks of subjects (see :func:`iter_score_maps`).

    ``loo``: the subjects are the model's training rows, scored with their approximate
    leave-one-out moments (:func:`loo_moments`, spectral and residual parts), as the calibration does.
    """

    basis = model.eigenmode_basis
    k = int(model.model_params["n_modes"])
    n_feat = int(basis.n_features)
    if maps.ndim != 2 or maps.shape[1] != n_feat or maps.shape[0] != len(covariates):
        raise bad_value("maps", f"array of shape {maps.shape}",
                        f"is not (n_subjects = {len(covariates)} covariate rows, {n_feat} features)",
                        "pass one map per covariate row over the basis' features", ShapeMismatchError)
    residual = model.residual_params
    if score != "projected" and residual.n_features != n_feat:
        raise bad_value("model", f"residual part over {residual.n_features} features",
                        f"does not match the basis' {n_feat} features", "refit the residual part",
                        IncompatibleModelError)
    if score != "projected":
        k = residual.n_modes
    subject_block = check_positive_int(subject_block, "subject_block", 256)
    query_block = check_positive_int(query_block, "query_block", 256)
    n_jobs = check_n_jobs(n_jobs)
    if W is None:
        Q = np.asarray(basis.eigenvectors[:, :k]).T
    else:
        Q = np.asarray(basis.encode_queries(W, n_modes=k))
    Q = np.ascontiguousarray(Q)
    without = list(predict_without or [])
    sp = model._mode_predictions(covariates, without, k, unseen_batch)
    row_blocks = block_slices(len(covariates), subject_block)

    def arguments():
        for rows in row_blocks:
            ids = None if names is None else names[rows]
            block = check_maps(maps[rows], n_feat, "maps", np.arange(rows.start, rows.stop), ids)
            C = basis.encode(block, n_modes=k)
            sp_rows, cov_rows, moments = sp.subset(rows), covariates.iloc[rows], None
            if loo:
                mu_c, sd_c = loo_moments(model.spec, model.direct_params.subset(slice(0, k)), C, cov_rows)
                sp_rows = SpectralPredictions(mu_c, sd_c, sp_rows.rho, sp_rows.pairs, sp_rows.factor)
                R = block - C @ np.asarray(basis.eigenvectors[:, :k]).T
                r_mu, r_sd = loo_moments(model.spec, residual.direct, R, cov_rows)
                moments = (r_mu, r_sd**2)
            yield (sp_rows, model.spec, residual, cov_rows, without, unseen_batch,
                   block, C, Q, W, query_block, score, kappa, k0, moments)

    if per_block:
        return run_tasks(task, arguments(), n_jobs)

    def generate():
        for rows, parts in zip(row_blocks, run_tasks(task, arguments(), n_jobs)):
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


class MapScoring:
    """Methods of :class:`~spectranorm_neuro.engine.spectral.SpectralNormativeModel` that fit and score maps."""

    def fit_residual(self, maps, covariates_dataframe: pd.DataFrame, n_jobs: int | None = 1, names=None,
                     calibrate=(), calibration_subjects: int = CALIBRATION_SUBJECTS, local_modes: int | None = None,
                     **solver_kwargs) -> SpectralNormativeModel:
        """Fit the per-feature normative models of what the modes miss (``r = y - Psi Psi' M y``).

        Parameters
        ----------
        maps : array_like, shape (n_subjects, n_features)
            Training maps over the basis' features, one per covariate row (a ``numpy.memmap`` is
            read a block at a time).
        covariates_dataframe : pandas.DataFrame, shape (n_subjects, ...)
        n_jobs : int or None, optional
            joblib workers over blocks of features.
        names : array_like of str, shape (n_subjects,), optional
            A name (file) per map, used in error messages.
        calibrate : sequence of query sets, optional
            Query sets besides the vertices (e.g. ``io.kernel_queries(basis, surfaces, fwhm=10)`` for
            smoothed maps) whose exact scores are calibrated on these training maps: for each query
            the mean of ``z^2`` over training subjects becomes a variance factor, which carries the
            covariance between the spectral and residual parts and the residuals' correlation
            between neighbouring features. Vertex queries are always calibrated.
        calibration_subjects : int, optional
            At most this many training subjects (evenly spaced) are used for the calibration
            (default 500: on ``bench/bench_vertex_truth.py`` factors from 300 maps, shrunk, give
            vertex sd ratios 0.93-1.05 and exceedance 0.034-0.076, from 500 0.94-1.05 and
            0.034-0.074, from 100 0.89-1.09 and 0.030-0.088, all measured with in-sample factors;
            the leave-one-out factors of :func:`calibrate_maps` put exceedance at 0.032-0.074 from
            500; the cost grows linearly: 300 maps cost 0.13 of the residual fit for two query sets).
        local_modes : int, optional
            Declare the ``"local"`` score (:meth:`iter_evaluate_maps`): the number of coarse modes
            it removes, recorded with the model and calibrated for the vertices and ``calibrate``.
        **solver_kwargs
            Passed to the solver.

        Returns
        -------
        SpectralNormativeModel
            ``self``, with ``residual_params``.
        """
        self._fitted()
        k = int(self.model_params["n_modes"])
        self.spec.check_dataframe(covariates_dataframe, "covariates_dataframe")
        if local_modes is not None:
            local_modes = check_local_modes(local_modes, k)
        n_feat = int(self.eigenmode_basis.n_features)
        if getattr(maps, "ndim", 0) != 2 or maps.shape != (len(covariates_dataframe), n_feat):
            maps = np.asarray(maps)
            if maps.shape != (len(covariates_dataframe), n_feat):
                raise bad_value("maps", f"array of shape {maps.shape}",
                                f"is not (n_subjects = {len(covariates_dataframe)} covariate rows, {n_feat} "
                                "features)", "pass one map per covariate row over the basis' features",
                                ShapeMismatchError)
        C = encode_maps(self.eigenmode_basis, maps, k, names=names)
        self.residual_params = fit_residual(self.spec, self.eigenmode_basis, maps, C, covariates_dataframe,
                                            n_jobs=n_jobs, **solver_kwargs)
        self.model_params["residual"] = {"n_features": n_feat, "n_modes": k}
        self.residual_params.calibration = calibrate_maps(self, maps, covariates_dataframe, [None, *calibrate],
                                                          calibration_subjects, n_jobs, names, local_modes)
        if local_modes is not None:
            self.model_params["residual"]["local_modes"] = local_modes
        logger.info("Fitted the residual part of %d features", n_feat)
        return self

    def iter_evaluate_maps(self, maps, covariates_dataframe: pd.DataFrame, queries=None, score: str | None = None,
                           predict_without=(), unseen_batch: str = "error", subject_block: int = 64,
                           query_block: int = QUERY_BLOCK, n_jobs: int | None = 1, names=None,
                           local_modes: int | None = None) -> Iterator[tuple[slice, slice, NormativePredictions]]:
        """Stream z-scores, centiles and log-likelihoods of maps, block by block.

        Parameters
        ----------
        maps : array_like, shape (n_subjects, n_features)
            Observed maps over the basis' features (read a block of subjects at a time).
        covariates_dataframe : pandas.DataFrame, shape (n_subjects, ...)
        queries : None, sparse or dense array (n_queries, n_features), or io.QuerySet, optional
            What to score: ``None`` every feature (vertex maps), else query weights (e.g.
            ``io.kernel_queries(basis, surfaces, fwhm=10)`` for smoothed maps, atlas parcels).
        score : {"exact", "local", "projected"}, optional
            ``"exact"``: the query's value on the map against spectral plus residual moments
            (needs the residual part, :meth:`fit_residual`); ``"local"``: the same value minus the
            subject's own coarse modes (the first ``local_modes``), against the moments of the
            rest: a deviation from the subject's own broad pattern (finds focal changes under
            broad noise); ``"projected"``: the low-pass z of the map's projection onto the modes.
            Default: ``"exact"`` when the model has a residual part, else ``"projected"`` with a
            logged note.
        predict_without : list of str, optional
        unseen_batch : {"error", "population", "marginalize"}, optional
        subject_block, query_block : int, optional
        n_jobs : int or None, optional
            joblib workers over blocks of subjects.
        names : array_like of str, shape (n_subjects,), optional
            Name (file) of each map, for error messages (NaN/inf on modelled features).
        local_modes : int, optional
            Coarse modes the ``"local"`` score removes (default: the cutoff declared at fit time,
            whose scores are calibrated).

        Yields
        ------
        subjects : slice
        queries : slice
        predictions : NormativePredictions
            ``mu_estimate``, ``std_estimate``, ``z-score``, ``centiles``, ``log-likelihood``,
            each (n_block_subjects, n_block_queries).
        """
        maps = maps if getattr(maps, "ndim", 0) == 2 else np.asarray(maps)
        return iter_score_maps(self, maps, covariates_dataframe, queries, score, predict_without, unseen_batch,
                               subject_block, query_block, n_jobs, None if names is None else np.asarray(names),
                               local_modes)

    def evaluate_maps(self, maps, covariates_dataframe: pd.DataFrame, queries=None, score: str | None = None,
                      predict_without=(), unseen_batch: str = "error", n_jobs: int | None = 1,
                      local_modes: int | None = None) -> NormativePredictions:
        """Score maps: :meth:`iter_evaluate_maps` gathered into (n_subjects, n_queries) arrays.

        Returns
        -------
        NormativePredictions
            ``mu_estimate``, ``std_estimate``, ``z-score``, ``centiles``, ``log-likelihood``.
        """
        W = query_weights(queries, int(self.eigenmode_basis.n_features))
        n_q = int(self.eigenmode_basis.n_features) if W is None else W.shape[0]
        blocks = self.iter_evaluate_maps(maps, covariates_dataframe, W, score, predict_without, unseen_batch,
                                         n_jobs=n_jobs, local_modes=local_modes)
        return assemble(blocks, len(covariates_dataframe), n_q, covariates_dataframe.index)

    def mahalanobis_maps(self, maps, covariates_dataframe: pd.DataFrame, queries, predict_without=(),
                         unseen_batch: str = "error", ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
        """Multivariate deviation of a set of queries of maps, with the residual part (see :meth:`mahalanobis`).

        ``d2 = r' G^-1 r`` with ``r = W y - mean`` the queries' deviations from the exact means and
        ``G = Q' S Q + W diag(var_r) W'`` (spectral covariance of the subject plus the residual
        variances, independent across features; ``S`` with its correlation's eigenvalues floored at
        ``ridge``); ``d2 ~ chi2(n_queries)`` under the model. The per-query calibration factors of
        the scores do not enter (the covariance between the spectral and residual parts is left out).

        Parameters
        ----------
        maps : array_like, shape (n_subjects, n_features)
        covariates_dataframe : pandas.DataFrame, shape (n_subjects, ...)
        queries : sparse or dense array (n_queries, n_features), or io.QuerySet
            A small set of queries (e.g. the vertices of a parcel).

        Returns
        -------
        d2 : numpy.ndarray, shape (n_subjects,)
        p_value : numpy.ndarray, shape (n_subjects,)
        """
        self._fitted()
        resolve_score(self, "exact")
        k = self.residual_params.n_modes
        W = query_weights(queries, int(self.eigenmode_basis.n_features))
        Q = np.asarray(self.eigenmode_basis.encode_queries(W, n_modes=k))
        sp = self._mode_predictions(covariates_dataframe, predict_without, k, unseen_batch)
        r_mu, r_var = predict_residual(self.spec, self.residual_params, covariates_dataframe, predict_without,
                                       unseen_batch)
        C = encode_maps(self.eigenmode_basis, maps, k)
        # W stays sparse: a dense (n_queries, n_features) product per subject cost ~50 ms on fsaverage5
        obs = np.stack([W @ np.asarray(maps[i:i + 1], dtype=np.float64)[0] for i in range(len(C))])
        resid = obs - sp.mu @ Q - np.asarray((W @ r_mu.T).T)
        d2 = np.empty(len(C))
        for i in range(len(C)):
            w, V = np.linalg.eigh(sp.correlation(i))
            DQ = sp.sd[i][:, None] * Q
            A = V.T @ DQ
            G = A.T @ (np.maximum(w, ridge)[:, None] * A) + (W.multiply(r_var[i]) @ W.T).toarray()
            d2[i] = resid[i] @ np.linalg.solve(G, resid[i])
        return d2, stats.chi2.sf(d2, df=W.shape[0])

    def harmonize_maps(self, maps, covariates_dataframe: pd.DataFrame, covariates_to_harmonize, queries=None,
                       score: str | None = None, n_jobs: int | None = 1) -> np.ndarray:
        """Remove covariate (site) effects from maps: every value keeps its centile (see :meth:`harmonize`).

        ``harmonized = mu_without + z * sd_without`` with the moments of :meth:`evaluate_maps`
        (exact by default when the model has a residual part).

        Returns
        -------
        numpy.ndarray, shape (n_subjects, n_queries)
        """
        full = self.evaluate_maps(maps, covariates_dataframe, queries, score, n_jobs=n_jobs).predictions
        wo = self.evaluate_maps(maps, covariates_dataframe, queries, score, list(covariates_to_harmonize),
                                unseen_batch="population", n_jobs=n_jobs).predictions
        return wo["mu_estimate"] + full["z-score"] * wo["std_estimate"]
