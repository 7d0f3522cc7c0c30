"""Small shared helpers used by every layer: array checks, atomic writes, hashing, threads.

This module sits at the bottom of the import graph (it imports nothing from the package but
:mod:`spectranorm_neuro.exceptions`), so every layer may use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import FileFormatError, InvalidInputError, OutputExistsError, ShapeMismatchError, bad_value

__all__ = [
    "as_finite_array",
    "check_n_modes",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_path",
    "sha256_file",
    "sha256_array",
    "blas_threads",
    "check_random_state",
    "json_default",
    "write_npz",
    "memmap_npz_member",
    "MappedNpz",
    "check_n_jobs",
    "check_positive_int",
    "run_tasks",
    "block_slices",
    "replace_folder",
    "sibling_path",
    "clean_leftovers",
]


def as_finite_array(
    value: Any,
    name: str,
    ndim: int | tuple[int, ...] | None = None,
    dtype: Any = np.float64,
) -> np.ndarray:
    """Convert to a finite float array, raising a named error otherwise.

    Parameters
    ----------
    value : array_like
        Input data.
    name : str
        Argument name used in error messages.
    ndim : int or tuple of int, optional
        Accepted number(s) of dimensions.
    dtype : dtype, optional
        Target dtype (float64 by default).

    Returns
    -------
    numpy.ndarray
        The converted array (a view when no conversion was needed).
    """
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise bad_value(name, type(value).__name__, f"cannot be read as numbers ({exc})",
                        "pass a numeric array") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise bad_value(name, f"array of shape {arr.shape}",
                            f"has {arr.ndim} dimension(s), expected {' or '.join(map(str, allowed))}",
                            "reshape the array", ShapeMismatchError)
    if arr.size and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))
        n_bad = len(bad)
        first = tuple(int(i) for i in bad[0])
        raise bad_value(name, f"array of shape {arr.shape}",
                        f"holds {n_bad} NaN/inf value(s), first at index {first}",
                        "remove or impute non-finite values before calling")
    return arr


def check_n_modes(n_modes: int | None, available: int, name: str = "n_modes") -> int:
    """Resolve an ``n_modes`` argument against the number of available modes.

    ``None`` and ``-1`` mean "all available modes".

    Returns
    -------
    int
        The number of modes to use, in ``1 .. available``.
    """
    if n_modes is None or (isinstance(n_modes, (int, np.integer)) and int(n_modes) == -1):
        return int(available)
    if not isinstance(n_modes, (int, np.integer)) or isinstance(n_modes, bool):
        raise bad_value(name, n_modes, "is not an integer", f"pass an integer in 1..{available} or -1")
    n_modes = int(n_modes)
    if n_modes < 1 or n_modes > available:
        raise bad_value(name, n_modes, f"is outside the {available} available modes",
                        f"pass an integer in 1..{available} (or -1 for all)")
    return n_modes


def check_output_path(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to overwrite an existing file unless ``overwrite`` is true.

    Returns
    -------
    pathlib.Path
        The path, with its parent directory created.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise bad_value("path", path.name, f"already exists ({path})",
                        "choose another output path or pass overwrite=True (CLI: --overwrite)",
                        OutputExistsError)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _default_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    If the body raises, the temporary file is removed and ``path`` is untouched, so a reader never
    sees a half-written file.

    Parameters
    ----------
    path : path-like
        Final destination.
    overwrite : bool, optional
        Allow replacing an existing file.
    suffix : str, optional
        Suffix for the temporary file (some writers, e.g. nibabel, choose a format by extension).
        Defaults to the full suffix of ``path``.
    """
    path = check_output_path(path, overwrite)
    if not suffix:
        name = path.name
        suffix = name[name.index("."):] if "." in name else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if path.exists() and not overwrite:  # appeared while we were writing
            raise bad_value("path", str(path), "was created by someone else during the write",
                            "retry with another path or overwrite=True", OutputExistsError)
        os.chmod(tmp_path, _FILE_MODE)  # mkstemp makes 0600 files; give the usual umask-based mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; see :func:`atomic_path`."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; see :func:`atomic_path`."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite)


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_array(*arrays: np.ndarray) -> str:
    """Hex SHA-256 digest of arrays' shapes, dtypes and contiguous bytes."""
    digest = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def blas_threads(n_threads: int | None) -> Iterator[None]:
    """Limit BLAS/OpenMP threads inside the block (``None`` leaves them alone).

    Uses :mod:`threadpoolctl`; eigensolvers and benchmarks use it so results and timings do not
    depend on how busy a shared machine is.
    """
    if n_threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=int(n_threads)):
        yield


