"""``snm.utils.metrics``: goodness-of-fit metrics of normative predictions."""

__all__: list[str] = []
