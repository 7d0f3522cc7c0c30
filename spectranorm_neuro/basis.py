"""Eigenmode bases: the spectral coordinate system every model in the package works in.

An :class:`EigenmodeBasis` holds ``k`` eigenmodes of a graph Laplacian or of a Laplace–Beltrami
operator sampled on ``n_features`` nodes (pixels, voxels, vertices or parcels), optionally with the
FEM mass matrix ``M`` the modes are orthonormal against (``Psi.T @ M @ Psi = I``).

Conventions
-----------
* ``eigenvectors`` has shape ``(n_features, n_modes)``; ``eigenvalues`` shape ``(n_modes,)``,
  ascending.
* A *signal* ``x`` (one map) is encoded as ``c = Psi.T @ M @ x`` (``M = I`` without a mass
  matrix) and decoded as ``x_hat = Psi @ c``.
* A *query* ``w`` is a linear functional of a map (one vertex, a smoothing kernel, a parcel mean):
  its value on a map is ``w @ x``. Because ``x_hat = Psi @ c``, the value is ``(Psi.T @ w) @ c``,
  so queries are encoded **without** the mass matrix (:meth:`EigenmodeBasis.encode_queries`).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from ._util import as_finite_array, check_n_modes
from .exceptions import ShapeMismatchError, bad_value

__all__ = ["EigenmodeBasis"]


class EigenmodeBasis:
    """A truncated eigenmode basis with encode/decode operators.

    Parameters
    ----------
    eigenvalues : array_like, shape (n_modes,)
        Eigenvalues, ascending.
    eigenvectors : array_like, shape (n_features, n_modes)
        Eigenmodes as columns.
    mass_matrix : scipy.sparse matrix, shape (n_features, n_features), optional
        Mass matrix the modes are orthonormal against (FEM bases). ``None`` means the identity.
    provenance : dict, optional
        JSON-serialisable description of how the basis was made (adapter, parameters, checksums).

    Examples
    --------
    >>> import numpy as np
    >>> q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(50, 5)))
    >>> basis = EigenmodeBasis(np.arange(5.0), q)
    >>> basis
    EigenmodeBasis(n_modes=5, n_features=50)
    >>> x = q @ np.ones(5)
    >>> np.allclose(basis.decode(basis.encode(x)), x)
    True
    """

    def __init__(self, eigenvalues, eigenvectors, mass_matrix=None, provenance=None):
        evals = as_finite_array(eigenvalues, "eigenvalues", ndim=1)
        evecs = np.asarray(eigenvectors)
        if not isinstance(eigenvectors, np.memmap):
            evecs = as_finite_array(evecs, "eigenvectors", ndim=2)
        if evecs.ndim != 2:
            raise bad_value("eigenvectors", f"array of shape {evecs.shape}", "is not 2-D",
                            "pass an (n_features, n_modes) array", ShapeMismatchError)
        if evecs.shape[1] != evals.shape[0]:
            raise bad_value("eigenvectors", f"array of shape {evecs.shape}",
                            f"has {evecs.shape[1]} columns but there are {evals.shape[0]} eigenvalues",
                            "pass eigenvectors as (n_features, n_modes) columns, e.g. transpose it",
                            ShapeMismatchError)
        if mass_matrix is not None:
            mass_matrix = sparse.csr_matrix(mass_matrix, dtype=np.float64)
            n = evecs.shape[0]
            if mass_matrix.shape != (n, n):
                raise bad_value("mass_matrix", f"matrix of shape {mass_matrix.shape}",
                                f"does not match the {n} features of the eigenvectors",
                                f"pass an ({n}, {n}) sparse mass matrix", ShapeMismatchError)
        self.eigenvalues = evals
        self.eigenvectors = evecs
        self.mass_matrix = mass_matrix
        self.provenance = dict(provenance or {})

    # ------------------------------------------------------------------ properties
    @property
    def n_modes(self) -> int:
        """Number of modes ``k``."""
        return int(self.eigenvectors.shape[1])

    @property
    def n_features(self) -> int:
        """Number of nodes (pixels, voxels, vertices, parcels)."""
        return int(self.eigenvectors.shape[0])

    def __repr__(self) -> str:
        return f"EigenmodeBasis(n_modes={self.n_modes}, n_features={self.n_features})"

    # ------------------------------------------------------------------ operators
    def _signals(self, signals, name: str) -> tuple[np.ndarray, bool]:
        arr = as_finite_array(signals, name, ndim=(1, 2))
        single = arr.ndim == 1
        arr2 = arr[None, :] if single else arr
        if arr2.shape[1] != self.n_features:
            raise bad_value(name, f"array of shape {arr.shape}",
                            f"has {arr2.shape[1]} features but the basis has {self.n_features}",
                            "pass (n_signals, n_features) data sampled on the basis' nodes",
                            ShapeMismatchError)
        return arr2, single

    def encode(self, signals, n_modes: int | None = None) -> np.ndarray:
        """Project signals onto the first ``n_modes`` modes.

        Parameters
        ----------
        signals : array_like, shape (n_signals, n_features) or (n_features,)
            Maps sampled on the basis' nodes.
        n_modes : int, optional
            Number of leading modes to use (all by default).

        Returns
        -------
        numpy.ndarray, shape (n_signals, n_modes) or (n_modes,)
            Spectral coefficients ``Psi.T @ M @ x`` for each signal.
        """
        k = check_n_modes(n_modes, self.n_modes)
        arr, single = self._signals(signals, "signals")
        if self.mass_matrix is not None:
            arr = np.asarray((self.mass_matrix @ arr.T).T)
        out = arr @ self.eigenvectors[:, :k]
        return out[0] if single else out

    def encode_queries(self, queries, n_modes: int | None = None) -> np.ndarray:
        """Encode linear queries (weights over nodes) for the spectral models.

        Parameters
        ----------
        queries : array_like or sparse matrix, shape (n_queries, n_features) or (n_features,)
            Each row holds the weights of one query; its value on a map ``x`` is ``w @ x``.
        n_modes : int, optional
            Number of leading modes to use (all by default).

        Returns
        -------
        numpy.ndarray, shape (n_modes, n_queries)
            Encoded queries ``Psi.T @ w`` as columns, ready for ``SpectralNormativeModel.predict``.
        """
        k = check_n_modes(n_modes, self.n_modes)
        if sparse.issparse(queries):
            q = sparse.csr_matrix(queries, dtype=np.float64)
            if q.ndim != 2 or q.shape[1] != self.n_features:
                raise bad_value("queries", f"sparse matrix of shape {q.shape}",
                                f"does not have {self.n_features} columns",
                                "pass (n_queries, n_features) weights", ShapeMismatchError)
            return np.asarray((q @ self.eigenvectors[:, :k]).T)
        arr, _ = self._signals(queries, "queries")
        return np.ascontiguousarray((arr @ self.eigenvectors[:, :k]).T)

    def decode(self, coeffs, n_modes: int | None = None) -> np.ndarray:
        """Reconstruct maps from spectral coefficients.

        Parameters
        ----------
        coeffs : array_like, shape (n_signals, k) or (k,)
            Coefficients of the first ``k`` modes.
        n_modes : int, optional
            Use only the first ``n_modes`` coefficients (default: all columns of ``coeffs``).

        Returns
        -------
        numpy.ndarray, shape (n_signals, n_features) or (n_features,)
        """
        arr = as_finite_array(coeffs, "coeffs", ndim=(1, 2))
        single = arr.ndim == 1
        arr = arr[None, :] if single else arr
        if arr.shape[1] > self.n_modes:
            raise bad_value("coeffs", f"array of shape {arr.shape}",
                            f"has more coefficients than the {self.n_modes} modes of the basis",
                            f"pass at most {self.n_modes} coefficients per signal", ShapeMismatchError)
        k = check_n_modes(n_modes, arr.shape[1]) if n_modes is not None else arr.shape[1]
        out = arr[:, :k] @ self.eigenvectors[:, :k].T
        return out[0] if single else out

    def reduce(self, n_modes: int) -> EigenmodeBasis:
        """Return a new basis holding only the first ``n_modes`` modes."""
        k = check_n_modes(n_modes, self.n_modes)
        prov = dict(self.provenance)
        prov["reduced_from_n_modes"] = self.n_modes
        return type(self)(self.eigenvalues[:k].copy(), np.array(self.eigenvectors[:, :k]),
                          self.mass_matrix, prov)
