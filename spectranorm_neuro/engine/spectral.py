"""Spectral normative models: direct models per eigenmode plus sparse cross-mode correlations.

For queries ``Q`` (n_modes, n_queries) already encoded in the basis (``Psi.T @ w``), a subject
with mode means ``m`` and sds ``s`` (from the direct models) and pair correlations ``rho`` (from
the covariance models) gets, for every query ``q``,

    mean = m @ q
    var  = sum_k s_k^2 q_k^2 + 2 sum_{(i, j) in pairs} rho_ij s_i s_j q_i q_j

computed for all subjects and queries with two matrix products per block of queries, so memory
stays bounded by (subjects x queries) whatever the number of modes; no (subjects x modes x
queries) array is ever formed. :meth:`SpectralNormativeModel.iter_predict` streams blocks of
(subjects x queries), so memory stays bounded by the block size whatever the cohort, and runs
them through joblib (``joblib.parallel_config(backend="dask")`` spreads them over a cluster).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from .._util import as_finite_array, block_slices, check_n_jobs, check_n_modes, check_positive_int, run_tasks
from ..basis import EigenmodeBasis
from ..exceptions import NotFittedError, ShapeMismatchError, bad_value
from .covariance import CovarianceParams, adapt_covariance, fit_covariance, predict_correlation, select_pairs
from .direct import DirectNormativeModel, DirectParams, adapt_direct, fit_direct, predict_direct
from .lowrank import FactorParams, fit_factor
from .maps import MapScoring
from .mode_predictions import QUERY_BLOCK, SpectralPredictions, pairs_below
from .results import NormativePredictions

__all__ = ["SpectralNormativeModel", "SpectralPredictions"]

logger = logging.getLogger("spectranorm_neuro")

MODE_BLOCK = 256  # modes (or pairs) per parallel task
SUBJECT_BLOCK = 256  # subjects per block in iter_predict


def _fit_direct_block(block: slice, spec, C: np.ndarray, covariates: pd.DataFrame, kwargs: dict) -> DirectParams:
    return fit_direct(spec, C[:, block], covariates, **kwargs)


def _fit_covariance_block(block: slice, spec, z: np.ndarray, covariates: pd.DataFrame,
                          pairs: np.ndarray) -> CovarianceParams:
    return fit_covariance(spec, z, covariates, pairs[block])


def _block_predictions(sp: SpectralPredictions, Q: np.ndarray, coeffs: np.ndarray | None, index,
                       sp_without: SpectralPredictions | None = None, block: tuple | None = None, transform=None):
    """Predictions of one block: ``sp`` for (b_subjects,) subjects, ``Q`` (n_modes, b_queries).

    With ``sp_without`` (the same subjects predicted without some covariates) the block also holds
    ``harmonized``: each observed value moved to the same centile of those predictions. With
    ``transform``, returns ``transform(rows, cols, predictions)`` (``block`` is ``(rows, cols)``).
    """
    width = min(Q.shape[1], QUERY_BLOCK) or 1  # products over at most QUERY_BLOCK queries at a time
    pred = sp.query_predictions(Q, coeffs, index, query_block=width)
    if sp_without is not None:
        wo = sp_without.query_predictions(Q, None, index, query_block=width).predictions
        pred.predictions["harmonized"] = wo["mu_estimate"] + pred.predictions["z-score"] * wo["std_estimate"]
    return pred if transform is None else transform(*block, pred)


def _run_blocks(func, n_items: int, n_jobs: int, desc: str, progress: bool | None, *shared):
    """Run ``func(block, *shared)`` over blocks of items, in parallel through joblib when there are several.

    The shared arguments (data, covariates) are passed as they are to every task, so joblib ships
    each once: memory-mapped for local workers, scattered once to a dask cluster.
    """
    blocks = block_slices(n_items, MODE_BLOCK)
    return list(run_tasks(func, ((b, *shared) for b in blocks), 1 if len(blocks) <= 1 else n_jobs,
                          total=len(blocks), progress=True if progress is True else None, desc=desc, unit="block"))


class SpectralNormativeModel(MapScoring):
    """A normative model of whole maps in an eigenmode basis (SpectraNorm's ``SpectralNormativeModel``).

    Maps themselves (not only their spectral coefficients) are fitted and scored through the
    methods of :class:`~spectranorm_neuro.engine.maps.MapScoring` (``fit_residual``,
    ``evaluate_maps``, ``iter_evaluate_maps``, ``harmonize_maps``, ``mahalanobis_maps``).

    Parameters
    ----------
    eigenmode_basis : EigenmodeBasis
        Basis the data are encoded in.
    base_model : DirectNormativeModel
        Template whose specification every mode's direct model shares.
    """

    def __init__(self, eigenmode_basis: EigenmodeBasis, base_model: DirectNormativeModel):
        spec = getattr(base_model, "spec", None)
        if spec is not None and getattr(spec, "likelihood", "Normal") != "Normal":  # queries combine Gaussian modes
            raise bad_value("likelihood", spec.likelihood, "is not available for spectral models, whose mode "
                            "models stay Gaussian so that any query's distribution is known",
                            "model regional measures with engine.regional.RegionalNormativeModel(likelihood=...)")
        self.eigenmode_basis = eigenmode_basis
        self.base_model = base_model
        self.direct_params: DirectParams | None = None
        self.covariance_params: CovarianceParams | None = None
        self.factor_params: FactorParams | None = None
        self.residual_params = None
        self.model_params: dict = {}

    def __repr__(self) -> str:
        return f"SpectralNormativeModel(eigenmode_basis={self.eigenmode_basis!r}, base_model={self.base_model!r})"

    @property
    def spec(self):
        """The shared :class:`~spectranorm_neuro.engine.specs.NormativeModelSpec`."""
        return self.base_model.spec

    @property
    def batch_covariates(self) -> list[str]:
        """Batch (site) covariates."""
        return list(self.spec.batch_covariates)

    @property
    def numerical_covariates(self) -> list[str]:
        """Numerical covariates."""
        return self.spec.numerical_covariates

    @property
    def categorical_covariates(self) -> list[str]:
        """Categorical covariates."""
        return self.spec.categorical_covariates

    @classmethod
    def build_from_dataframe(cls, eigenmode_basis: EigenmodeBasis, model_type: str,
                             covariates_dataframe: pd.DataFrame, numerical_covariates=None,
                             nonlinear_covariates=None, categorical_covariates=None, batch_covariates=None,
                             influencing_mean=None, influencing_variance=None, spline_kwargs=None,
                             **kwargs) -> SpectralNormativeModel:
        """Specify a spectral model from a covariate table.

        Parameters
        ----------
        eigenmode_basis : EigenmodeBasis
        model_type : {"HBR", "BLR"}
        covariates_dataframe : pandas.DataFrame, shape (n_subjects, ...)
        numerical_covariates, nonlinear_covariates, categorical_covariates, batch_covariates : list of str
        influencing_mean, influencing_variance : list of str
        spline_kwargs : dict, optional
        **kwargs
            ``influencing_correlation``, ``priors``: see ``NormativeModelSpec.from_dataframe``.

        Returns
        -------
        SpectralNormativeModel
        """
        if not isinstance(eigenmode_basis, EigenmodeBasis):
            raise bad_value("eigenmode_basis", type(eigenmode_basis).__name__, "is not an EigenmodeBasis",
                            "pass snm.utils.gsp.EigenmodeBasis(eigenvalues, eigenvectors)")
        base = DirectNormativeModel.from_dataframe(
            model_type, covariates_dataframe, "dummy_VOI", numerical_covariates, categorical_covariates,
            batch_covariates, nonlinear_covariates, influencing_mean, influencing_variance, spline_kwargs,
            **kwargs)
        return cls(eigenmode_basis, base)

    # ------------------------------------------------------------------ checks
    def _fitted(self) -> tuple[DirectParams, CovarianceParams]:
        if self.direct_params is None or self.covariance_params is None:
            raise NotFittedError("SpectralNormativeModel: the model is not fitted. Fix: call fit(...) first.")
        return self.direct_params, self.covariance_params

    def _coeffs(self, data, argument: str, n_rows: int, n_modes: int) -> np.ndarray:
        arr = as_finite_array(data, argument, ndim=2)
        if arr.shape[0] != n_rows:
            raise bad_value(argument, f"array of shape {arr.shape}",
                            f"has {arr.shape[0]} subjects but the covariate table has {n_rows} rows",
                            "pass one covariate row per subject, in the same order", ShapeMismatchError)
        if arr.shape[1] < n_modes:
            raise bad_value(argument, f"array of shape {arr.shape}",
                            f"has fewer than the {n_modes} modes needed",
                            "encode the data with at least that many modes, or pass a smaller n_modes",
                            ShapeMismatchError)
        return arr[:, :n_modes]

    def _queries(self, encoded_query, n_modes) -> tuple[np.ndarray, int]:
        fitted = int(self.model_params["n_modes"])
        Q = as_finite_array(encoded_query, "encoded_query", ndim=(1, 2))
        if Q.ndim == 1:
            Q = Q[:, None]
        if n_modes is None:
            k = min(fitted, Q.shape[0])
        else:
            k = check_n_modes(n_modes, fitted)
        if Q.shape[0] < k:
            raise bad_value("encoded_query", f"array of shape {Q.shape}",
                            f"has {Q.shape[0]} rows (modes) but {k} modes are used",
                            "encode queries with basis.encode_queries(weights).T-style (n_modes, n_queries) "
                            "arrays, or pass n_modes", ShapeMismatchError)
        return np.ascontiguousarray(Q[:k]), k

    def _resolve_spectral_predictions(self, sp, test_covariates, predict_without, k, unseen_batch,
                                      progress) -> SpectralPredictions:
        """Mode-level predictions for ``predict``/``iter_predict``: computed, or checked and truncated."""
        if sp is None:
            return self._mode_predictions(test_covariates, predict_without, k, unseen_batch, progress)
        if sp.n_subjects != len(test_covariates):
            raise bad_value("spectral_predictions", f"{sp.n_subjects} subjects",
                            f"do not match the {len(test_covariates)} rows of test_covariates",
                            "compute them for the same subjects", ShapeMismatchError)
        if sp.n_modes < k:
            raise bad_value("spectral_predictions", f"{sp.n_modes} modes", f"cover fewer than the {k} modes used",
                            "recompute them with compute_spectral_predictions(n_modes=...)", ShapeMismatchError)
        return sp.truncate(k)

    # ------------------------------------------------------------------ fitting
    def fit(self, spectral_coeff_train_data, covariates_dataframe: pd.DataFrame, n_modes: int = -1,
            n_jobs: int = -1, covariance_structure="lowrank", inference: str = "map", random_state=None,
            progress: bool | None = None, pair_selection: str = "covariance", covariance_rank="auto",
            covariance_pairs=0.5, maps=None, **inference_kwargs) -> SpectralNormativeModel:
        """Fit one direct model per mode, then the cross-mode correlation (low rank, or mode pairs).

        Parameters
        ----------
        spectral_coeff_train_data : array_like, shape (n_subjects, >= n_modes)
            Encoded training maps (``basis.encode(maps)``).
        covariates_dataframe : pandas.DataFrame, shape (n_subjects, ...)
        n_modes : int, optional
            Leading modes to model (-1: all modes of the basis).
        n_jobs : int, optional
            Parallel workers over blocks of modes (joblib; -1 = all cores).
        covariance_structure : "lowrank", float, int or array_like (n_pairs, 2), optional
            ``"lowrank"`` (default): the correlation of all modes as low rank plus diagonal, rank
            chosen by held-out likelihood (:mod:`~spectranorm_neuro.engine.lowrank`), with the
            covariate-dependent models of ``covariance_pairs`` on top. Otherwise only the pairs to
            model, exactly as the reference implementation: a fraction of ``n_modes`` (the
            reference's default 0.5), a count, or explicit pairs.
        inference : {"map", "advi", "nuts"}, optional
            ``"map"`` (default): batched MAP with Laplace posterior and empirical-Bayes
            hierarchical variances. ``"advi"``/``"nuts"``: one vectorized pymc model over modes.
        random_state : int, optional
            Seed of every random step (pymc paths).
        progress : bool, optional
            Show progress bars (default: only on a terminal).
        pair_selection : {"correlation", "covariance"}, optional
            ``"covariance"`` (default) ranks candidate pairs by the covariance term they contribute to
            query variances, ``|corr_ij| * median(sd_i) * median(sd_j)``; ``"correlation"`` ranks by the
            absolute correlation of training z-scores alone, as the reference implementation. On the
            reference tutorial's cohort the default lowers the RMSE of z-scores against the true ones
            from 0.092 to 0.086 (``bench/bench_lattice.py``).
        covariance_rank : int or "auto", optional
            Rank of the ``"lowrank"`` correlation (default: by held-out likelihood).
        covariance_pairs : float, int or array_like (n_pairs, 2), optional
            With ``"lowrank"``: mode pairs whose covariate-dependent correlation models replace the
            low-rank correlation (same forms as a numeric ``covariance_structure``; default 0.5,
            chosen by measurement: on the reference tutorial's lattice the pairs' covariate
            dependence lowers the z RMSE from 0.090 to 0.087, see the README).
        maps : array_like, shape (n_subjects, n_features), optional
            The training maps themselves (may be a ``numpy.memmap``): also fits the residual part
            (:meth:`fit_residual`), which exact per-vertex z-scores of maps need.
        **inference_kwargs
            Passed to the inference backend.

        Returns
        -------
        SpectralNormativeModel
            ``self``.
        """
        k = check_n_modes(n_modes, self.eigenmode_basis.n_modes)
        C = self._coeffs(spectral_coeff_train_data, "spectral_coeff_train_data", len(covariates_dataframe), k)
        spec = self.spec
        spec.check_dataframe(covariates_dataframe, "covariates_dataframe")
        logger.info("Starting SNM model fitting: Step 1; direct models for each eigenmode (%d modes)", k)
        if inference == "map":
            parts = _run_blocks(_fit_direct_block, k, n_jobs, "Fitting direct models", progress,
                                spec, C, covariates_dataframe, inference_kwargs)
            direct = DirectParams.concatenate(parts)
        elif inference in ("advi", "nuts"):
            from .pymc_backend import fit_direct_pymc

            direct = fit_direct_pymc(spec, C, covariates_dataframe, method=inference,
                                     random_state=random_state, progress=progress, **inference_kwargs)
        else:
            raise bad_value("inference", inference, "is not a known inference method",
                            "pass 'map' (fast, default), 'advi' or 'nuts'")
        mu, sd = predict_direct(spec, direct, covariates_dataframe, warn=False)
        z = (C - mu) / sd
        logger.info("Step 2; identify sparse covariance structure")
        if pair_selection not in ("correlation", "covariance"):
            raise bad_value("pair_selection", pair_selection, "is not a known rule",
                            "pass 'correlation' or 'covariance'")
        lowrank = isinstance(covariance_structure, str)
        if lowrank and covariance_structure != "lowrank":
            raise bad_value("covariance_structure", covariance_structure, "is not a known structure",
                            "pass 'lowrank', a fraction of n_modes, a pair count or an (n_pairs, 2) array")
        factor = fit_factor(z, covariance_rank) if lowrank else None
        pairs = select_pairs(z, covariance_pairs if lowrank else covariance_structure,
                             np.median(sd, axis=0) if pair_selection == "covariance" else None)
        logger.info("Step 3; cross-eigenmode dependency modeling (%d pairs%s)", len(pairs),
                    "" if factor is None else f", rank {factor.rank}")
        parts = _run_blocks(_fit_covariance_block, len(pairs), n_jobs, "Fitting covariance models", progress,
                            spec, z, covariates_dataframe, pairs)
        cov = CovarianceParams.concatenate(parts) if parts else fit_covariance(spec, z, covariates_dataframe, pairs)
        self.direct_params, self.covariance_params, self.factor_params = direct, cov, factor
        self.residual_params = None
        self.model_params = {
            "n_modes": k, "n_pairs": len(pairs), "inference": inference,
            "covariance_structure": (covariance_structure if np.isscalar(covariance_structure) else "explicit"),
            "covariance_rank": None if factor is None else factor.rank,
            "n_train": len(covariates_dataframe), "random_state": random_state, "pair_selection": pair_selection,
            "converged_fraction": float(np.mean(np.concatenate([direct.converged, cov.converged]))),
        }
        if maps is not None:
            self.fit_residual(maps, covariates_dataframe, n_jobs=n_jobs, **inference_kwargs)
        return self

    # ------------------------------------------------------------------ prediction
    def compute_spectral_predictions(self, test_covariates: pd.DataFrame, predict_without=(),
                                     n_modes: int | None = None, unseen_batch: str = "error",
                                     progress: bool | None = None) -> SpectralPredictions:
        """Mode-level predictions (means, sds and pair correlations) for each subject.

        Parameters
        ----------
        test_covariates : pandas.DataFrame, shape (n_subjects, ...)
        predict_without : list of str, optional
            Covariates to predict without (e.g. ``["site"]`` for population-level norms).
        n_modes : int, optional
            Leading modes to use (default: all fitted modes).
        unseen_batch : {"error", "population", "marginalize"}, optional
            Policy for sites never seen in training (see ``engine.direct.predict_direct``).

        Returns
        -------
        SpectralPredictions
        """
        return self._mode_predictions(test_covariates, predict_without, n_modes, unseen_batch, progress)

    def _mode_predictions(self, test_covariates: pd.DataFrame, predict_without=(), n_modes: int | None = None,
                          unseen_batch: str = "error", progress: bool | None = None) -> SpectralPredictions:
        """:meth:`compute_spectral_predictions` as the engine uses it internally (whatever a subclass returns)."""
        direct, cov = self._fitted()
        k = check_n_modes(n_modes, int(self.model_params["n_modes"]))
        without = list(predict_without or [])
        with tqdm(total=2, desc="Computing eigenmode estimates", disable=progress is not True and None) as bar:
            mu, sd = predict_direct(self.spec, direct.subset(slice(0, k)), test_covariates, without, unseen_batch)
            bar.update()
            sub = cov.subset(pairs_below(cov.pairs, k))
            rho = predict_correlation(self.spec, sub, test_covariates, without)
            bar.update()
        factor = None if self.factor_params is None else self.factor_params.subset(slice(0, k))
        return SpectralPredictions(mu, sd, rho, sub.pairs, factor)

    def predict(self, encoded_query, test_covariates: pd.DataFrame, predict_without=(),
                n_modes: int | None = None, spectral_predictions: SpectralPredictions | None = None,
                unseen_batch: str = "error", progress: bool | None = None) -> NormativePredictions:
        """Normative mean and sd of every query for every subject.

        Parameters
        ----------
        encoded_query : array_like, shape (>= n_modes, n_queries) or (n_modes,)
            Encoded queries (``basis.encode_queries(weights)`` or ``basis.encode(weights).T``).
        test_covariates : pandas.DataFrame, shape (n_subjects, ...)
        predict_without : list of str, optional
        n_modes : int, optional
            Leading modes to use (default: all fitted modes, or the rows of ``encoded_query``).
        spectral_predictions : SpectralPredictions, optional
            Reuse mode-level predictions computed earlier for the same subjects.
        unseen_batch : {"error", "population", "marginalize"}, optional

        Returns
        -------
        NormativePredictions
            ``mu_estimate`` and ``std_estimate`` of shape (n_subjects, n_queries).
        """
        self._fitted()
        Q, k = self._queries(encoded_query, n_modes)
        sp = self._resolve_spectral_predictions(spectral_predictions, test_covariates, predict_without, k,
                                                unseen_batch, progress)
        n_subj, n_q = sp.mu.shape[0], Q.shape[1]
        mean = np.empty((n_subj, n_q))
        std = np.empty((n_subj, n_q))
        for b in block_slices(n_q, QUERY_BLOCK):
            mean[:, b], std[:, b] = sp.query_moments(Q[:, b])
        return NormativePredictions({"mu_estimate": mean, "std_estimate": std}, index=test_covariates.index)

    def iter_predict(self, encoded_query, test_covariates: pd.DataFrame, observed=None, predict_without=(),
                     n_modes: int | None = None, subject_block: int = SUBJECT_BLOCK,
                     query_block: int = QUERY_BLOCK, spectral_predictions: SpectralPredictions | None = None,
                     unseen_batch: str = "error", n_jobs: int | None = 1, progress: bool | None = None,
                     harmonize_without=None, transform=None) -> Iterator[tuple[slice, slice, NormativePredictions]]:
        """Stream the predictions of many subjects and queries block by block, in bounded memory.

        The same numbers as :meth:`predict` (and, with ``observed``, :meth:`evaluate`'s z-scores,
        centiles and log-likelihoods), but delivered as blocks of at most ``subject_block``
        subjects by ``query_block`` queries, subjects outer, queries inner, so that callers can
        write each block and let it go. Memory: the mode-level predictions of every subject
        (n_subjects x (2 n_modes + n_pairs)) plus a few blocks; never (n_subjects x n_queries),
        nor any (subjects x modes x queries) array.

        Blocks run through :class:`joblib.Parallel` when ``n_jobs`` asks for several workers, so
        ``with joblib.parallel_config(backend="dask"): ...`` runs them on a dask cluster; at most
        twice as many blocks as workers wait in memory. Each block is computed with BLAS on one
        thread, so the blocks are bitwise identical for any ``n_jobs`` and backend.

        Parameters
        ----------
        encoded_query : array_like, shape (>= n_modes, n_queries) or (n_modes,)
            Encoded queries (e.g. ``io.vertex_queries(basis).encoded`` for every vertex).
        test_covariates : pandas.DataFrame, shape (n_subjects, ...)
        observed : array_like, shape (n_subjects, >= n_modes), optional
            Spectral coefficients of the subjects' observed maps (``basis.encode(maps)``); each
            block then also holds ``z-score``, ``centiles`` and ``log-likelihood`` of the observed
            query values ``observed @ Q`` (computed per block).
        predict_without : list of str, optional
        n_modes : int, optional
            Leading modes to use (default: all fitted modes, or the rows of ``encoded_query``).
        subject_block, query_block : int, optional
            Block sizes (subjects, queries).
        spectral_predictions : SpectralPredictions, optional
            Mode-level predictions computed earlier for the same subjects.
        unseen_batch : {"error", "population", "marginalize"}, optional
        n_jobs : int or None, optional
            Workers (joblib semantics; 1 = serial, the default; None = joblib's default, which
            ``joblib.parallel_config(n_jobs=...)`` sets).
        progress : bool, optional
            Show a progress bar (blocks).
        harmonize_without : list of str, optional
            With ``observed``: each block also holds ``harmonized``, the observed values moved to
            the same centile of the predictions without these covariates (as :meth:`harmonize`).
        transform : callable, optional
            ``transform(subjects, queries, predictions)`` run where the block is computed (a joblib
            worker), e.g. to write the block's maps; its result is yielded instead of the
            predictions, so large blocks need not travel back to the caller.

        Yields
        ------
        subjects : slice
            Rows of ``test_covariates`` (and of ``observed``) in the block.
        queries : slice
            Columns of ``encoded_query`` in the block.
        predictions : NormativePredictions
            ``mu_estimate``, ``std_estimate`` (and with ``observed`` ``z-score``, ``centiles``,
            ``log-likelihood``), each (n_block_subjects, n_block_queries); ``index`` holds the
            block's subject labels.

        Examples
        --------
        >>> for rows, cols, block in model.iter_predict(Q, covariates, observed=coeffs):  # doctest: +SKIP
        ...     z[rows, cols] = block.predictions["z-score"]   # or write the block to disk
        """
        self._fitted()
        Q, k = self._queries(encoded_query, n_modes)
        n_subj, n_q = len(test_covariates), Q.shape[1]
        subject_block = check_positive_int(subject_block, "subject_block", 256)
        query_block = check_positive_int(query_block, "query_block", 256)
        n_jobs = check_n_jobs(n_jobs)
        C = None if observed is None else self._coeffs(observed, "observed", n_subj, k)
        sp = self._resolve_spectral_predictions(spectral_predictions, test_covariates, predict_without, k,
                                                unseen_batch, None)
        if harmonize_without is not None and C is None:
            raise bad_value("harmonize_without", list(harmonize_without), "needs the observed maps",
                            "pass observed=coefficients as well")
        sp_wo = None if harmonize_without is None else self.compute_spectral_predictions(
            test_covariates, list(harmonize_without), k, unseen_batch)
        index = test_covariates.index
        blocks = [(rows, cols) for rows in block_slices(n_subj, subject_block)
                  for cols in block_slices(n_q, query_block)]

        def arguments():
            for rows, cols in blocks:
                yield (sp.subset(rows), np.ascontiguousarray(Q[:, cols]),
                       None if C is None else np.ascontiguousarray(C[rows]), index[rows],
                       None if sp_wo is None else sp_wo.subset(rows), (rows, cols), transform)

        def generate():
            results = run_tasks(_block_predictions, arguments(), n_jobs)
            bar = tqdm(total=len(blocks), desc="Predicting blocks", unit="block",
                       disable=progress is not True and None)
            with bar:
                for (rows, cols), pred in zip(blocks, results):
                    bar.update()
                    yield rows, cols, pred

        return generate()

    def evaluate(self, encoded_query, spectral_coeff_test_data, test_covariates: pd.DataFrame,
                 query_train_moments=None, n_modes: int | None = None, predict_without=(),
                 unseen_batch: str = "error", progress: bool | None = None) -> NormativePredictions:
        """Score observed data: z-scores, centiles, log-likelihoods and per-query metrics.

        Parameters
        ----------
        encoded_query : array_like, shape (>= n_modes, n_queries)
        spectral_coeff_test_data : array_like, shape (n_subjects, >= n_modes)
        test_covariates : pandas.DataFrame, shape (n_subjects, ...)
        query_train_moments : array_like, shape (2, n_queries), optional
            Mean and sd of each query in the training data, for MSLL. Without it the test data's
            own moments are used (MSLL is then biased; logged at INFO level, the z-scores and
            centiles do not depend on it).

        Returns
        -------
        NormativePredictions
            With ``evaluations`` (one value per query).
        """
        self._fitted()
        Q, k = self._queries(encoded_query, n_modes)
        C = self._coeffs(spectral_coeff_test_data, "spectral_coeff_test_data", len(test_covariates), k)
        if query_train_moments is None:
            logger.info("Query moments not provided. Using test data moments as an approximation, "
                        "which may lead to overestimating MSLL.")
        else:
            query_train_moments = as_finite_array(query_train_moments, "query_train_moments", ndim=2)
            if query_train_moments.shape != (2, Q.shape[1]):
                raise bad_value("query_train_moments", f"array of shape {query_train_moments.shape}",
                                f"is not (2, {Q.shape[1]})", "pass [means, sds] of each query in training",
                                ShapeMismatchError)
        pred = self.predict(Q, test_covariates, predict_without, k, unseen_batch=unseen_batch, progress=progress)
        return pred.evaluate(C @ Q, query_train_moments)

    def harmonize(self, encoded_query, covariates_dataframe: pd.DataFrame, spectral_coeff_data,
                  covariates_to_harmonize, n_modes: int | None = None, unseen_batch: str = "error",
                  progress: bool | None = None) -> np.ndarray:
        """Remove the effects of ``covariates_to_harmonize`` (e.g. site) from observed query values.

        Every value keeps its normative centile: ``harmonized = mu_without + z * sd_without``.

        Returns
        -------
        numpy.ndarray, shape (n_subjects, n_queries)
        """
        self._fitted()
        Q, k = self._queries(encoded_query, n_modes)
        C = self._coeffs(spectral_coeff_data, "spectral_coeff_data", len(covariates_dataframe), k)
        full = self.predict(Q, covariates_dataframe, (), k, unseen_batch=unseen_batch, progress=progress)
        wo = self.predict(Q, covariates_dataframe, list(covariates_to_harmonize), k, progress=progress)
        z = (C @ Q - full.predictions["mu_estimate"]) / full.predictions["std_estimate"]
        return wo.predictions["mu_estimate"] + z * wo.predictions["std_estimate"]

    def mahalanobis(self, encoded_query, spectral_coeff_data, covariates_dataframe: pd.DataFrame,
                    predict_without=(), n_modes: int | None = None, unseen_batch: str = "error",
                    ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
        """Multivariate deviation of a set of queries, using the modelled cross-mode covariance.

        ``d2 = r' (Q' S Q)^-1 r`` with ``r`` the query residuals and ``S`` the subject's modelled
        mode covariance ``S = D R D`` (sds ``D``; correlations ``R`` = identity or the low-rank model, plus the sparse
        pairs, with eigenvalues floored at ``ridge`` so that ``R`` is positive definite); under the
        model ``d2 ~ chi2(n_queries)``.

        Parameters
        ----------
        encoded_query : array_like, shape (>= n_modes, n_queries)
            E.g. a parcel's vertex queries, or the identity for all modes.
        spectral_coeff_data : array_like, shape (n_subjects, >= n_modes)
        covariates_dataframe : pandas.DataFrame, shape (n_subjects, ...)

        Returns
        -------
        d2 : numpy.ndarray, shape (n_subjects,)
        p_value : numpy.ndarray, shape (n_subjects,)
            Upper-tail probability under ``chi2(n_queries)``.
        """
        self._fitted()
        Q, k = self._queries(encoded_query, n_modes)
        C = self._coeffs(spectral_coeff_data, "spectral_coeff_data", len(covariates_dataframe), k)
        sp = self._mode_predictions(covariates_dataframe, predict_without, k, unseen_batch)
        resid = (C - sp.mu) @ Q  # (n, q)
        n, q = resid.shape
        # S = D R D: regularize the correlation matrix R (unit diagonal, well scaled), not S,
        # whose entries span many orders of magnitude across modes
        base = np.eye(k) if sp.factor is None else sp.factor.correlation()
        R = np.broadcast_to(base, (n, k, k)).copy()
        if sp.pairs.shape[0]:
            i, j = sp.pairs[:, 0], sp.pairs[:, 1]
            R[:, i, j] = sp.rho
            R[:, j, i] = sp.rho
        w, V = np.linalg.eigh(R)
        w = np.maximum(w, ridge)
        DQ = sp.sd[:, :, None] * Q[None]  # (n, k, q)
        VtDQ = np.einsum("nkr,nkq->nrq", V, DQ)
        G = np.einsum("nrq,nr,nrp->nqp", VtDQ, w, VtDQ)
        sol = np.linalg.solve(G, resid[..., None])[..., 0]
        d2 = np.einsum("nq,nq->n", resid, sol)
        return d2, stats.chi2.sf(d2, df=q)

    # ------------------------------------------------------------------ adaptation & reduction
    def adapt_fit(self, spectral_coeff_data, covariates_dataframe: pd.DataFrame, maps=None,
                  **solver_kwargs) -> SpectralNormativeModel:
        """Adapt to new sites: learn only the new levels' effects from their data.

        Parameters
        ----------
        spectral_coeff_data : array_like, shape (n_new, >= n_modes)
            Encoded maps of controls from the new site(s).
        covariates_dataframe : pandas.DataFrame, shape (n_new, ...)
            Their covariates, with the new site labels.
        maps : array_like, shape (n_new, n_features), optional
            Their maps: needed when the model has a residual part (adapted too).

        Returns
        -------
        SpectralNormativeModel
            A new, adapted model (sharing the basis); this one is left unchanged.
        """
        direct, cov = self._fitted()
        k = int(self.model_params["n_modes"])
        C = self._coeffs(spectral_coeff_data, "spectral_coeff_data", len(covariates_dataframe), k)
        if self.residual_params is not None and maps is None:
            raise bad_value("maps", None, "are needed: this model has a residual part, which is adapted too",
                            "pass the new site's maps as adapt_fit(coefficients, covariates, maps=maps)")
        old_spec = self.spec
        new_spec, new_direct, added = adapt_direct(old_spec, direct, C, covariates_dataframe, **solver_kwargs)
        mu, sd = predict_direct(new_spec, new_direct, covariates_dataframe, warn=False)
        z = (C - mu) / sd
        new_cov = adapt_covariance(old_spec, new_spec, cov, z, covariates_dataframe, added, **solver_kwargs)
        new = copy.copy(self)
        new.base_model = type(self.base_model)(new_spec)
        new.direct_params, new.covariance_params = new_direct, new_cov
        if self.residual_params is not None:
            from .residual import adapt_residual

            new.residual_params = adapt_residual(old_spec, self.residual_params, self.eigenmode_basis,
                                                 maps if getattr(maps, "ndim", 0) == 2 else np.asarray(maps),
                                                 covariates_dataframe, **solver_kwargs)[1]
        levels = {name: list(v) for name, v in self.model_params.get("adapted_levels", {}).items()}
        for name, added_levels in added.items():
            levels.setdefault(name, []).extend(added_levels)
        new.model_params = dict(self.model_params, adapted_levels=levels)
        logger.info("Adapted to new levels %s from %d subjects", added, len(covariates_dataframe))
        return new

    def reduce_model(self, n_modes: int) -> SpectralNormativeModel:
        """A copy that uses only the first ``n_modes`` modes (and the pairs among them)."""
        direct, cov = self._fitted()
        k = check_n_modes(n_modes, int(self.model_params["n_modes"]))
        new = type(self)(EigenmodeBasis.reduce(self.eigenmode_basis, k), type(self.base_model)(self.spec))
        new.direct_params = direct.subset(slice(0, k))
        new.covariance_params = cov.subset(pairs_below(cov.pairs, k))
        new.factor_params = None if self.factor_params is None else self.factor_params.subset(slice(0, k))
        new.model_params = dict(self.model_params, n_modes=k, n_pairs=new.covariance_params.n_pairs)
        if self.residual_params is not None:  # the residual of fewer modes is another quantity
            new.model_params.pop("residual", None)
            logger.info("reduce_model: the residual part (after %d modes) is dropped; refit it with fit_residual",
                        self.residual_params.n_modes)
        return new

    # ------------------------------------------------------------------ persistence
    def save_model(self, directory, overwrite: bool = False) -> None:
        """Save to a directory in the documented safe format (see ``engine.persistence``)."""
        from .persistence import save_spectral_model

        save_spectral_model(self, directory, overwrite=overwrite)

    @classmethod
    def load_model(cls, directory, mmap: bool = False) -> SpectralNormativeModel:
        """Load a model written by :meth:`save_model` (checksums and format version verified).

        ``mmap=True`` memory-maps the per-feature arrays (basis eigenvectors, residual part)
        read-only from the saved files instead of reading them into memory.
        """
        from .persistence import load_spectral_model

        return load_spectral_model(directory, cls, mmap=mmap)

