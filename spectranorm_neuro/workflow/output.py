"""Output folders that appear complete or not at all, and never replace what the package did not write.

A command that writes a folder (z-maps of a cohort, a report, a demo run) writes everything into a
hidden staging folder next to the destination (same file system), then writes the completion
record :data:`OUTPUT_RECORD` (the list of files) into it last, and finally puts the staging folder
in place of the destination with renames (:func:`spectranorm_neuro._util.replace_folder`). At any
moment the destination is absent, the previous output, or the new complete one.

Rules
-----
* Checked before any computation (:func:`check_destination`): without ``overwrite`` an existing
  non-empty folder (or a file) is refused; with ``overwrite`` only a folder that holds the
  completion record (an output of spectranorm_neuro) is replaced, and it is replaced as a whole (no
  stale file of an earlier run survives).
* Leftovers of killed runs (staging folders, previous outputs moved aside) are removed by the next
  run for the same destination (a previous output is put back when the destination is missing).
* Operating-system errors while writing (disk full, permission denied, read-only file system) are
  reported as one :class:`~spectranorm_neuro.exceptions.OutputWriteError` naming the destination
  option and a fix; the staging folder is removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .._manifest import read_json
from .._util import clean_leftovers, replace_folder, sibling_path
from .._version import __version__
from ..exceptions import FileFormatError, OutputExistsError, OutputWriteError, bad_value

__all__ = ["OUTPUT_RECORD", "OUTPUT_FORMAT", "check_destination", "staged_directory", "relative_files",
           "is_package_output", "clean_leftovers", "os_errors", "made_parents"]

#: Completion record written last into every output folder (it also marks the folder as ours).
OUTPUT_RECORD = ".spectranorm_output.json"
OUTPUT_FORMAT = "spectranorm_neuro.output"
_TEST_KILL = "SPECTRANORM_NEURO_TEST_KILL_AT"  # tests only: SIGKILL this process at a named commit step

_OS_PROBLEMS = {
    errno.ENOSPC: ("cannot be written: the disk is full", "free space on that disk or choose another {arg}"),
    errno.EACCES: ("cannot be written: permission denied", "choose a {arg} folder you may write to"),
    errno.EPERM: ("cannot be written: operation not permitted", "choose a {arg} folder you may write to"),
    errno.EROFS: ("cannot be written: the file system is read-only", "choose a {arg} on a writable disk"),
    errno.EDQUOT: ("cannot be written: the disk quota is exceeded", "free space or choose another {arg}"),
}


def relative_files(root: str | os.PathLike) -> list[str]:
    """Files under ``root`` as sorted POSIX paths relative to it."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def is_package_output(path: str | os.PathLike) -> bool:
    """Whether the folder ``path`` holds a completion record written by spectranorm_neuro."""
    try:
        return read_json(Path(path) / OUTPUT_RECORD).get("format") == OUTPUT_FORMAT
    except (OSError, FileFormatError):
        return False


def os_error(exc: OSError, dest: str | os.PathLike, argument: str) -> OutputWriteError:
    """Translate an operating-system error while writing ``dest`` into a one-line error naming ``argument``."""
    problem, fix = _OS_PROBLEMS.get(exc.errno, (f"cannot be written ({exc.strerror or exc})",
                                                "check the disk and the permissions of {arg}, or choose another"))
    return bad_value(argument, str(dest), problem, fix.format(arg=argument), OutputWriteError)


_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _ours_to_name(exc: OSError, dest: Path) -> bool:
    """Whether ``exc`` is about writing ``dest`` (or its staging sibling) rather than reading an input."""
    if exc.errno in _WRITE_ERRNOS or exc.filename is None:
        return True
    target = Path(os.fsdecode(exc.filename)).absolute()
    parent = dest.absolute().parent
    if target == parent:
        return True
    if parent in target.parents:
        first = target.relative_to(parent).parts[0]
        return first == dest.name or first.startswith(f".{dest.name}.")
    return target in dest.absolute().parents  # a parent folder that cannot be made


@contextlib.contextmanager
def os_errors(dest: str | os.PathLike, argument: str = "--out") -> Iterator[None]:
    """Turn operating-system errors about writing ``dest`` into :func:`os_error` (naming ``argument``).

    Errors about other files (an input that cannot be read) pass through unchanged.
    """
    try:
        yield
    except OutputExistsError:
        raise
    except OSError as exc:
        if isinstance(exc, OutputWriteError) or not _ours_to_name(exc, Path(dest)):
            raise
        raise os_error(exc, dest, argument) from None


