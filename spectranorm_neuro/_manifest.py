"""Manifests of saved objects (models, bundles, output folders) and bounded JSON reading.

A manifest is ``manifest.json`` in the object's folder: the format name and its version (a known
integer), the package version that wrote it, and the SHA-256 of every other file. Models
(:mod:`spectranorm_neuro.engine.persistence`) and bundles (:mod:`spectranorm_neuro.workflow`)
share these functions; this module sits at the bottom of the import graph (it imports only
:mod:`spectranorm_neuro._util`, :mod:`spectranorm_neuro.exceptions` and the version).

JSON files are read with bounds checked before and while parsing (:func:`read_json`): a size limit
on the bytes, a depth limit on the nesting, and a top-level object required, so a hostile file
can neither exhaust memory nor crash the parser.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._util import json_default, sha256_file
from ._version import __version__
from .exceptions import ChecksumError, FileFormatError, FormatVersionError, UnsafeFormatError, bad_value

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "read_json", "write_manifest", "read_manifest", "verify_manifest",
           "check_format_version"]

#: Largest JSON file (manifest, model card, spec) read, in bytes.
MAX_JSON_BYTES = 64 * 1024 * 1024
#: Deepest nesting of lists/objects accepted in a JSON file.
MAX_JSON_DEPTH = 64


def _depth(text: str) -> int:
    """Maximum nesting depth of ``[``/``{`` outside strings (a linear scan, no recursion)."""
    depth = best = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


def read_json(path: str | os.PathLike, what: str | None = None, fix: str = "restore the file from its source",
              max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> dict:
    """Read a JSON object from ``path`` within size and depth bounds.

    Parameters
    ----------
    path : path-like
    what : str, optional
        How to name the file in messages (default: the path).
    fix : str, optional
        The fix suggested when the file is not a valid bounded JSON object.
    max_bytes, max_depth : int, optional
        Bounds checked before parsing.

    Returns
    -------
    dict

    Raises
    ------
    FileFormatError
        Too large, too deeply nested, not valid JSON, or not a JSON object.
    """
    path = Path(path)
    shown = what or str(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise bad_value(path.name, shown, f"is {size} bytes, more than the {max_bytes} bytes allowed", fix,
                        FileFormatError)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_value(path.name, shown, "is not UTF-8 text", fix, FileFormatError) from None
    if _depth(text) > max_depth:
        raise bad_value(path.name, shown, f"nests lists/objects deeper than {max_depth} levels", fix,
                        FileFormatError)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise bad_value(path.name, shown, f"is not valid JSON ({' '.join(str(exc).split())})", fix,
                        FileFormatError) from None
    if not isinstance(data, dict):
        raise bad_value(path.name, shown, f"holds a JSON {type(data).__name__}, not an object", fix,
                        FileFormatError)
    return data


def write_manifest(directory: str | os.PathLike, files, format_name: str, format_version: int, extra=None) -> None:
    """Write ``manifest.json`` with the SHA-256 of ``files`` (names relative to ``directory``).

    Parameters
    ----------
    directory : path-like
    files : iterable of str
        POSIX paths relative to ``directory``.
    format_name : str
    format_version : int
    extra : dict, optional
        More keys of the manifest.
    """
    directory = Path(directory)
    manifest = {
        "format": format_name,
        "format_version": format_version,
        "package": "spectranorm_neuro",
        "package_version": __version__,
        "files": {name: sha256_file(directory / name) for name in files},
    }
    manifest.update(extra or {})
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, default=json_default))


def check_format_version(version: Any, supported: int, source: str, written_by: Any = None) -> int:
    """Accept only a known format version: an integer in ``1..supported``.

    Raises
    ------
    FormatVersionError
        ``0``, a negative number, a non-integer (e.g. the string ``"1"``), or a newer version.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise bad_value("format_version", version, f"is not a known format version (an integer from 1 to "
                        f"{supported}) in {source}", "restore the file as it was written by spectranorm_neuro",
                        FormatVersionError)
    if version > supported:
        raise bad_value("format_version", version,
                        f"is newer than the version {supported} this release (spectranorm_neuro {__version__}) "
                        f"reads; {source} was written by spectranorm_neuro {written_by}",
                        "upgrade spectranorm_neuro", FormatVersionError)
    return version


def read_manifest(directory: str | os.PathLike, format_name: str, supported_version: int,
                  what: str = "saved model", fix: str = "pass the directory given to save_model()") -> dict:
    """Read and check ``manifest.json`` of a saved object (bounded JSON, format name and version).

    Parameters
    ----------
    directory : path-like
    format_name : str
        Expected ``format``.
    supported_version : int
        Newest ``format_version`` this release reads.
    what, fix : str, optional
        How to name the object, and the fix, in messages.

    Returns
    -------
    dict
    """
    directory = Path(directory)
    if directory.is_file():
        if directory.read_bytes()[:1] == b"\x80":
            raise UnsafeFormatError(
                f"path={str(directory)!r}: is a pickle/joblib file; spectranorm_neuro never unpickles "
                "(loading a pickle can run arbitrary code). Fix: re-save the model with save_model(), "
                "which writes a directory of JSON and .npz files.")
        raise bad_value("path", str(directory), f"is a file, not a {what} directory", fix, FileFormatError)
    path = directory / "manifest.json"
    if not path.is_file():
        raise bad_value("path", str(directory), f"holds no manifest.json, so it is not a {what}", fix,
                        FileFormatError)
    manifest = read_json(path, fix=f"restore the {what} from its source")
    if manifest.get("format") != format_name:
        raise bad_value("manifest.json", str(path), f"is not a {format_name!r} manifest",
                        "load it with the matching loader", FileFormatError)
    check_format_version(manifest.get("format_version"), supported_version, str(path),
                         manifest.get("package_version"))
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise bad_value("manifest.json", str(path), "has no valid 'files' table (name -> SHA-256)",
                        f"restore the {what} from its source", FileFormatError)
    return manifest


def verify_manifest(directory: str | os.PathLike, manifest: dict) -> None:
    """Check the SHA-256 of every file listed in the manifest.

    Raises
    ------
    ChecksumError
        A listed file is missing or differs.
    """
    directory = Path(directory)
    for name, digest in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise bad_value(name, str(path), "is listed in manifest.json but missing",
                            "restore the complete folder", ChecksumError)
        actual = sha256_file(path)
        if actual != digest:
            raise bad_value(name, str(path), f"has SHA-256 {actual[:12]}... but the manifest records "
                            f"{digest[:12]}...: the file was modified or corrupted",
                            "restore the original file (never edit a saved model by hand)", ChecksumError)
