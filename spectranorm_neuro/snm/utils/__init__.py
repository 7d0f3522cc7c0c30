"""``snm.utils``: graph signal processing, metrics and statistics helpers."""

from . import gsp, metrics, stats

__all__ = ["gsp", "metrics", "stats"]
