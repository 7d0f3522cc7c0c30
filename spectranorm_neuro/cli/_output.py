"""Atomic command outputs: everything is written to a staging folder, then moved into place.

A command that writes many files (z-maps of a cohort, a demo run) first writes them all into a
hidden staging folder next to the destination. Only when every file has been written are they
moved (``os.replace``, same file system) into the destination, so a failing command leaves the
destination exactly as it was.

Rules
-----
* Without ``overwrite``, a destination folder that exists and is not empty is refused up front
  (:func:`check_destination`), before any computation.
* With ``overwrite``, the staged files replace files of the same name; other files already in
  the destination are kept.
* A ``dataset_description.json`` written by spectranorm_neuro that is already in the
  destination is kept as it is (several commands may add to one derivatives dataset).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..exceptions import OutputExistsError, bad_value

__all__ = ["check_destination", "staged_directory", "relative_files"]

_DESCRIPTION = "dataset_description.json"


def check_destination(path: str | os.PathLike, overwrite: bool, argument: str = "--out") -> Path:
    """Refuse an existing non-empty destination folder (or an existing file) unless ``overwrite``.

    Parameters
    ----------
    path : path-like
        Destination folder (or file for ``.zip`` bundles).
    overwrite : bool
        ``--overwrite`` was given.
    argument : str, optional
        Option name used in the message.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if not path.exists() or overwrite:
        return path
    if path.is_dir() and not any(path.iterdir()):
        return path
    what = "folder is not empty" if path.is_dir() else "file exists"
    raise bad_value(argument, str(path), f"already exists (the {what})",
                    "choose another output path or pass --overwrite", OutputExistsError)


def relative_files(root: Path) -> list[str]:
    """Files under ``root`` as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _ours(path: Path) -> bool:
    try:
        desc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    gen = desc.get("GeneratedBy") or [{}]
    return any(isinstance(g, dict) and g.get("Name") == "spectranorm_neuro" for g in gen)


def _commit(stage: Path, dest: Path, overwrite: bool, argument: str) -> None:
    files = relative_files(stage)
    keep_description = False
    clashes = []
    for rel in files:
        target = dest / rel
        if not target.exists():
            continue
        if rel == _DESCRIPTION and _ours(target):
            keep_description = not overwrite
            continue
        clashes.append(rel)
    if clashes and not overwrite:
        raise bad_value(argument, str(dest), f"already holds {len(clashes)} of the output files "
                        f"(first: {clashes[0]})", "choose another output folder or pass --overwrite",
                        OutputExistsError)
    dest.mkdir(parents=True, exist_ok=True)
    for rel in files:
        if rel == _DESCRIPTION and keep_description:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        src = stage / rel
        src.chmod(0o644)
        os.replace(src, target)


@contextlib.contextmanager
def staged_directory(dest: str | os.PathLike, overwrite: bool = False,
                     argument: str = "--out") -> Iterator[Path]:
    """Yield an empty staging folder whose files are moved into ``dest`` when the block succeeds.

    Parameters
    ----------
    dest : path-like
        Destination folder (created if needed).
    overwrite : bool, optional
        Replace files of the same name in ``dest``.
    argument : str, optional
        Option name used in error messages.

    Yields
    ------
    pathlib.Path
        The staging folder (a hidden sibling of ``dest``); removed afterwards in every case.
    """
    dest = check_destination(dest, overwrite, argument)
    if dest.exists() and not dest.is_dir():
        raise bad_value(argument, str(dest), "is a file, not a folder", "pass a folder path",
                        OutputExistsError)
    parent = dest.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".staging", dir=parent))
    try:
        yield stage
        _commit(stage, dest, overwrite, argument)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