def check_random_state(seed: int | np.random.Generator | None) -> np.random.Generator:
    """Turn ``None``, an int or a Generator into a :class:`numpy.random.Generator`."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise InvalidInputError(
        f"random_state={seed!r}: is not an int, None or numpy Generator. Fix: pass an int seed."
    )


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook for numpy scalars and arrays, and paths."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


def write_npz(file, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as an uncompressed ``.npz`` that is byte-identical for identical arrays.

    Same layout as :func:`numpy.savez` (one ``NAME.npy`` member per array, stored uncompressed, so
    members can be memory-mapped), but every member gets a fixed timestamp and the arrays are
    written without pickling, so equal inputs give equal files and equal checksums.

    Parameters
    ----------
    file : path-like or binary file object
        Destination.
    arrays : dict of str to numpy.ndarray
        Arrays to store (object arrays are refused).
    """
    with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with zf.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)


def memmap_npz_member(path, member: str, mode: str = "r",
                      fix: str = "load without memory-mapping, or re-save the file with this package") -> np.memmap:
    """Memory-map an uncompressed ``.npy`` member of a ``.npz`` archive in place, without copying it.

    Parameters
    ----------
    path : path-like
        The archive (as :func:`write_npz` writes it: members stored uncompressed).
    member : str
        Member name, e.g. ``"eigenvectors.npy"``.
    mode : {"r", "c"}
        Read-only, or copy-on-write (changes stay in memory; the file is never modified).
    fix : str
        The fix the error names when the member is stored compressed.

    Returns
    -------
    numpy.memmap
        The member's array, with its shape, dtype and memory order.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        raise bad_value("path", str(path), f"stores {member} compressed, which cannot be memory-mapped",
                        fix, FileFormatError)
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        sig, *_, name_len, extra_len = struct.unpack("<IHHHHHIIIHH", fh.read(30))
        if sig != 0x04034B50:
            raise bad_value("path", str(path), f"has a corrupt zip entry ({member})", "re-save the file",
                            FileFormatError)
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        major, _ = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        offset = fh.tell()
    return np.memmap(path, dtype=dtype, mode=mode, offset=offset, shape=shape, order="F" if fortran else "C")


class MappedNpz:
    """The arrays of an uncompressed ``.npz`` as read-only memory maps, with ``np.load``'s interface.

    ``files`` lists the member names (``name in archive`` tests them); ``archive[name]`` is a
    :class:`numpy.memmap` (0-d members are read into memory).

    Parameters
    ----------
    path : path-like
        An archive written by :func:`write_npz`.
    """

    def __init__(self, path):
        self.path = Path(path)
        with zipfile.ZipFile(self.path) as zf:
            self.files = [name[:-4] for name in zf.namelist() if name.endswith(".npy")]

    def __contains__(self, name) -> bool:
        return name in self.files

    def __getitem__(self, name: str) -> np.ndarray:
        mapped = memmap_npz_member(self.path, f"{name}.npy")
        return np.array(mapped) if mapped.ndim == 0 else mapped


def check_n_jobs(n_jobs: Any, argument: str = "n_jobs") -> int | None:
    """Validate an ``n_jobs`` argument (joblib semantics): a non-zero integer, or None.

    ``1`` runs in this process, ``k > 1`` uses ``k`` workers, ``-1`` every core (``-2`` all but
    one, ...), ``None`` joblib's default (1, unless ``joblib.parallel_config(n_jobs=...)`` set it).

    Returns
    -------
    int or None
    """
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise bad_value(argument, n_jobs, "is not a non-zero integer",
                        "pass 1 (serial), a number of workers, -1 (all cores) or None (joblib's default)")
    return int(n_jobs)


def check_positive_int(value: Any, argument: str, example: int = 1) -> int:
    """Validate a count (block sizes, subjects shown, ...): an integer >= 1.

    Returns
    -------
    int
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise bad_value(argument, value, "is not a positive integer", f"pass e.g. {argument}={example}")
    return int(value)


