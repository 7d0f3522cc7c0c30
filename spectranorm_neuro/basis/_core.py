"""The :class:`EigenmodeBasis` class: encode/decode operators, structures, persistence hooks.

An :class:`EigenmodeBasis` holds ``k`` eigenmodes of a graph Laplacian or of a Laplace–Beltrami
operator sampled on ``n_features`` nodes (pixels, voxels, vertices or parcels), optionally with the
mass matrix ``M`` the modes are orthonormal against (``Psi.T @ M @ Psi = I``).

Conventions
-----------
* ``eigenvectors`` has shape ``(n_features, n_modes)``; ``eigenvalues`` shape ``(n_modes,)``,
  ascending.
* A *signal* ``x`` (one map) is encoded as ``c = Psi.T @ M @ x`` (``M = I`` without a mass
  matrix) and decoded as ``x_hat = Psi @ c``.
* A *query* ``w`` is a linear functional of a map (one vertex, a smoothing kernel, a parcel mean):
  its value on a map is ``w @ x``. Because ``x_hat = Psi @ c``, the value is ``(Psi.T @ w) @ c``,
  so queries are encoded **without** the mass matrix (:meth:`EigenmodeBasis.encode_queries`).
* Features are the concatenated kept nodes of ``structures`` (see
  :mod:`spectranorm_neuro.graphs`); :meth:`EigenmodeBasis.to_full` puts them back on the full
  vertex/voxel sets with NaN at masked nodes.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import sparse

from .._util import as_finite_array, check_n_modes
from ..exceptions import IncompatibleModelError, ShapeMismatchError, bad_value
from ..graphs._graph import Structure
from ..graphs._ops import structure_offsets

__all__ = ["EigenmodeBasis"]


def _default_structures(n: int) -> tuple[Structure, ...]:
    return (Structure("Features", "lattice", n, np.arange(n)),)


def _check_structures(structures, n: int) -> tuple[Structure, ...]:
    if structures is None:
        return _default_structures(n)
    if isinstance(structures, Structure):
        structures = (structures,)
    structures = tuple(structures)
    if not structures or not all(isinstance(s, Structure) for s in structures):
        raise bad_value("structures", structures, "is not a non-empty tuple of graphs.Structure",
                        "pass the structures of the graph the basis was built on (or None)")
    total = sum(s.n_features for s in structures)
    if total != n:
        raise bad_value("structures", [(s.name, s.n_features) for s in structures],
                        f"cover {total} features but the eigenvectors have {n} rows",
                        "pass the structures of the graph the eigenvectors were computed on",
                        ShapeMismatchError)
    names = [s.name for s in structures]
    if len(set(names)) != len(names):
        raise bad_value("structures", names, "repeat a structure name", "give each structure its own name")
    return structures


class EigenmodeBasis:
    """A truncated eigenmode basis with encode/decode operators.

    Parameters
    ----------
    eigenvalues : array_like, shape (n_modes,)
        Eigenvalues, ascending.
    eigenvectors : array_like, shape (n_features, n_modes)
        Eigenmodes as columns (a :class:`numpy.memmap` is kept as is, unchecked).
    mass_matrix : scipy.sparse matrix, shape (n_features, n_features), optional
        Mass matrix the modes are orthonormal against (FEM and random-walk bases). ``None`` means
        the identity.
    provenance : dict, optional
        JSON-serialisable description of how the basis was made (adapter, parameters, checksums).
    structures : tuple of graphs.Structure, optional
        Blocks whose kept nodes, concatenated, are the features. Default: one
        ``Structure("Features", "lattice", n_features, arange(n_features))``.

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

    def __init__(self, eigenvalues, eigenvectors, mass_matrix=None, provenance=None, structures=None):
        evals = as_finite_array(eigenvalues, "eigenvalues", ndim=1)
        evecs = np.asarray(eigenvectors) if not isinstance(eigenvectors, np.memmap) else eigenvectors
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
        self._structures = _check_structures(structures, evecs.shape[0])

    # ------------------------------------------------------------------ properties
    @property
    def n_modes(self) -> int:
        """Number of modes ``k``."""
        return int(self.eigenvectors.shape[1])

    @property
    def n_features(self) -> int:
        """Number of nodes (pixels, voxels, vertices, parcels)."""
        return int(self.eigenvectors.shape[0])

    @property
    def structures(self) -> tuple[Structure, ...]:
        """The blocks of features (hemispheres, volume, lattice, parcels), in feature order."""
        return self._structures

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
                          self.mass_matrix, prov, self._structures)

    # ------------------------------------------------------------------ full node sets
    def to_full(self, values) -> dict[str, np.ndarray]:
        """Put feature values back on each structure's full node set.

        Parameters
        ----------
        values : array_like, shape (..., n_features)
            Values over the features (maps, decoded signals, eigenvectors transposed ...).

        Returns
        -------
        dict of str to numpy.ndarray, each of shape (..., n_total)
            One array per structure name, NaN at nodes not in ``Structure.index`` (masked
            vertices, voxels outside the mask).
        """
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim < 1 or arr.shape[-1] != self.n_features:
            raise bad_value("values", f"array of shape {arr.shape}",
                            f"does not end with the basis' {self.n_features} features",
                            "pass (..., n_features) values over the basis' nodes", ShapeMismatchError)
        offsets = structure_offsets(self._structures)
        return {struct.name: struct.to_full(arr[..., offsets[s]:offsets[s + 1]])
                for s, struct in enumerate(self._structures)}

    def from_full(self, full) -> np.ndarray:
        """Select the features from values on the structures' full node sets (inverse of :meth:`to_full`).

        Parameters
        ----------
        full : dict of str to array_like, or array_like
            ``{structure name: (..., n_total)}``; with a single structure a plain (..., n_total)
            array is accepted.

        Returns
        -------
        numpy.ndarray, shape (..., n_features)
        """
        if not isinstance(full, dict):
            if len(self._structures) != 1:
                raise bad_value("full", type(full).__name__,
                                f"is one array but the basis has {len(self._structures)} structures "
                                f"({', '.join(s.name for s in self._structures)})",
                                "pass a dict {structure name: values}")
            full = {self._structures[0].name: full}
        parts = []
        for struct in self._structures:
            if struct.name not in full:
                raise bad_value("full", sorted(full), f"has no values for structure {struct.name!r}",
                                f"pass a dict with the keys {[s.name for s in self._structures]}")
            arr = np.asarray(full[struct.name], dtype=np.float64)
            if arr.ndim < 1 or arr.shape[-1] != struct.n_total:
                raise bad_value("full", f"{struct.name} array of shape {arr.shape}",
                                f"does not end with the {struct.n_total} nodes of {struct.name}",
                                "pass values over the full vertex/voxel set the basis was built on",
                                IncompatibleModelError)
            parts.append(arr[..., struct.index])
        return np.concatenate(parts, axis=-1)

    # ------------------------------------------------------------------ construction / persistence
    @classmethod
    def from_graph(cls, graph, n_modes: int, laplacian: str = "auto", *, sigma: float | None = None,
                   n_threads: int | None = 1) -> EigenmodeBasis:
        """Eigenmode basis of a :class:`~spectranorm_neuro.graphs.Graph`.

        Parameters
        ----------
        graph : graphs.Graph
            From any adapter (lattice, NIfTI mask, mesh, parcellation).
        n_modes : int
            Number of modes (at most ``n_features - 1``).
        laplacian : {"auto", "lbo", "combinatorial", "normalized", "random_walk"}, optional
            ``"auto"``: ``"lbo"`` (FEM stiffness/mass) when the graph has them, else
            ``"normalized"``. See :mod:`spectranorm_neuro.basis.laplacians`.
        sigma : float, optional
            Shift for the shift-invert solver (negative; default -0.01).
        n_threads : int or None, optional
            BLAS threads during the solve.

        Returns
        -------
        EigenmodeBasis
            With the graph's structures, a mass matrix for ``"lbo"`` (FEM mass) and
            ``"random_walk"`` (degrees), and provenance (graph provenance, laplacian, n_modes).

        Notes
        -----
        A graph made of several structures that no edge joins (e.g. two hemispheres) is solved
        block by block; the modes of each block (zero elsewhere) are merged in ascending
        eigenvalue order, ties in structure order.
        """
        from ._build import basis_from_graph

        return basis_from_graph(cls, graph, n_modes, laplacian, sigma=sigma, n_threads=n_threads)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> os.PathLike:
        """Write the basis to one file (uncompressed npz + JSON metadata), atomically.

        See :mod:`spectranorm_neuro.basis.storage` for the format. The extension is free (the
        format is recognised by content).

        Parameters
        ----------
        path : str or path-like
        overwrite : bool, optional
            Replace an existing file.

        Returns
        -------
        pathlib.Path
        """
        from .storage import save_basis

        return save_basis(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = False, verify: bool = True) -> EigenmodeBasis:
        """Read a basis written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
        mmap : bool, optional
            Memory-map the eigenvectors (read-only) instead of reading them into memory.
        verify : bool, optional
            Check the SHA-256 of every array against the metadata.

        Returns
        -------
        EigenmodeBasis

        Raises
        ------
        UnsafeFormatError
            The file is a pickle/joblib file (never loaded: unpickling runs arbitrary code).
        FormatVersionError
            The file was written by a newer format version.
        """
        from .storage import load_basis

        return load_basis(cls, path, mmap=mmap, verify=verify)
