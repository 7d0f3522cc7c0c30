"""GIFTI metric maps (``.func.gii``, ``.shape.gii``): read any number of data arrays, write with intents.

Written files carry ``AnatomicalStructurePrimary`` (``CortexLeft``/``CortexRight``) in the file
metadata, one float32 data array per map with the intent of the map's kind, a ``Name`` in each
array's metadata, and NaN on the vertices the structure does not keep (e.g. the medial wall), so
Connectome Workbench, FreeSurfer (``freeview``) and nilearn open them as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..exceptions import FileFormatError, bad_value
from ..graphs._graph import Structure
from ._common import (
    STRUCTURE_TO_HEMI,
    atomic_output,
    bad_file,
    check_feature_values,
    intent_for,
    normalize_hemi,
    to_full,
)

__all__ = ["GiftiMap", "read_gifti", "write_gifti"]

_SURFACE_INTENTS = {"NIFTI_INTENT_POINTSET", "NIFTI_INTENT_TRIANGLE"}
_BUFFER_SIZE = 1 << 20


@dataclass(frozen=True)
class GiftiMap:
    """The content of a GIFTI metric file.

    Attributes
    ----------
    data : numpy.ndarray, shape (n_maps, n_vertices)
        One row per data array, float64.
    hemi : str or None
        ``"L"``/``"R"`` from ``AnatomicalStructurePrimary`` (file or first array metadata), if any.
    intents : tuple of str
        Intent name of each array (``"NIFTI_INTENT_ZSCORE"`` ...).
    names : tuple of str
        ``Name`` metadata of each array (``""`` when absent).
    meta : dict
        File-level metadata.
    """

    data: np.ndarray
    hemi: str | None
    intents: tuple[str, ...]
    names: tuple[str, ...]
    meta: dict


def read_gifti(path: str | os.PathLike) -> GiftiMap:
    """Read every data array of a GIFTI metric file.

    Parameters
    ----------
    path : path-like
        A ``.func.gii``/``.shape.gii`` (or any GIFTI holding 1-D arrays of equal length).

    Returns
    -------
    GiftiMap
        ``data`` has shape (n_maps, n_vertices).

    Raises
    ------
    FileFormatError
        The file cannot be parsed, holds a surface (points/triangles) rather than a map, or its
        arrays have different lengths.
    """
    path = Path(path)
    try:
        # a 1 MiB expat buffer instead of nibabel's 35 MB default: same result, faster, and a
        # cohort read stays small in memory
        img = nib.gifti.GiftiImage.from_filename(str(path), buffer_size=_BUFFER_SIZE)
    except FileNotFoundError:
        raise bad_file("path", path, "does not exist", "check the path", FileFormatError) from None
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise bad_file("path", path, f"cannot be read as GIFTI ({type(exc).__name__}: {exc})",
                        "check the file is a valid .func.gii/.shape.gii", FileFormatError) from None
    if not isinstance(img, nib.gifti.GiftiImage):
        raise bad_file("path", path, "holds no GIFTI document (XML without a <GIFTI> element)",
                       "pass a .func.gii/.shape.gii file", FileFormatError)
    intents = tuple(nib.nifti1.intent_codes.niistring[d.intent] for d in img.darrays)
    if not img.darrays:
        raise bad_file("path", path, "holds no data array", "pass a GIFTI metric file with data",
                        FileFormatError)
    if _SURFACE_INTENTS & set(intents):
        raise bad_file("path", path, "is a surface (points/triangles), not a map",
                        "pass the metric file (.func.gii/.shape.gii); load meshes with "
                        "graphs.mesh.load_surface", FileFormatError)
    arrays = [np.asarray(d.data) for d in img.darrays]
    lengths = {a.size for a in arrays}
    if len(lengths) != 1 or any(a.ndim > 1 and max(a.shape) != a.size for a in arrays):
        raise bad_file("path", path, f"holds arrays of shapes {[a.shape for a in arrays]}",
                        "pass a metric file whose data arrays are 1-D with one value per vertex",
                        FileFormatError)
    data = np.stack([a.reshape(-1) for a in arrays]).astype(np.float64)
    meta = dict(img.meta)
    primary = meta.get("AnatomicalStructurePrimary") or dict(img.darrays[0].meta).get(
        "AnatomicalStructurePrimary")
    hemi = None
    if primary:
        try:
            hemi = normalize_hemi(primary)
        except Exception:  # e.g. "Cerebellum": not a cortical hemisphere
            hemi = None
    names = tuple(str(dict(d.meta).get("Name", "")) for d in img.darrays)
    return GiftiMap(data, hemi, intents, names, meta)


def write_gifti(
    values: Any,
    path: str | os.PathLike,
    structure: Structure,
    kind: str = "zscore",
    names: list[str] | tuple[str, ...] | None = None,
    overwrite: bool = False,
    dtype: Any = np.float32,
    meta: dict | None = None,
) -> Path:
    """Write one or more maps of a cortical hemisphere as a GIFTI metric file, atomically.

    Parameters
    ----------
    values : array_like, shape (n_kept,) or (n_maps, n_kept)
        Values over ``structure.index``; the other vertices are written as NaN.
    path : path-like
        Output, normally ending in ``.func.gii``.
    structure : Structure
        A surface structure named ``"CortexLeft"`` or ``"CortexRight"``.
    kind : str, optional
        ``"zscore"`` (``NIFTI_INTENT_ZSCORE``), ``"centile"`` (``NIFTI_INTENT_NONE``),
        ``"harmonized"``/``"mu"``/``"sd"``/``"recon"`` (``NIFTI_INTENT_ESTIMATE``), ``"pval"``, or a
        ``NIFTI_INTENT_*`` name.
    names : sequence of str, optional
        ``Name`` metadata of each map (default ``"<kind>"`` or ``"<kind>_<i>"``).
    overwrite : bool, optional
        Replace an existing file (refused by default).
    dtype : dtype, optional
        Stored data type (float32 by default, as Workbench expects).
    meta : dict, optional
        Extra file-level metadata (strings).

    Returns
    -------
    pathlib.Path
        The written path.
    """
    if not isinstance(structure, Structure) or structure.name not in STRUCTURE_TO_HEMI:
        raise bad_value("structure", getattr(structure, "name", structure),
                        "is not a cortical surface structure",
                        "pass the CortexLeft or CortexRight Structure (write volumes with write_nifti)")
    intent = intent_for(kind)
    arr, _ = check_feature_values(values, structure.n_features)
    full = to_full(arr, structure).astype(dtype)
    n_maps = full.shape[0]
    if names is None:
        label = kind.lower() if not kind.upper().startswith("NIFTI_INTENT_") else "map"
        names = [label] if n_maps == 1 else [f"{label}_{i}" for i in range(n_maps)]
    names = [str(n) for n in names]
    if len(names) != n_maps:
        raise bad_value("names", names, f"has {len(names)} entries for {n_maps} maps",
                        "pass one name per map")
    file_meta = {"AnatomicalStructurePrimary": structure.name,
                 **{str(k): str(v) for k, v in (meta or {}).items()}}
    img = nib.gifti.GiftiImage(meta=nib.gifti.GiftiMetaData(file_meta))
    datatype = "NIFTI_TYPE_FLOAT32" if np.dtype(dtype) == np.float32 else "NIFTI_TYPE_FLOAT64"
    for row, name in zip(full, names):
        img.add_gifti_data_array(nib.gifti.GiftiDataArray(
            np.ascontiguousarray(row), intent=intent, datatype=datatype,
            meta=nib.gifti.GiftiMetaData({"Name": name})))
    with atomic_output(path, overwrite) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
