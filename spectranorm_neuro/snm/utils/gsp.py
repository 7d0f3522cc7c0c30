"""``snm.utils.gsp``: graph signal processing with the reference's names and return values.

Differences from the native :mod:`spectranorm_neuro.basis` API, kept here so the native one stays
clean:

* ``compute_symmetric_normalized_laplacian_eigenmodes`` and ``compute_random_walk_laplacian_eigenmodes``
  return ``num_eigenvalues + 1`` modes (one mode per row), as the reference does; the random-walk
  one also returns the node degrees (its mass matrix is ``diag(degrees)``).
* :func:`compute_symmetric_normalized_laplacian_eigenmodes_amg_lobpcg` uses
  :func:`scipy.sparse.linalg.lobpcg` preconditioned, as the reference does, by ``amg_cycles``
  V-cycles of pyamg's smoothed-aggregation multigrid on the Laplacian when pyamg is installed
  (optional: ``pip install spectranorm-neuro[amg]``); without pyamg the preconditioner is an
  incomplete LU factorization of ``L + 1e-3 I`` (scipy), applied ``amg_cycles`` times per call.
* :class:`EigenmodeBasis`: ``reduce`` works in place by default; ``save(filepath, compress=0)``
  writes this package's safe format (``compress`` is accepted for compatibility; the file is
  uncompressed so that it can be memory-mapped); ``load(filepath, mmap_mode="r")`` reads this
  package's files and, through a restricted unpickler, files saved by the reference.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg

from ...basis import EigenmodeBasis as _NativeBasis
from ...basis import (
    combinatorial_laplacian,
    compute_combinatorial_laplacian_eigenmodes,
    laplacian_eigenmodes,
    normalized_laplacian,
)
from ...basis.solvers import check_k, fix_signs
from ...exceptions import bad_value

__all__ = [
    "EigenmodeBasis",
    "combinatorial_laplacian",
    "compute_combinatorial_laplacian_eigenmodes",
    "compute_random_walk_laplacian_eigenmodes",
    "compute_symmetric_normalized_laplacian_eigenmodes",
    "compute_symmetric_normalized_laplacian_eigenmodes_amg_lobpcg",
    "convert_adjacency_to_transition_matrix",
    "make_csr_matrix",
    "normalized_laplacian",
    "perform_symmetric_normalization",
]


def make_csr_matrix(matrix) -> sparse.csr_matrix:
    """``matrix`` (dense or any sparse format) as a CSR matrix."""
    return matrix.tocsr() if sparse.issparse(matrix) else sparse.csr_matrix(np.asarray(matrix))


def _degrees(adjacency: sparse.csr_matrix, argument: str = "adjacency_matrix") -> np.ndarray:
    d = np.asarray(adjacency.sum(axis=1)).ravel().astype(np.float64)
    if np.any(d <= 0):
        raise bad_value(argument, f"matrix with {int(np.sum(d <= 0))} isolated node(s)",
                        "has nodes of zero degree", "remove isolated nodes or connect them")
    return d


def perform_symmetric_normalization(adjacency_matrix) -> sparse.csr_matrix:
    """``D^-1/2 A D^-1/2`` of an adjacency matrix (n_nodes, n_nodes)."""
    a = make_csr_matrix(adjacency_matrix)
    s = sparse.diags(1.0 / np.sqrt(_degrees(a)))
    return sparse.csr_matrix(s @ a @ s)


def convert_adjacency_to_transition_matrix(adjacency_matrix) -> sparse.csr_matrix:
    """Random-walk transition matrix ``D^-1 A`` (rows sum to 1)."""
    a = make_csr_matrix(adjacency_matrix)
    return sparse.csr_matrix(sparse.diags(1.0 / _degrees(a)) @ a)


def _symmetrized(adjacency_matrix):
    """``(A + A.T) / 2`` as the reference does; anything not square is left to the engine's checks to name."""
    if np.ndim(adjacency_matrix) != 2 or np.shape(adjacency_matrix)[0] != np.shape(adjacency_matrix)[1]:
        return adjacency_matrix
    a = make_csr_matrix(adjacency_matrix).astype(np.float64)
    return sparse.csr_matrix((a + a.T) * 0.5)


