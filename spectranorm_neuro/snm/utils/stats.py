"""``snm.utils.stats``: distributional helpers (z-scores, centiles, log-likelihoods)."""

__all__: list[str] = []
