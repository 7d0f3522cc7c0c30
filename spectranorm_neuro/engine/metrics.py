"""Goodness-of-fit metrics and distributional helpers, vectorized over queries.

Every metric takes arrays of shape (n_subjects, n_queries) (or (n_subjects,)) and returns one
value per query.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = [
    "z_scores",
    "centiles",
    "gaussian_log_likelihood",
    "mae",
    "mse",
    "rmse",
    "mape",
    "r_squared",
    "explained_variance",
    "msll",
    "smse",
    "calibration",
    "compute_metrics",
]

_LOG_2PI = float(np.log(2 * np.pi))


def z_scores(observed, mu, sd) -> np.ndarray:
    """Deviation scores ``(observed - mu) / sd``, shape of the inputs."""
    return (np.asarray(observed) - mu) / sd


def centiles(z) -> np.ndarray:
    """Centiles (0-100) of z-scores under the standard normal: ``100 * Phi(z)``."""
    return 100.0 * special.ndtr(np.asarray(z))


def gaussian_log_likelihood(observed, mu, sd) -> np.ndarray:
    """Pointwise log-density of ``N(mu, sd^2)`` at ``observed``, shape of the inputs."""
    z = (np.asarray(observed) - mu) / sd
    return -0.5 * (_LOG_2PI + z**2) - np.log(sd)


def mae(y, mu) -> np.ndarray:
    """Mean absolute error per query."""
    return np.mean(np.abs(y - mu), axis=0)


def mse(y, mu) -> np.ndarray:
    """Mean squared error per query."""
    return np.mean((y - mu) ** 2, axis=0)


def rmse(y, mu) -> np.ndarray:
    """Root mean squared error per query."""
    return np.sqrt(mse(y, mu))


def mape(y, mu) -> np.ndarray:
    """Mean absolute percentage error per query (observations equal to 0 are skipped)."""
    y = np.asarray(y, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(y != 0, np.abs((y - mu) / y), np.nan)
    return 100.0 * np.nanmean(ratio, axis=0)


def r_squared(y, mu) -> np.ndarray:
    """Coefficient of determination ``1 - SS_res / SS_tot`` per query."""
    ss_res = np.sum((y - mu) ** 2, axis=0)
    ss_tot = np.sum((y - np.mean(y, axis=0)) ** 2, axis=0)
    return 1.0 - ss_res / ss_tot


def explained_variance(y, mu) -> np.ndarray:
    """Explained variance ``1 - Var(y - mu) / Var(y)`` per query."""
    return 1.0 - np.var(y - mu, axis=0) / np.var(y, axis=0)


def smse(y, mu) -> np.ndarray:
    """Standardized mean squared error ``MSE / Var(y)`` per query."""
    return mse(y, mu) / np.var(y, axis=0)


def msll(y, mu, sd, train_mean, train_sd, log_likelihood=None) -> np.ndarray:
    """Mean standardized log loss per query.

    The mean over subjects of the model's negative log-likelihood minus that of the trivial model
    ``N(train_mean, train_sd^2)``; negative values mean the model beats the trivial one.
    ``log_likelihood`` (same shape as ``y``) replaces the Gaussian one of the model (e.g. SHASHb).
    """
    nll_model = -(gaussian_log_likelihood(y, mu, sd) if log_likelihood is None else log_likelihood)
    nll_trivial = -gaussian_log_likelihood(y, train_mean, train_sd)
    return np.mean(nll_model - nll_trivial, axis=0)


def calibration(z) -> dict[str, np.ndarray]:
    """Mean and sd of z-scores, and the fraction outside +/-1.96, per query."""
    z = np.asarray(z)
    return {
        "z_mean": np.mean(z, axis=0),
        "z_std": np.std(z, axis=0, ddof=1) if z.shape[0] > 1 else np.full(z.shape[1:], np.nan),
        "fraction_outside_1.96": np.mean(np.abs(z) > 1.959963984540054, axis=0),
    }


def compute_metrics(y, mu, sd, train_moments=None, z=None, log_likelihood=None) -> dict[str, np.ndarray]:
    """Every metric of a set of predictions.

    Parameters
    ----------
    y, mu, sd : numpy.ndarray, shape (n_subjects, n_queries)
        Observations, predicted means and predicted sds.
    train_moments : numpy.ndarray, shape (2, n_queries), optional
        Mean and sd of each query in the training data, for MSLL. When missing, the moments of
        ``y`` itself are used (the caller should warn: this biases MSLL).
    z, log_likelihood : numpy.ndarray, shape (n_subjects, n_queries), optional
        Deviation scores and log densities of a non-Gaussian likelihood (default: Gaussian).

    Returns
    -------
    dict of str to numpy.ndarray, each (n_queries,)
        ``MAE``, ``MSE``, ``RMSE``, ``MAPE``, ``R-squared``, ``Explained Variance``, ``MSLL``,
        ``SMSE``, ``z_mean``, ``z_std``, ``fraction_outside_1.96``.
    """
    if train_moments is None:
        train_moments = np.stack([np.mean(y, axis=0), np.std(y, axis=0, ddof=1)])
    train_moments = np.asarray(train_moments, dtype=float)
    out = {
        "MAE": mae(y, mu),
        "MSE": mse(y, mu),
        "RMSE": rmse(y, mu),
        "MAPE": mape(y, mu),
        "R-squared": r_squared(y, mu),
        "Explained Variance": explained_variance(y, mu),
        "MSLL": msll(y, mu, sd, train_moments[0], train_moments[1], log_likelihood),
        "SMSE": smse(y, mu),
    }
    out.update(calibration(z_scores(y, mu, sd) if z is None else z))
    return out
