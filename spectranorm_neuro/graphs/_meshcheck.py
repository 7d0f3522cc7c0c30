"""Triangle-mesh checks (ranges, free vertices, manifoldness, components) and vertex-mask cleaning.

A mesh that reaches the FEM assembly must be a single connected 2-manifold (with or without
boundary) without free vertices or degenerate triangles; otherwise its Laplace–Beltrami modes are
meaningless (several zero modes, infinite cotangent weights). Each problem raises
:class:`~spectranorm_neuro.exceptions.MeshError` naming what is wrong, where, and the fix.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ..exceptions import MeshError, ShapeMismatchError, bad_value
from ._checks import component_sizes

__all__ = ["as_mesh_arrays", "mesh_edges", "check_mesh_topology", "clean_mask", "vertex_fan_defects"]


def _first(ids: np.ndarray, limit: int = 8) -> str:
    ids = np.asarray(ids)
    return ", ".join(map(str, ids[:limit].tolist())) + (", ..." if ids.size > limit else "")


def as_mesh_arrays(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """Check array types, shapes and face indices; return float64 vertices and int64 faces.

    Parameters
    ----------
    vertices : array_like, shape (n_vertices, 3)
    faces : array_like of int, shape (n_faces, 3)

    Returns
    -------
    vertices : numpy.ndarray of float64, shape (n_vertices, 3)
    faces : numpy.ndarray of int64, shape (n_faces, 3)
    """
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 3:
        raise bad_value("vertices", f"array of shape {v.shape}", "is not an (n_vertices >= 3, 3) array",
                        "pass vertex coordinates as rows of (x, y, z)", ShapeMismatchError)
    try:
        v = v.astype(np.float64)
    except (TypeError, ValueError):
        raise bad_value("vertices", f"array of dtype {v.dtype}", "is not numeric",
                        "pass float vertex coordinates", MeshError) from None
    if not np.all(np.isfinite(v)):
        bad = np.flatnonzero(~np.all(np.isfinite(v), axis=1))
        raise bad_value("vertices", f"array of shape {v.shape}",
                        f"has {bad.size} vertices with NaN/inf coordinates, first [{_first(bad)}]",
                        "repair or remove these vertices", MeshError)
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] < 1:
        raise bad_value("faces", f"array of shape {f.shape}",
                        "is not an (n_faces >= 1, 3) array of triangles",
                        "pass triangles as rows of 3 vertex indices (quads must be split)",
                        ShapeMismatchError)
    if not np.issubdtype(f.dtype, np.integer):
        if not np.issubdtype(f.dtype, np.floating) or not np.all(f == np.round(f)):
            raise bad_value("faces", f"array of dtype {f.dtype}", "does not hold integer vertex indices",
                            "pass integer vertex indices", MeshError)
    f = f.astype(np.int64)
    n = v.shape[0]
    out = (f < 0) | (f >= n)
    if out.any():
        rows = np.flatnonzero(out.any(axis=1))
        raise bad_value("faces", f"array of shape {f.shape}",
                        f"indexes vertices outside 0..{n - 1} in {rows.size} triangle(s), first triangle "
                        f"{int(rows[0])} = {f[rows[0]].tolist()}",
                        f"pass faces that index the {n} given vertices (0-based; subtract 1 if 1-based)",
                        MeshError)
    dup = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    if dup.any():
        rows = np.flatnonzero(dup)
        raise bad_value("faces", f"array of shape {f.shape}",
                        f"has {rows.size} degenerate triangle(s) repeating a vertex, first triangle "
                        f"{int(rows[0])} = {f[rows[0]].tolist()}", "remove these triangles", MeshError)
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    area2 = np.linalg.norm(cross, axis=1)
    tiny = area2 <= 1e-12 * max(float(area2.mean()), np.finfo(float).tiny)
    if tiny.any():
        rows = np.flatnonzero(tiny)
        raise bad_value("faces", f"array of shape {f.shape}",
                        f"has {rows.size} zero-area triangle(s) (collinear vertices), first triangle "
                        f"{int(rows[0])} = {f[rows[0]].tolist()}",
                        "remove or repair these triangles (they give infinite cotangent weights)", MeshError)
    return v, f


def mesh_edges(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges of a triangle mesh and how many triangles share each.

    Returns
    -------
    edges : numpy.ndarray of int64, shape (n_edges, 2)
        ``edges[:, 0] < edges[:, 1]``, sorted lexicographically.
    counts : numpy.ndarray of int64, shape (n_edges,)
        Number of triangles containing each edge (1 = boundary, 2 = interior, > 2 = non-manifold).
    """
    e = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    lo, hi = np.minimum(e[:, 0], e[:, 1]), np.maximum(e[:, 0], e[:, 1])
    key, counts = np.unique(lo * np.int64(n_vertices) + hi, return_counts=True)
    return np.stack([key // n_vertices, key % n_vertices], axis=1), counts


def vertex_fan_defects(faces: np.ndarray, n_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices whose incident triangles do not form a single fan.

    A vertex of a 2-manifold has one fan of triangles: closed (``#edges == #triangles``, no
    boundary edge) or open (``#edges == #triangles + 1``, two boundary edges). Anything else is
    a pinch ("bow-tie") vertex or touches a non-manifold edge. Two closed fans sharing a vertex
    pass this count test and are not detected.

    Returns
    -------
    free : numpy.ndarray of int, shape (n_free,)
        Vertices in no triangle.
    pinch : numpy.ndarray of int, shape (n_pinch,)
        Vertices in triangles whose fan is not a single disk or half-disk.
    """
    edges, counts = mesh_edges(faces, n_vertices)
    n_tri = np.bincount(faces.ravel(), minlength=n_vertices)
    n_edge = np.bincount(edges.ravel(), minlength=n_vertices)
    n_bnd = np.bincount(edges[counts == 1].ravel(), minlength=n_vertices)
    ok = ((n_edge == n_tri) & (n_bnd == 0)) | ((n_edge == n_tri + 1) & (n_bnd == 2))
    free = np.flatnonzero(n_tri == 0)
    pinch = np.flatnonzero(~ok & (n_tri > 0))
    return free, pinch


def check_mesh_topology(faces: np.ndarray, n_vertices: int, context: str = "") -> sparse.csr_matrix:
    """Raise :class:`MeshError` unless the mesh is one connected manifold without free vertices.

    Parameters
    ----------
    faces : numpy.ndarray of int64, shape (n_faces, 3)
        Triangles, indices in ``0 .. n_vertices - 1`` (see :func:`as_mesh_arrays`).
    n_vertices : int
    context : str, optional
        Extra text for the messages (e.g. "after applying cortex_mask").

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_vertices, n_vertices)
        Binary edge adjacency of the mesh.
    """
    where = f" {context}" if context else ""
    fix_mask = ("clean the mask with spectranorm_neuro.graphs.clean_mask(faces, mask)" if context
                else "")
    edges, counts = mesh_edges(faces, n_vertices)
    free, pinch = vertex_fan_defects(faces, n_vertices)
    if free.size:
        raise bad_value("faces", f"mesh with {n_vertices} vertices",
                        f"has {free.size} free vertices{where} that belong to no triangle, "
                        f"first [{_first(free)}]",
                        fix_mask or "drop unreferenced vertices (and re-index the faces) or mask them out",
                        MeshError)
    if np.any(counts > 2):
        bad = edges[counts > 2]
        raise bad_value("faces", f"mesh with {n_vertices} vertices",
                        f"is not manifold{where}: {bad.shape[0]} edge(s) shared by more than two triangles, "
                        f"first edge {bad[0].tolist()}",
                        fix_mask or "repair the mesh (remove duplicate or overlapping triangles)", MeshError)
    if pinch.size:
        raise bad_value("faces", f"mesh with {n_vertices} vertices",
                        f"is not manifold{where}: {pinch.size} pinch vertex(es) where separate fans "
                        f"of triangles touch, first [{_first(pinch)}]",
                        fix_mask or "split or remove the pinch vertices", MeshError)
    data = np.ones(2 * edges.shape[0])
    adj = sparse.coo_matrix((data, (edges.ravel(order="F"), edges[:, ::-1].ravel(order="F"))),
                            shape=(n_vertices, n_vertices)).tocsr()
    n_comp, _, sizes = component_sizes(adj)
    if n_comp > 1:
        raise bad_value("faces", f"mesh with {n_vertices} vertices",
                        f"has {n_comp} connected components{where} of sizes [{_first(sizes)}]",
                        fix_mask or "keep the largest component (pass a cortex_mask selecting it) or load "
                        "each piece as its own mesh", MeshError)
    adj.sort_indices()
    return adj


def clean_mask(faces, mask, max_iter: int = 100) -> np.ndarray:
    """Make a vertex mask cut a clean mesh: one component, no holes, free or pinch vertices.

    Steps, repeated until nothing changes: fill holes (components of the unkept vertices other
    than the largest are added to the mask), keep the largest component, drop kept vertices
    that lie in no fully kept triangle or where the kept triangles form several fans.

    Parameters
    ----------
    faces : array_like of int, shape (n_faces, 3)
        Triangles of the full mesh.
    mask : array_like of bool, shape (n_vertices,)
        Vertices to keep.
    max_iter : int, optional
        Upper bound on the repetitions.

    Returns
    -------
    numpy.ndarray of bool, shape (n_vertices,)
        The cleaned mask (a subset of ``mask`` up to filled holes).
    """
    faces = np.asarray(faces, dtype=np.int64)
    keep = np.asarray(mask, dtype=bool).copy()
    n = keep.size
    full = _face_pattern(faces, n)
    for _ in range(max_iter):
        before = keep.copy()
        if (~keep).any():  # fill holes: small components of the dropped vertices
            drop = np.flatnonzero(~keep)
            _, lab, _ = component_sizes(full[drop][:, drop])
            keep[drop[lab > 0]] = True
        kept_faces = faces[keep[faces].all(axis=1)]
        if kept_faces.size == 0:
            return np.zeros(n, dtype=bool)
        free, pinch = vertex_fan_defects(kept_faces, n)
        keep[free] = False
        keep[pinch] = False
        ids = np.flatnonzero(keep)
        if ids.size:
            _, lab, _ = component_sizes(_face_pattern(faces[keep[faces].all(axis=1)], n)[ids][:, ids])
            keep[ids[lab > 0]] = False
        if np.array_equal(before, keep):
            break
    return keep


def _face_pattern(faces: np.ndarray, n: int) -> sparse.csr_matrix:
    """Binary adjacency of the edges of the given triangles."""
    edges, _ = mesh_edges(faces, n) if faces.size else (np.zeros((0, 2), np.int64), None)
    rows, cols = edges.ravel(order="F"), edges[:, ::-1].ravel(order="F")
    return sparse.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n)).tocsr()
