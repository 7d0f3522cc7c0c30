"""``snm.utils.stats``: distributional helpers with the reference's names (SpectraNorm 0.1.4).

Censoring (as the reference does, and unlike the engine's uncensored metrics): a log-likelihood
whose observation lies beyond the two-sided ``censored_quantile`` band, ``|z| > Phi^-1(1 - q)``, is
replaced by ``log(2 q)``, so that a few gross outliers do not dominate MSLL.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ...engine.metrics import centiles, gaussian_log_likelihood, z_scores

__all__ = ["centiles", "compute_censored_log_likelihood", "compute_centiles_from_z_scores",
           "compute_correlation_significance", "compute_log_likelihood", "gaussian_log_likelihood",
           "multiple_testing_correction", "z_scores"]


def compute_centiles_from_z_scores(z_scores):
    """Centiles (0-100) of standard-normal z-scores, any shape."""
    return np.asarray(stats.norm.cdf(z_scores) * 100)


def compute_log_likelihood(observations, predicted_mus, predicted_sigmas):
    """Gaussian log-density of each observation (broadcast shapes)."""
    return np.asarray(stats.norm.logpdf(observations, loc=predicted_mus, scale=predicted_sigmas))


def compute_censored_log_likelihood(observations, predicted_mus, predicted_sigmas, censored_quantile: float = 0.01):
    """Log-likelihoods with observations beyond ``|z| > Phi^-1(1 - q)`` set to ``log(2 q)``.

    ``censored_quantile <= 0`` gives the uncensored log-likelihoods.
    """
    ll = compute_log_likelihood(observations, predicted_mus, predicted_sigmas)
    if censored_quantile <= 0:
        return ll
    z = (np.asarray(observations) - predicted_mus) / predicted_sigmas
    return np.where(np.abs(z) > stats.norm.ppf(1 - censored_quantile), np.log(2 * censored_quantile), ll)


def multiple_testing_correction(p_values, method: str = "fdr_bh") -> np.ndarray:
    """Adjusted p-values (same shape, 1-D) by ``"bonferroni"``, ``"holm"`` or ``"fdr_bh"``."""
    from ...exceptions import bad_value

    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p)
    ranked = p[order]
    if method == "bonferroni":
        adj = np.minimum(ranked * m, 1.0)
    elif method == "holm":
        adj = np.minimum(np.maximum.accumulate(ranked * (m - np.arange(m))), 1.0)
    elif method == "fdr_bh":
        adj = np.minimum(np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1], 1.0)
    else:
        raise bad_value("correction_method", method, "is not a supported correction",
                        "pass 'fdr_bh', 'holm' or 'bonferroni'")
    out = np.empty_like(p)
    out[order] = adj
    return out


def compute_correlation_significance(correlation_matrix, n_samples: int, correlation_threshold: float = 0.0,
                                     correction_method: str = "fdr_bh"):
    """Corrected p-values (n, n) that ``|r| > correlation_threshold``, by Fisher's z-transformation.

    One-sided test of ``|atanh r| - atanh(threshold)`` against ``N(0, 1 / (n_samples - 3))``; the
    upper triangle is corrected for multiple tests, mirrored, and the diagonal is NaN. As in the
    reference, the diagonal of ``correlation_matrix`` is set to 0 in place.
    """
    np.fill_diagonal(correlation_matrix, 0)
    z = (np.abs(np.arctanh(correlation_matrix)) - np.arctanh(correlation_threshold)) * np.sqrt(n_samples - 3)
    p = stats.norm.sf(z)
    iu = np.triu_indices_from(p, k=1)
    out = np.full(p.shape, np.nan)
    adj = multiple_testing_correction(p[iu], correction_method)
    out[iu] = adj
    out[iu[1], iu[0]] = adj
    return out
