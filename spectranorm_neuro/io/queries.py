"""Spatial queries built from images and meshes, encoded for a basis (optionally in blocks).

A *query* is a linear functional of a map: weights ``w`` over the basis' features whose value on
a map ``x`` is ``w @ x`` (one vertex, a smoothing kernel, a parcel mean). Every builder returns a
:class:`QuerySet`, whose ``encoded`` array ``(n_modes, n_queries)`` is what the spectral engine's
``predict`` takes; with ``block_size`` the encoding is done lazily, ``block_size`` queries at a
time (:meth:`QuerySet.iter_blocks`), so tens of thousands of kernel queries never need a dense
``(n_queries, n_features)`` array.

Builders
--------
* :func:`vertex_queries` / :func:`voxel_queries`: identity queries (one node each);
* :func:`kernel_queries`: Gaussian kernels around vertices, with Euclidean or geodesic distance
  (geodesic = shortest path along the edges of the masked mesh, an upper bound that is within a
  few percent of the exact geodesic on regular meshes), truncated at ``truncate`` sigmas and
  normalised to sum 1 (a local weighted mean);
* :func:`atlas_queries`: parcel means from an atlas image (``.annot``, ``.label.gii``,
  ``.dlabel.nii``, NIfTI atlas) or label arrays, through
  :func:`spectranorm_neuro.graphs.parcellation.parcel_queries`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse

from .._util import check_n_modes, check_positive_int
from ..exceptions import IncompatibleModelError, InvalidInputError, ShapeMismatchError, bad_value
from ..graphs._graph import Graph, Structure
from ._common import STRUCTURE_TO_HEMI, normalize_hemi, resolve_structures

__all__ = ["QuerySet", "vertex_queries", "voxel_queries", "kernel_queries", "atlas_queries"]


class QuerySet:
    """Queries over a basis' features, encoded for that basis.

    Parameters
    ----------
    basis : EigenmodeBasis
        Basis the queries are encoded in.
    builder : callable
        ``builder(start, stop)`` returns the weights of queries ``start..stop-1`` as a CSR matrix
        of shape (stop - start, n_features).
    n_queries : int
        Number of queries.
    n_modes : int, optional
        Leading modes to encode with (all by default).
    names : sequence of str, optional
        One name per query.
    features : numpy.ndarray of int, shape (n_queries,), optional
        The feature each query is centred on (identity and kernel queries).
    kind : str, optional
        ``"vertex"``, ``"voxel"``, ``"kernel"`` or ``"parcel"``.
    block_size : int, optional
        Encode lazily in blocks of this many queries; ``None`` encodes everything at once.
    labels : numpy.ndarray, optional
        Parcel label values (atlas queries).

    Attributes
    ----------
    encoded : numpy.ndarray, shape (n_modes, n_queries)
        ``basis.encode_queries(weights)`` (computed on first access when ``block_size`` is set).
    """

    def __init__(self, basis: Any, builder: Callable[[int, int], sparse.csr_matrix], n_queries: int,
                 n_modes: int | None = None, names: Sequence[str] | None = None,
                 features: np.ndarray | None = None, kind: str = "", block_size: int | None = None,
                 labels: np.ndarray | None = None):
        self.basis = basis
        self.n_modes = check_n_modes(n_modes, basis.n_modes)
        self._builder = builder
        self.n_queries = int(n_queries)
        self.names = [str(n) for n in names] if names is not None else [str(i) for i in range(self.n_queries)]
        self.features = None if features is None else np.asarray(features, dtype=np.int64)
        self.kind = kind
        self.labels = labels
        self.block_size = None if block_size is None else check_positive_int(block_size, "block_size", 4096)
        self._encoded = None
        if self.block_size is None:
            self._encoded = self._encode(0, self.n_queries)

    def __len__(self) -> int:
        return self.n_queries

    def __repr__(self) -> str:
        return f"QuerySet(kind={self.kind!r}, n_queries={self.n_queries}, n_modes={self.n_modes})"

    def weights_block(self, start: int, stop: int) -> sparse.csr_matrix:
        """Weights of queries ``start..stop-1``, CSR of shape (stop - start, n_features)."""
        return self._builder(int(start), int(stop))

    @property
    def weights(self) -> sparse.csr_matrix:
        """All weights, CSR of shape (n_queries, n_features)."""
        return self.weights_block(0, self.n_queries)

    def _encode(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.basis.encode_queries(self.weights_block(start, stop), n_modes=self.n_modes))

    @property
    def encoded(self) -> np.ndarray:
        """Encoded queries, shape (n_modes, n_queries)."""
        if self._encoded is None:
            out = np.empty((self.n_modes, self.n_queries))
            for sl, block in self.iter_blocks():
                out[:, sl] = block
            self._encoded = out
        return self._encoded

    def iter_blocks(self, block_size: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(slice, encoded block of shape (n_modes, n_block))`` over the queries.

        Parameters
        ----------
        block_size : int, optional
            Queries per block (default: the set's ``block_size``, else 4096).
        """
        size = int(block_size or self.block_size or 4096)
        for start in range(0, self.n_queries, size):
            stop = min(start + size, self.n_queries)
            if self._encoded is not None:
                yield slice(start, stop), self._encoded[:, start:stop]
            else:
                yield slice(start, stop), self._encode(start, stop)

    def to_features(self, values: Any) -> np.ndarray:
        """Place per-query values on the features, ready for :func:`~spectranorm_neuro.io.write_map`.

        Identity/kernel queries put each value on the feature the query is centred on; parcel
        queries paint each parcel's value over its nodes. Features no query covers get NaN.

        Parameters
        ----------
        values : array_like, shape (n_queries,) or (n_maps, n_queries)
            E.g. z-scores predicted for these queries.

        Returns
        -------
        numpy.ndarray, shape (n_features,) or (n_maps, n_features)
        """
        arr = np.asarray(values, dtype=np.float64)
        single = arr.ndim == 1
        arr = arr[None, :] if single else arr
        if arr.ndim != 2 or arr.shape[1] != self.n_queries:
            raise bad_value("values", f"array of shape {np.shape(values)}",
                            f"does not have one column per query ({self.n_queries})",
                            "pass (n_maps, n_queries) values in query order", ShapeMismatchError)
        n_feat = int(self.basis.n_features)
        out = np.full((arr.shape[0], n_feat), np.nan)
        if self.features is not None:
            out[:, self.features] = arr
        else:
            member = (self.weights != 0).astype(np.float64)  # (n_queries, n_features)
            covered = np.asarray(member.sum(axis=0)).ravel() > 0
            painted = np.asarray(member.T @ np.nan_to_num(arr).T).T
            nan_hit = np.asarray(member.T @ np.isnan(arr).T.astype(np.float64)).T > 0
            painted[nan_hit] = np.nan
            out[:, covered] = painted[:, covered]
        return out[0] if single else out


