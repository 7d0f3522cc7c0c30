"""Validation of adjacency matrices and FEM operator pairs, with errors that say what to do.

Every adapter's output and every user-supplied adjacency goes through these checks before an
eigensolver sees it, so a bad graph fails early with a message naming the offending value
(a node, an edge, the component sizes) and the fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from .._util import as_finite_array
from ..exceptions import GraphError, ShapeMismatchError, bad_value

__all__ = [
    "as_adjacency",
    "check_connected",
    "check_fem_pair",
    "component_sizes",
]

#: Relative tolerance on ``|A - A.T|`` (relative to the largest weight) for "symmetric".
SYMMETRY_RTOL = 1e-10


def _describe(matrix: Any) -> str:
    shape = getattr(matrix, "shape", None)
    kind = "sparse matrix" if sparse.issparse(matrix) else "array"
    return f"{kind} of shape {shape}" if shape is not None else type(matrix).__name__


def _as_square_csr(matrix: Any, name: str) -> sparse.csr_matrix:
    """Convert to a finite float64 CSR matrix and check it is square."""
    if sparse.issparse(matrix):
        mat = sparse.csr_matrix(matrix, dtype=np.float64)
        if mat.nnz and not np.all(np.isfinite(mat.data)):
            raise bad_value(name, _describe(matrix), "holds NaN/inf weights",
                            "replace non-finite weights by finite ones (or 0 for no edge)", GraphError)
    else:
        arr = as_finite_array(matrix, name)
        if arr.ndim != 2:
            raise bad_value(name, _describe(arr), f"has {arr.ndim} dimension(s), not 2",
                            "pass an (n_nodes, n_nodes) matrix", GraphError)
        mat = sparse.csr_matrix(arr)
    if mat.shape[0] != mat.shape[1]:
        raise bad_value(name, _describe(mat), "is not square",
                        "pass an (n_nodes, n_nodes) matrix with one row and one column per node",
                        GraphError)
    if mat.shape[0] < 2:
        raise bad_value(name, _describe(mat), "has fewer than 2 nodes",
                        "pass a graph with at least 2 nodes", GraphError)
    mat.sum_duplicates()
    mat.sort_indices()
    return mat


def _check_symmetric(mat: sparse.csr_matrix, name: str) -> None:
    diff = abs(mat - mat.T).tocoo()
    scale = float(np.max(np.abs(mat.data))) if mat.nnz else 1.0
    bad = diff.data > SYMMETRY_RTOL * max(scale, np.finfo(float).tiny)
    if np.any(bad):
        order = np.lexsort((diff.col[bad], diff.row[bad]))
        i, j = int(diff.row[bad][order[0]]), int(diff.col[bad][order[0]])
        raise bad_value(name, _describe(mat),
                        f"is not symmetric: {int(bad.sum()) // 2 or 1} node pair(s) differ, first "
                        f"[{i}, {j}]={float(mat[i, j])!r} but [{j}, {i}]={float(mat[j, i])!r}",
                        "symmetrize it, e.g. (A + A.T) / 2, or A.maximum(A.T) for a binary graph",
                        GraphError)


def component_sizes(pattern: sparse.spmatrix) -> tuple[int, np.ndarray, np.ndarray]:
    """Connected components of a symmetric sparsity pattern.

    Parameters
    ----------
    pattern : scipy.sparse matrix, shape (n_nodes, n_nodes)
        Adjacency (or stiffness) matrix; only its non-zero pattern matters.

    Returns
    -------
    n_components : int
    labels : numpy.ndarray of int, shape (n_nodes,)
        Component of each node, numbered by decreasing size (0 is the largest; ties broken by the
        lowest node index).
    sizes : numpy.ndarray of int, shape (n_components,)
        Number of nodes in each component, in decreasing order.
    """
    n_comp, raw = connected_components(pattern, directed=False)
    sizes = np.bincount(raw, minlength=n_comp)
    first = np.full(n_comp, raw.size)
    np.minimum.at(first, raw, np.arange(raw.size))
    order = np.lexsort((first, -sizes))
    rank = np.empty(n_comp, dtype=np.int64)
    rank[order] = np.arange(n_comp)
    return int(n_comp), rank[raw], sizes[order]


def check_connected(pattern: sparse.spmatrix, name: str) -> None:
    """Raise :class:`GraphError` if the graph has more than one connected component.

    The message gives the number of components and their sizes (largest first) and suggests
    masking the small ones out or keeping the largest component.
    """
    n_comp, _, sizes = component_sizes(pattern)
    if n_comp > 1:
        shown = ", ".join(map(str, sizes[:8])) + (", ..." if n_comp > 8 else "")
        raise bad_value(name, _describe(pattern),
                        f"is disconnected: {n_comp} connected components of sizes [{shown}]",
                        "mask out the small components (spectranorm_neuro.graphs.largest_component"
                        "(graph) keeps the largest) or build one basis per component", GraphError)


def as_adjacency(matrix: Any, name: str = "adjacency_matrix", connected: bool = True) -> sparse.csr_matrix:
    """Validate an adjacency matrix and return it as CSR float64 without self-loops.

    Parameters
    ----------
    matrix : array_like or scipy.sparse matrix, shape (n_nodes, n_nodes)
        Symmetric, non-negative edge weights. Diagonal entries (self-loops) are ignored: they do
        not change the combinatorial Laplacian and are dropped for the other Laplacians too.
    name : str, optional
        Argument name used in error messages.
    connected : bool, optional
        Also require one connected component (eigenmodes of a disconnected graph mix components).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_nodes, n_nodes)

    Raises
    ------
    GraphError
        Non-square, non-finite, negative or asymmetric weights, isolated nodes, or (with
        ``connected``) more than one connected component.
    """
    mat = _as_square_csr(matrix, name)
    mat.setdiag(0)
    mat.eliminate_zeros()
    if mat.nnz and mat.data.min() < 0:
        coo = mat.tocoo()
        k = int(np.flatnonzero(coo.data < 0)[0])
        raise bad_value(name, _describe(mat),
                        f"has {int((coo.data < 0).sum())} negative weight(s), first "
                        f"[{int(coo.row[k])}, {int(coo.col[k])}]={float(coo.data[k])!r}",
                        "use non-negative weights (e.g. abs(A), or shift similarities to >= 0)",
                        GraphError)
    _check_symmetric(mat, name)
    degree = np.asarray(mat.sum(axis=1)).ravel()
    isolated = np.flatnonzero(degree <= 0)
    if isolated.size:
        shown = ", ".join(map(str, isolated[:10])) + (", ..." if isolated.size > 10 else "")
        raise bad_value(name, _describe(mat),
                        f"has {isolated.size} isolated node(s) with no edges, at [{shown}]",
                        "mask these nodes out (drop their rows and columns) or connect them", GraphError)
    if connected:
        check_connected(mat, name)
    return mat


def check_fem_pair(stiffness: Any, mass: Any, connected: bool = True) -> tuple[sparse.csr_matrix,
                                                                               sparse.csr_matrix]:
    """Validate a FEM stiffness/mass pair and return both as CSR float64.

    Parameters
    ----------
    stiffness, mass : scipy.sparse matrix, shape (n_nodes, n_nodes)
        Symmetric positive semi-definite stiffness and symmetric positive definite mass matrices.
    connected : bool, optional
        Require the stiffness pattern to form one connected component.

    Returns
    -------
    stiffness, mass : scipy.sparse.csr_matrix, shape (n_nodes, n_nodes)
    """
    a = _as_square_csr(stiffness, "stiffness")
    b = _as_square_csr(mass, "mass")
    if a.shape != b.shape:
        raise bad_value("mass", _describe(b), f"does not match the stiffness matrix of shape {a.shape}",
                        "pass stiffness and mass assembled on the same mesh", ShapeMismatchError)
    _check_symmetric(a, "stiffness")
    _check_symmetric(b, "mass")
    diag = b.diagonal()
    if np.any(diag <= 0):
        k = int(np.flatnonzero(diag <= 0)[0])
        raise bad_value("mass", _describe(b),
                        f"has {int((diag <= 0).sum())} non-positive diagonal entries, first at node {k}",
                        "remove free vertices and zero-area triangles before assembling", GraphError)
    if connected:
        check_connected(a, "stiffness")
    return a, b
