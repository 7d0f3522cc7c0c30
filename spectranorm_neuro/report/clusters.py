"""Thresholded deviation maps: suprathreshold clusters and their area on the mesh.

A subject's map is shown thresholded by default: features with ``|z| > threshold`` that belong to a
connected cluster (same sign) of at least ``min_cluster_area`` mm² on a surface mesh. Areas are
measured on the mesh the cluster lies on (fsaverage5: its midthickness surface; other meshes: the
mesh given). Volumes, lattices and parcels keep every suprathreshold cluster (no minimum size); their
sizes are counted in mm³ (volumes) or nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from ..graphs import fem_matrices
from ._inputs import Block

__all__ = ["ClusterGeometry", "Cluster", "cluster_geometries", "find_clusters", "vertex_areas"]


@dataclass(frozen=True)
class ClusterGeometry:
    """Neighbourhood and size of the features of one block.

    Parameters
    ----------
    block : Block
    adjacency : scipy.sparse.csr_matrix, shape (n_block, n_block)
        Symmetric adjacency of the block's kept features.
    size : numpy.ndarray, shape (n_block,)
        Area (mm², surfaces), volume (mm³, volumes) or 1 (other kinds) of each feature.
    unit : str
        Unit of ``size``.
    apply_minimum : bool
        True when clusters smaller than ``min_cluster_area`` are dropped (surfaces).
    """

    block: Block
    adjacency: sparse.csr_matrix
    size: np.ndarray
    unit: str
    apply_minimum: bool


@dataclass(frozen=True)
class Cluster:
    """One suprathreshold cluster of a subject's map.

    Attributes
    ----------
    structure : str
    sign : int
        +1 (above the norm) or -1 (below).
    n_features : int
    size : float
        Area/volume/count in ``unit``.
    unit : str
    peak : int
        Feature (column of the z-score array) with the largest ``|z|``.
    peak_z : float
    mean_z : float
    """

    structure: str
    sign: int
    n_features: int
    size: float
    unit: str
    peak: int
    peak_z: float
    mean_z: float


def vertex_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area of every vertex (lumped FEM mass: a third of each adjacent triangle's area).

    Parameters
    ----------
    vertices : numpy.ndarray, shape (n_vertices, 3)
    faces : numpy.ndarray of int, shape (n_faces, 3)

    Returns
    -------
    numpy.ndarray, shape (n_vertices,)
    """
    _, mass = fem_matrices(vertices, faces)
    return np.asarray(mass.sum(axis=1)).ravel()


def _restricted(pairs: np.ndarray, index: np.ndarray, n_total: int) -> sparse.csr_matrix:
    """Adjacency over the kept nodes ``index`` from node pairs of the full structure."""
    position = np.full(n_total, -1, dtype=np.int64)
    position[index] = np.arange(index.size)
    a, b = position[pairs[:, 0]], position[pairs[:, 1]]
    ok = (a >= 0) & (b >= 0)
    a, b = a[ok], b[ok]
    m = sparse.coo_matrix((np.ones(a.size), (a, b)), shape=(index.size, index.size))
    return ((m + m.T) > 0).tocsr()


def _grid_pairs(shape: Sequence[int]) -> np.ndarray:
    ids = np.arange(int(np.prod(shape))).reshape(shape)
    pairs = []
    for axis in range(len(shape)):
        lo = np.take(ids, np.arange(shape[axis] - 1), axis=axis).ravel()
        hi = np.take(ids, np.arange(1, shape[axis]), axis=axis).ravel()
        pairs.append(np.column_stack([lo, hi]))
    return np.vstack(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def cluster_geometries(blocks: Sequence[Block], surface_meshes: dict) -> list[ClusterGeometry]:
    """Build the neighbourhoods and feature sizes of every block.

    Parameters
    ----------
    blocks : sequence of Block
    surface_meshes : dict
        ``{surface name: (vertices (n_total, 3), faces (n_faces, 3))}`` on which areas are measured.

    Returns
    -------
    list of ClusterGeometry
    """
    out = []
    for block in blocks:
        s = block.structure
        index = np.asarray(s.index, dtype=np.int64)
        if block.kind == "surface":
            vertices, faces = surface_meshes[block.name]
            pairs = np.asarray(faces, dtype=np.int64)[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
            out.append(ClusterGeometry(block, _restricted(pairs, index, s.n_total),
                                       vertex_areas(vertices, faces)[index], "mm²", True))
        elif block.kind == "volume":
            voxel = float(abs(np.linalg.det(np.asarray(s.affine, dtype=np.float64)[:3, :3])))
            out.append(ClusterGeometry(block, _restricted(_grid_pairs(s.shape), index, s.n_total),
                                       np.full(index.size, voxel), "mm³", False))
        elif block.kind == "lattice":
            shape = tuple(s.shape) if s.shape is not None and len(s.shape) == 2 else (s.n_total,)
            out.append(ClusterGeometry(block, _restricted(_grid_pairs(shape), index, s.n_total),
                                       np.ones(index.size), "cells", False))
        else:
            out.append(ClusterGeometry(block, sparse.csr_matrix((index.size, index.size)),
                                       np.ones(index.size), "parcels", False))
    return out


def find_clusters(z: np.ndarray, geometries: Sequence[ClusterGeometry], threshold: float,
                  min_cluster_area: float) -> tuple[np.ndarray, list[Cluster]]:
    """Suprathreshold clusters of one map.

    Parameters
    ----------
    z : numpy.ndarray, shape (n_features,)
        The subject's z-scores over every block.
    geometries : sequence of ClusterGeometry
        One per block (:func:`cluster_geometries`).
    threshold : float
        Features with ``|z| > threshold`` are candidates.
    min_cluster_area : float
        Smallest kept cluster on surfaces (mm²); other kinds keep every cluster.

    Returns
    -------
    shown : numpy.ndarray of bool, shape (n_features,)
        Features in kept clusters.
    clusters : list of Cluster
        Kept clusters, largest first.
    """
    z = np.asarray(z, dtype=np.float64)
    shown = np.zeros(z.size, dtype=bool)
    clusters: list[Cluster] = []
    for geo in geometries:
        block = geo.block
        values = z[block.start:block.stop]
        for sign in (-1, 1):
            member = np.flatnonzero(sign * values > threshold)
            if member.size == 0:
                continue
            n_comp, labels = csgraph.connected_components(geo.adjacency[member][:, member], directed=False)
            sizes = np.bincount(labels, weights=geo.size[member], minlength=n_comp)
            counts = np.bincount(labels, minlength=n_comp)
            for c in np.flatnonzero(sizes >= (min_cluster_area if geo.apply_minimum else 0.0)):
                nodes = member[labels == c]
                peak = nodes[np.argmax(np.abs(values[nodes]))]
                shown[block.start + nodes] = True
                clusters.append(Cluster(block.name, sign, int(counts[c]), float(sizes[c]), geo.unit,
                                        int(block.start + peak), float(values[peak]), float(values[nodes].mean())))
    clusters.sort(key=lambda c: (-c.size, c.structure, c.peak))
    return shown, clusters
