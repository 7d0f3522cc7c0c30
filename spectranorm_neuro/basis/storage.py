"""Safe on-disk format of an :class:`EigenmodeBasis` (format version 1).

One file, whatever its extension: an **uncompressed** zip archive as written by
:func:`numpy.savez`, read back with ``numpy.load(..., allow_pickle=False)``. Members:

=============================  =================================================================
``metadata.npy``               0-d unicode array holding a JSON object (below)
``eigenvalues.npy``            float64 (n_modes,)
``eigenvectors.npy``           float64 (n_features, n_modes), C order, stored uncompressed so it
                               can be memory-mapped in place (``load(path, mmap=True)``)
``mass_data.npy``,             CSR parts of the mass matrix (only with a mass matrix)
``mass_indices.npy``,
``mass_indptr.npy``
``structure{i}_index.npy``     int64 kept-node indices of structure ``i``
``structure{i}_affine.npy``    float64 (4, 4) affine of structure ``i`` (volumes only)
=============================  =================================================================

The JSON metadata holds ``format`` (``"spectranorm_neuro.EigenmodeBasis"``), ``format_version``,
``package_version``, ``n_features``, ``n_modes``, ``mass_shape`` (or null), ``structures``
(name, kind, n_total, shape, has_affine), ``provenance`` and ``sha256`` (hex digest of every other
member's array, checked on load).

The format is recognised by content (the zip signature), never by extension: the SpectraNorm
tutorials' ``basis.save("eigenmode_basis.joblib")`` writes this format under that name. A real
pickle/joblib file is refused with :class:`~spectranorm_neuro.exceptions.UnsafeFormatError`:
unpickling can execute arbitrary code. Writes go to a temporary file renamed into place.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from scipy import sparse

from .._util import atomic_path, json_default, memmap_npz_member, sha256_array, write_npz
from .._version import __version__
from ..exceptions import (
    ChecksumError,
    FileFormatError,
    FormatVersionError,
    SpectraNormError,
    UnsafeFormatError,
    bad_value,
)
from ..graphs._graph import Structure

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "save_basis", "load_basis", "read_metadata"]

FORMAT_NAME = "spectranorm_neuro.EigenmodeBasis"
FORMAT_VERSION = 1

_ZIP_MAGIC = b"PK\x03\x04"
_COMPRESSED = {b"\x1f\x8b": "gzip", b"\x78\x01": "zlib", b"\x78\x5e": "zlib", b"\x78\x9c": "zlib",
               b"\x78\xda": "zlib", b"BZ": "bz2", b"\xfd7": "xz/lzma", b"\x04\x22": "lz4"}




def save_basis(basis, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``basis`` to ``path`` in format version 1 (see the module docstring).

    Parameters
    ----------
    basis : EigenmodeBasis
    path : str or path-like
        Destination; any extension.
    overwrite : bool, optional
        Replace an existing file.

    Returns
    -------
    pathlib.Path
    """
    arrays: dict[str, np.ndarray] = {
        "eigenvalues": np.ascontiguousarray(basis.eigenvalues, dtype=np.float64),
        "eigenvectors": np.ascontiguousarray(basis.eigenvectors, dtype=np.float64),
    }
    mass_shape = None
    if basis.mass_matrix is not None:
        m = sparse.csr_matrix(basis.mass_matrix, dtype=np.float64)
        arrays.update(mass_data=m.data, mass_indices=m.indices.astype(np.int64),
                      mass_indptr=m.indptr.astype(np.int64))
        mass_shape = list(m.shape)
    structs = []
    for i, s in enumerate(basis.structures):
        arrays[f"structure{i}_index"] = np.ascontiguousarray(s.index, dtype=np.int64)
        if s.affine is not None:
            arrays[f"structure{i}_affine"] = np.asarray(s.affine, dtype=np.float64)
        structs.append({"name": s.name, "kind": s.kind, "n_total": int(s.n_total),
                        "shape": None if s.shape is None else [int(d) for d in s.shape],
                        "has_affine": s.affine is not None})
    meta = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "package_version": __version__,
        "n_features": basis.n_features, "n_modes": basis.n_modes, "mass_shape": mass_shape,
        "structures": structs, "provenance": basis.provenance,
        "sha256": {name: sha256_array(arr) for name, arr in arrays.items()},
    }
    try:
        text = json.dumps(meta, default=json_default, sort_keys=True)
    except TypeError as exc:
        raise bad_value("basis.provenance", sorted(basis.provenance), f"is not JSON-serialisable ({exc})",
                        "keep only str/int/float/bool/list/dict values in the provenance") from None
    arrays["metadata"] = np.array(text)
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as fh:
        write_npz(fh, arrays)
    return Path(path)


