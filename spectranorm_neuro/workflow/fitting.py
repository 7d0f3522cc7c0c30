"""Fitting a model from encoded maps, with an optional stratified held-out set for the model card."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..engine.spectral import SpectralNormativeModel
from ..exceptions import ExtrapolationWarning, InvalidInputError, bad_value
from .card import held_out_metrics
from .scoring import encoded_queries

__all__ = ["FitResult", "holdout_mask", "fit_model"]


@dataclass
class FitResult:
    """A fitted model and what the model card needs about its fit.

    Attributes
    ----------
    model : SpectralNormativeModel
    train : numpy.ndarray of bool, shape (n_subjects,)
        Subjects the model was fitted on (the others were held out).
    metrics : dict or None
        Held-out metrics (:func:`~spectranorm_neuro.workflow.card.held_out_metrics`).
    """

    model: SpectralNormativeModel
    train: np.ndarray
    metrics: dict | None


def holdout_mask(covariates: pd.DataFrame, fraction: float, seed: int, strata: Sequence[str] = ()) -> np.ndarray:
    """Pick about ``fraction`` of the subjects of every stratum (site) to hold out, reproducibly.

    Parameters
    ----------
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    fraction : float
        In [0, 1).
    seed : int
    strata : sequence of str, optional
        Columns defining the strata (the batch covariates).

    Returns
    -------
    numpy.ndarray of bool, shape (n_subjects,)
        True for held-out subjects.
    """
    if not 0.0 <= fraction < 1.0:
        raise bad_value("--holdout", fraction, "is not a fraction in [0, 1)", "pass e.g. --holdout 0.2")
    n = len(covariates)
    if fraction == 0.0:
        return np.zeros(n, dtype=bool)
    u = pd.Series(np.random.default_rng(seed).random(n))
    if strata:
        key = covariates[list(strata)].astype(str).agg("|".join, axis=1).to_numpy()
        rank = u.groupby(key).rank(method="first").to_numpy()
        size = pd.Series(key).map(pd.Series(key).value_counts()).to_numpy()
    else:
        rank = u.rank(method="first").to_numpy()
        size = np.full(n, n)
    return rank <= np.floor(fraction * size)


def fit_model(basis, coefficients: np.ndarray, covariates: pd.DataFrame, *, numerical: Sequence[str],
              categorical: Sequence[str], batch: Sequence[str] = (), nonlinear: Sequence[str] = (),
              mean: Sequence[str] | None = None, variance: Sequence[str] | None = None, model_type: str = "HBR",
              n_modes: int = -1, covariance_structure: float | str = "lowrank", inference: str = "map",
              holdout: float = 0.0,
              seed: int = 0, n_jobs: int = 1, progress: bool = False, maps=None, calibrate=(),
              local_modes: int | None = None) -> FitResult:
    """Specify and fit a spectral normative model.

    Parameters
    ----------
    basis : EigenmodeBasis
    coefficients : numpy.ndarray, shape (n_subjects, >= n_modes)
        Encoded maps.
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    numerical, categorical, batch, nonlinear : sequence of str
        Covariates by type (see ``NormativeModelSpec.from_dataframe``).
    mean, variance : sequence of str, optional
        Covariates acting on the mean and on the log-sd (default: the model specification's,
        see ``NormativeModelSpec.from_dataframe``: all on the mean, numerical and batch on the log-sd).
    model_type, n_modes, covariance_structure, inference :
        See ``SpectralNormativeModel.fit``.
    holdout : float, optional
        Fraction of each site held out of the fit and scored for the model card.
    seed, n_jobs, progress :
        Seed of the hold-out split and of the fit; joblib workers; progress bars.
    maps : io.MapStore or array_like, shape (n_subjects, n_features), optional
        The maps themselves: the residual part (what the modes miss) is fitted on the training
        subjects' maps, for exact per-vertex z-scores (``SpectralNormativeModel.fit_residual``).
    calibrate : sequence of query sets, optional
        Query sets (e.g. smoothing kernels) calibrated besides the vertices (``fit_residual``).
    local_modes : int, optional
        Declare (and calibrate) the ``"local"`` z with this many coarse modes (``fit_residual``).

    Returns
    -------
    FitResult
    """
    numerical, categorical = list(numerical), list(categorical)
    if not numerical and not categorical:
        raise bad_value("covariates", None, "none were named", "name them with --numerical and/or --categorical")
    every = numerical + categorical
    missing = [c for c in every if c not in covariates.columns]
    if missing:
        raise bad_value("covariates", missing, f"are not columns of the covariate table ({list(covariates.columns)})",
                        "add them to participants.tsv / the table, or fix the option values", InvalidInputError)
    hold = holdout_mask(covariates, holdout, seed, list(batch))
    train = ~hold
    cov_train = covariates.loc[train]
    model = SpectralNormativeModel.build_from_dataframe(
        basis, model_type, cov_train, numerical_covariates=numerical, nonlinear_covariates=list(nonlinear),
        categorical_covariates=categorical, batch_covariates=list(batch),
        influencing_mean=None if mean is None else list(mean),
        influencing_variance=None if variance is None else list(variance))
    C = np.asarray(coefficients, dtype=np.float64)
    model.fit(C[train], cov_train, n_modes=n_modes, n_jobs=n_jobs, covariance_structure=covariance_structure,
              inference=inference, random_state=seed, progress=progress)
    if maps is not None:
        train_maps = maps.subset(train) if hasattr(maps, "subset") else np.asarray(maps)[train]
        model.fit_residual(train_maps, cov_train, n_jobs=n_jobs, calibrate=calibrate, local_modes=local_modes)
    metrics = None
    if hold.any():
        Q = encoded_queries(model)
        k = Q.shape[0]
        y_train = C[train][:, :k] @ Q
        moments = np.stack([y_train.mean(axis=0), y_train.std(axis=0, ddof=1)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExtrapolationWarning)
            pred = model.evaluate(Q, C[hold], covariates.loc[hold], query_train_moments=moments, progress=progress)
        metrics = held_out_metrics(pred.predictions["z-score"], pred.evaluations, int(hold.sum()))
    return FitResult(model, train, metrics)
