"""Regular grids as graphs: 2-D/3-D lattices and voxel masks from NIfTI images.

Node order
----------
Nodes are grid cells in C order (row-major, last axis fastest, as :func:`numpy.ravel`), skipping
cells outside the mask. For a 2-D ``(n, n)`` lattice, cell ``(i, j)`` is node ``i * n + j`` (the
SpectraNorm tutorial's ``node_index``). For a NIfTI mask the kept voxels are
``Structure.index = numpy.flatnonzero(mask.ravel(order="C"))`` over ``img.shape[:3]``, so a
feature vector ``x`` is written back into a volume by ``vol.ravel()[index] = x`` (the inverse the
NIfTI writer uses).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np
from scipy import sparse

from .._util import sha256_array
from .._version import __version__
from ..exceptions import InvalidInputError, ShapeMismatchError, bad_value
from ._graph import Graph, Structure

__all__ = ["lattice_graph", "from_nifti_mask", "lattice_offsets"]

#: Allowed connectivities and the largest number of non-zero offset components they include.
_CONNECTIVITY = {2: {4: 1, 8: 2}, 3: {6: 1, 18: 2, 26: 3}}


def lattice_offsets(ndim: int, connectivity: int) -> np.ndarray:
    """Neighbour offsets of a grid cell, one per undirected edge direction.

    Parameters
    ----------
    ndim : {2, 3}
    connectivity : int
        4 or 8 in 2-D; 6, 18 or 26 in 3-D (face / +edge / +corner neighbours).

    Returns
    -------
    numpy.ndarray of int, shape (connectivity // 2, ndim)
        Offsets whose first non-zero component is positive, in lexicographic order.
    """
    allowed = _CONNECTIVITY.get(ndim)
    if allowed is None:
        raise bad_value("shape", f"{ndim}-D grid", "is neither 2-D nor 3-D", "pass a 2-D or 3-D shape")
    if connectivity not in allowed:
        raise bad_value("connectivity", connectivity, f"is not valid for a {ndim}-D grid",
                        f"pass one of {sorted(allowed)}")
    offs = [o for o in itertools.product((-1, 0, 1), repeat=ndim)
            if 0 < np.count_nonzero(o) <= allowed[connectivity] and o[np.flatnonzero(o)[0]] > 0]
    return np.array(sorted(offs), dtype=np.int64)


def _grid_edges(shape: tuple[int, ...], offsets: np.ndarray, node_id: np.ndarray,
                spacing: np.ndarray, weighting: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges (i, j, w) between kept cells for each offset, vectorized over cells."""
    rows, cols, vals = [], [], []
    for off in offsets:  # at most 13 directions
        src = tuple(slice(max(0, -o), n - max(0, o)) for o, n in zip(off, shape))
        dst = tuple(slice(max(0, o), n - max(0, -o)) for o, n in zip(off, shape))
        a, b = node_id[src].ravel(), node_id[dst].ravel()
        ok = (a >= 0) & (b >= 0)
        rows.append(a[ok])
        cols.append(b[ok])
        if weighting == "binary":
            w = 1.0
        else:
            w = 1.0 / float(np.sum((off * spacing) ** 2))
        vals.append(np.full(int(ok.sum()), w))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def _check_shape(shape: Any) -> tuple[int, ...]:
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise bad_value("shape", shape, "is not a tuple of integers", "pass e.g. (50, 50)") from None
    if len(shp) not in (2, 3):
        raise bad_value("shape", shape, f"has {len(shp)} dimension(s)", "pass a 2-D or 3-D shape")
    if min(shp) < 1 or int(np.prod(shp)) < 2:
        raise bad_value("shape", shape, "has fewer than 2 cells", "pass positive sizes with >= 2 cells")
    return shp


def _build(shape, connectivity, mask, spacing, weighting, name, kind, affine, provenance) -> Graph:
    ndim = len(shape)
    offsets = lattice_offsets(ndim, connectivity)
    if weighting not in ("binary", "inverse_square"):
        raise bad_value("weighting", weighting, "is not a known edge weighting",
                        'pass "binary" or "inverse_square"')
    spacing_arr = np.ones(ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    if spacing_arr.shape != (ndim,) or not np.all(np.isfinite(spacing_arr)) or np.any(spacing_arr <= 0):
        raise bad_value("spacing", spacing, f"is not {ndim} positive numbers",
                        f"pass one positive cell size per axis, e.g. {(1.0,) * ndim}")
    if mask is None:
        keep = np.ones(shape, dtype=bool)
    else:
        keep = np.asarray(mask)
        if keep.shape != shape:
            raise bad_value("mask", f"array of shape {keep.shape}", f"does not match the grid shape {shape}",
                            f"pass a boolean mask of shape {shape}", ShapeMismatchError)
        if keep.dtype != bool:
            if not np.issubdtype(keep.dtype, np.number):
                raise bad_value("mask", f"array of dtype {keep.dtype}", "is not boolean",
                                "pass a boolean (or 0/1) mask")
            keep = np.isfinite(keep) & (keep != 0)
    index = np.flatnonzero(keep.ravel(order="C"))
    if index.size == 0:
        raise bad_value("mask", f"array of shape {shape}", "selects no cell (the mask is empty)",
                        "pass a mask with at least 2 True cells (check the threshold or the image)")
    node_id = np.full(int(np.prod(shape)), -1, dtype=np.int64)
    node_id[index] = np.arange(index.size)
    node_id = node_id.reshape(shape)
    r, c, w = _grid_edges(shape, offsets, node_id, spacing_arr, weighting)
    n = index.size
    adj = sparse.coo_matrix((np.concatenate([w, w]), (np.concatenate([r, c]), np.concatenate([c, r]))),
                            shape=(n, n)).tocsr()
    adj.sort_indices()
    ijk = np.stack(np.unravel_index(index, shape), axis=1).astype(np.float64)
    if affine is not None:
        coords = ijk @ affine[:3, :3].T + affine[:3, 3]
    else:
        coords = np.zeros((n, 3))
        coords[:, :ndim] = ijk * spacing_arr
    structure = Structure(name=name, kind=kind, n_total=int(np.prod(shape)), index=index,
                          shape=tuple(shape), affine=None if affine is None else np.array(affine, float))
    prov = {
        "package_version": __version__,
        "shape": list(shape), "connectivity": int(connectivity),
        "spacing": spacing_arr.tolist(), "weighting": weighting,
        "mask_sha256": None if mask is None else sha256_array(keep.astype(bool)),
        "n_nodes": int(n), **provenance,
    }
    return Graph(structures=(structure,), adjacency=adj, coords=coords, provenance=prov)


def lattice_graph(shape, connectivity: int | None = None, mask=None, spacing=None,
                  weighting: str = "binary") -> Graph:
    """A 2-D or 3-D grid graph, optionally restricted to a mask.

    Parameters
    ----------
    shape : tuple of int, length 2 or 3
        Grid size.
    connectivity : int, optional
        4 (default) or 8 in 2-D; 6 (default), 18 or 26 in 3-D.
    mask : array_like of bool, shape ``shape``, optional
        Cells to keep (all by default). Edges to dropped cells are removed.
    spacing : sequence of float, length ``ndim``, optional
        Cell size per axis (1 by default); sets ``coords`` and, with
        ``weighting="inverse_square"``, the edge weights.
    weighting : {"binary", "inverse_square"}, optional
        Edge weight 1, or ``1 / |offset * spacing|**2`` (which makes the combinatorial Laplacian
        of a 4-/6-connected grid the finite-difference Laplacian in physical units).

    Returns
    -------
    Graph
        One ``Structure(name="Lattice", kind="lattice", shape=shape)`` whose ``index`` holds the
        flat C-order indices of the kept cells; ``adjacency`` (n, n) CSR; ``coords`` (n, 3)
        (``z = 0`` in 2-D).

    Examples
    --------
    >>> g = lattice_graph((50, 50))
    >>> g.n_features, g.adjacency.nnz // 2
    (2500, 4900)
    """
    shp = _check_shape(shape)
    if connectivity is None:
        connectivity = 4 if len(shp) == 2 else 6
    return _build(shp, connectivity, mask, spacing, weighting, "Lattice", "lattice", None,
                  {"adapter": "lattice"})


def _load_nifti(img_or_path):
    import nibabel as nib

    if isinstance(img_or_path, (str, os.PathLike)):
        path = os.fspath(img_or_path)
        if not os.path.exists(path):
            raise bad_value("img_or_path", path, "does not exist", "pass the path of a NIfTI mask image",
                            InvalidInputError)
        try:
            img = nib.load(path)
        except Exception as exc:
            raise bad_value("img_or_path", path, f"cannot be read as a NIfTI image ({exc})",
                            "pass a .nii or .nii.gz mask image") from None
        return img, path
    if not hasattr(img_or_path, "affine") or not hasattr(img_or_path, "dataobj"):
        raise bad_value("img_or_path", type(img_or_path).__name__, "is neither a path nor a nibabel image",
                        "pass a path or a nibabel.Nifti1Image")
    return img_or_path, None


def _load_nifti_mask(img_or_path):
    """Load a 3-D NIfTI mask: ``(image, path or None, boolean mask of finite non-zero voxels)``."""
    img, path = _load_nifti(img_or_path)
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise bad_value("img_or_path", path or f"image of shape {data.shape}",
                        f"has shape {data.shape}, not a 3-D mask", "pass a 3-D mask image",
                        ShapeMismatchError)
    mask = np.isfinite(data) & (data != 0)
    if not mask.any():
        raise bad_value("img_or_path", path or f"image of shape {data.shape}",
                        "is an empty mask (no finite non-zero voxel)",
                        "pass a mask with non-zero voxels inside the brain")
    return img, path, mask


def from_nifti_mask(img_or_path, connectivity: int = 6) -> Graph:
    """A voxel graph over the non-zero voxels of a NIfTI mask.

    Parameters
    ----------
    img_or_path : str, path-like or nibabel image
        3-D mask (or 4-D with one volume); voxels that are finite and non-zero are kept.
    connectivity : {6, 18, 26}, optional
        Face, face+edge, or face+edge+corner neighbours (binary weights).

    Returns
    -------
    Graph
        One ``Structure(name="Volume", kind="volume", shape=img.shape[:3], affine=img.affine,
        index=numpy.flatnonzero(mask.ravel(order="C")))``; ``coords`` (n, 3) are the voxel
        centres in world (scanner/MNI) millimetres.
    """
    img, path, mask = _load_nifti_mask(img_or_path)
    affine = np.asarray(img.affine, dtype=np.float64)
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)
    prov = {"adapter": "nifti_mask", "source": path, "affine_sha256": sha256_array(affine)}
    return _build(tuple(mask.shape), connectivity, mask, zooms, "binary", "Volume", "volume", affine, prov)
