"""``snm.utils.general``: directories, logging and table checks with the reference's names."""

from __future__ import annotations

import datetime
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ...exceptions import bad_value

__all__ = ["ReportTimeFormatter", "ensure_dir", "get_logger", "prepare_save_directory", "report_time",
           "set_unique_pytensor_compiledir", "suppress_output", "validate_dataframe", "validate_load_directory"]


def ensure_dir(file_name) -> Path:
    """Create the parent directory of ``file_name`` if needed; return ``file_name`` as a Path."""
    file_name = Path(file_name)
    file_name.parent.mkdir(parents=True, exist_ok=True)
    return file_name


def report_time(*, relative_to: float | None = None, absolute: bool = False) -> str | float:
    """Now (``"YYYY-mm-dd HH:MM:SS"``, or epoch seconds if ``absolute``), or the time since ``relative_to``."""
    now = time.time()
    if relative_to is not None:
        elapsed = now - relative_to
        return elapsed if absolute else str(datetime.timedelta(seconds=elapsed))
    if absolute:
        return now
    return datetime.datetime.fromtimestamp(now).astimezone().strftime("%Y-%m-%d %H:%M:%S")


class ReportTimeFormatter(logging.Formatter):
    """Log formatter that provides ``%(report_time)s``."""

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` with the current :func:`report_time`."""
        record.report_time = report_time()
        return super().format(record)


def get_logger(name: str, level: int = logging.INFO) -> logging.Logger:
    """A logger printing ``time : [LEVEL] - name - message`` (a handler is added once)."""
    logger = logging.getLogger(name)
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(ReportTimeFormatter("%(report_time)s : [%(levelname)s] - %(name)s - %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(level)
    return logger


def validate_dataframe(dataframe, column_names) -> None:
    """Raise unless ``dataframe`` is a DataFrame holding every column of ``column_names``."""
    if not isinstance(dataframe, pd.DataFrame):
        raise bad_value("dataframe", type(dataframe).__name__, "is not a pandas DataFrame",
                        "pass a pandas.DataFrame", TypeError)
    missing = [c for c in column_names if c not in dataframe.columns]
    if missing:
        raise bad_value("dataframe", f"table with columns {list(dataframe.columns)}",
                        f"lacks column(s) {missing}", "add them to the table")


def prepare_save_directory(directory, subdirectory: str = "saved_model") -> Path:
    """``directory/subdirectory``, created empty; ``directory`` must exist and the subdirectory be empty."""
    directory = Path(directory)
    if not directory.is_dir():
        raise bad_value("directory", str(directory), "does not exist", "create it first", FileNotFoundError)
    sub = directory / subdirectory
    if sub.exists() and any(sub.iterdir()):
        raise bad_value("directory", str(sub), "is not empty", "pass a new directory")
    sub.mkdir(parents=True, exist_ok=True)
    return sub


def validate_load_directory(directory, subdirectory: str = "saved_model") -> Path:
    """``directory/subdirectory``, which must exist."""
    sub = Path(directory) / subdirectory
    if not sub.is_dir():
        raise bad_value("directory", str(directory), f"holds no {subdirectory!r} subdirectory",
                        "pass the directory given to save_model()", FileNotFoundError)
    return sub


@contextmanager
def suppress_output() -> Iterator[None]:
    """Silence the process' stdout and stderr (file descriptors 1 and 2) inside the block."""
    with open(os.devnull, "w") as null:
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def set_unique_pytensor_compiledir() -> None:
    """Point pytensor at a private compile directory (for many processes compiling at once).

    Sets ``PYTENSOR_FLAGS=compiledir=...`` for this process and its children; it takes effect for
    pytensor imported afterwards.
    """
    path = tempfile.mkdtemp(prefix="pytensor_")
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("compiledir=")]
    os.environ["PYTENSOR_FLAGS"] = ",".join([*flags, f"compiledir={path}"])
