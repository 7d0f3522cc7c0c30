"""``snm.utils``: the reference's utility modules (gsp, stats, metrics, nitools, general, parallel)."""

from . import general, gsp, metrics, nitools, parallel, stats

__all__ = ["general", "gsp", "metrics", "nitools", "parallel", "stats"]
