"""CIFTI-2 dense scalar files (``.dscalar.nii``): surfaces and volumes in one file.

A dscalar's brain models list exactly the kept nodes of each structure, so masked vertices (the
medial wall) are *omitted* rather than written as NaN. Structure names map to CIFTI names with
nibabel's rules (``"CortexLeft"`` <-> ``CIFTI_STRUCTURE_CORTEX_LEFT``); a volume structure named
``"Volume"`` is stored as ``CIFTI_STRUCTURE_OTHER``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel import cifti2

from ..exceptions import FileFormatError, IncompatibleModelError, bad_value
from ..graphs._graph import Structure
from ._common import atomic_output, bad_file, check_feature_values, intent_for

__all__ = ["CiftiMap", "cifti_structure_name", "read_dscalar", "write_dscalar"]

_PREFIX = "CIFTI_STRUCTURE_"


def cifti_structure_name(name: str) -> str:
    """CIFTI brain-structure name of a structure (``"CortexLeft"`` -> ``CIFTI_STRUCTURE_CORTEX_LEFT``).

    Names nibabel does not recognise (``"Volume"``, ``"Lattice"`` ...) map to ``CIFTI_STRUCTURE_OTHER``.
    """
    try:
        return cifti2.BrainModelAxis.to_cifti_brain_structure_name(name)
    except ValueError:
        return _PREFIX + "OTHER"


def _structure_name(cifti_name: str) -> str:
    """Inverse of :func:`cifti_structure_name` (``OTHER`` -> ``"Volume"``)."""
    parts = cifti_name.removeprefix(_PREFIX).split("_")
    name = "".join(p.capitalize() for p in parts)
    return "Volume" if name == "Other" else name


@dataclass(frozen=True)
class CiftiMap:
    """Content of a dscalar file restricted to some structures.

    Attributes
    ----------
    data : numpy.ndarray, shape (n_maps, n_features)
        float64 values, features in the order of ``structures``.
    structures : tuple of Structure
        The structures the features belong to.
    names : tuple of str
        Map names (the scalar axis).
    """

    data: np.ndarray
    structures: tuple[Structure, ...]
    names: tuple[str, ...]


def _load(path) -> cifti2.Cifti2Image:
    try:
        img = nib.load(str(path))
    except Exception as exc:
        raise bad_file("path", path, f"cannot be read as CIFTI-2 ({type(exc).__name__}: {exc})",
                        "pass a valid .dscalar.nii file", FileFormatError) from None
    if not isinstance(img, cifti2.Cifti2Image):
        raise bad_file("path", path, f"is a {type(img).__name__}, not CIFTI-2",
                        "pass a .dscalar.nii file", FileFormatError)
    axis = img.header.get_axis(1)
    if not isinstance(axis, cifti2.BrainModelAxis) or img.ndim != 2:
        raise bad_file("path", path, "is not a dense file (no brain-model axis along columns)",
                        "pass a dscalar (maps x grayordinates) file", FileFormatError)
    return img


def read_dscalar(path: str | os.PathLike, structures: Sequence[Structure] | None = None,
                 map_index: int | None = None, allow_nan: bool = False) -> CiftiMap:
    """Read a CIFTI-2 dscalar file.

    Parameters
    ----------
    path : path-like
        A ``.dscalar.nii`` file.
    structures : sequence of Structure, optional
        Return the values over these structures' kept nodes, in their order. Every kept node must
        be present in the file's brain models (with the same vertex count / volume grid). By
        default every brain model of the file becomes a structure (in file order, nodes
        ascending).
    map_index : int, optional
        Read only this row of the scalar axis (all rows by default).
    allow_nan : bool, optional
        Accept NaN/inf values on the returned nodes (refused by default).

    Returns
    -------
    CiftiMap
    """
    img = _load(path)
    axis = img.header.get_axis(1)
    names = tuple(str(n) for n in img.header.get_axis(0).name) if isinstance(
        img.header.get_axis(0), cifti2.ScalarAxis) else tuple(str(i) for i in range(img.shape[0]))
    data = np.asanyarray(img.dataobj)
    if map_index is not None:
        if not 0 <= int(map_index) < data.shape[0]:
            raise bad_value("map_index", map_index, f"{path} holds {data.shape[0]} maps",
                            f"pass an index in 0..{data.shape[0] - 1}")
        data = data[[int(map_index)]]
        names = (names[int(map_index)],)
    data = np.asarray(data, dtype=np.float64)
    models = {}
    for cname, sl, bm in axis.iter_structures():
        models[cname] = (sl, bm)
    if structures is None:
        structures, blocks = [], []
        for cname, (sl, bm) in models.items():
            name = _structure_name(cname)
            if not np.asarray(bm.volume_mask).any():
                n_total = int(bm.nvertices[cname])
                nodes = np.asarray(bm.vertex)
                s_kind, shape, affine = "surface", None, None
            else:
                shape = tuple(int(s) for s in axis.volume_shape)
                nodes = np.ravel_multi_index(tuple(np.asarray(bm.voxel).T), shape)
                n_total, s_kind, affine = int(np.prod(shape)), "volume", np.asarray(axis.affine)
            order = np.argsort(nodes, kind="stable")
            structures.append(Structure(name, s_kind, n_total, nodes[order], shape, affine))
            blocks.append(data[:, sl][:, order])
        out = np.concatenate(blocks, axis=1)
        structures = tuple(structures)
    else:
        structures = tuple(structures)
        blocks = []
        for s in structures:
            cname = cifti_structure_name(s.name)
            if cname not in models:
                raise bad_file("path", path,
                                f"has no brain model for {s.name} (it holds "
                                f"{[_structure_name(m) for m in models]})",
                                "pass a file that covers every structure of the basis, or the matching "
                                "structures", IncompatibleModelError)
            sl, bm = models[cname]
            if s.kind == "volume":
                if axis.volume_shape is None or tuple(axis.volume_shape) != tuple(s.shape or ()):
                    raise bad_file("path", path,
                                    f"has volume shape {axis.volume_shape}, the mask has {s.shape}",
                                    "resample onto the mask's grid", IncompatibleModelError)
                if s.affine is not None and not np.allclose(axis.affine, s.affine, atol=1e-4):
                    raise bad_file("path", path, "has a volume affine that differs from the mask's",
                                    "resample onto the mask's grid", IncompatibleModelError)
                nodes = np.ravel_multi_index(tuple(np.asarray(bm.voxel).T), s.shape)
            else:
                n_file = int(bm.nvertices[cname])
                if n_file != int(s.n_total):
                    raise bad_file("path", path,
                                    f"describes {s.name} with {n_file} vertices but the basis mesh has "
                                    f"{s.n_total}",
                                    "pass maps on the same mesh as the basis (resample, e.g. with "
                                    "Workbench -metric-resample)", IncompatibleModelError)
                nodes = np.asarray(bm.vertex)
            lookup = np.full(int(s.n_total), -1, dtype=np.int64)
            lookup[nodes] = np.arange(sl.start, sl.start + len(nodes))
            cols = lookup[np.asarray(s.index)]
            if (cols < 0).any():
                raise bad_file("path", path,
                                f"omits {int((cols < 0).sum())} of the nodes the basis keeps in {s.name}",
                                "write the maps with the basis' mask (or build the basis with the file's "
                                "mask)", IncompatibleModelError)
            blocks.append(data[:, cols])
        out = np.concatenate(blocks, axis=1)
    if not allow_nan and not np.isfinite(out).all():
        n_bad = int((~np.isfinite(out)).any(axis=0).sum())
        raise bad_file("path", path, f"holds NaN/inf at {n_bad} kept grayordinate(s)",
                        "impute or exclude this map, or use a mask that leaves those nodes out",
                        FileFormatError)
    return CiftiMap(out, structures, names)


def write_dscalar(
    values: Any,
    path: str | os.PathLike,
    structures: Sequence[Structure],
    kind: str = "zscore",
    names: Sequence[str] | None = None,
    overwrite: bool = False,
    dtype: Any = np.float32,
) -> Path:
    """Write maps over the structures' kept nodes as a CIFTI-2 dscalar, atomically.

    Parameters
    ----------
    values : array_like, shape (n_features,) or (n_maps, n_features)
        Values over the concatenated kept nodes of ``structures``.
    path : path-like
        Output ending in ``.dscalar.nii``.
    structures : sequence of Structure
        Surface (``CortexLeft``/``CortexRight`` ...) and/or volume structures; nodes not kept are
        left out of the brain models.
    kind : str, optional
        Kind of map; names the maps by default (``"zscore"`` ...) and is validated like the GIFTI
        intents.
    names : sequence of str, optional
        One name per map (scalar axis).
    overwrite : bool, optional
        Replace an existing file (refused by default).
    dtype : dtype, optional
        Stored data type (float32 by default).

    Returns
    -------
    pathlib.Path
    """
    structures = tuple(structures)
    intent_for(kind)  # validates the kind
    arr, _ = check_feature_values(values, sum(s.n_features for s in structures))
    n_maps = arr.shape[0]
    if names is None:
        label = str(kind).lower()
        names = [label] if n_maps == 1 else [f"{label}_{i}" for i in range(n_maps)]
    names = [str(n) for n in names]
    if len(names) != n_maps:
        raise bad_value("names", names, f"has {len(names)} entries for {n_maps} maps",
                        "pass one name per map")
    axis = None
    for s in structures:
        cname = cifti_structure_name(s.name)
        if s.kind == "volume":
            if s.shape is None or len(s.shape) != 3:
                raise bad_value("structures", s.name, "is a volume without a 3-D grid shape",
                                "build it with io.volume_structure(mask)")
            voxels = np.stack(np.unravel_index(np.asarray(s.index), s.shape), axis=1)
            affine = s.affine if s.affine is not None else np.eye(4)
            bm = cifti2.BrainModelAxis(name=[cname] * len(voxels), voxel=voxels, affine=affine,
                                       volume_shape=s.shape)
        elif s.kind == "surface":
            bm = cifti2.BrainModelAxis.from_surface(np.asarray(s.index), int(s.n_total), cname)
        else:
            raise bad_value("structures", s.name, f"is a {s.kind!r} structure, which CIFTI cannot hold",
                            "write lattices/parcels with write_nifti or write_parcel_table")
        axis = bm if axis is None else axis + bm
    scalar = cifti2.ScalarAxis(names)
    img = cifti2.Cifti2Image(arr.astype(dtype), header=(scalar, axis))
    img.nifti_header.set_intent("ConnDenseScalar")
    img.nifti_header.set_data_dtype(dtype)
    with atomic_output(path, overwrite) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