def _refuse_or_fail(path: Path) -> None:
    """Raise the right error for a file that is not a zip archive."""
    if not path.is_file():
        raise bad_value("path", str(path), "does not exist", "pass the path of a file written by "
                        "EigenmodeBasis.save", FileFormatError)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] == _ZIP_MAGIC:
        return
    rebuild = ("rebuild the basis (EigenmodeBasis.from_graph or the compute_*_eigenmodes functions) and "
               "save it with EigenmodeBasis.save, which writes the safe npz + JSON format")
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        raise bad_value("path", str(path), f"is a pickle (protocol {head[1]}) file, e.g. written by joblib; "
                        "spectranorm_neuro never unpickles because loading a pickle can run arbitrary code",
                        rebuild, UnsafeFormatError)
    kind = _COMPRESSED.get(head[:2])
    if kind is not None:
        raise bad_value("path", str(path), f"is {kind}-compressed data (a compressed joblib pickle?), not a "
                        "basis file; pickles are never loaded because they can run arbitrary code",
                        rebuild, UnsafeFormatError)
    if head[:6] == b"\x93NUMPY":
        raise bad_value("path", str(path), "is a single .npy array, not a basis file",
                        "build EigenmodeBasis(eigenvalues, eigenvectors) and save it", FileFormatError)
    raise bad_value("path", str(path), f"is not a spectranorm_neuro basis file (starts with {head[:4]!r})",
                    "pass a file written by EigenmodeBasis.save", FileFormatError)


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a basis file, without reading its arrays.

    Returns
    -------
    dict
    """
    path = Path(path)
    _refuse_or_fail(path)
    with np.load(path, allow_pickle=False) as npz:
        return _metadata(npz, path)


def _metadata(npz, path: Path) -> dict:
    if "metadata" not in npz.files:
        raise bad_value("path", str(path), "is a zip/npz archive without basis metadata",
                        "pass a file written by EigenmodeBasis.save", FileFormatError)
    try:
        meta = json.loads(str(npz["metadata"][()]))
    except (ValueError, TypeError) as exc:
        raise bad_value("path", str(path), f"has unreadable metadata ({exc})",
                        "re-save the basis with EigenmodeBasis.save", FileFormatError) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise bad_value("path", str(path), f"holds a {found!r} object, not an eigenmode basis",
                        "pass a file written by EigenmodeBasis.save", FileFormatError)
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise bad_value("path", str(path), f"has format version {version!r}; this release "
                        f"({__version__}) reads versions 1..{FORMAT_VERSION}",
                        "upgrade spectranorm_neuro, or re-save the basis with this release",
                        FormatVersionError)
    return meta


def load_basis(cls, path: str | os.PathLike, mmap: bool = False, verify: bool = True):
    """Read a basis file (see the module docstring); implementation of ``EigenmodeBasis.load``.

    A damaged file (corrupt zip members, truncated data, object arrays) raises
    :class:`~spectranorm_neuro.exceptions.FileFormatError` naming it.
    """
    path = Path(path)
    _refuse_or_fail(path)
    try:
        return _read_basis(cls, path, mmap, verify)
    except SpectraNormError:
        raise
    except (ValueError, KeyError, EOFError, OSError, zipfile.BadZipFile, zlib.error, struct.error) as exc:
        reason = " ".join(str(exc).split())[:100] or type(exc).__name__
        raise bad_value("path", str(path), f"is a damaged zip archive, not a readable basis ({type(exc).__name__}: "
                        f"{reason})", "re-save the basis with EigenmodeBasis.save (or `spectranorm-neuro basis`)",
                        FileFormatError) from None


def _read_basis(cls, path: Path, mmap: bool, verify: bool):
    npz = np.load(path, allow_pickle=False)
    with npz:
        meta = _metadata(npz, path)
        needed = ["eigenvalues", "eigenvectors"]
        needed += [f"structure{i}_index" for i in range(len(meta["structures"]))]
        if meta["mass_shape"] is not None:
            needed += ["mass_data", "mass_indices", "mass_indptr"]
        missing = [m for m in needed if m not in npz.files]
        if missing:
            raise bad_value("path", str(path), f"lacks the members {missing}", "re-save the basis",
                            FileFormatError)
        arrays = {name: npz[name] for name in npz.files if name not in ("metadata", "eigenvectors")}
    if mmap:
        arrays["eigenvectors"] = memmap_npz_member(
            path, "eigenvectors.npy", fix="load with mmap=False, or re-save with EigenmodeBasis.save (uncompressed)")
    else:
        with np.load(path, allow_pickle=False) as npz:
            arrays["eigenvectors"] = npz["eigenvectors"]
    if verify:
        for name, digest in meta.get("sha256", {}).items():
            if name in arrays and sha256_array(arrays[name]) != digest:
                raise bad_value("path", str(path), f"member {name} does not match its recorded SHA-256 "
                                "(the file was modified or damaged)", "re-create the file from its source",
                                ChecksumError)
    mass = None
    if meta["mass_shape"] is not None:
        mass = sparse.csr_matrix((arrays["mass_data"], arrays["mass_indices"], arrays["mass_indptr"]),
                                 shape=tuple(meta["mass_shape"]))
    structures = tuple(
        Structure(name=s["name"], kind=s["kind"], n_total=int(s["n_total"]),
                  index=arrays[f"structure{i}_index"],
                  shape=None if s["shape"] is None else tuple(s["shape"]),
                  affine=arrays.get(f"structure{i}_affine") if s["has_affine"] else None)
        for i, s in enumerate(meta["structures"]))
    return cls(arrays["eigenvalues"], arrays["eigenvectors"], mass, meta.get("provenance", {}), structures)
