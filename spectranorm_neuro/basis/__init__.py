"""Eigenmode bases: the spectral coordinate system every model in the package works in.

* :class:`EigenmodeBasis` — eigenvalues, eigenvectors ``(n_features, n_modes)``, optional mass
  matrix, structures and provenance; ``encode``/``decode``/``encode_queries``/``reduce``;
  ``to_full``/``from_full``; ``from_graph``; ``save``/``load`` (safe npz + JSON format,
  :mod:`spectranorm_neuro.basis.storage`).
* Laplacians (:mod:`~spectranorm_neuro.basis.laplacians`) and eigensolvers
  (:mod:`~spectranorm_neuro.basis.solvers`), including the SpectraNorm-compatible
  ``compute_*_laplacian_eigenmodes`` functions (eigenvectors as rows).
* :func:`hemisphere_bases` — separate bases of the two fsaverage5 hemispheres.
"""

from ._build import hemisphere_bases, operator_pair
from ._core import EigenmodeBasis
from .laplacians import LAPLACIANS, combinatorial_laplacian, laplacian_pair, normalized_laplacian
from .solvers import (
    compute_combinatorial_laplacian_eigenmodes,
    compute_random_walk_laplacian_eigenmodes,
    compute_symmetric_normalized_laplacian_eigenmodes,
    fix_signs,
    laplacian_eigenmodes,
    solve_eigenmodes,
)
from .storage import FORMAT_VERSION, read_metadata

__all__ = [
    "EigenmodeBasis",
    "hemisphere_bases",
    "operator_pair",
    "LAPLACIANS",
    "combinatorial_laplacian",
    "normalized_laplacian",
    "laplacian_pair",
    "compute_combinatorial_laplacian_eigenmodes",
    "compute_random_walk_laplacian_eigenmodes",
    "compute_symmetric_normalized_laplacian_eigenmodes",
    "fix_signs",
    "laplacian_eigenmodes",
    "solve_eigenmodes",
    "FORMAT_VERSION",
    "read_metadata",
]
