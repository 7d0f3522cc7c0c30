"""``snm.utils.stats``: distributional helpers (z-scores, centiles, Gaussian log-likelihoods)."""

from ...engine.metrics import centiles, gaussian_log_likelihood, z_scores

__all__ = ["centiles", "gaussian_log_likelihood", "z_scores"]