def block_slices(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most ``size`` items covering ``range(n)`` (the blocks of every batched loop)."""
    return [slice(a, min(a + size, n)) for a in range(0, n, size)]


def _pinned_task(func, args: tuple):
    with blas_threads(1):
        return func(*args)


def run_tasks(func, arguments, n_jobs: int | None = None, *, total: int | None = None, progress: bool | None = False,
              desc: str = "", unit: str = "task", weights=None):
    """The package's one parallel runner: yield ``func(*args)`` for each tuple of ``arguments``, in order.

    Every task runs with BLAS on one thread, so results do not depend on ``n_jobs`` or on the
    joblib backend. With one effective worker the tasks run in this process; otherwise through
    :class:`joblib.Parallel` with whatever backend ``joblib.parallel_config`` selected (loky,
    threading, dask, ...), in waves of twice the number of workers, so at most that many results
    wait in memory for the consumer.

    Parameters
    ----------
    func : callable
    arguments : iterable of tuple
        Arguments of each task (consumed lazily, one wave at a time).
    n_jobs : int or None, optional
        Workers, joblib semantics (None: joblib's default, 1 unless ``parallel_config`` sets it).
    total : int, optional
        Total progress units (default: unknown).
    progress : bool or None, optional
        Show a tqdm bar (None: only on a terminal).
    desc, unit : str, optional
        Progress bar labels.
    weights : iterable of int, optional
        Progress units of each task (default 1 each).

    Yields
    ------
    object
        ``func(*args)`` in the order of ``arguments``.
    """
    import itertools

    from joblib import Parallel, delayed, effective_n_jobs
    from tqdm.auto import tqdm

    n_jobs = check_n_jobs(n_jobs)
    arguments = iter(arguments)
    weights = itertools.repeat(1) if weights is None else iter(weights)
    disable = None if progress is None else not progress
    with tqdm(total=total, desc=desc, unit=unit, disable=disable) as bar:
        workers = effective_n_jobs(n_jobs)
        if workers == 1:
            for args in arguments:
                result = _pinned_task(func, args)
                bar.update(next(weights))
                yield result
            return
        with Parallel(n_jobs=n_jobs, return_as="generator") as parallel:
            while True:
                wave = list(itertools.islice(arguments, 2 * workers))
                if not wave:
                    return
                for result in parallel(delayed(_pinned_task)(func, args) for args in wave):
                    bar.update(next(weights))
                    yield result


def _host() -> str:
    import socket

    return "".join(c if c.isalnum() or c in ".-" else "_" for c in socket.gethostname()) or "host"


def sibling_path(dest: str | os.PathLike, kind: str) -> Path:
    """A hidden sibling of ``dest`` for this process's temporary folder (same file system).

    Named ``.<dest name>.snm-<host>-<pid>-<random>.<kind>`` so that :func:`clean_leftovers` can tell
    the leftovers of killed runs from those of runs still going.

    Parameters
    ----------
    dest : path-like
    kind : {"staging", "previous"}
        A folder being written, or a previous output moved aside during a commit.
    """
    import secrets

    dest = Path(dest)
    return dest.absolute().parent / f".{dest.name}.snm-{_host()}-{os.getpid()}-{secrets.token_hex(4)}.{kind}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers(dest: str | os.PathLike) -> list[Path]:
    """Remove what killed runs on this machine left next to ``dest`` (see :func:`sibling_path`).

    A previous output moved aside is put back when ``dest`` is missing (the run was killed between
    the two renames of :func:`replace_folder`). Leftovers of live processes, and of other machines
    sharing the file system, are left alone.

    Returns
    -------
    list of pathlib.Path
        The leftovers removed or restored.
    """
    import re
    import shutil

    dest = Path(dest)
    parent = dest.absolute().parent
    prefix = f".{dest.name}.snm-"
    pattern = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]+\.(?P<kind>staging|previous)$")
    done = []
    if not parent.is_dir():
        return done
    for entry in sorted(parent.iterdir()):
        m = pattern.match(entry.name[len(prefix):]) if entry.name.startswith(prefix) else None
        if not m or m["host"] != _host() or _alive(int(m["pid"])):
            continue
        if m["kind"] == "previous" and not dest.exists():
            os.rename(entry, dest)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink()
        done.append(entry)
    return done


def replace_folder(staged: str | os.PathLike, dest: str | os.PathLike, trash: str | os.PathLike) -> None:
    """Put the complete folder ``staged`` in place of ``dest`` with renames (same file system).

    ``dest`` (if any) is first renamed to ``trash``, then ``staged`` to ``dest``, then ``trash``
    is deleted; at every moment ``dest`` is absent, the previous folder or the new one, never a
    mix (a killed run leaves ``trash``, which the next run restores or removes).

    Parameters
    ----------
    staged : path-like
        Fully written folder (a sibling of ``dest``).
    dest : path-like
        Destination (an existing folder is replaced as a whole).
    trash : path-like
        Sibling name the previous folder is moved to while the new one is put in place.
    """
    import shutil

    staged, dest, trash = Path(staged), Path(dest), Path(trash)
    if dest.is_dir() and not dest.is_symlink():
        os.rename(dest, trash)
        os.rename(staged, dest)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staged, dest)