# ---------------------------------------------------------------------------------------------- helpers
def _offsets(structures: Sequence[Structure]) -> np.ndarray:
    return np.cumsum([0, *(s.n_features for s in structures)])


def _find_structure(structures: Sequence[Structure], key: Any, argument: str) -> int:
    names = [s.name for s in structures]
    if key in names:
        return names.index(key)
    try:
        hemi = normalize_hemi(key, argument)
    except InvalidInputError:
        hemi = None
    for i, s in enumerate(structures):
        if hemi is not None and STRUCTURE_TO_HEMI.get(s.name) == hemi:
            return i
    raise bad_value(argument, key, f"names no structure of the basis ({names})",
                    "pass a structure name such as 'CortexLeft' or a hemisphere 'L'/'R'")


def _local_to_feature(structures, i: int, nodes: np.ndarray, argument: str, what: str) -> np.ndarray:
    s = structures[i]
    nodes = np.asarray(nodes, dtype=np.int64).ravel()
    if nodes.size and (nodes.min() < 0 or nodes.max() >= s.n_total):
        raise bad_value(argument, f"{what} in {int(nodes.min())}..{int(nodes.max())}",
                        f"fall outside {s.name}'s {s.n_total} nodes", f"pass {what} in 0..{s.n_total - 1}")
    index = np.asarray(s.index)
    pos = np.searchsorted(index, nodes)
    pos_c = np.minimum(pos, max(index.size - 1, 0))
    bad = (index[pos_c] != nodes) if index.size else np.ones(nodes.size, bool)
    if bad.any():
        raise bad_value(argument, nodes[bad][:10].tolist(), f"are {what} outside the mask of {s.name}",
                        "query only nodes the basis keeps (see structure.index)", IncompatibleModelError)
    return _offsets(structures)[i] + pos


def _identity_builder(features: np.ndarray, n_features: int):
    def build(start, stop):
        f = features[start:stop]
        return sparse.csr_matrix((np.ones(f.size), (np.arange(f.size), f)), shape=(f.size, n_features))
    return build


