"""The one output type shared by every adapter: a :class:`Graph` made of :class:`Structure` blocks.

Feature order
-------------
A graph's nodes ("features") are the concatenation, in order, of its structures' kept nodes; within
a structure they follow ``Structure.index`` (ascending indices into the structure's full node set).
For volumes the full node set is the voxel grid flattened in C order (``numpy.ravel``), so
``index`` holds ``numpy.ravel_multi_index(ijk.T, shape)`` of the voxels inside the mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from ..exceptions import ShapeMismatchError, bad_value

__all__ = ["Structure", "Graph"]


@dataclass(frozen=True, eq=False)
class Structure:
    """One block of features: a hemisphere, a voxel mask, a lattice or a set of parcels.

    Parameters
    ----------
    name : str
        CIFTI-style name, e.g. ``"CortexLeft"``, ``"CortexRight"``, ``"Volume"``, ``"Lattice"``,
        ``"Parcels"``.
    kind : {"surface", "volume", "lattice", "parcels"}
        What the nodes are.
    n_total : int
        Number of nodes of the full structure before masking (vertices of the whole mesh, voxels
        of the whole grid, cells of the lattice, parcels).
    index : numpy.ndarray of int, shape (n_kept,)
        Ascending indices (into ``0 .. n_total - 1``) of the nodes kept as features.
    shape : tuple of int, optional
        Grid shape for volumes and lattices.
    affine : numpy.ndarray, shape (4, 4), optional
        Voxel-to-world affine for volumes.
    """

    name: str
    kind: str
    n_total: int
    index: np.ndarray
    shape: tuple[int, ...] | None = None
    affine: np.ndarray | None = None

    @property
    def n_features(self) -> int:
        """Number of kept nodes."""
        return len(self.index)

    def to_full(self, values, fill: float = np.nan) -> np.ndarray:
        """Scatter kept-node values onto the full node set (the package's one such scatter).

        Parameters
        ----------
        values : array_like, shape (..., n_features)
            Values over ``index``.
        fill : float, optional
            Value of the nodes that are not kept (NaN by default).

        Returns
        -------
        numpy.ndarray, shape (..., n_total)
        """
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim < 1 or arr.shape[-1] != self.n_features:
            raise bad_value("values", f"array of shape {arr.shape}",
                            f"has {arr.shape[-1] if arr.ndim else 0} entries but {self.name} keeps "
                            f"{self.n_features} nodes", "pass values over the structure's kept nodes",
                            ShapeMismatchError)
        full = np.full((*arr.shape[:-1], int(self.n_total)), fill, dtype=np.float64)
        full[..., np.asarray(self.index)] = arr
        return full

    def matches(self, other: Structure) -> bool:
        """Whether ``other`` describes the same nodes (``==`` compares identity only).

        Compares name, kind, ``n_total``, ``shape``, ``index`` and ``affine`` (to 1e-6), e.g.
        a structure loaded from a file against the one a basis was built on.
        """
        if not isinstance(other, Structure):
            return False
        same_affine = (self.affine is None) == (other.affine is None) and (
            self.affine is None or np.allclose(self.affine, other.affine, atol=1e-6))
        return bool(self.name == other.name and self.kind == other.kind and self.n_total == other.n_total
                    and (None if self.shape is None else tuple(self.shape))
                    == (None if other.shape is None else tuple(other.shape))
                    and np.array_equal(self.index, other.index) and same_affine)


@dataclass(eq=False)
class Graph:
    """A graph (adjacency) or FEM operator pair (stiffness, mass) over the features.

    Parameters
    ----------
    structures : tuple of Structure
        Blocks whose kept nodes, concatenated, are the features.
    adjacency : scipy.sparse.csr_matrix, shape (n_features, n_features), optional
        Symmetric non-negative weights.
    stiffness, mass : scipy.sparse.csr_matrix, shape (n_features, n_features), optional
        FEM operators (Laplace–Beltrami: ``stiffness @ phi = lambda * mass @ phi``).
    coords : numpy.ndarray, shape (n_features, 3), optional
        Node coordinates (vertex positions, voxel centres in world space, lattice positions).
    faces : numpy.ndarray of int, shape (n_faces, 3), optional
        Triangles over the features (meshes only).
    provenance : dict
        JSON-serialisable description of how the graph was made.
    """

    structures: tuple[Structure, ...]
    adjacency: sparse.csr_matrix | None = None
    stiffness: sparse.csr_matrix | None = None
    mass: sparse.csr_matrix | None = None
    coords: np.ndarray | None = None
    faces: np.ndarray | None = None
    provenance: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        """Number of nodes (sum of the structures' kept nodes)."""
        return int(sum(s.n_features for s in self.structures))
