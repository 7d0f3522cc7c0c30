"""``snm.utils.metrics``: goodness-of-fit metrics with the reference's names (vectorized over queries).

``compute_*`` take observations ``y`` and predictions of shape (n_subjects[, n_queries]) and
reduce over subjects (axis 0). MSLL is computed from log-likelihoods passed in; the reference's
models pass censored ones (see :mod:`.stats`).
"""

from __future__ import annotations

import numpy as np

from ...engine.metrics import (
    calibration,
    compute_metrics,
    explained_variance,
    mae,
    mape,
    mse,
    msll,
    r_squared,
    rmse,
    smse,
)

__all__ = ["calibration", "compute_bic", "compute_expv", "compute_mae", "compute_mape", "compute_metrics",
           "compute_mse", "compute_msll", "compute_r2", "compute_rmse", "explained_variance", "mae", "mape",
           "mse", "msll", "r_squared", "rmse", "smse"]


def compute_mae(y, y_pred):
    """Mean absolute error over subjects."""
    return np.asarray(mae(np.asarray(y), np.asarray(y_pred)))


def compute_mse(y, y_pred):
    """Mean squared error over subjects."""
    return np.asarray(mse(np.asarray(y), np.asarray(y_pred)))


def compute_rmse(y, y_pred):
    """Root mean squared error over subjects."""
    return np.asarray(rmse(np.asarray(y), np.asarray(y_pred)))


def compute_mape(y, y_pred):
    """Mean absolute percentage error (percent) over subjects."""
    y = np.asarray(y)
    return np.asarray(np.mean(np.abs((y - y_pred) / y), axis=0) * 100)


def compute_r2(y, y_pred):
    """Coefficient of determination ``1 - SS_res / SS_tot`` over subjects."""
    return np.asarray(r_squared(np.asarray(y), np.asarray(y_pred)))


def compute_expv(y, y_pred):
    """Explained variance ``1 - Var(y - y_pred) / Var(y)`` over subjects."""
    return np.asarray(explained_variance(np.asarray(y), np.asarray(y_pred)))


def compute_msll(model_log_likelihoods, baseline_log_likelihoods):
    """Mean standardized log loss ``-(mean(model_ll) - mean(baseline_ll))`` over subjects (negative is better)."""
    return np.asarray(-(np.mean(model_log_likelihoods, axis=0) - np.mean(baseline_log_likelihoods, axis=0)))


def compute_bic(model_log_likelihoods, n_params: int, n_samples: int):
    """Information criterion as the reference defines it: ``-2 mean(ll) + k ln(n)`` (mean over subjects)."""
    return np.asarray(-2 * np.mean(model_log_likelihoods, axis=0) + n_params * np.log(n_samples))
