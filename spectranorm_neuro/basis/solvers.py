"""Eigensolvers for ``L phi = lambda M phi`` and the public Laplacian eigenmode functions.

The sparse path is ARPACK in shift-invert mode (``scipy.sparse.linalg.eigsh(L, k, M,
sigma=sigma)``) with one sparse LU factorization of ``L - sigma M`` and a fixed starting
vector; small problems (or ``k`` a large fraction of ``n``) use LAPACK's dense symmetric
solver. BLAS threads are pinned (``n_threads``) so results and timings do not depend on the
machine's load.

Determinism: the same inputs give bit-identical modes in the same environment (fixed start
vector, pinned threads), and every mode gets a sign convention: its entry of largest magnitude
is positive (within a relative ``1e-7`` of the maximum, the lowest node index wins).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, sparse
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh, splu

from .._util import blas_threads
from ..exceptions import InvalidInputError, bad_value
from .laplacians import laplacian_pair

__all__ = [
    "DENSE_MAX_NODES",
    "DEFAULT_SIGMA",
    "fix_signs",
    "check_k",
    "solve_eigenmodes",
    "laplacian_eigenmodes",
    "compute_combinatorial_laplacian_eigenmodes",
    "compute_symmetric_normalized_laplacian_eigenmodes",
    "compute_random_walk_laplacian_eigenmodes",
]

#: Problems with at most this many nodes are solved densely (exact, and faster).
DENSE_MAX_NODES = 1000
#: Default shift of the shift-invert solver (any negative value targets the smallest eigenvalues of
#: a positive semi-definite problem; this one is lapy's default).
DEFAULT_SIGMA = -0.01
#: Relative tolerance for ties in the sign convention.
SIGN_TIE_RTOL = 1e-7


def fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude entry is positive.

    Entries within a relative ``1e-7`` of the column's largest magnitude count as ties; the one
    with the lowest row index decides.

    Parameters
    ----------
    vectors : numpy.ndarray, shape (n_nodes, n_modes)

    Returns
    -------
    numpy.ndarray, shape (n_nodes, n_modes)
        A copy with flipped columns.
    """
    mag = np.abs(vectors)
    top = mag.max(axis=0)
    first = np.argmax(mag >= top * (1.0 - SIGN_TIE_RTOL), axis=0)
    signs = np.sign(vectors[first, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


def check_k(k, n_nodes: int, name: str = "n_modes") -> int:
    """Check a requested number of modes against the nodes: ``1 <= k <= n_nodes - 1``.

    Returns
    -------
    int
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise bad_value(name, k, "is not an integer", f"pass an integer between 1 and {n_nodes - 1}")
    if k < 1 or k > n_nodes - 1:
        raise bad_value(name, int(k), f"asks for more modes than the graph's {n_nodes} nodes - 1 allow"
                        if k > 0 else "is not positive",
                        f"pass {name} between 1 and {n_nodes - 1} (or use a finer graph)")
    return int(k)


def _ncv(k: int, n: int) -> int:
    """Lanczos basis size: measured fastest around 1.5 k on fsaverage5 (ARPACK default is 2 k + 1)."""
    return int(min(n, max(2 * k + 1, 20) if k < 40 else k + k // 2 + 10))


def solve_eigenmodes(operator: sparse.spmatrix, mass: sparse.spmatrix | None, k: int, *,
                     sigma: float | None = None, n_threads: int | None = 1,
                     dense_max_nodes: int = DENSE_MAX_NODES) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest eigenpairs of ``operator @ phi = lambda * mass @ phi``.

    Parameters
    ----------
    operator : scipy.sparse matrix, shape (n, n)
        Symmetric positive semi-definite (Laplacian or FEM stiffness).
    mass : scipy.sparse matrix, shape (n, n), optional
        Symmetric positive definite; ``None`` for the standard problem.
    k : int
        Number of modes, ``1 <= k <= n - 1``.
    sigma : float, optional
        Negative shift for shift-invert (default :data:`DEFAULT_SIGMA`).
    n_threads : int or None, optional
        BLAS threads during the solve (``None``: leave as is).
    dense_max_nodes : int, optional
        Use the dense solver up to this many nodes (also whenever ``3 k >= n``).

    Returns
    -------
    eigenvalues : numpy.ndarray, shape (k,)
        Ascending.
    eigenvectors : numpy.ndarray, shape (n, k)
        ``mass``-orthonormal columns (orthonormal without ``mass``), sign convention applied.
    """
    n = operator.shape[0]
    k = check_k(k, n)
    sigma = DEFAULT_SIGMA if sigma is None else float(sigma)
    if not sigma < 0:
        raise bad_value("sigma", sigma, "is not negative", "pass a small negative shift such as -0.01",
                        InvalidInputError)
    with blas_threads(n_threads):
        if n <= dense_max_nodes or 3 * k >= n:
            a = operator.toarray()
            b = None if mass is None else mass.toarray()
            evals, evecs = linalg.eigh(a, b, subset_by_index=[0, k - 1])
        else:
            op = sparse.csc_matrix(operator, dtype=np.float64)
            shifted = op - sigma * (sparse.identity(n, format="csc") if mass is None
                                    else sparse.csc_matrix(mass, dtype=np.float64))
            lu = splu(sparse.csc_matrix(shifted))
            op_inv = LinearOperator((n, n), matvec=lu.solve, dtype=np.float64)
            v0 = np.random.default_rng(0).uniform(-1.0, 1.0, n)
            try:
                evals, evecs = eigsh(op, k, M=mass, sigma=sigma, which="LM", OPinv=op_inv, v0=v0,
                                     ncv=_ncv(k, n), tol=0.0)
            except ArpackNoConvergence as exc:
                raise bad_value("n_modes", k, f"did not converge in ARPACK ({exc})",
                                "retry with another sigma (e.g. -0.1) or fewer modes",
                                InvalidInputError) from None
            order = np.argsort(evals, kind="stable")
            evals, evecs = evals[order], evecs[:, order]
    return np.ascontiguousarray(evals), np.ascontiguousarray(fix_signs(evecs))


def laplacian_eigenmodes(adjacency_matrix, num_eigenvalues: int = 100, laplacian: str = "normalized", *,
                         sigma: float | None = None, n_threads: int | None = 1
                         ) -> tuple[np.ndarray, np.ndarray, sparse.csr_matrix | None]:
    """Eigenmodes of a graph Laplacian, nodes along the rows.

    Parameters
    ----------
    adjacency_matrix : array_like or scipy.sparse matrix, shape (n_nodes, n_nodes)
        Symmetric, non-negative, connected, no isolated nodes.
    num_eigenvalues : int, optional
        Number of modes, at most ``n_nodes - 1``.
    laplacian : {"combinatorial", "normalized", "random_walk"}, optional
    sigma, n_threads : see :func:`solve_eigenmodes`

    Returns
    -------
    eigenvalues : numpy.ndarray, shape (k,)
    eigenvectors : numpy.ndarray, shape (n_nodes, k)
    mass : scipy.sparse.csr_matrix or None
        The degree matrix for ``"random_walk"``, else ``None``.
    """
    op, mass = laplacian_pair(adjacency_matrix, laplacian, "adjacency_matrix")
    check_k(num_eigenvalues, op.shape[0], "num_eigenvalues")
    evals, evecs = solve_eigenmodes(op, mass, num_eigenvalues, sigma=sigma, n_threads=n_threads)
    return evals, evecs, mass


def compute_symmetric_normalized_laplacian_eigenmodes(adjacency_matrix, num_eigenvalues: int = 100, *,
                                                      sigma: float | None = None, n_threads: int | None = 1
                                                      ) -> tuple[np.ndarray, np.ndarray]:
    """Smallest eigenpairs of ``I - D^-1/2 A D^-1/2`` (SpectraNorm layout).

    Parameters
    ----------
    adjacency_matrix : array_like or scipy.sparse matrix, shape (n_nodes, n_nodes)
    num_eigenvalues : int, optional
        Number of modes ``k`` (at most ``n_nodes - 1``).
    sigma, n_threads : see :func:`solve_eigenmodes`

    Returns
    -------
    eigenvalues : numpy.ndarray, shape (k,)
        Ascending, in ``[0, 2]``.
    eigenvectors : numpy.ndarray, shape (k, n_nodes)
        One mode per **row** (use ``EigenmodeBasis(eigenvalues, eigenvectors.T)``).

    Examples
    --------
    >>> from spectranorm_neuro.graphs import lattice_graph
    >>> vals, vecs = compute_symmetric_normalized_laplacian_eigenmodes(lattice_graph((10, 10)).adjacency, 5)
    >>> vecs.shape, bool(abs(vals[0]) < 1e-10)
    ((5, 100), True)
    """
    evals, evecs, _ = laplacian_eigenmodes(adjacency_matrix, num_eigenvalues, "normalized",
                                           sigma=sigma, n_threads=n_threads)
    return evals, np.ascontiguousarray(evecs.T)


def compute_combinatorial_laplacian_eigenmodes(adjacency_matrix, num_eigenvalues: int = 100, *,
                                               sigma: float | None = None, n_threads: int | None = 1
                                               ) -> tuple[np.ndarray, np.ndarray]:
    """Smallest eigenpairs of ``D - A`` (SpectraNorm layout: eigenvectors (k, n_nodes)).

    See :func:`compute_symmetric_normalized_laplacian_eigenmodes` for the parameters.

    Returns
    -------
    eigenvalues : numpy.ndarray, shape (k,)
    eigenvectors : numpy.ndarray, shape (k, n_nodes)
        Orthonormal rows.
    """
    evals, evecs, _ = laplacian_eigenmodes(adjacency_matrix, num_eigenvalues, "combinatorial",
                                           sigma=sigma, n_threads=n_threads)
    return evals, np.ascontiguousarray(evecs.T)


def compute_random_walk_laplacian_eigenmodes(adjacency_matrix, num_eigenvalues: int = 100, *,
                                             sigma: float | None = None, n_threads: int | None = 1
                                             ) -> tuple[np.ndarray, np.ndarray]:
    """Smallest eigenpairs of ``(D - A) phi = lambda D phi`` (SpectraNorm layout).

    The eigenvalues equal the normalized Laplacian's; the modes are ``D``-orthonormal
    (``phi.T @ D @ phi = I``), so a basis built on them needs ``mass_matrix = D``.

    Returns
    -------
    eigenvalues : numpy.ndarray, shape (k,)
    eigenvectors : numpy.ndarray, shape (k, n_nodes)
    """
    evals, evecs, _ = laplacian_eigenmodes(adjacency_matrix, num_eigenvalues, "random_walk",
                                           sigma=sigma, n_threads=n_threads)
    return evals, np.ascontiguousarray(evecs.T)
