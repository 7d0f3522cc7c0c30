"""``snm.utils.gsp``: eigenmode bases and Laplacian eigenmodes."""

from ...basis import EigenmodeBasis

__all__ = ["EigenmodeBasis"]