def compute_symmetric_normalized_laplacian_eigenmodes(adjacency_matrix, num_eigenvalues: int = 100
                                                      ) -> tuple[np.ndarray, np.ndarray]:
    """Smallest ``num_eigenvalues + 1`` eigenpairs of ``I - D^-1/2 A D^-1/2``.

    The adjacency is symmetrized as ``(A + A.T) / 2`` first.

    Returns
    -------
    eigenvalues : numpy.ndarray, shape (num_eigenvalues + 1,)
        Ascending.
    eigenvectors : numpy.ndarray, shape (num_eigenvalues + 1, n_nodes)
        One orthonormal mode per row (``EigenmodeBasis(vals[:k], vecs.T[:, :k])``).
    """
    evals, evecs, _ = laplacian_eigenmodes(_symmetrized(adjacency_matrix), int(num_eigenvalues) + 1, "normalized")
    return evals, np.ascontiguousarray(evecs.T)


def compute_random_walk_laplacian_eigenmodes(adjacency_matrix, num_eigenvalues: int = 100
                                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smallest ``num_eigenvalues + 1`` eigenpairs of ``(D - A) phi = lambda D phi``.

    Returns
    -------
    eigenvalues : numpy.ndarray, shape (num_eigenvalues + 1,)
    eigenvectors : numpy.ndarray, shape (num_eigenvalues + 1, n_nodes)
        ``D``-orthonormal rows: a basis on them needs ``mass_matrix=sparse.diags(degrees)``.
    degrees : numpy.ndarray, shape (n_nodes,)
    """
    a = _symmetrized(adjacency_matrix)
    evals, evecs, mass = laplacian_eigenmodes(a, int(num_eigenvalues) + 1, "random_walk")
    return evals, np.ascontiguousarray(evecs.T), mass.diagonal().copy()


def _load_pyamg():
    """Return pyamg if it is installed, else ``None`` (it is an optional dependency: the ``amg`` extra)."""
    try:
        import pyamg
    except ImportError:
        return None
    return pyamg


def _amg_preconditioner(lap: sparse.csr_matrix, amg_cycles: int, pyamg) -> splinalg.LinearOperator:
    """``amg_cycles`` smoothed-aggregation V-cycles on ``lap``, as a linear operator (n, n)."""
    hierarchy = pyamg.smoothed_aggregation_solver(lap)

    def apply(x):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            return hierarchy.solve(x, cycle="V", maxiter=int(amg_cycles), tol=1e-8)
        return np.column_stack([hierarchy.solve(col, cycle="V", maxiter=int(amg_cycles), tol=1e-8)
                                for col in x.T])

    return splinalg.LinearOperator(lap.shape, matvec=apply, matmat=apply, dtype=np.float64)


def _ilu_preconditioner(lap: sparse.csr_matrix, amg_cycles: int) -> splinalg.LinearOperator:
    """Incomplete LU of ``lap + 1e-3 I``, refined ``amg_cycles`` times, as a linear operator (n, n)."""
    n = lap.shape[0]
    shifted = (lap + 1e-3 * sparse.identity(n)).tocsr()
    ilu = splinalg.spilu(shifted.tocsc(), drop_tol=1e-5, fill_factor=20)

    def apply(x):
        z = ilu.solve(x)
        for _ in range(int(amg_cycles) - 1):
            z = z + ilu.solve(x - shifted @ z)
        return z

    return splinalg.LinearOperator((n, n), matvec=apply, matmat=apply, dtype=np.float64)


def compute_symmetric_normalized_laplacian_eigenmodes_amg_lobpcg(adjacency_matrix, num_eigenvalues: int = 100,
                                                                 amg_cycles: int = 1
                                                                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smallest ``num_eigenvalues + 1`` eigenpairs of ``I - D^-1/2 A D^-1/2`` by preconditioned LOBPCG.

    For large graphs where shift-invert is too costly. The preconditioner is ``amg_cycles`` V-cycles
    of pyamg's smoothed-aggregation multigrid when pyamg is installed (the reference's), otherwise
    an incomplete LU of ``L + 1e-3 I`` refined ``amg_cycles`` times (see the module docstring); the
    start block is seeded (42), so results are reproducible.

    Returns
    -------
    eigenvalues : numpy.ndarray, shape (num_eigenvalues + 1,)
    eigenvectors : numpy.ndarray, shape (num_eigenvalues + 1, n_nodes)
    degrees : numpy.ndarray, shape (n_nodes,)
    """
    lap = normalized_laplacian(_symmetrized(adjacency_matrix)).tocsr()  # validates the graph
    n = lap.shape[0]
    k = check_k(int(num_eigenvalues) + 1, n, "num_eigenvalues")
    if isinstance(amg_cycles, bool) or not isinstance(amg_cycles, (int, np.integer)) or amg_cycles < 1:
        raise bad_value("amg_cycles", amg_cycles, "is not a positive integer", "pass e.g. amg_cycles=1")
    degrees = _degrees(make_csr_matrix(_symmetrized(adjacency_matrix)))
    pyamg = _load_pyamg()
    precond = _amg_preconditioner(lap, amg_cycles, pyamg) if pyamg is not None else _ilu_preconditioner(
        lap, amg_cycles)
    x0 = np.random.default_rng(42).random((n, k))
    evals, evecs = splinalg.lobpcg(lap, x0, M=precond, tol=1e-8, maxiter=1000, largest=False)
    order = np.argsort(evals)
    return evals[order], np.ascontiguousarray(fix_signs(evecs[:, order]).T), degrees


class EigenmodeBasis(_NativeBasis):
    """Eigenmode basis with the reference's method names (see the module docstring).

    Parameters
    ----------
    eigenvalues : array_like, shape (n_modes,)
    eigenvectors : array_like, shape (n_features, n_modes)
    mass_matrix : array_like or scipy.sparse matrix, shape (n_features, n_features), optional
    provenance, structures : optional
        As in :class:`spectranorm_neuro.basis.EigenmodeBasis`.
    """

    def inverted_eigenvectors(self) -> np.ndarray:
        """``Psi^-1 = Psi.T M`` of shape (n_modes, n_features) (``Psi.T`` without a mass matrix)."""
        if self.mass_matrix is None:
            return np.asarray(self.eigenvectors).T
        return np.asarray((self.mass_matrix.T @ self.eigenvectors).T)

    def decode(self, encoded_signals, n_modes: int | None = None) -> np.ndarray:
        """Maps ``encoded_signals @ Psi.T`` (n_signals, n_features) from (n_signals, >= n_modes) coefficients."""
        arr = np.asarray(encoded_signals, dtype=float)
        k = self.n_modes if n_modes is None else int(n_modes)
        if arr.shape[-1] < k:
            raise bad_value("encoded_signals", f"array of shape {arr.shape}", f"has fewer than {k} modes",
                            "pass at least n_modes coefficients per signal, or a smaller n_modes")
        return super().decode(arr[..., :k], n_modes=k)

    def reduce(self, n_modes: int, *, inplace: bool = True) -> EigenmodeBasis:
        """Keep the first ``n_modes`` modes: in place (default, as the reference) or in a new basis."""
        reduced = super().reduce(n_modes)
        if not inplace:
            return reduced
        self.eigenvalues, self.eigenvectors = reduced.eigenvalues, reduced.eigenvectors
        self.provenance = reduced.provenance
        return self

    def save(self, filepath, compress: int = 0, *, overwrite: bool = False):
        """Write the basis in this package's safe format (``compress`` accepted, not used: see the module)."""
        return super().save(filepath, overwrite=overwrite)

    @classmethod
    def load(cls, filepath, mmap_mode: str | None = "r", *, verify: bool = True) -> EigenmodeBasis:
        """Read a basis saved by this package (memory-mapped if ``mmap_mode``) or by the reference.

        A reference file (joblib) is read by the restricted unpickler of
        :mod:`spectranorm_neuro.snm._unpickle`: only arrays and containers are rebuilt, any other
        global is refused and nothing in the file is executed. Convert it once with
        ``spectranorm-neuro convert-upstream`` to load it memory-mapped afterwards.
        """
        from .._upstream import is_upstream_path, upstream_basis_arrays

        if is_upstream_path(filepath):
            data = upstream_basis_arrays(filepath)
            return cls(data["eigenvalues"], data["eigenvectors"], data["mass_matrix"],
                       provenance={"converted_from": "spectranorm 0.1.4"})
        return super().load(filepath, mmap=mmap_mode is not None, verify=verify)
