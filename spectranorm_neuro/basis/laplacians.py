"""Graph Laplacians as (operator, mass) pairs for the generalized eigenproblem ``L phi = lambda M phi``.

=================  ==========================  ============  ==============================
``laplacian``       operator ``L``              mass ``M``    modes orthonormal in
=================  ==========================  ============  ==============================
``combinatorial``   ``D - A``                   identity      the Euclidean inner product
``normalized``      ``I - D^-1/2 A D^-1/2``     identity      the Euclidean inner product
``random_walk``     ``D - A``                   ``D``         the degree-weighted product
``lbo``             FEM stiffness               FEM mass      the FEM mass (area) product
=================  ==========================  ============  ==============================

``D`` is the diagonal degree matrix (row sums of the adjacency ``A``). The random-walk modes are
the eigenvectors of ``D^-1 L``; solved as a symmetric generalized problem they come out
``D``-orthonormal, so a basis built on them encodes with ``M = D``.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ..exceptions import bad_value
from ..graphs._checks import as_adjacency

__all__ = [
    "LAPLACIANS",
    "degree",
    "combinatorial_laplacian",
    "normalized_laplacian",
    "laplacian_pair",
]

#: Accepted values of the ``laplacian`` argument (plus ``"auto"`` in ``from_graph``).
LAPLACIANS = ("lbo", "combinatorial", "normalized", "random_walk")


def degree(adjacency: sparse.spmatrix) -> np.ndarray:
    """Weighted degree of each node.

    Returns
    -------
    numpy.ndarray, shape (n_nodes,)
        Row sums of the adjacency.
    """
    return np.asarray(adjacency.sum(axis=1)).ravel()


def combinatorial_laplacian(adjacency, name: str = "adjacency_matrix", connected: bool = True
                            ) -> sparse.csr_matrix:
    """``L = D - A`` of a validated adjacency matrix.

    Parameters
    ----------
    adjacency : array_like or scipy.sparse matrix, shape (n_nodes, n_nodes)
        Symmetric non-negative weights (checked; see
        :func:`spectranorm_neuro.graphs.as_adjacency`).
    name : str, optional
        Argument name for error messages.
    connected : bool, optional
        Require a connected graph.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_nodes, n_nodes)
        Symmetric positive semi-definite, rows summing to zero.
    """
    a = as_adjacency(adjacency, name, connected=connected)
    lap = (sparse.diags(degree(a)) - a).tocsr()
    lap.sort_indices()
    return lap


def normalized_laplacian(adjacency, name: str = "adjacency_matrix", connected: bool = True
                         ) -> sparse.csr_matrix:
    """Symmetric normalized Laplacian ``I - D^-1/2 A D^-1/2``.

    Parameters
    ----------
    adjacency : array_like or scipy.sparse matrix, shape (n_nodes, n_nodes)
    name : str, optional
    connected : bool, optional

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_nodes, n_nodes)
        Symmetric positive semi-definite with eigenvalues in ``[0, 2]``.
    """
    a = as_adjacency(adjacency, name, connected=connected)
    inv_sqrt = sparse.diags(1.0 / np.sqrt(degree(a)))
    lap = (sparse.identity(a.shape[0], format="csr") - inv_sqrt @ a @ inv_sqrt).tocsr()
    lap = ((lap + lap.T) * 0.5).tocsr()  # exact symmetry despite rounding
    lap.sort_indices()
    return lap


def laplacian_pair(adjacency, laplacian: str, name: str = "adjacency_matrix", connected: bool = True
                   ) -> tuple[sparse.csr_matrix, sparse.csr_matrix | None]:
    """The (operator, mass) pair of a graph Laplacian.

    Parameters
    ----------
    adjacency : array_like or scipy.sparse matrix, shape (n_nodes, n_nodes)
    laplacian : {"combinatorial", "normalized", "random_walk"}
    name : str, optional
    connected : bool, optional

    Returns
    -------
    operator : scipy.sparse.csr_matrix, shape (n_nodes, n_nodes)
    mass : scipy.sparse.csr_matrix or None
        ``D`` for ``"random_walk"``, ``None`` (identity) otherwise.
    """
    if laplacian == "combinatorial":
        return combinatorial_laplacian(adjacency, name, connected), None
    if laplacian == "normalized":
        return normalized_laplacian(adjacency, name, connected), None
    if laplacian == "random_walk":
        lap = combinatorial_laplacian(adjacency, name, connected)
        return lap, sparse.diags(lap.diagonal()).tocsr()
    raise bad_value("laplacian", laplacian, "is not a graph Laplacian",
                    'pass "combinatorial", "normalized" or "random_walk"')
