"""Tetrahedral FEM operators of a voxel mask: volumetric Laplace eigenmodes (Neumann boundary).

The nodes are voxel *centres*, so features are voxels exactly as in
:func:`~spectranorm_neuro.graphs.from_nifti_mask` (C order, ``Structure.index`` into the grid).
Every 2 x 2 x 2 block of mask voxels spans a cube whose corners are those voxel centres; each
cube is split into the six tetrahedra of the Kuhn (Freudenthal) subdivision along its
``(0,0,0) -> (1,1,1)`` diagonal, which is conforming across neighbouring cubes. Linear FEM on
these tetrahedra (lapy) gives the stiffness/mass pair of the Laplacian on the masked region
with a Neumann boundary condition, in world units (mm) through the image affine.

Mask voxels that are the corner of no full cube (one-voxel-thin parts) carry no volume: they
are dropped and counted in ``provenance["dropped_voxels"]`` (their values map back as NaN).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import sparse

from .._util import sha256_array
from .._version import __version__
from ..exceptions import MeshError, ShapeMismatchError, bad_value
from ._checks import component_sizes
from ._graph import Graph, Structure
from .lattice import _load_nifti_mask

__all__ = ["volume_fem_graph", "kuhn_tetrahedra", "mask_fem_graph"]

#: Corner offsets of a unit cube, in (i, j, k) order; corner ``c`` is ``_CORNERS[c]``.
_CORNERS = np.array(list(itertools.product((0, 1), repeat=3)), dtype=np.int64)


def kuhn_tetrahedra() -> np.ndarray:
    """The six tetrahedra of the Kuhn subdivision of a cube, as corner numbers.

    Returns
    -------
    numpy.ndarray of int, shape (6, 4)
        Each row walks from corner ``(0,0,0)`` to ``(1,1,1)`` adding one axis at a time (one row
        per order of the axes); corner ``c`` has offset ``_CORNERS[c]`` (binary ``ijk``).
    """
    tets = []
    for order in itertools.permutations(range(3)):
        step = np.zeros(3, dtype=np.int64)
        path = [0]
        for axis in order:
            step[axis] = 1
            path.append(int(step[0] * 4 + step[1] * 2 + step[2]))
        tets.append(path)
    return np.array(tets, dtype=np.int64)


def mask_fem_graph(mask, affine=None, name: str = "Volume", provenance: dict | None = None) -> Graph:
    """Tetrahedral FEM graph of a boolean voxel mask.

    Parameters
    ----------
    mask : array_like of bool, shape (nx, ny, nz)
    affine : numpy.ndarray, shape (4, 4), optional
        Voxel-to-world affine (identity by default).
    name : str, optional
        Structure name.
    provenance : dict, optional
        Extra provenance entries.

    Returns
    -------
    Graph
        ``stiffness``, ``mass`` and the tetrahedra's edge ``adjacency`` over the kept voxels;
        ``coords`` (n, 3) world voxel centres; one ``Structure(name, "volume", shape, affine,
        index)``.

    Raises
    ------
    MeshError
        No 2 x 2 x 2 block of voxels in the mask, or the tetrahedra form several pieces.
    """
    m = np.asarray(mask)
    if m.ndim != 3:
        raise bad_value("mask", f"array of shape {m.shape}", "is not 3-D", "pass a 3-D mask",
                        ShapeMismatchError)
    m = m.astype(bool)
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    shape = m.shape
    cube = np.ones(tuple(s - 1 for s in shape), dtype=bool)
    for off in _CORNERS:  # a cube is full when its 8 corner voxels are in the mask
        cube &= m[off[0]:shape[0] - 1 + off[0], off[1]:shape[1] - 1 + off[1], off[2]:shape[2] - 1 + off[2]]
    origin = np.argwhere(cube)  # (n_cubes, 3), C order
    if origin.shape[0] == 0:
        raise bad_value("mask", f"mask of {int(m.sum())} voxels", "holds no 2 x 2 x 2 block of voxels, so no "
                        "tetrahedron", "use from_nifti_mask (voxel graph) for thin masks, or a thicker mask",
                        MeshError)
    corner_flat = np.ravel_multi_index((origin[:, None, :] + _CORNERS[None]).transpose(2, 0, 1), shape)
    used = np.zeros(m.size, dtype=bool)
    used[corner_flat.ravel()] = True
    index = np.flatnonzero(used)
    node = np.full(m.size, -1, dtype=np.int64)
    node[index] = np.arange(index.size)
    tets = node[corner_flat][:, kuhn_tetrahedra()].reshape(-1, 4)
    ijk = np.stack(np.unravel_index(index, shape), axis=1).astype(np.float64)
    coords = ijk @ affine[:3, :3].T + affine[:3, 3]
    from lapy import Solver, TetMesh

    solver = Solver(TetMesh(coords, tets))
    stiffness = sparse.csr_matrix(solver.stiffness, dtype=np.float64)
    mass = sparse.csr_matrix(solver.mass, dtype=np.float64)
    stiffness.sort_indices()
    mass.sort_indices()
    adjacency = (abs(stiffness) > 0).astype(np.float64).tocsr()
    adjacency.setdiag(0)
    adjacency.eliminate_zeros()
    n_comp, _, sizes = component_sizes(adjacency)
    if n_comp > 1:
        raise bad_value("mask", f"mask of {int(m.sum())} voxels",
                        f"gives {n_comp} separate tetrahedral pieces of sizes {sizes[:8].tolist()} (pieces "
                        "joined only through an edge or a corner do not share volume)",
                        "keep the largest piece (spectranorm_neuro.graphs.largest_component) or fill the gaps",
                        MeshError)
    prov = {"adapter": "volume_fem", "package_version": __version__, "shape": list(shape),
            "mask_sha256": sha256_array(m), "affine_sha256": sha256_array(affine),
            "n_tetrahedra": int(tets.shape[0]), "dropped_voxels": int(m.sum() - index.size),
            **(provenance or {})}
    structure = Structure(name=name, kind="volume", n_total=int(m.size), index=index, shape=tuple(shape),
                          affine=affine)
    return Graph(structures=(structure,), adjacency=adjacency, stiffness=stiffness, mass=mass,
                 coords=coords, provenance=prov)


def volume_fem_graph(img_or_path) -> Graph:
    """Tetrahedral FEM graph of a NIfTI mask (see the module docstring).

    Parameters
    ----------
    img_or_path : str, path-like or nibabel image
        3-D mask; finite non-zero voxels are inside.

    Returns
    -------
    Graph
        As :func:`mask_fem_graph`, in the image's world space.
    """
    img, path, mask = _load_nifti_mask(img_or_path)
    return mask_fem_graph(mask, img.affine, provenance={"source": path})
