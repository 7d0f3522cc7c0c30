"""Read any map file onto a basis' features, and write any feature vector back onto images.

:func:`read_map` dispatches on the file name (GIFTI, FreeSurfer curv/MGH, CIFTI dscalar, NIfTI)
and checks the map against the structures it must fill: vertex count, hemisphere, grid, NaNs.
:func:`write_map` splits per-subject or per-query vectors over the features by structure and
writes each block in the format its path asks for. :func:`write_parcel_table` writes parcel
values as a BIDS-style TSV.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import FileFormatError, IncompatibleModelError, InvalidInputError, bad_value
from ..graphs._graph import Structure
from ._common import (
    STRUCTURE_TO_HEMI,
    bad_file,
    check_feature_values,
    map_format,
    normalize_hemi,
    split_features,
    to_full,
    write_text,
)
from .cifti import read_dscalar, write_dscalar
from .freesurfer import read_morph, write_morph
from .gifti import read_gifti, write_gifti
from .nifti import read_nifti, write_nifti

__all__ = ["filename_hemi", "read_map", "write_map", "write_parcel_table", "read_parcel_table"]

_BIDS_HEMI = re.compile(r"(?:^|_)hemi-([A-Za-z]+)(?:_|\.)")
_FS_HEMI = re.compile(r"^(lh|rh)\.", re.IGNORECASE)


def filename_hemi(path: str | os.PathLike) -> str | None:
    """Hemisphere (``"L"``/``"R"``) named by a file: BIDS ``hemi-`` entity or ``lh.``/``rh.`` prefix."""
    name = Path(path).name
    match = _BIDS_HEMI.search(name)
    if match:
        try:
            return normalize_hemi(match.group(1))
        except InvalidInputError:
            return None
    match = _FS_HEMI.match(name)
    if match:
        return "L" if match.group(1).lower() == "lh" else "R"
    return None


def _surface_values(path: Path, structure: Structure, map_index: int | None, allow_nan: bool) -> np.ndarray:
    fmt = map_format(path)
    if fmt == "gifti":
        content = read_gifti(path)
        data, meta_hemi = content.data, content.hemi
    else:
        content = read_morph(path)
        data, meta_hemi = content.data, None
    want = STRUCTURE_TO_HEMI.get(structure.name)
    for source, hemi in (("its metadata (AnatomicalStructurePrimary)", meta_hemi),
                         ("its file name", filename_hemi(path))):
        if want is not None and hemi is not None and hemi != want:
            raise bad_file("path", path,
                            f"is a hemi-{hemi} map according to {source} but was given for {structure.name}",
                            f"list the hemi-{want} file for {structure.name} (check the left/right columns "
                            "or file names)", IncompatibleModelError)
    n_vert = data.shape[1]
    if n_vert != int(structure.n_total):
        raise bad_file("path", path,
                        f"has {n_vert} vertices but the basis mesh for {structure.name} has "
                        f"{structure.n_total}",
                        "resample the maps onto the basis' mesh (e.g. mri_surf2surf --trgsubject fsaverage5) "
                        "or build the basis on the maps' mesh", IncompatibleModelError)
    if map_index is not None:
        if not 0 <= int(map_index) < data.shape[0]:
            raise bad_value("map_index", map_index, f"{path} holds {data.shape[0]} map(s)",
                            f"pass an index in 0..{data.shape[0] - 1}")
        data = data[[int(map_index)]]
    out = data[:, np.asarray(structure.index)]
    if not allow_nan and not np.isfinite(out).all():
        n_bad = int((~np.isfinite(out)).any(axis=0).sum())
        raise bad_file("path", path,
                        f"holds NaN/inf at {n_bad} vertex(es) that the basis keeps in {structure.name}",
                        "impute or exclude this map, or use a cortex mask (and basis) that leaves those "
                        "vertices out", FileFormatError)
    return out


def read_map(path: str | os.PathLike, structures: Structure | Sequence[Structure],
             map_index: int | None = None, allow_nan: bool = False) -> np.ndarray:
    """Read a map file and return its values over the structures' kept nodes.

    Parameters
    ----------
    path : path-like
        A GIFTI metric (``.func.gii``/``.shape.gii``), FreeSurfer morphometry (``lh.thickness``) or
        MGH/MGZ vertex map — each for **one** surface structure; a CIFTI ``.dscalar.nii`` for any
        number of structures; or a NIfTI map for one volume structure.
    structures : Structure or sequence of Structure
        What the file must fill, in feature order.
    map_index : int, optional
        Read only this map of a multi-map file (all maps by default).
    allow_nan : bool, optional
        Accept NaN/inf on kept nodes (refused by default: missing values cannot be encoded).

    Returns
    -------
    numpy.ndarray, shape (n_maps, n_features)
        float64 values over the concatenated kept nodes of ``structures``.

    Raises
    ------
    IncompatibleModelError
        Wrong vertex count, wrong hemisphere, grid (shape/affine) differing from the mask's.
    FileFormatError
        Unreadable file, NaN inside the mask.
    """
    path = Path(path)
    structures = (structures,) if isinstance(structures, Structure) else tuple(structures)
    if not path.exists():
        raise bad_file("path", path, "does not exist", "check the file list / dataset folder",
                        FileFormatError)
    fmt = map_format(path)
    if fmt == "cifti":
        return read_dscalar(path, structures, map_index=map_index, allow_nan=allow_nan).data
    if len(structures) != 1:
        raise bad_file("path", path, f"holds one structure but {len(structures)} were requested "
                        f"({[s.name for s in structures]})",
                        "pass one file per structure (e.g. one per hemisphere) or a .dscalar.nii",
                        InvalidInputError)
    structure = structures[0]
    if fmt == "nifti":
        if structure.kind not in ("volume", "lattice") or structure.shape is None:
            raise bad_file("path", path, f"is a volume but {structure.name} is a {structure.kind}",
                            "pass a surface map (.func.gii, lh.thickness ...) for surface structures",
                            IncompatibleModelError)
        return read_nifti(path, structure, map_index=map_index, allow_nan=allow_nan)
    if structure.kind != "surface":
        raise bad_file("path", path, f"is a surface map but {structure.name} is a {structure.kind}",
                        "pass a NIfTI map for volume structures", IncompatibleModelError)
    return _surface_values(path, structure, map_index, allow_nan)


def _key_structure(key: str, structures: Sequence[Structure]) -> Structure:
    by_name = {s.name: s for s in structures}
    if key in by_name:
        return by_name[key]
    try:
        hemi = normalize_hemi(key, "paths")
    except InvalidInputError:
        hemi = None
    for s in structures:
        if hemi is not None and STRUCTURE_TO_HEMI.get(s.name) == hemi:
            return s
    raise bad_value("paths", key, f"names no structure among {list(by_name)}",
                    "key the paths by structure name (CortexLeft ...) or hemisphere (L/R)")


def write_map(
    values: Any,
    structures: Structure | Sequence[Structure],
    paths: str | os.PathLike | Mapping[str, str | os.PathLike],
    kind: str = "zscore",
    names: Sequence[str] | None = None,
    overwrite: bool = False,
    template: Any = None,
) -> list[Path]:
    """Write feature values (per subject, per query ...) back onto images, by structure.

    Parameters
    ----------
    values : array_like, shape (n_features,) or (n_maps, n_features)
        Values over the concatenated kept nodes of ``structures`` (z-scores, centiles, mu ...).
        NaN is allowed and written as is.
    structures : Structure or sequence of Structure
        The feature layout (normally ``basis.structures``).
    paths : path-like or mapping
        * one ``.dscalar.nii`` path: all structures in one CIFTI file (masked nodes omitted);
        * one path when there is a single structure: GIFTI (``.gii``), NIfTI (``.nii[.gz]``) or
          FreeSurfer curv (``lh.*``/``rh.*``, one map only);
        * a mapping from structure name (or hemisphere ``L``/``R``) to path: one file each.
    kind : str, optional
        ``zscore``, ``centile``, ``harmonized``, ``mu``, ``sd``, ``recon`` (sets intents/names).
    names : sequence of str, optional
        One name per map.
    overwrite : bool, optional
        Replace existing files (refused by default).
    template : path-like or nibabel image, optional
        Mask image whose header NIfTI outputs reuse.

    Returns
    -------
    list of pathlib.Path
        The written files, in structure order.
    """
    structures = (structures,) if isinstance(structures, Structure) else tuple(structures)
    arr, _ = check_feature_values(values, sum(s.n_features for s in structures))
    if isinstance(paths, Mapping):
        plan = [(_key_structure(str(k), structures), Path(v)) for k, v in paths.items()]
        missing = [s.name for s in structures if s.name not in {p[0].name for p in plan}]
        if missing:
            raise bad_value("paths", {str(k): str(v) for k, v in paths.items()},
                            f"gives no output for {missing}", "add one path per structure")
    else:
        path = Path(paths)
        if path.name.lower().endswith(".dscalar.nii"):
            return [write_dscalar(arr, path, structures, kind=kind, names=names, overwrite=overwrite)]
        if len(structures) != 1:
            raise bad_file("paths", path, f"is one file for {len(structures)} structures",
                            "pass a .dscalar.nii path, or a dict {structure name: path}")
        plan = [(structures[0], path)]
    blocks = split_features(arr, structures)
    written = []
    for structure, path in plan:
        block = blocks[structure.name]
        fmt = map_format(path)
        if fmt == "gifti":
            written.append(write_gifti(block, path, structure, kind=kind, names=names, overwrite=overwrite))
        elif fmt == "nifti":
            written.append(write_nifti(block, path, structure, kind=kind, template=template,
                                       overwrite=overwrite))
        elif fmt == "cifti":
            written.append(write_dscalar(block, path, (structure,), kind=kind, names=names,
                                         overwrite=overwrite))
        elif fmt == "freesurfer":
            if block.shape[0] != 1:
                raise bad_file("paths", path, f"is a curv file but there are {block.shape[0]} maps",
                                "write several maps to .func.gii, or one curv file per map")
            written.append(write_morph(to_full(block[0], structure), path, overwrite=overwrite))
        else:
            raise bad_file("paths", path, f"is a {fmt} path, which spectranorm_neuro does not write",
                            "use .func.gii, .nii.gz, .dscalar.nii or lh.*/rh.*")
    return written


def write_parcel_table(
    values: Any,
    path: str | os.PathLike,
    labels: Sequence[Any],
    index: Sequence[Any] | None = None,
    index_name: str = "participant_id",
    overwrite: bool = False,
) -> Path:
    """Write per-parcel values as a TSV (rows: subjects or maps, columns: parcels), atomically.

    Parameters
    ----------
    values : array_like, shape (n_parcels,) or (n_rows, n_parcels)
        Parcel values (e.g. predictions for parcel queries).
    path : path-like
        Output ``.tsv``.
    labels : sequence, length n_parcels
        Column names (parcel labels or names).
    index : sequence, length n_rows, optional
        Row labels (e.g. participant ids); ``0 .. n_rows-1`` by default.
    index_name : str, optional
        Header of the first column.
    overwrite : bool, optional
        Replace an existing file (refused by default).

    Returns
    -------
    pathlib.Path
        Missing values are written ``n/a`` as BIDS asks.
    """
    labels = [str(label) for label in labels]
    arr, _ = check_feature_values(values, len(labels))
    if index is None:
        index = list(range(arr.shape[0]))
    index = [str(i) for i in index]
    if len(index) != arr.shape[0]:
        raise bad_value("index", f"{len(index)} labels", f"does not match the {arr.shape[0]} rows of values",
                        "pass one row label per row")
    frame = pd.DataFrame(arr, columns=labels, index=pd.Index(index, name=index_name))
    text = frame.to_csv(sep="\t", na_rep="n/a", float_format="%.10g", lineterminator="\n")
    return write_text(path, text, overwrite=overwrite)


def read_parcel_table(path: str | os.PathLike, index_name: str = "participant_id") -> pd.DataFrame:
    """Read a TSV written by :func:`write_parcel_table` (``n/a`` becomes NaN).

    Returns
    -------
    pandas.DataFrame, shape (n_rows, n_parcels)
        Indexed by ``index_name`` (as strings); float columns named by parcel.
    """
    frame = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False,
                        dtype={index_name: str})
    return frame.set_index(index_name).astype(np.float64)
