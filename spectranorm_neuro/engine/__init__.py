"""The spectral normative engine: specifications, effects, direct/covariance/spectral models."""

__all__: list[str] = []
