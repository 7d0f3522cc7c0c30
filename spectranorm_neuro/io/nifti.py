"""NIfTI volume maps read and written through a mask.

Features of a volume are the voxels of its mask in C order (``index =
numpy.flatnonzero(mask.ravel(order="C"))``), the same order as the lattice/volume graph adapter.
Reading checks that a map's grid (shape and affine) is the mask's; writing puts NaN outside the
mask and reuses the mask image's affine and header.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..exceptions import FileFormatError, IncompatibleModelError, ShapeMismatchError, bad_value
from ..graphs._graph import Structure
from ._common import atomic_output, bad_file, check_feature_values, intent_for

__all__ = ["volume_structure", "load_volume", "read_nifti", "write_nifti"]

_AFFINE_ATOL = 1e-4


def load_volume(image: Any, argument: str = "image") -> nib.spatialimages.SpatialImage:
    """Load a NIfTI/MGH image from a path, or return an already-loaded nibabel image."""
    if isinstance(image, nib.spatialimages.SpatialImage):
        return image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            return nib.load(str(path))
        except FileNotFoundError:
            raise bad_file(argument, path, "does not exist", "check the path",
                            FileFormatError) from None
        except Exception as exc:
            raise bad_file(argument, path, f"cannot be read as an image ({type(exc).__name__}: {exc})",
                            "pass a valid .nii/.nii.gz file", FileFormatError) from None
    raise bad_value(argument, type(image).__name__, "is not a path or a nibabel image",
                    "pass a path to a .nii/.nii.gz file or a nibabel image")


def voxel_data(img, path: str) -> np.ndarray:
    """The voxel array of a loaded image; a truncated or corrupt file raises a FileFormatError naming it."""
    try:
        return np.asanyarray(img.dataobj)
    except Exception as exc:  # gzip/zlib/EOF/ValueError from a damaged file
        raise bad_file("path", path, f"cannot be read: the file is truncated or damaged ({type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:80]})", "restore or re-create the file",
                       FileFormatError) from None


def volume_structure(mask: Any, name: str = "Volume") -> Structure:
    """Build the :class:`Structure` of a voxel mask.

    Parameters
    ----------
    mask : path-like or nibabel image
        3-D image; its non-zero (finite) voxels are the features.
    name : str, optional
        Structure name (``"Volume"`` by default).

    Returns
    -------
    Structure
        ``Structure(name, "volume", n_voxels, index, shape, affine)`` with
        ``index = flatnonzero(mask.ravel(order="C"))``.
    """
    img = load_volume(mask, "mask")
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise bad_value("mask", f"image of shape {data.shape}", "is not 3-D",
                        "pass a 3-D binary mask image", ShapeMismatchError)
    keep = np.isfinite(data) & (data != 0)
    if not keep.any():
        raise bad_value("mask", f"image of shape {data.shape}", "has no non-zero voxel",
                        "pass a mask with at least one voxel set")
    return Structure(name, "volume", int(keep.size), np.flatnonzero(keep.ravel(order="C")),
                     tuple(int(s) for s in keep.shape), np.asarray(img.affine, dtype=np.float64))


def _check_grid(img, structure: Structure, path: str) -> None:
    shape = tuple(img.shape[:3])
    if structure.shape is None or tuple(structure.shape) != shape:
        raise bad_file("path", path,
                        f"has grid shape {shape} but the mask ({structure.name}) has {structure.shape}",
                        "resample the map onto the mask's grid (e.g. nilearn.image.resample_to_img "
                        "with interpolation='continuous') or build the basis on this grid",
                        IncompatibleModelError)
    if structure.affine is not None and not np.allclose(img.affine, structure.affine, atol=_AFFINE_ATOL):
        raise bad_file("path", path,
                        f"has affine {np.round(img.affine, 3).tolist()} but the mask has "
                        f"{np.round(structure.affine, 3).tolist()}",
                        "resample the map onto the mask (nilearn.image.resample_to_img) so both share "
                        "one voxel-to-world affine", IncompatibleModelError)


def read_nifti(path: str | os.PathLike, structure: Structure, map_index: int | None = None,
               allow_nan: bool = False) -> np.ndarray:
    """Read the in-mask voxels of a NIfTI map.

    Parameters
    ----------
    path : path-like or nibabel image
        3-D map, or 4-D stack of maps, on the mask's grid.
    structure : Structure
        A volume structure (see :func:`volume_structure`).
    map_index : int, optional
        For 4-D files: read only this volume (all volumes by default).
    allow_nan : bool, optional
        Accept NaN inside the mask (refused by default: a missing value cannot be encoded).

    Returns
    -------
    numpy.ndarray, shape (n_maps, n_kept)
        float64 values over ``structure.index`` (C order); ``n_maps`` is 1 for 3-D files or when
        ``map_index`` is given.
    """
    img = load_volume(path, "path")
    name = str(path) if not isinstance(path, nib.spatialimages.SpatialImage) else "<image>"
    if len(img.shape) not in (3, 4):
        raise bad_file("path", name, f"has shape {img.shape}", "pass a 3-D map or a 4-D stack of maps",
                        FileFormatError)
    _check_grid(img, structure, name)
    ijk = np.unravel_index(np.asarray(structure.index), structure.shape)
    data = voxel_data(img, str(path))
    if data.ndim == 3:
        if map_index not in (None, 0):
            raise bad_value("map_index", map_index, f"{name} holds a single 3-D map",
                            "pass map_index=None or 0")
        out = np.asarray(data[ijk], dtype=np.float64)[None, :]
    else:
        n_vol = data.shape[3]
        if map_index is not None:
            if not 0 <= int(map_index) < n_vol:
                raise bad_value("map_index", map_index, f"{name} holds {n_vol} volumes",
                                f"pass an index in 0..{n_vol - 1}")
            out = np.asarray(data[(*ijk, int(map_index))], dtype=np.float64)[None, :]
        else:
            out = np.asarray(data[ijk], dtype=np.float64).T
    if not allow_nan:
        bad = ~np.isfinite(out)
        if bad.any():
            n_bad = int(bad.any(axis=0).sum())
            raise bad_file("path", name, f"holds NaN/inf in {n_bad} voxel(s) inside the mask",
                            "impute or exclude this map, or use a mask (and basis) that leaves those "
                            "voxels out", FileFormatError)
    return out


def write_nifti(
    values: Any,
    path: str | os.PathLike,
    structure: Structure,
    kind: str = "zscore",
    template: Any = None,
    overwrite: bool = False,
    dtype: Any = np.float32,
) -> Path:
    """Write one or more volume maps as NIfTI, NaN outside the mask, atomically.

    Parameters
    ----------
    values : array_like, shape (n_kept,) or (n_maps, n_kept)
        Values over the mask's voxels (C order); several maps make a 4-D file.
    path : path-like
        Output ``.nii`` or ``.nii.gz``.
    structure : Structure
        The volume structure (shape and affine of the grid).
    kind : str, optional
        Kind of map, sets the header intent (``"zscore"`` -> ``NIFTI_INTENT_ZSCORE`` ...).
    template : path-like or nibabel image, optional
        The mask image; its header (units, qform/sform codes, description) is reused. Without it a
        fresh header with the structure's affine is written.
    overwrite : bool, optional
        Replace an existing file (refused by default).
    dtype : dtype, optional
        Stored data type (float32 by default).

    Returns
    -------
    pathlib.Path
    """
    if not isinstance(structure, Structure) or structure.shape is None or len(structure.shape) != 3:
        raise bad_value("structure", getattr(structure, "name", structure), "is not a 3-D volume structure",
                        "pass the Structure of a voxel mask (see volume_structure)")
    arr, single = check_feature_values(values, structure.n_features)
    affine = structure.affine
    header = None
    if template is not None:
        timg = load_volume(template, "template")
        if tuple(timg.shape[:3]) != tuple(structure.shape):
            raise bad_file("template", template, f"has shape {timg.shape[:3]}, not {structure.shape}",
                            "pass the mask image the structure was built from", ShapeMismatchError)
        header = timg.header.copy() if isinstance(timg, nib.Nifti1Image) else None
        affine = timg.affine if affine is None else affine
    if affine is None:
        affine = np.eye(4)
    n_maps = arr.shape[0]
    vol = np.full((*structure.shape, n_maps), np.nan, dtype=dtype)
    ijk = np.unravel_index(np.asarray(structure.index), structure.shape)
    vol[ijk] = arr.T.astype(dtype)
    vol = vol[..., 0] if single or n_maps == 1 else vol
    img = nib.Nifti1Image(vol, affine, header=header)
    img.set_data_dtype(dtype)
    img.header.set_intent(intent_for(kind))
    img.header["scl_slope"] = np.nan  # never rescale float data
    img.header["scl_inter"] = np.nan
    if header is not None:
        img.set_qform(affine, int(header["qform_code"]) or 1)
        img.set_sform(affine, int(header["sform_code"]) or 1)
    else:
        img.set_qform(affine, 1)
        img.set_sform(affine, 1)
    with atomic_output(path, overwrite) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
