"""Every error and warning raised by spectranorm_neuro.

All errors derive from :class:`SpectraNormError`, so ``except SpectraNormError`` catches anything
the package raises on purpose. Most also derive from the matching builtin (``ValueError``,
``FileExistsError`` ...), so generic handlers keep working.

Messages follow one pattern, built by :func:`bad_value`: they name the argument, the value that
was given, what is wrong with it, and how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SpectraNormError",
    "InvalidInputError",
    "UsageError",
    "ShapeMismatchError",
    "UnseenCategoryError",
    "GraphError",
    "MeshError",
    "FileFormatError",
    "UnsafeFormatError",
    "ChecksumError",
    "FormatVersionError",
    "IncompatibleModelError",
    "OutputExistsError",
    "OutputWriteError",
    "NotFittedError",
    "SpectraNormWarning",
    "ConvergenceWarning",
    "ExtrapolationWarning",
    "bad_value",
]


class SpectraNormError(Exception):
    """Base class of every error raised by spectranorm_neuro."""


class InvalidInputError(SpectraNormError, ValueError):
    """An argument has a value the function cannot use."""


class UsageError(InvalidInputError):
    """Arguments that cannot work together (a missing option that another needs); the command line exits 2."""


class ShapeMismatchError(InvalidInputError):
    """Array shapes (subjects, features, modes, queries) do not agree."""


class UnseenCategoryError(InvalidInputError):
    """A categorical covariate holds a level that was not present at fit time."""


class GraphError(InvalidInputError):
    """An adjacency matrix or graph is unusable (non-square, isolated nodes, disconnected ...)."""


class MeshError(InvalidInputError):
    """A triangle mesh is unusable (non-manifold, several components, free vertices ...)."""


class FileFormatError(SpectraNormError, ValueError):
    """A file cannot be read: wrong format, corrupt, or not what the caller expected."""


class UnsafeFormatError(FileFormatError):
    """A file is in an unsafe format (pickle/joblib) that spectranorm_neuro refuses to load."""


class ChecksumError(FileFormatError):
    """A file's SHA-256 checksum differs from the one recorded when it was written."""


class FormatVersionError(FileFormatError):
    """A saved object has a format version this release cannot read."""


class IncompatibleModelError(SpectraNormError, ValueError):
    """A model or basis does not match the data it is applied to (space, mesh, vertex count)."""


class OutputExistsError(SpectraNormError, FileExistsError):
    """An output file already exists and overwriting was not requested."""


class OutputWriteError(SpectraNormError, OSError):
    """An output cannot be written (disk full, permission denied, read-only file system)."""


class NotFittedError(SpectraNormError, RuntimeError):
    """A model method needs a fitted model."""


class SpectraNormWarning(UserWarning):
    """Base class of every warning issued by spectranorm_neuro."""


class ConvergenceWarning(SpectraNormWarning):
    """An optimizer or sampler stopped before meeting its convergence criterion."""


class ExtrapolationWarning(SpectraNormWarning):
    """Covariates lie outside the range seen at fit time."""


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bad_value(
    argument: str,
    value: Any,
    problem: str,
    fix: str,
    cls: type[SpectraNormError] = InvalidInputError,
) -> SpectraNormError:
    """Build an error whose message names the argument, the value, the problem and the fix.

    Parameters
    ----------
    argument : str
        Name of the offending argument (or file, or column).
    value : Any
        The value that was given; its ``repr`` is shortened to 80 characters.
    problem : str
        What is wrong with it.
    fix : str
        What the caller should do instead.
    cls : type of SpectraNormError, optional
        Error class to instantiate, :class:`InvalidInputError` by default.

    Returns
    -------
    SpectraNormError
        The error, ready to be raised.

    Examples
    --------
    >>> str(bad_value("n_modes", 500, "exceeds the 100 modes", "pass n_modes <= 100"))
    'n_modes=500: exceeds the 100 modes. Fix: pass n_modes <= 100.'
    """
    problem = problem.rstrip(".")
    fix = fix.rstrip(".")
    return cls(f"{argument}={_short(value)}: {problem}. Fix: {fix}.")