def _feature_names(structures, features: np.ndarray) -> list[str]:
    offsets = _offsets(structures)
    which = np.searchsorted(offsets, features, side="right") - 1
    return [f"{structures[w].name}:{int(np.asarray(structures[w].index)[f - offsets[w]])}"
            for w, f in zip(which, features)]


# ---------------------------------------------------------------------------------------------- identity
def vertex_queries(basis: Any, vertices: Any = None, structure: Any = None,
                   structures: Sequence[Structure] | None = None, n_modes: int | None = None,
                   block_size: int | None = None) -> QuerySet:
    """Identity queries: the value of the map at single vertices (or any features).

    Parameters
    ----------
    basis : EigenmodeBasis
    vertices : array_like of int, optional
        With ``structure``: mesh vertex ids (``0 .. n_total-1``) of that hemisphere; without it:
        feature indices (``0 .. n_features-1``). Default: every feature of ``structure`` (or all).
    structure : str, optional
        ``"CortexLeft"``/``"L"`` ...
    structures : sequence of Structure, optional
        Feature layout (default ``basis.structures``; needed only with ``structure``).
    n_modes, block_size :
        See :class:`QuerySet`.

    Returns
    -------
    QuerySet
        Named ``"<structure>:<node>"``; ``features`` gives each query's feature.
    """
    n_feat = int(basis.n_features)
    if structure is not None:
        structs = resolve_structures(basis, structures, n_feat)
        i = _find_structure(structs, structure, "structure")
        if vertices is None:
            off = _offsets(structs)
            features = np.arange(off[i], off[i + 1])
        else:
            features = _local_to_feature(structs, i, vertices, "vertices", "vertices")
    else:
        features = np.arange(n_feat) if vertices is None else np.asarray(vertices, dtype=np.int64).ravel()
        if features.size and (features.min() < 0 or features.max() >= n_feat):
            raise bad_value("vertices", f"indices in {int(features.min())}..{int(features.max())}",
                            f"fall outside the basis' {n_feat} features",
                            "pass feature indices, or mesh vertex ids together with structure='L'/'R'")
        structs = getattr(basis, "structures", None) if structures is None else tuple(structures)
    names = _feature_names(structs, features) if structs else [str(f) for f in features]
    return QuerySet(basis, _identity_builder(features, n_feat), features.size, n_modes, names, features,
                    "vertex", block_size)


def voxel_queries(basis: Any, voxels: Any = None, space: str = "ijk", structure: Any = None,
                  structures: Sequence[Structure] | None = None, n_modes: int | None = None,
                  block_size: int | None = None) -> QuerySet:
    """Identity queries at voxels of a volume structure.

    Parameters
    ----------
    basis : EigenmodeBasis
    voxels : array_like, shape (n_queries, 3), optional
        Voxel indices (``space="ijk"``) or world coordinates in mm (``space="world"``, rounded to
        the nearest voxel). Default: every voxel of the mask.
    space : {"ijk", "world"}, optional
    structure : str, optional
        Name of the volume structure (the only volume structure by default).
    structures : sequence of Structure, optional
        Feature layout (default ``basis.structures``).
    n_modes, block_size :
        See :class:`QuerySet`.

    Returns
    -------
    QuerySet
    """
    structs = resolve_structures(basis, structures, int(basis.n_features))
    vols = [i for i, s in enumerate(structs) if s.kind in ("volume", "lattice") and s.shape is not None]
    if structure is not None:
        i = _find_structure(structs, structure, "structure")
    elif len(vols) == 1:
        i = vols[0]
    else:
        raise bad_value("structure", None, f"is needed: the basis has {len(vols)} volume structures",
                        "pass structure=<name of the volume structure>")
    s = structs[i]
    if voxels is None:
        off = _offsets(structs)
        features = np.arange(off[i], off[i + 1])
    else:
        xyz = np.asarray(voxels, dtype=np.float64)
        xyz = xyz[None, :] if xyz.ndim == 1 else xyz
        if xyz.ndim != 2 or xyz.shape[1] != len(s.shape):
            raise bad_value("voxels", f"array of shape {np.shape(voxels)}",
                            f"is not (n, {len(s.shape)}) coordinates", "pass one row per voxel",
                            ShapeMismatchError)
        if space == "world":
            if s.affine is None:
                raise bad_value("space", space, f"{s.name} has no affine", "pass voxel indices (space='ijk')")
            homog = np.c_[xyz, np.ones(len(xyz))]
            xyz = (np.linalg.inv(s.affine) @ homog.T).T[:, :3]
        elif space != "ijk":
            raise bad_value("space", space, "is not 'ijk' or 'world'", "pass space='ijk' or 'world'")
        ijk = np.rint(xyz).astype(np.int64)
        outside = ((ijk < 0) | (ijk >= np.asarray(s.shape))).any(axis=1)
        if outside.any():
            raise bad_value("voxels", ijk[outside][:5].tolist(), f"lie outside the {s.shape} grid",
                            "pass voxels inside the image (check space='ijk' vs 'world')")
        flat = np.ravel_multi_index(tuple(ijk.T), s.shape)
        features = _local_to_feature(structs, i, flat, "voxels", "voxels")
    names = _feature_names(structs, features)
    return QuerySet(basis, _identity_builder(features, int(basis.n_features)), features.size, n_modes,
                    names, features, "voxel", block_size)


