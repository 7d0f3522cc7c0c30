"""FreeSurfer surface maps: curv-format morphometry and MGH/MGZ vertex maps.

Curv files are ``lh.thickness``, ``lh.curv``, ``lh.sulc``, ``lh.area`` ...; MGH/MGZ vertex maps are
e.g. ``lh.thickness.fwhm10.fsaverage5.mgh``.

Meshes (``lh.white``, ``lh.pial``), ``.annot`` and ``.label`` files are read by
:mod:`spectranorm_neuro.graphs.mesh` and :mod:`spectranorm_neuro.graphs.parcellation`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..exceptions import FileFormatError, bad_value
from ._common import atomic_output, bad_file

__all__ = ["FreeSurferMap", "freesurfer_hemi", "read_morph", "write_morph"]

_HEMI_PREFIX = re.compile(r"^(lh|rh)\.", re.IGNORECASE)


@dataclass(frozen=True)
class FreeSurferMap:
    """Values of a FreeSurfer vertex map.

    Attributes
    ----------
    data : numpy.ndarray, shape (n_maps, n_vertices)
        One row per frame (curv files hold one), float64.
    hemi : str or None
        ``"L"``/``"R"`` from the ``lh.``/``rh.`` file name prefix, if any.
    """

    data: np.ndarray
    hemi: str | None


def freesurfer_hemi(path: str | os.PathLike) -> str | None:
    """Hemisphere (``"L"``/``"R"``) encoded in a FreeSurfer file name (``lh.*``/``rh.*``), or None."""
    match = _HEMI_PREFIX.match(Path(path).name)
    if not match:
        return None
    return "L" if match.group(1).lower() == "lh" else "R"


def read_morph(path: str | os.PathLike) -> FreeSurferMap:
    """Read a FreeSurfer vertex map: curv-format morphometry or an MGH/MGZ file.

    Parameters
    ----------
    path : path-like
        ``lh.thickness``, ``rh.sulc`` ... (curv format) or ``*.mgh``/``*.mgz`` holding a
        (n_vertices, 1, 1[, n_frames]) volume.

    Returns
    -------
    FreeSurferMap
        ``data`` has shape (n_maps, n_vertices).
    """
    path = Path(path)
    lower = path.name.lower()
    try:
        if lower.endswith((".mgh", ".mgz")):
            img = nib.load(str(path))
            arr = np.asarray(img.dataobj, dtype=np.float64)
            if arr.ndim < 1 or int(np.prod(arr.shape[1:3])) != 1:
                raise bad_file("path", path, f"holds a volume of shape {arr.shape}",
                                "pass an MGH vertex map of shape (n_vertices, 1, 1[, n_frames])",
                                FileFormatError)
            data = arr.reshape(arr.shape[0], -1).T
        else:
            data = np.asarray(nib.freesurfer.read_morph_data(str(path)), dtype=np.float64)[None, :]
    except FileFormatError:
        raise
    except Exception as exc:
        raise bad_file("path", path,
                        f"cannot be read as a FreeSurfer map ({type(exc).__name__}: {exc})",
                        "pass a curv-format file (lh.thickness ...) or an .mgh/.mgz vertex map",
                        FileFormatError) from None
    return FreeSurferMap(data, freesurfer_hemi(path))


def write_morph(values: Any, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write one map of full-mesh vertex values in FreeSurfer curv format, atomically.

    Parameters
    ----------
    values : array_like, shape (n_vertices,)
        One value per vertex (stored as float32; NaN is kept).
    path : path-like
        Output such as ``lh.zscore`` (the ``lh.``/``rh.`` prefix tells FreeSurfer the hemisphere).
    overwrite : bool, optional
        Replace an existing file (refused by default).

    Returns
    -------
    pathlib.Path
    """
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim != 1:
        raise bad_value("values", f"array of shape {arr.shape}", "is not 1-D",
                        "pass one value per vertex of the whole mesh")
    with atomic_output(path, overwrite, suffix=".curv") as tmp:
        nib.freesurfer.write_morph_data(str(tmp), arr)
    return Path(path)
