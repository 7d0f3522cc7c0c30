"""``snm.utils.gsp``: eigenmode bases and Laplacian eigenmodes (SpectraNorm-compatible names).

``compute_*_laplacian_eigenmodes(adjacency_matrix, num_eigenvalues=100)`` return
``(eigenvalues (k,), eigenvectors (k, n_nodes))`` — one mode per row, as in the SpectraNorm
tutorials: ``EigenmodeBasis(eigenvalues[:100], eigenvectors.T[:, :100])``.
"""

from ...basis import (
    EigenmodeBasis,
    combinatorial_laplacian,
    compute_combinatorial_laplacian_eigenmodes,
    compute_random_walk_laplacian_eigenmodes,
    compute_symmetric_normalized_laplacian_eigenmodes,
    normalized_laplacian,
)

__all__ = [
    "EigenmodeBasis",
    "compute_symmetric_normalized_laplacian_eigenmodes",
    "compute_combinatorial_laplacian_eigenmodes",
    "compute_random_walk_laplacian_eigenmodes",
    "combinatorial_laplacian",
    "normalized_laplacian",
]