# ---------------------------------------------------------------------------------------------- kernels
def _mesh_for(surfaces: Any, structure: Structure, n_surface: int) -> tuple[np.ndarray, np.ndarray]:
    from ..graphs.mesh import load_surface

    hemi = {"L": "left", "R": "right"}.get(STRUCTURE_TO_HEMI.get(structure.name, ""), None)
    source = None
    if isinstance(surfaces, Mapping):
        for key, value in surfaces.items():
            if key == structure.name or (hemi and _safe_hemi(key) == STRUCTURE_TO_HEMI[structure.name]):
                source = value
        if source is None:
            raise bad_value("surfaces", sorted(map(str, surfaces)), f"gives no mesh for {structure.name}",
                            "pass {'L': mesh_left, 'R': mesh_right} (paths, (vertices, faces) or "
                            "'fsaverage5')")
    elif n_surface == 1:
        source = surfaces
    else:
        raise bad_value("surfaces", type(surfaces).__name__,
                        f"is one mesh for {n_surface} surface structures",
                        "pass a dict {'L': ..., 'R': ...}")
    vertices, faces = load_surface(source, hemi=hemi)
    if len(vertices) != structure.n_total:
        raise bad_value("surfaces", f"mesh with {len(vertices)} vertices",
                        f"does not match {structure.name} ({structure.n_total} vertices)",
                        "pass the mesh the basis was built on", IncompatibleModelError)
    return np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)


def _safe_hemi(key: Any) -> str | None:
    try:
        return normalize_hemi(key)
    except InvalidInputError:
        return None