def _writable_parent(dest: Path, argument: str) -> None:
    parent = dest.absolute().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise bad_value(argument, str(dest), f"lies under {probe}, which is a file", f"choose another {argument}",
                        OutputExistsError)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise os_error(OSError(errno.EACCES, "Permission denied"), dest, argument)


def check_destination(path: str | os.PathLike, overwrite: bool, argument: str = "--out") -> Path:
    """Check an output folder before any computation (and clean leftovers of killed runs).

    Parameters
    ----------
    path : path-like
        Destination folder.
    overwrite : bool
        Replace an earlier output of spectranorm_neuro (``--overwrite``).
    argument : str, optional
        Option name used in messages.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputExistsError
        A file; a non-empty folder without ``overwrite``; a non-empty folder that spectranorm_neuro
        did not write, even with ``overwrite``.
    OutputWriteError
        The parent folder cannot be written.
    """
    path = Path(path)
    with os_errors(path, argument):
        clean_leftovers(path)
        if path.exists() or path.is_symlink():
            if not path.is_dir() or path.is_symlink():
                raise bad_value(argument, str(path), "is an existing file, not a folder",
                                f"choose another {argument} folder", OutputExistsError)
            if any(path.iterdir()):
                if not overwrite:
                    raise bad_value(argument, str(path), "already exists (the folder is not empty)",
                                    "choose another output path or pass --overwrite", OutputExistsError)
                if not is_package_output(path):
                    raise bad_value(argument, str(path), f"is a folder spectranorm_neuro did not write (it holds no "
                                    f"{OUTPUT_RECORD}), so it is not replaced even with --overwrite",
                                    f"choose a new or empty {argument} folder", OutputExistsError)
        _writable_parent(path, argument)
    return path


def _test_kill(point: str) -> None:
    if os.environ.get(_TEST_KILL) == point:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _record(stage: Path, command: str | None) -> None:
    files = relative_files(stage)
    record = {"format": OUTPUT_FORMAT, "format_version": 1, "package": "spectranorm_neuro",
              "package_version": __version__, "command": command, "files": files}
    (stage / OUTPUT_RECORD).write_text(json.dumps(record, indent=2) + "\n")


@contextlib.contextmanager
def staged_directory(dest: str | os.PathLike, overwrite: bool = False, argument: str = "--out",
                     command: str | None = None) -> Iterator[Path]:
    """Yield an empty staging folder that replaces ``dest`` as a whole when the block succeeds.

    Parameters
    ----------
    dest : path-like
        Destination folder (see :func:`check_destination`).
    overwrite : bool, optional
        Replace an earlier output of spectranorm_neuro.
    argument : str, optional
        Option name used in error messages.
    command : str, optional
        Recorded in the completion record.

    Yields
    ------
    pathlib.Path
        The staging folder (a hidden sibling of ``dest``); removed afterwards in every case.
    """
    dest = check_destination(dest, overwrite, argument)
    stage = sibling_path(dest, "staging")
    previous = sibling_path(dest, "previous")
    with os_errors(dest, argument), made_parents(dest):
        try:
            stage.mkdir()
            yield stage
            check_destination(dest, overwrite, argument)  # nothing appeared meanwhile
            _test_kill("staged")
            _record(stage, command)
            _test_kill("recorded")
            if dest.is_dir() and not any(dest.iterdir()):
                dest.rmdir()
            if dest.exists():
                os.rename(dest, previous)
                _test_kill("moved-aside")
            replace_folder(stage, dest, previous)
            _test_kill("swapped")
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            if previous.exists():
                if dest.exists():
                    shutil.rmtree(previous, ignore_errors=True)
                else:
                    os.rename(previous, dest)


@contextlib.contextmanager
def made_parents(dest: str | os.PathLike) -> Iterator[Path]:
    """Create the parent folders of ``dest``; remove those this call made if the block fails.

    Yields
    ------
    pathlib.Path
        The parent folder.
    """
    parent = Path(dest).absolute().parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]  # deepest first
    parent.mkdir(parents=True, exist_ok=True)
    try:
        yield parent
    except BaseException:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise
