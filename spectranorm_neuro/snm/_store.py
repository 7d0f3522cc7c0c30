"""Writing a saved-object folder of the facade atomically (staged next to it, then put in place).

One helper for the facade's three folder formats (direct models, covariance models, converted
reference models): the files are written into a sibling staging folder with their checksummed
``manifest.json``, then :func:`spectranorm_neuro._util.replace_folder` puts the complete folder in
place. An existing non-empty destination is replaced only with ``overwrite=True`` and only if it
is a folder this package wrote (its manifest names a known format).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .._manifest import read_json, write_manifest
from .._util import replace_folder
from ..exceptions import FileFormatError, OutputExistsError, bad_value

__all__ = ["save_folder"]

#: Folder formats the facade writes (and so may replace with ``overwrite=True``).
FACADE_FORMATS = ("spectranorm_neuro.direct_model", "spectranorm_neuro.covariance_model",
                  "spectranorm_neuro.upstream_model", "spectranorm_neuro.spectral_model")


def _check_destination(directory: Path, overwrite: bool) -> None:
    if not (directory.exists() or directory.is_symlink()):
        return
    if not directory.is_dir() or directory.is_symlink():
        raise bad_value("directory", str(directory), "exists and is not a folder", "pass a new or empty directory",
                        OutputExistsError)
    if not any(directory.iterdir()):
        return
    if not overwrite:
        raise bad_value("directory", str(directory), "is not empty",
                        "pass a new or empty directory, or overwrite=True (--overwrite)", OutputExistsError)
    try:
        fmt = read_json(directory / "manifest.json").get("format")
    except (OSError, FileFormatError):
        fmt = None
    if fmt not in FACADE_FORMATS:
        raise bad_value("directory", str(directory), "holds files that spectranorm_neuro did not write, so it is "
                        "not replaced even with overwrite=True", "pass a new or empty directory", OutputExistsError)


def save_folder(directory, overwrite: bool, files: dict[str, Callable[[Path], None]], format_name: str,
                format_version: int = 1, extra: dict | None = None) -> Path:
    """Write ``files`` (name -> writer of that path) and their manifest into ``directory``, atomically.

    Returns
    -------
    pathlib.Path
        ``directory``.
    """
    directory = Path(directory)
    _check_destination(directory, overwrite)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        for name, write in files.items():
            write(tmp / name)
        write_manifest(tmp, list(files), format_name, format_version, extra)
        replace_folder(tmp, directory, f"{tmp}.old")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory
