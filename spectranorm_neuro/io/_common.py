"""Shared helpers of the I/O layer: hemisphere names, structures, feature splitting, intents.

Feature order
-------------
Every reader and writer in :mod:`spectranorm_neuro.io` follows the order documented in
:mod:`spectranorm_neuro.graphs._graph`: the features of a map are the concatenation, in the order
of the ``structures`` tuple, of each structure's kept nodes (``Structure.index``, ascending).
When the structures are inferred from files rather than taken from a basis, surfaces come
**left hemisphere first, then right** (``CortexLeft``, ``CortexRight``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _util
from ..exceptions import (
    FileFormatError,
    InvalidInputError,
    OutputExistsError,
    ShapeMismatchError,
    bad_value,
)
from ..graphs._graph import Structure

__all__ = [
    "HEMI_TO_STRUCTURE",
    "STRUCTURE_TO_HEMI",
    "KIND_INTENTS",
    "normalize_hemi",
    "hemi_structure_name",
    "surface_structure",
    "resolve_structures",
    "is_default_layout",
    "check_feature_values",
    "split_features",
    "to_full",
    "map_format",
    "intent_for",
    "bad_file",
    "atomic_output",
    "write_text",
]

#: Canonical BIDS hemisphere label -> CIFTI structure name.
HEMI_TO_STRUCTURE = {"L": "CortexLeft", "R": "CortexRight"}
#: CIFTI structure name -> canonical BIDS hemisphere label.
STRUCTURE_TO_HEMI = {v: k for k, v in HEMI_TO_STRUCTURE.items()}

_HEMI_ALIASES = {
    "l": "L", "lh": "L", "left": "L", "cortexleft": "L", "cortex_left": "L",
    "cifti_structure_cortex_left": "L",
    "r": "R", "rh": "R", "right": "R", "cortexright": "R", "cortex_right": "R",
    "cifti_structure_cortex_right": "R",
}

#: Kind of map (also the BIDS ``desc-`` value) -> GIFTI/NIfTI intent.
KIND_INTENTS = {
    "zscore": "NIFTI_INTENT_ZSCORE",
    "centile": "NIFTI_INTENT_NONE",
    "harmonized": "NIFTI_INTENT_ESTIMATE",
    "mu": "NIFTI_INTENT_ESTIMATE",
    "sd": "NIFTI_INTENT_ESTIMATE",
    "recon": "NIFTI_INTENT_ESTIMATE",
    "pval": "NIFTI_INTENT_PVAL",
    "none": "NIFTI_INTENT_NONE",
}


def bad_file(argument: str, path: Any, problem: str, fix: str,
             cls: type = InvalidInputError) -> Exception:
    """Like :func:`~spectranorm_neuro.exceptions.bad_value` for a file: the message always names it.

    ``bad_value`` shortens long values, so the value shown is the file *name* and the full path is
    appended to the problem text.
    """
    text = str(path)
    name = Path(text).name or text
    where = "" if name == text else f" (file: {text})"
    return bad_value(argument, name, f"{problem.rstrip('.')}{where}", fix, cls)


def normalize_hemi(value: Any, argument: str = "hemi") -> str:
    """Return the canonical hemisphere label ``"L"`` or ``"R"``.

    Accepts ``L``/``R``, ``lh``/``rh``, ``left``/``right`` and the CIFTI names ``CortexLeft``/
    ``CortexRight`` (any case).
    """
    key = str(value).strip().lower()
    if key not in _HEMI_ALIASES:
        raise bad_value(argument, value, "is not a hemisphere",
                        "pass 'L' or 'R' (aliases: lh/rh, left/right, CortexLeft/CortexRight)")
    return _HEMI_ALIASES[key]


def hemi_structure_name(value: Any, argument: str = "hemi") -> str:
    """CIFTI structure name (``"CortexLeft"``/``"CortexRight"``) of a hemisphere label or alias."""
    return HEMI_TO_STRUCTURE[normalize_hemi(value, argument)]


def surface_structure(hemi: Any, n_vertices: int, mask: np.ndarray | None = None) -> Structure:
    """Build the :class:`Structure` of one cortical hemisphere.

    Parameters
    ----------
    hemi : str
        ``"L"``/``"R"`` or an alias (``lh``, ``left``, ``CortexLeft`` ...).
    n_vertices : int
        Number of vertices of the whole mesh (10242 for fsaverage5).
    mask : array_like of bool, shape (n_vertices,), optional
        Vertices kept as features (e.g. the cortex without the medial wall); all by default.

    Returns
    -------
    Structure
        ``Structure(name, "surface", n_vertices, index)`` with ``index`` ascending.
    """
    n_vertices = int(n_vertices)
    if mask is None:
        index = np.arange(n_vertices)
    else:
        mask = np.asarray(mask)
        if mask.shape != (n_vertices,):
            raise bad_value("mask", f"array of shape {mask.shape}",
                            f"does not have one entry per vertex ({n_vertices})",
                            f"pass a boolean array of shape ({n_vertices},)", ShapeMismatchError)
        index = np.flatnonzero(mask)
    return Structure(hemi_structure_name(hemi), "surface", n_vertices, index)


def is_default_layout(structures: Any) -> bool:
    """True for the layout a basis gets when built without structures (one ``"Features"`` block)."""
    if structures is None:
        return False
    structures = tuple(structures) if not isinstance(structures, Structure) else (structures,)
    return len(structures) == 1 and structures[0].name == "Features" and structures[0].kind == "lattice"


def resolve_structures(basis: Any = None, structures: Sequence[Structure] | Structure | None = None,
                       n_features: int | None = None) -> tuple[Structure, ...]:
    """Pick the structures from an explicit argument or from ``basis.structures``.

    Parameters
    ----------
    basis : EigenmodeBasis, optional
        A basis; its ``structures`` attribute is used when ``structures`` is not given.
    structures : Structure or sequence of Structure, optional
        Explicit structures (they win over the basis').
    n_features : int, optional
        If given, the structures must hold exactly this many features.

    Returns
    -------
    tuple of Structure
    """
    if structures is None and basis is not None:
        structures = getattr(basis, "structures", None)
        if is_default_layout(structures):
            structures = None
    if structures is None:
        raise bad_value("structures", None, "are needed to place features on images",
                        "pass structures=(Structure(...), ...) or a basis built with structures "
                        "(EigenmodeBasis(..., structures=graph.structures))")
    if isinstance(structures, Structure):
        structures = (structures,)
    structures = tuple(structures)
    if not structures or not all(isinstance(s, Structure) for s in structures):
        raise bad_value("structures", structures, "is not a non-empty sequence of Structure objects",
                        "pass a tuple of spectranorm_neuro.graphs.Structure")
    names = [s.name for s in structures]
    if len(set(names)) != len(names):
        raise bad_value("structures", names, "holds the same structure name twice",
                        "give each structure a distinct name")
    if basis is not None and n_features is None:
        n_features = getattr(basis, "n_features", None)
    total = sum(s.n_features for s in structures)
    if n_features is not None and total != int(n_features):
        raise bad_value("structures", names,
                        f"hold {total} features but the data/basis have {n_features}",
                        "pass the structures the basis was built on", ShapeMismatchError)
    return structures


def check_feature_values(values: Any, n_features: int, argument: str = "values",
                         allow_nan: bool = True) -> tuple[np.ndarray, bool]:
    """Return ``values`` as a float array of shape (n_maps, n_features) and whether it was 1-D.

    Parameters
    ----------
    values : array_like, shape (n_features,) or (n_maps, n_features)
        Values over the features.
    n_features : int
        Expected number of features.
    argument : str, optional
        Name used in error messages.
    allow_nan : bool, optional
        Accept NaN (but never ±inf).

    Returns
    -------
    values : numpy.ndarray, shape (n_maps, n_features)
    single : bool
        True when the input was one map (1-D).
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise bad_value(argument, f"array of shape {arr.shape}", "is not 1-D or 2-D",
                        "pass (n_features,) or (n_maps, n_features) values", ShapeMismatchError)
    single = arr.ndim == 1
    arr = arr[None, :] if single else arr
    if arr.shape[1] != n_features:
        raise bad_value(argument, f"array of shape {arr.shape}",
                        f"has {arr.shape[1]} features but the structures hold {n_features}",
                        "pass values over the basis' features (in the structures' order)",
                        ShapeMismatchError)
    bad = np.isinf(arr) if allow_nan else ~np.isfinite(arr)
    if bad.any():
        raise bad_value(argument, f"array of shape {arr.shape}",
                        f"holds {int(bad.sum())} infinite{'' if allow_nan else '/NaN'} value(s)",
                        "replace them (NaN marks missing values) before writing")
    return arr, single


def split_features(values: Any, structures: Sequence[Structure]) -> dict[str, np.ndarray]:
    """Split feature values into per-structure blocks.

    Parameters
    ----------
    values : array_like, shape (..., n_features)
        Values over the concatenated features of ``structures``.
    structures : sequence of Structure

    Returns
    -------
    dict of str to numpy.ndarray, each of shape (..., n_kept)
        Views into ``values``, keyed by structure name, in the structures' order.
    """
    arr = np.asarray(values)
    total = sum(s.n_features for s in structures)
    if arr.shape[-1] != total:
        raise bad_value("values", f"array of shape {arr.shape}",
                        f"has {arr.shape[-1]} features but the structures hold {total}",
                        "pass values over the basis' features", ShapeMismatchError)
    out, start = {}, 0
    for s in structures:
        out[s.name] = arr[..., start:start + s.n_features]
        start += s.n_features
    return out


def to_full(values: Any, structure: Structure, fill: float = np.nan) -> np.ndarray:
    """Scatter kept-node values onto the structure's full node set.

    Parameters
    ----------
    values : array_like, shape (..., n_kept)
        Values over ``structure.index``.
    structure : Structure
    fill : float, optional
        Value of the nodes that are not kept (NaN by default).

    Returns
    -------
    numpy.ndarray, shape (..., n_total)
    """
    return structure.to_full(values, fill)


_FS_MORPH = re.compile(r"^(lh|rh)\.")


def map_format(path: str | os.PathLike) -> str:
    """Guess a map file's format from its name.

    Returns
    -------
    str
        One of ``"gifti"`` (``.gii``), ``"cifti"`` (``.dscalar.nii``), ``"nifti"`` (``.nii``,
        ``.nii.gz``), ``"mgh"`` (``.mgh``, ``.mgz``), ``"freesurfer"`` (``lh.*``/``rh.*`` curv-format
        morphometry such as ``lh.thickness``).
    """
    name = Path(path).name.lower()
    if name.endswith(".gii"):
        return "gifti"
    if name.endswith(".dscalar.nii"):
        return "cifti"
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return "nifti"
    if name.endswith(".mgh") or name.endswith(".mgz"):
        return "mgh"
    if _FS_MORPH.match(name):
        return "freesurfer"
    raise bad_file("path", path, "has an extension spectranorm_neuro cannot read as a map",
                    "use .func.gii/.shape.gii, .dscalar.nii, .nii/.nii.gz, .mgh/.mgz or a FreeSurfer "
                    "lh.*/rh.* morphometry file", FileFormatError)


def intent_for(kind: str) -> str:
    """GIFTI/NIfTI intent name for a map kind (``zscore``, ``centile``, ``harmonized`` ...).

    Full intent names (``"NIFTI_INTENT_..."``) are passed through unchanged.
    """
    if isinstance(kind, str) and kind.upper().startswith("NIFTI_INTENT_"):
        return kind.upper()
    key = str(kind).lower()
    if key not in KIND_INTENTS:
        raise bad_value("kind", kind, "is not a known kind of map",
                        f"pass one of {sorted(KIND_INTENTS)} or a NIFTI_INTENT_* name", InvalidInputError)
    return KIND_INTENTS[key]



def _refuse_existing(path: str | os.PathLike, overwrite: bool) -> None:
    if not overwrite and Path(path).exists():
        raise bad_file("path", path, "already exists",
                       "choose another output path or pass overwrite=True (CLI: --overwrite)",
                       OutputExistsError)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False, suffix: str = "") -> Iterator[Path]:
    """:func:`spectranorm_neuro._util.atomic_path` whose "already exists" error names the file in full."""
    _refuse_existing(path, overwrite)
    with _util.atomic_path(path, overwrite, suffix=suffix) as tmp:
        yield tmp


def write_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write UTF-8 text atomically (see :func:`atomic_output`)."""
    _refuse_existing(path, overwrite)
    return _util.atomic_write_text(path, text, overwrite=overwrite)
