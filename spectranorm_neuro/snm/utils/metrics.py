"""``snm.utils.metrics``: goodness-of-fit metrics of normative predictions (vectorized over queries)."""

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

__all__ = ["calibration", "compute_metrics", "explained_variance", "mae", "mape", "mse", "msll",
           "r_squared", "rmse", "smse"]
