"""A restricted reader of the reference package's joblib files (SpectraNorm 0.1.4).

The reference saves bases and models with :func:`joblib.dump`: a pickle stream in which every
numpy array is a ``joblib.numpy_pickle.NumpyArrayWrapper`` record followed by the array's raw
bytes. Loading such a file with :mod:`pickle` or :func:`joblib.load` can run arbitrary code, so it
is read here by :class:`RestrictedUnpickler`, a pure-Python unpickler whose ``find_class`` resolves
only

* numpy arrays, dtypes and scalars (and joblib's array wrapper, whose bytes are read here),
* builtin containers (``dict``, ``list``, ``tuple``, ``set``, ``frozenset``, ``slice``),
* ``scipy.sparse`` CSR/CSC/COO matrices (for a basis' mass matrix),
* the reference's data classes (``SplineSpec``, ``CovariateSpec``, ``NormativeModelSpec``,
  ``CovarianceModelSpec``), rebuilt as :class:`UpstreamRecord` (a plain attribute record;
  none of the reference's code is imported or run).

Any other global (``os.system``, ``builtins.eval``, a class of another package ...) raises
:class:`~spectranorm_neuro.exceptions.UnsafeFormatError` naming it, before anything is called.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import sparse

from ..exceptions import FileFormatError, UnsafeFormatError, bad_value

__all__ = ["UPSTREAM_CLASSES", "RestrictedUnpickler", "UpstreamRecord", "read_upstream_joblib", "to_plain"]

#: Data classes of the reference rebuilt as :class:`UpstreamRecord`.
UPSTREAM_CLASSES = ("SplineSpec", "CovariateSpec", "NormativeModelSpec", "CovarianceModelSpec")
_UPSTREAM_MODULES = ("spectranorm.snm",)
_SPARSE = {"csr_matrix": sparse.csr_matrix, "csc_matrix": sparse.csc_matrix, "coo_matrix": sparse.coo_matrix,
           "csr_array": sparse.csr_array, "csc_array": sparse.csc_array, "coo_array": sparse.coo_array}
_BUILTINS = {"dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset, "slice": slice,
             "complex": complex, "bytearray": bytearray}
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric", "numpy.core.memmap", "numpy._core.memmap")


class UpstreamRecord:
    """Plain attribute record standing for one of the reference's data classes.

    Attributes
    ----------
    upstream_class : str
        Name of the reference class (e.g. ``"CovariateSpec"``).
    fields : dict
        Its pickled attributes (numbers, strings, arrays, lists, dicts, other records).
    """

    upstream_class = "?"

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise UnsafeFormatError(f"{self.upstream_class}: constructor arguments are not expected in a "
                                    "reference file. Fix: convert files written by SpectraNorm 0.1.4 only.")

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise UnsafeFormatError(f"{self.upstream_class}: unexpected pickled state {type(state).__name__}.")
        self.__dict__["fields"] = dict(state)

    def __getattr__(self, name):
        fields = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"UpstreamRecord({self.upstream_class}, fields={sorted(self.__dict__.get('fields', {}))})"


def _record_class(name: str) -> type:
    return type(f"Upstream{name}", (UpstreamRecord,), {"upstream_class": name})


_RECORDS = {name: _record_class(name) for name in UPSTREAM_CLASSES}


class _ArrayWrapper:
    """Stand-in for ``joblib.numpy_pickle.NumpyArrayWrapper``: its state says how to read the bytes."""

    def __setstate__(self, state):
        self.state = dict(state)


class _PlainArray:
    """Stand-in for ``numpy.memmap`` in a pickle: only ever a marker (arrays are read as plain arrays)."""

    def __init__(self, *args, **kwargs):
        raise UnsafeFormatError("numpy.memmap may not be constructed from a reference file (it opens files).")


def _reconstruct(subtype, shape, dtype):
    """Safe ``numpy.core.multiarray._reconstruct``: only plain ndarrays."""
    if subtype is not np.ndarray and subtype is not _PlainArray:
        raise UnsafeFormatError(f"array subtype {subtype!r} is not allowed in a reference file.")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _scalar(dtype, data=None):
    """Safe ``numpy.core.multiarray.scalar``: numbers and strings from their bytes, never objects."""
    dtype = np.dtype(dtype)
    if dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise UnsafeFormatError("a numpy object scalar is not allowed in a reference file.")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _reconstructor(cls, base, state=None):
    """Safe ``copyreg._reconstructor``: only for the stand-in classes."""
    if not (isinstance(cls, type) and issubclass(cls, UpstreamRecord)) or base is not object or state is not None:
        raise UnsafeFormatError(f"copyreg._reconstructor of {cls!r} is not allowed in a reference file.")
    return cls.__new__(cls)


def _newobj(cls, *args):
    if isinstance(cls, type) and issubclass(cls, (UpstreamRecord, _ArrayWrapper)) and not args:
        return cls.__new__(cls)
    raise UnsafeFormatError(f"copyreg.__newobj__ of {cls!r} is not allowed in a reference file.")


class RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler that resolves only an allow-list of globals (see the module docstring).

    Parameters
    ----------
    file : binary file object
        The (decompressed) joblib stream.
    source : str
        Name of the file, for error messages.
    """

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, source: str = "<stream>"):
        super().__init__(file)
        self._file = file
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` from the allow-list; refuse anything else."""
        if module == "builtins" and name in _BUILTINS:
            return _BUILTINS[name]
        if module in _NUMPY_MODULES:
            # a memmap subclass recorded by joblib stands for a plain array: np.memmap itself could
            # open or create files if called, so it is never handed out
            allowed = {"ndarray": np.ndarray, "dtype": np.dtype, "_reconstruct": _reconstruct,
                       "scalar": _scalar, "memmap": _PlainArray}
            if name in allowed:
                return allowed[name]
        if module == "numpy" and name.startswith("dtypes."):  # e.g. numpy.dtypes.Float64DType (numpy 2)
            return np.dtype
        if module == "numpy.dtypes":
            return type(np.dtype(name.replace("DType", "").lower())) if name.endswith("DType") else self._refuse(
                module, name)
        if module == "joblib.numpy_pickle" and name == "NumpyArrayWrapper":
            return _ArrayWrapper
        if module == "copyreg" and name == "_reconstructor":
            return _reconstructor
        if module == "copyreg" and name == "__newobj__":
            return _newobj
        if module.startswith("scipy.sparse") and name in _SPARSE:
            return _SPARSE[name]
        if module in _UPSTREAM_MODULES and name in _RECORDS:
            return _RECORDS[name]
        return self._refuse(module, name)

    def _refuse(self, module: str, name: str):
        raise UnsafeFormatError(
            f"path={self._source!r}: the file refers to {module}.{name}, which is not a numpy array, a builtin "
            "container or a known SpectraNorm data class; nothing was executed. Fix: convert only files "
            "written by SpectraNorm 0.1.4's save()/save_model(), from a source you trust.")

    def load_build(self):
        """BUILD opcode: after the state is set, replace a joblib array wrapper by its array."""
        super().load_build()
        top = self.stack[-1]
        if isinstance(top, _ArrayWrapper):
            self.stack[-1] = self._read_array(top.state)

    dispatch[pickle.BUILD[0]] = load_build

    def _read_array(self, state: dict) -> np.ndarray:
        dtype = np.dtype(state["dtype"])
        shape = tuple(int(s) for s in state["shape"])
        if dtype.hasobject:  # pickled inline: read it with the same restrictions, keep plain values only
            arr = RestrictedUnpickler(self._file, self._source).load()
            if not isinstance(arr, np.ndarray) or not all(
                    v is None or isinstance(v, (str, bytes, int, float, bool, np.generic)) for v in arr.ravel()):
                raise UnsafeFormatError(f"path={self._source!r}: holds an object array of non-plain values, which "
                                        "the converter refuses. Fix: convert only files written by SpectraNorm.")
            return arr
        if state.get("numpy_array_alignment_bytes") is not None:
            pad = self._file.read(1)
            if pad and pad[0]:
                self._file.read(pad[0])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        data = self._file.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise bad_value("path", self._source, "ends inside an array (truncated file)",
                            "restore the complete file", FileFormatError)
        arr = np.frombuffer(data, dtype=dtype, count=count).copy()
        arr = arr.reshape(shape[::-1]).T if state.get("order") == "F" else arr.reshape(shape)
        return arr.astype(dtype.newbyteorder("="), copy=False) if not dtype.isnative else arr


_MAGIC = ((b"\x1f\x8b", gzip.decompress), (b"BZ", bz2.decompress), (b"\xfd7zXZ", lzma.decompress),
          (b"\x5d\x00", lzma.decompress), (b"\x78", zlib.decompress))


def read_upstream_joblib(path) -> Any:
    """Read one joblib file of the reference with :class:`RestrictedUnpickler`.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``joblib.dump`` (uncompressed, or zlib/gzip/bz2/xz/lzma compressed).

    Returns
    -------
    object
        Plain data: dicts, lists, numpy arrays, numbers, strings and :class:`UpstreamRecord`.

    Raises
    ------
    UnsafeFormatError
        The file refers to a global outside the allow-list (nothing is executed).
    FileFormatError
        The file is not a pickle stream.
    """
    path = Path(path)
    if not path.is_file():
        raise bad_value("path", str(path), "does not exist or is not a file",
                        "pass a .joblib file written by SpectraNorm", FileFormatError)
    raw = path.read_bytes()
    if raw[:1] != b"\x80":
        for magic, decompress in _MAGIC:
            if raw.startswith(magic):
                try:
                    raw = decompress(raw)
                except Exception as exc:
                    raise bad_value("path", str(path), f"is not a valid compressed joblib file ({exc})",
                                    "pass a file written by joblib.dump", FileFormatError) from None
                break
    if raw[:1] != b"\x80":
        raise bad_value("path", str(path), "is not a pickle/joblib stream",
                        "pass a .joblib file written by SpectraNorm's save()/save_model()", FileFormatError)
    try:
        return RestrictedUnpickler(io.BytesIO(raw), str(path)).load()
    except (UnsafeFormatError, FileFormatError):
        raise
    except Exception as exc:
        raise bad_value("path", str(path), f"could not be read as a reference file ({type(exc).__name__}: {exc})",
                        "pass a file written by SpectraNorm 0.1.4", FileFormatError) from None


def to_plain(obj: Any) -> Any:
    """Turn :class:`UpstreamRecord` trees into nested dicts (``{"__class__": name, **fields}``)."""
    if isinstance(obj, UpstreamRecord):
        return {"__class__": obj.upstream_class, **{k: to_plain(v) for k, v in obj.__dict__.get("fields", {}).items()}}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj
