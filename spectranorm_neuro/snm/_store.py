"""Writing a saved-object folder of the facade atomically (staged next to it, then put in place).

The facade's three folder formats (direct models, covariance models, converted reference models)
go through the engine's one staged-save mechanism, :func:`spectranorm_neuro.engine.persistence.save_folder`:
the files are written into a sibling staging folder with their checksummed ``manifest.json``, then
the complete folder is put in place. An existing non-empty destination is replaced only with
``overwrite=True`` and only if it is a folder this package wrote (its manifest names one of the
package's formats and it holds nothing else).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..engine.persistence import save_folder as _save_folder

__all__ = ["save_folder"]


def save_folder(directory, overwrite: bool, files: dict[str, Callable[[Path], None]], format_name: str,
                format_version: int = 1, extra: dict | None = None) -> Path:
    """Write ``files`` (name -> writer of that path) and their manifest into ``directory``, atomically.

    Returns
    -------
    pathlib.Path
        ``directory``.
    """

    def write(tmp: Path) -> list[str]:
        for name, writer in files.items():
            writer(tmp / name)
        return list(files)

    return _save_folder(directory, overwrite, write, format_name, format_version, extra)