class _KernelPart:
    """Distances from centres to the kept vertices of one hemisphere (masked mesh)."""

    def __init__(self, vertices, faces, structure: Structure, distance: str):
        index = np.asarray(structure.index)
        self.coords = vertices[index]
        self.distance = distance
        if distance == "geodesic":
            local = np.full(len(vertices), -1, dtype=np.int64)
            local[index] = np.arange(index.size)
            f = local[faces]
            f = f[(f >= 0).all(axis=1)]
            i = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
            j = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
            w = np.linalg.norm(self.coords[i] - self.coords[j], axis=1)
            g = sparse.coo_matrix((w, (i, j)), shape=(index.size, index.size)).tocsr()
            self.graph = g.maximum(g.T).tocsr()
        else:
            from scipy.spatial import cKDTree

            self.tree = cKDTree(self.coords)

    def rows(self, centres: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, local column, distance) triplets within ``radius`` of each centre (local ids)."""
        if self.distance == "geodesic":
            from scipy.sparse.csgraph import dijkstra

            d = dijkstra(self.graph, directed=False, indices=centres, limit=radius)
            r, c = np.nonzero(np.isfinite(d))
            return r, c, d[r, c]
        hits = self.tree.query_ball_point(self.coords[centres], r=radius)
        lens = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(hits))
        r = np.repeat(np.arange(len(hits)), lens)
        c = np.concatenate([np.asarray(h, dtype=np.int64) for h in hits]) if len(hits) else np.empty(0, int)
        return r, c, np.linalg.norm(self.coords[c] - self.coords[centres[r]], axis=1)


def kernel_queries(
    basis: Any,
    surfaces: Any,
    centers: Any = None,
    fwhm: float = 10.0,
    distance: str = "euclidean",
    truncate: float = 3.0,
    structures: Sequence[Structure] | None = None,
    node_weights: Any = None,
    n_modes: int | None = None,
    block_size: int | None = None,
) -> QuerySet:
    """Gaussian kernel queries around vertices: a smoothed value of the map at each centre.

    Parameters
    ----------
    basis : EigenmodeBasis
    surfaces : mesh or mapping
        The mesh of each surface structure, as accepted by
        :func:`spectranorm_neuro.graphs.mesh.load_surface` (path, ``(vertices, faces)``,
        ``"fsaverage5"``); a mapping ``{"L": ..., "R": ...}`` (or by structure name) when the basis
        has two hemispheres.
    centers : array_like of int, optional
        Feature indices of the kernel centres (default: every surface feature).
    fwhm : float, optional
        Full width at half maximum of the Gaussian, in mesh units (mm).
    distance : {"euclidean", "geodesic"}, optional
        Straight-line distance, or shortest path along the edges of the masked mesh.
    truncate : float, optional
        Kernels are cut at ``truncate`` standard deviations.
    structures : sequence of Structure, optional
        Feature layout (default ``basis.structures``).
    node_weights : array_like, shape (n_features,), optional
        Extra positive weight per node (e.g. vertex areas); uniform by default.
    n_modes, block_size :
        See :class:`QuerySet`; a block of geodesic kernels needs a dense (block, n_vertices)
        distance array, so pass e.g. ``block_size=1024`` for tens of thousands of centres.

    Returns
    -------
    QuerySet
        Rows sum to 1 (masked vertices carry no weight; kernels never cross hemispheres).
    """
    if distance not in ("euclidean", "geodesic"):
        raise bad_value("distance", distance, "is not a known distance", "pass 'euclidean' or 'geodesic'")
    if not np.isfinite(fwhm) or fwhm <= 0:
        raise bad_value("fwhm", fwhm, "is not a positive number", "pass the kernel width in mm, e.g. fwhm=10")
    if not np.isfinite(truncate) or truncate <= 0:
        raise bad_value("truncate", truncate, "is not positive", "pass e.g. truncate=3")
    n_feat = int(basis.n_features)
    structs = resolve_structures(basis, structures, n_feat)
    offsets = _offsets(structs)
    surf_ids = [i for i, s in enumerate(structs) if s.kind == "surface"]
    if not surf_ids:
        raise bad_value("basis", [s.name for s in structs], "has no surface structure",
                        "use voxel_queries or atlas_queries for volumes")
    if centers is None:
        centers = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in surf_ids])
    centers = np.asarray(centers, dtype=np.int64).ravel()
    if centers.size == 0:
        raise bad_value("centers", "[]", "holds no centre", "pass at least one feature index")
    which = np.searchsorted(offsets, centers, side="right") - 1
    if centers.size and (centers.min() < 0 or centers.max() >= n_feat):
        raise bad_value("centers", f"indices in {int(centers.min())}..{int(centers.max())}",
                        f"fall outside the basis' {n_feat} features", "pass feature indices")
    not_surface = ~np.isin(which, surf_ids)
    if not_surface.any():
        raise bad_value("centers", centers[not_surface][:5].tolist(), "are not surface features",
                        "centre kernels on vertices of CortexLeft/CortexRight")
    if node_weights is not None:
        node_weights = np.asarray(node_weights, dtype=np.float64)
        if node_weights.shape != (n_feat,) or not np.all(np.isfinite(node_weights)) \
                or (node_weights <= 0).any():
            raise bad_value("node_weights", f"array of shape {node_weights.shape}",
                            f"is not {n_feat} positive finite weights",
                            "pass one positive weight per feature")
    parts = {i: _KernelPart(*_mesh_for(surfaces, structs[i], len(surf_ids)), structs[i], distance)
             for i in np.unique(which)}
    sigma = float(fwhm) / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    radius = float(truncate) * sigma

    def build(start, stop):
        c, w_of = centers[start:stop], which[start:stop]
        rows, cols, vals = [], [], []
        for i, part in parts.items():
            sel = np.flatnonzero(w_of == i)
            if not sel.size:
                continue
            r, col, d = part.rows(c[sel] - offsets[i], radius)
            w = np.exp(-0.5 * (d / sigma) ** 2)
            col = col + offsets[i]
            if node_weights is not None:
                w = w * node_weights[col]
            rows.append(sel[r])
            cols.append(col)
            vals.append(w)
        r, col, w = (np.concatenate(x) for x in (rows, cols, vals))
        totals = np.bincount(r, weights=w, minlength=c.size)
        q = sparse.csr_matrix((w / totals[r], (r, col)), shape=(c.size, n_feat))
        q.sort_indices()
        return q

    names = _feature_names(structs, centers)
    return QuerySet(basis, build, centers.size, n_modes, names, centers, "kernel", block_size)


# ---------------------------------------------------------------------------------------------- atlases
def _labels_for(atlas: Any, structs: tuple[Structure, ...], argument: str) -> tuple[np.ndarray, dict]:
    """Per-feature labels over ``structs`` and a {label: name} dict."""
    from ..graphs.parcellation import read_labels

    if isinstance(atlas, np.ndarray) or (isinstance(atlas, (list, tuple)) and atlas and
                                         np.isscalar(atlas[0])):
        arr = np.asarray(atlas)
        n = sum(s.n_features for s in structs)
        if arr.shape == (n,):
            return arr, {}
        if len(structs) == 1 and arr.shape == (structs[0].n_total,):
            return arr[np.asarray(structs[0].index)], {}
        raise bad_value(argument, f"array of shape {arr.shape}",
                        f"is neither one label per feature ({n}) nor per node of the full structure",
                        "pass labels in the basis' feature order, or a per-hemisphere dict",
                        ShapeMismatchError)
    return read_labels(atlas, graph=Graph(structures=structs))


def atlas_queries(basis: Any, atlas: Any, structures: Sequence[Structure] | None = None,
                  ignore: Sequence[int] = (0,), node_weights: Any = None, n_modes: int | None = None,
                  block_size: int | None = None) -> QuerySet:
    """Parcel-mean queries from an atlas.

    Parameters
    ----------
    basis : EigenmodeBasis
    atlas : path, array or mapping
        * a path read by :func:`spectranorm_neuro.graphs.parcellation.read_labels` onto the
          basis' structures: a ``.dlabel.nii`` covering them all, or, for a one-structure basis,
          an ``.annot``/``.label.gii`` (surface) or a NIfTI atlas on the mask's grid;
        * an integer array, one label per feature (or per node of a one-structure basis);
        * a mapping from structure name or hemisphere (``"L"``/``"R"``) to either of the above,
          for per-hemisphere atlases. Parcels of different structures stay distinct even when
          they share a label value (both hemispheres of an ``.annot`` pair).
    structures : sequence of Structure, optional
        Feature layout (default ``basis.structures``).
    ignore : sequence of int, optional
        Label values that are not parcels (0 by default; negative labels always skipped).
    node_weights : array_like, shape (n_features,), optional
        Positive node weights for weighted means (e.g. vertex areas).
    n_modes, block_size :
        See :class:`QuerySet`.

    Returns
    -------
    QuerySet
        One query per parcel, in structure order then ascending label; ``names`` are
        ``"<hemi>_<parcel name>"`` for per-hemisphere atlases (else the parcel name or label);
        ``labels`` the label values.
    """
    from ..graphs.parcellation import parcel_queries

    n_feat = int(basis.n_features)
    structs = resolve_structures(basis, structures, n_feat)
    if isinstance(atlas, Mapping):
        offsets = _offsets(structs)
        codes = np.full(n_feat, -1, dtype=np.int64)
        code_names, code_labels = {}, {}
        stride = 0
        per = {}
        for key, value in atlas.items():
            i = _find_structure(structs, key, "atlas")
            lab, names = _labels_for(value, (structs[i],), "atlas")
            per[i] = (np.asarray(lab).astype(np.int64), names)
            stride = max(stride, int(np.max(lab, initial=0)) + 1)
        for i, (lab, names) in sorted(per.items()):
            keep = (lab >= 0) & ~np.isin(lab, np.asarray(tuple(ignore), dtype=np.int64))
            code = lab + i * stride
            codes[offsets[i]:offsets[i + 1]] = np.where(keep, code, -1)
            prefix = STRUCTURE_TO_HEMI.get(structs[i].name, structs[i].name)
            for v in np.unique(lab[keep]):
                code_names[int(v) + i * stride] = f"{prefix}_{names.get(int(v), int(v))}"
                code_labels[int(v) + i * stride] = int(v)
        q, values = parcel_queries(codes, ignore=(), node_weights=node_weights)
        names = [code_names[int(v)] for v in values]
        labels = np.array([code_labels[int(v)] for v in values])
    else:
        lab, label_names = _labels_for(atlas, structs, "atlas")
        q, labels = parcel_queries(lab, ignore=tuple(ignore), node_weights=node_weights)
        names = [str(label_names.get(int(v), int(v))) for v in labels]
    q = sparse.csr_matrix(q)

    def build(start, stop):
        return q[start:stop]

    return QuerySet(basis, build, q.shape[0], n_modes, names, None, "parcel", block_size, labels)
