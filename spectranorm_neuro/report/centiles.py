"""Centile charts: normative mean and centile bands of a few summary queries against age.

The charts use a fitted spectral normative model through three members only::

    model.predict(encoded_query (n_modes, n_queries), covariates: DataFrame,
                  predict_without=[batch covariates]).predictions
        -> {"mu_estimate": (n_rows, n_queries), "std_estimate": (n_rows, n_queries)}
    model.harmonize(encoded_query, covariates, coefficients (n_subjects, n_modes),
                    covariates_to_harmonize=[batch covariates]) -> (n_subjects, n_queries)
    model.eigenmode_basis.encode_queries(weights (n_queries, n_features)) -> (n_modes, n_queries)

plus the covariate lists ``numerical_covariates``, ``categorical_covariates`` and
``batch_covariates``. The predictive distribution of a query is taken as Normal(mu, std), so the
centile ``p`` curve is ``mu + std * Phi^-1(p)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from .._util import as_finite_array
from ..exceptions import IncompatibleModelError, ShapeMismatchError, bad_value

__all__ = ["CentileCharts", "summary_queries", "centile_charts"]

N_GRID = 60


@dataclass(frozen=True)
class CentileCharts:
    """Everything needed to draw the centile charts of a cohort.

    Attributes
    ----------
    query_names : list of str, length n_queries
    covariate : str
        The x axis (first numerical covariate, typically age).
    reference : dict
        Values at which the other covariates are held for the curves.
    grid : numpy.ndarray, shape (n_grid,)
        Values of ``covariate`` along the x axis.
    centiles : numpy.ndarray, shape (n_centiles,)
        Centile levels (fractions).
    mean, std : numpy.ndarray, shape (n_grid, n_queries)
        Normative mean and standard deviation at the reference covariates.
    curves : numpy.ndarray, shape (n_centiles, n_grid, n_queries)
        Centile curves ``mean + std * Phi^-1(centile)``.
    subject_x : numpy.ndarray, shape (n_subjects,)
        Each subject's value of ``covariate``.
    subject_y : numpy.ndarray, shape (n_subjects, n_queries) or None
        Each subject's harmonized query values (None without spectral coefficients).
    subject_centile : numpy.ndarray, shape (n_subjects, n_queries) or None
        Each subject's centile under the model at the subject's own covariates (batch effects
        removed): ``Phi((y - mu_i) / std_i)``.
    """

    query_names: list[str]
    covariate: str
    reference: dict
    grid: np.ndarray
    centiles: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    curves: np.ndarray
    subject_x: np.ndarray
    subject_y: np.ndarray | None
    subject_centile: np.ndarray | None


def summary_queries(model: Any, n_features: int, n_mode_queries: int = 2) -> tuple[list[str], np.ndarray]:
    """Encode the summary queries: the whole-map mean and the first modes' coefficients.

    Parameters
    ----------
    model : fitted spectral normative model
        Provides ``eigenmode_basis.encode_queries``.
    n_features : int
        Number of features of the maps.
    n_mode_queries : int
        How many leading modes to chart (unit-vector queries in the spectral domain).

    Returns
    -------
    names : list of str
    encoded : numpy.ndarray, shape (n_modes, n_queries)
    """
    basis = getattr(model, "eigenmode_basis", None)
    if basis is None or not hasattr(basis, "encode_queries"):
        raise bad_value("model", type(model).__name__, "has no eigenmode_basis with encode_queries",
                        "pass a fitted SpectralNormativeModel (or model=None to skip centile charts)",
                        IncompatibleModelError)
    basis_n = getattr(basis, "n_features", n_features)
    if int(basis_n) != n_features:
        raise bad_value("model", f"model over {basis_n} features",
                        f"does not match the {n_features} features of zscores",
                        "pass the model that produced the z-scores", IncompatibleModelError)
    mean_query = np.full((1, n_features), 1.0 / n_features)
    encoded_mean = np.asarray(basis.encode_queries(mean_query), dtype=np.float64).reshape(-1, 1)
    n_modes = encoded_mean.shape[0]
    k = min(n_mode_queries, n_modes)
    units = np.eye(n_modes, k)
    names = ["Whole-map mean", *[f"Mode {i + 1}" for i in range(k)]]
    return names, np.hstack([encoded_mean, units])


def _reference_rows(subjects: pd.DataFrame, model: Any, grid: np.ndarray, x_name: str) -> tuple[
        pd.DataFrame, dict]:
    numerical = [str(c) for c in getattr(model, "numerical_covariates", []) or []]
    categorical = [str(c) for c in getattr(model, "categorical_covariates", []) or []]
    batch = [str(c) for c in getattr(model, "batch_covariates", []) or []]
    reference: dict = {}
    for name in numerical[1:]:
        reference[name] = float(np.median(subjects[name].to_numpy(dtype=np.float64)))
    for name in dict.fromkeys(categorical + batch):
        if name in reference:
            continue
        counts = subjects[name].value_counts(sort=False)
        best = counts[counts == counts.max()].index
        reference[name] = sorted(best, key=str)[0]
    rows = pd.DataFrame({x_name: grid})
    for name, value in reference.items():
        rows[name] = [value] * len(grid)
        if isinstance(subjects[name].dtype, pd.CategoricalDtype):
            rows[name] = pd.Categorical(rows[name], categories=subjects[name].cat.categories)
    return rows, {k: v for k, v in reference.items() if k not in batch}


def _predict(model: Any, encoded: np.ndarray, rows: pd.DataFrame, batch: list[str]) -> tuple[np.ndarray,
                                                                                          np.ndarray]:
    result = model.predict(encoded, rows, predict_without=list(batch))
    predictions = getattr(result, "predictions", result)
    try:
        mu = np.asarray(predictions["mu_estimate"], dtype=np.float64)
        std = np.asarray(predictions["std_estimate"], dtype=np.float64)
    except (KeyError, TypeError, IndexError):
        raise bad_value("model", type(model).__name__,
                        "returned predictions without 'mu_estimate' and 'std_estimate'",
                        "pass a fitted SpectralNormativeModel", IncompatibleModelError) from None
    shape = (len(rows), encoded.shape[1])
    mu, std = mu.reshape(shape), std.reshape(shape)
    return mu, std


def centile_charts(model: Any, subjects: pd.DataFrame, n_features: int,
                   coefficients: np.ndarray | None = None,
                   centiles: Sequence[float] = (0.025, 0.25, 0.5, 0.75, 0.975),
                   n_grid: int = N_GRID) -> CentileCharts | None:
    """Compute normative centile curves of the summary queries and the subjects' positions.

    Parameters
    ----------
    model : fitted spectral normative model
        See the module docstring for the members used.
    subjects : pandas.DataFrame, shape (n_subjects, n_columns)
        Covariates of the scored subjects (every model covariate must be a column).
    n_features : int
        Number of features of the maps.
    coefficients : numpy.ndarray, shape (n_subjects, n_modes), optional
        Spectral coefficients of the subjects' maps; without them subjects are not placed.
    centiles : sequence of float
        Centile levels (fractions) to draw.
    n_grid : int
        Number of points along the x axis.

    Returns
    -------
    CentileCharts or None
        None when the model has no numerical covariate to put on the x axis.
    """
    numerical = [str(c) for c in getattr(model, "numerical_covariates", []) or []]
    if not numerical:
        return None
    categorical = [str(c) for c in getattr(model, "categorical_covariates", []) or []]
    batch = [str(c) for c in getattr(model, "batch_covariates", []) or []]
    needed = list(dict.fromkeys(numerical + categorical + batch))
    missing = [c for c in needed if c not in subjects.columns]
    if missing:
        raise bad_value("subjects", f"DataFrame with columns {list(subjects.columns)}",
                        f"lacks the model covariate(s) {missing}",
                        "add the covariates the model was fitted with to the subjects table")
    names, encoded = summary_queries(model, n_features)
    x_name = numerical[0]
    x = as_finite_array(subjects[x_name].to_numpy(dtype=np.float64), f"subjects[{x_name!r}]", ndim=1)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:  # a single age: chart a small window around it
        lo, hi = lo - 1.0, hi + 1.0
    grid = np.linspace(lo, hi, n_grid)
    rows, reference = _reference_rows(subjects, model, grid, x_name)
    mean, std = _predict(model, encoded, rows, batch)
    levels = np.asarray(centiles, dtype=np.float64)
    curves = mean[None] + std[None] * special.ndtri(levels)[:, None, None]

    subject_y = subject_centile = None
    if coefficients is not None:
        covariates = subjects[needed]
        if batch:
            subject_y = np.asarray(model.harmonize(encoded, covariates, coefficients,
                                                   covariates_to_harmonize=list(batch)), dtype=np.float64)
        else:
            subject_y = coefficients[:, :encoded.shape[0]] @ encoded
        if subject_y.shape != (len(subjects), encoded.shape[1]):
            raise bad_value("model", type(model).__name__,
                            f"harmonize returned shape {subject_y.shape}",
                            f"return (n_subjects, n_queries) = {(len(subjects), encoded.shape[1])}",
                            ShapeMismatchError)
        own_mu, own_std = _predict(model, encoded, covariates.reset_index(drop=True), batch)
        with np.errstate(invalid="ignore", divide="ignore"):
            subject_centile = special.ndtr((subject_y - own_mu) / own_std)
    return CentileCharts(query_names=names, covariate=x_name, reference=reference, grid=grid,
                         centiles=levels, mean=mean, std=std, curves=curves, subject_x=x,
                         subject_y=subject_y, subject_centile=subject_centile)
