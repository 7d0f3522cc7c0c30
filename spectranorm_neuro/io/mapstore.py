"""A cohort's maps cached once on disk (float32 ``.npy``) and read a block at a time.

:func:`store_cohort` reads every subject's map once (chunks through the package's one parallel
runner, optionally encoding them as :func:`~spectranorm_neuro.io.encode_cohort` does) into a
:class:`MapStore`, which behaves as a read-only (n_subjects, n_features) array: fitting the
residual part of a spectral model passes over the training maps several times without re-reading
every file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._util import check_n_modes, run_tasks
from .cohort import Cohort, CohortMaps, _check_chunk, _check_same_structures, _read_rows

__all__ = ["MapStore", "store_cohort"]


class MapStore:
    """A cohort's maps cached in one ``.npy`` file (float32), read a block at a time.

    Behaves as a read-only (n_subjects, n_features) array for rows and column slices
    (``store[a:b]``, ``store[:, a:b]``, ``store[rows]``); each access maps the file, copies the
    block to float64 and unmaps it, so the process holds only the block. :meth:`subset` gives a
    store over some of the rows (e.g. the training subjects).

    Attributes
    ----------
    coefficients : numpy.ndarray, shape (n_subjects, n_modes) or None
        Spectral coefficients of the maps when :func:`store_cohort` was given a basis.
    names : numpy.ndarray of str, shape (n_subjects,) or None
        The file(s) of each map, for messages.
    """

    ndim = 2

    def __init__(self, path: str | os.PathLike, names=None, rows=None, coefficients=None):
        self.path = Path(path)
        n, n_feat = np.load(self.path, mmap_mode="r").shape
        self.rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        self.shape = (int(self.rows.size), int(n_feat))
        self.names = None if names is None else np.asarray(names, dtype=object)
        self.coefficients = coefficients

    def __len__(self) -> int:
        return self.shape[0]

    def subset(self, rows) -> MapStore:
        """The store restricted to some rows (positions or boolean mask)."""
        rows = np.arange(self.shape[0])[rows]
        return MapStore(self.path, None if self.names is None else self.names[rows], self.rows[rows],
                        None if self.coefficients is None else self.coefficients[rows])

    def __getitem__(self, index) -> np.ndarray:
        rows, cols = index if isinstance(index, tuple) else (index, slice(None))
        sel = self.rows[rows]
        arr = np.load(self.path, mmap_mode="r")
        try:
            if isinstance(rows, slice) and sel.size and np.all(np.diff(sel) == 1):
                block = arr[int(sel[0]):int(sel[-1]) + 1, cols]
            else:
                block = arr[sel, cols]
            return np.array(block, dtype=np.float64)
        finally:
            del arr


def _read_chunk(rows, structures, map_index, basis, n_modes):
    data = _read_rows(rows, structures, map_index)
    if basis is None:
        return data.astype(np.float32), None
    return data.astype(np.float32), basis.encode(data, n_modes=n_modes)  # run_tasks pins BLAS to one thread


def store_cohort(cohort: Cohort, path: str | os.PathLike, basis: Any = None, n_modes: int | None = None,
                 chunk_size: int = 64, n_jobs: int | None = 1, progress: bool = False) -> MapStore:
    """Read every subject's map once into a float32 ``.npy`` file (chunk by chunk) and return it as a :class:`MapStore`.

    Parameters
    ----------
    cohort : Cohort
    path : path-like
        The ``.npy`` file to write (a temporary file of the caller; overwritten).
    basis : EigenmodeBasis, optional
        Also encode the maps as they are read (``store.coefficients``, as :func:`encode_cohort`).
    n_modes : int, optional
        Leading modes to encode with (all by default).
    chunk_size : int, optional
        Subjects per read task.
    n_jobs : int or None, optional
        joblib workers reading chunks.
    progress : bool, optional

    Returns
    -------
    MapStore
    """
    chunk_size = _check_chunk(chunk_size)
    n = cohort.n_subjects
    if basis is not None:
        _check_same_structures(getattr(basis, "structures", None), cohort.structures)
        n_modes = check_n_modes(n_modes, basis.n_modes)
    out = np.lib.format.open_memmap(Path(path), mode="w+", dtype=np.float32, shape=(n, cohort.n_features))
    coeffs = None if basis is None else np.empty((n, n_modes))
    rows = cohort._rows(slice(None))
    bounds = [(a, min(a + chunk_size, n)) for a in range(0, n, chunk_size)]
    tasks = ((rows[a:b], cohort.structures, cohort.map_index, basis, n_modes) for a, b in bounds)
    results = run_tasks(_read_chunk, tasks, n_jobs, total=n, progress=progress, desc="reading maps", unit="subject",
                        weights=(b - a for a, b in bounds))
    for (a, b), (block, c) in zip(bounds, results):
        out[a:b] = block
        if coeffs is not None:
            coeffs[a:b] = c
    out.flush()
    del out
    return MapStore(path, CohortMaps(cohort).names, coefficients=coeffs)
