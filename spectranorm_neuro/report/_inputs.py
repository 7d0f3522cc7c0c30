"""Validation of everything :func:`~spectranorm_neuro.report.generate_report` is given.

Each check raises an error built by :func:`~spectranorm_neuro.exceptions.bad_value`, so the message
names the argument, the value, the problem and the fix. Nothing here draws or writes files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._util import as_finite_array
from ..exceptions import MeshError, ShapeMismatchError, bad_value
from ..graphs._graph import Structure

__all__ = [
    "Block",
    "FSAVERAGE5_N_VERTICES",
    "DEFAULT_CENTILES",
    "check_zscores",
    "check_subjects",
    "check_controls",
    "check_groups",
    "check_site_column",
    "resolve_blocks",
    "check_atlas",
    "check_centiles",
    "check_coefficients",
    "check_max_subjects",
    "check_surface_meshes",
    "subject_slugs",
    "hemisphere_of",
]

FSAVERAGE5_N_VERTICES = 10242
DEFAULT_CENTILES = (0.025, 0.25, 0.5, 0.75, 0.975)
_KINDS = ("surface", "volume", "lattice", "parcels")
_NO_GROUP = "(no group)"


@dataclass(frozen=True)
class Block:
    """One structure together with its slice of the feature axis.

    Parameters
    ----------
    structure : Structure
        The structure (surface, volume, lattice or parcels).
    start, stop : int
        Its features are columns ``start:stop`` of the z-score array.
    """

    structure: Structure
    start: int
    stop: int

    @property
    def name(self) -> str:
        """Name of the structure."""
        return self.structure.name

    @property
    def kind(self) -> str:
        """Kind of the structure."""
        return self.structure.kind

    def to_full(self, values: np.ndarray) -> np.ndarray:
        """Scatter this block's features onto the full node set.

        Parameters
        ----------
        values : numpy.ndarray, shape (..., n_features)
            Values over all features of the report (every block).

        Returns
        -------
        numpy.ndarray, shape (..., n_total)
            The block's values at its kept nodes, NaN on masked nodes.
        """
        return self.structure.to_full(np.asarray(values, dtype=np.float64)[..., self.start:self.stop])


def check_zscores(zscores: Any) -> np.ndarray:
    """Return z-scores as a finite float array of shape (n_subjects, n_features)."""
    arr = as_finite_array(zscores, "zscores", ndim=(1, 2))
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise bad_value("zscores", f"array of shape {arr.shape}", "is empty",
                        "pass an (n_subjects, n_features) array with at least one subject and feature",
                        ShapeMismatchError)
    return arr


def check_subjects(subjects: Any, n_subjects: int) -> pd.DataFrame:
    """Return the subject table (one row per z-score row), indexed by unique subject ids.

    ``None`` gives ids ``sub-001`` ... and no covariates.
    """
    if subjects is None:
        width = max(3, len(str(n_subjects)))
        return pd.DataFrame(index=pd.Index([f"sub-{i + 1:0{width}d}" for i in range(n_subjects)],
                                           name="subject"))
    if not isinstance(subjects, pd.DataFrame):
        raise bad_value("subjects", type(subjects).__name__, "is not a pandas DataFrame",
                        "pass a DataFrame indexed by subject id with one row per z-score row")
    if len(subjects) != n_subjects:
        raise bad_value("subjects", f"DataFrame with {len(subjects)} rows",
                        f"does not match the {n_subjects} rows of zscores",
                        "pass one subjects row per z-score row, in the same order", ShapeMismatchError)
    if not subjects.index.is_unique:
        dup = subjects.index[subjects.index.duplicated()][0]
        raise bad_value("subjects", f"index with duplicate id {dup!r}", "has duplicate subject ids",
                        "index the DataFrame by unique subject ids (e.g. subjects.set_index('subject'))")
    return subjects


def check_controls(controls: Any, n_subjects: int) -> np.ndarray:
    """Return a boolean mask of shape (n_subjects,) marking the calibration subjects (default all)."""
    if controls is None:
        return np.ones(n_subjects, dtype=bool)
    arr = np.asarray(controls)
    if arr.shape != (n_subjects,):
        raise bad_value("controls", f"array of shape {arr.shape}",
                        f"does not have one entry per subject ({n_subjects})",
                        "pass a boolean array of shape (n_subjects,)", ShapeMismatchError)
    if arr.dtype != bool:
        if arr.dtype.kind not in "iu" or not np.isin(arr, (0, 1)).all():
            raise bad_value("controls", f"array of dtype {arr.dtype}", "is not boolean",
                            "pass True for held-out/control subjects and False for the others")
        arr = arr.astype(bool)
    if not arr.any():
        raise bad_value("controls", "all False", "marks no subject for the calibration section",
                        "mark at least one control subject, or pass controls=None to use every subject")
    return arr


def check_groups(subjects: pd.DataFrame, group_column: str | None) -> tuple[np.ndarray, list[str]]:
    """Return each subject's group label and the ordered group levels.

    Returns
    -------
    labels : numpy.ndarray of str, shape (n_subjects,)
        Group of each subject (``"(no group)"`` for missing values).
    levels : list of str
        Distinct groups, in category order for categorical columns, sorted otherwise.
    """
    if group_column is None:
        return np.full(len(subjects), "", dtype=object), []
    if group_column not in subjects.columns:
        raise bad_value("group_column", group_column, "is not a column of subjects",
                        f"pass one of {list(subjects.columns)} or None")
    col = subjects[group_column]
    if isinstance(col.dtype, pd.CategoricalDtype):
        order = [str(c) for c in col.cat.categories]
    else:
        order = sorted({str(v) for v in col.dropna()})
    labels = np.where(col.isna().to_numpy(), _NO_GROUP, col.astype(str).to_numpy()).astype(object)
    levels = [g for g in order if (labels == g).any()]
    if (labels == _NO_GROUP).any():
        levels.append(_NO_GROUP)
    return labels, levels


def check_site_column(subjects: pd.DataFrame, site_column: str | None, model: Any) -> str | None:
    """Resolve the column holding the acquisition site (batch) of each subject.

    An explicit ``site_column`` must exist. Otherwise the model's first batch covariate present in
    ``subjects`` is used, then a column named ``"site"``; ``None`` when there is none.
    """
    if site_column is not None:
        if site_column not in subjects.columns:
            raise bad_value("site_column", site_column, "is not a column of subjects",
                            f"pass one of {list(subjects.columns)} or None")
        return site_column
    for name in list(getattr(model, "batch_covariates", None) or []):
        if name in subjects.columns:
            return str(name)
    return "site" if "site" in subjects.columns else None


def _check_structure(structure: Any, position: int) -> Structure:
    arg = f"structures[{position}]"
    if not isinstance(structure, Structure):
        raise bad_value(arg, type(structure).__name__, "is not a graphs.Structure",
                        "pass spectranorm_neuro.graphs.Structure objects")
    if structure.kind not in _KINDS:
        raise bad_value(arg, structure.kind, "has an unknown kind", f"use one of {list(_KINDS)}")
    index = np.asarray(structure.index)
    if index.ndim != 1 or index.size == 0:
        raise bad_value(arg, f"{structure.name} with index of shape {index.shape}",
                        "does not keep a 1-D, non-empty set of nodes",
                        "drop empty structures from the basis", ShapeMismatchError)
    if index.min() < 0 or index.max() >= structure.n_total:
        raise bad_value(arg, structure.name, f"has indices outside 0..{structure.n_total - 1}",
                        "pass ascending kept-node indices into the full structure", ShapeMismatchError)
    shape = structure.shape
    if structure.kind == "volume":
        if shape is None or len(shape) != 3 or int(np.prod(shape)) != structure.n_total:
            raise bad_value(arg, f"{structure.name} with shape {shape}",
                            f"is a volume without a 3-D grid shape of {structure.n_total} voxels",
                            "set Structure.shape to the (x, y, z) grid shape", ShapeMismatchError)
        if structure.affine is None or np.asarray(structure.affine).shape != (4, 4):
            raise bad_value(arg, structure.name, "is a volume without a (4, 4) affine",
                            "set Structure.affine to the voxel-to-world matrix")
    if structure.kind == "lattice" and shape is not None and len(shape) != 1:
        if len(shape) != 2 or int(np.prod(shape)) != structure.n_total:
            raise bad_value(arg, f"{structure.name} with shape {shape}",
                            f"is a lattice without a 2-D shape of {structure.n_total} cells",
                            "set Structure.shape to the (rows, columns) lattice shape (or None for a "
                            "1-D profile)", ShapeMismatchError)
    return structure


def resolve_blocks(basis: Any, structures: Any, n_features: int) -> tuple[Block, ...]:
    """Find the structures describing the features and cut the feature axis into blocks.

    Parameters
    ----------
    basis : EigenmodeBasis or None
        Its ``structures`` attribute is used when ``structures`` is None.
    structures : sequence of Structure or None
        Explicit structures, overriding the basis'.
    n_features : int
        Number of columns of the z-score array.

    Returns
    -------
    tuple of Block
        One block per structure, covering ``0 .. n_features`` in order.
    """
    if structures is None:
        structures = getattr(basis, "structures", None)
        if not structures:
            raise bad_value("basis", basis, "does not describe its geometry (no `structures`)",
                            "build the basis with a graphs adapter, or pass structures=(Structure(...), ...)")
    if isinstance(structures, Structure):
        structures = (structures,)
    structures = tuple(_check_structure(s, i) for i, s in enumerate(structures))
    total = sum(s.n_features for s in structures)
    if total != n_features:
        raise bad_value("zscores", f"array with {n_features} features",
                        f"does not match the {total} kept nodes of the structures "
                        f"{[s.name for s in structures]}",
                        "pass z-scores in the basis' feature order", ShapeMismatchError)
    basis_n = getattr(basis, "n_features", None)
    if basis_n is not None and int(basis_n) != n_features:
        raise bad_value("zscores", f"array with {n_features} features",
                        f"does not match the basis' {basis_n} features",
                        "pass the basis the z-scores were computed with", ShapeMismatchError)
    stops = np.cumsum([s.n_features for s in structures])
    starts = stops - np.array([s.n_features for s in structures])
    return tuple(Block(s, int(a), int(b)) for s, a, b in zip(structures, starts, stops))


def check_atlas(atlas_labels: Any, n_features: int) -> tuple[np.ndarray, list[str]] | None:
    """Turn parcel labels over the features into integer codes and names.

    Parameters
    ----------
    atlas_labels : array_like of int or str, shape (n_features,), or (labels, names) tuple, or None
        Parcel of each feature. Integer labels may come with ``names`` (a sequence indexed by label
        or a mapping label -> name). Negative integers, ``None``, NaN and ``""`` mean "unlabelled".
    n_features : int
        Number of features.

    Returns
    -------
    (codes, names) or None
        ``codes`` of shape (n_features,) in ``-1 .. n_parcels - 1`` (-1 = unlabelled) and the parcel
        names in code order.
    """
    if atlas_labels is None:
        return None
    names_in: Any = None
    if isinstance(atlas_labels, tuple) and len(atlas_labels) == 2:
        atlas_labels, names_in = atlas_labels
    raw = np.asarray(atlas_labels, dtype=object)
    if raw.ndim != 1 or raw.size != n_features:
        raise bad_value("atlas_labels", f"array of shape {raw.shape}",
                        f"does not give one parcel per feature ({n_features})",
                        "pass an array of shape (n_features,) in the basis' feature order",
                        ShapeMismatchError)
    missing = np.asarray(pd.isna(raw), dtype=bool) | (raw == "")
    numeric = pd.to_numeric(pd.Series(raw[~missing]), errors="coerce").to_numpy(dtype=np.float64)
    if numeric.size and not np.isnan(numeric).any():
        if not np.allclose(numeric, np.round(numeric)):
            raise bad_value("atlas_labels", "non-integer numbers", "are not parcel labels",
                            "pass integer or string labels")
        ints = np.full(n_features, -1, dtype=np.int64)
        ints[~missing] = np.round(numeric).astype(np.int64)
        ints[ints < 0] = -1
        values = np.unique(ints[ints >= 0])
        codes = np.where(ints >= 0, np.searchsorted(values, ints), -1)
        names = [_label_name(int(v), names_in) for v in values]
    else:
        text = np.where(missing, "", raw).astype(str)
        values = np.unique(text[~missing])
        codes = np.where(missing, -1, np.searchsorted(values, text))
        names = [str(v) for v in values]
    if not len(names):
        raise bad_value("atlas_labels", "all unlabelled", "holds no parcel",
                        "pass labels with at least one parcel, or atlas_labels=None")
    return codes.astype(np.int64), names


def _label_name(label: int, names: Any) -> str:
    if names is None:
        return str(label)
    if isinstance(names, Mapping):
        return str(names.get(label, label))
    if isinstance(names, Sequence) or isinstance(names, np.ndarray):
        if label >= len(names):
            raise bad_value("atlas_labels", f"label {label}", f"has no entry among the {len(names)} names",
                            "pass one name per label value (names[label])")
        name = names[label]
        return name.decode() if isinstance(name, bytes) else str(name)
    raise bad_value("atlas_labels", type(names).__name__, "has names that are neither a sequence nor a dict",
                    "pass (labels, names) with names a list or a dict label -> name")


def check_centiles(centiles: Any) -> tuple[float, ...]:
    """Return the centile levels (fractions in (0, 1), ascending); default 2.5/25/50/75/97.5 %."""
    if centiles is None:
        return DEFAULT_CENTILES
    arr = as_finite_array(centiles, "centiles", ndim=1)
    if arr.size == 0 or np.any((arr <= 0) | (arr >= 1)) or np.unique(arr).size != arr.size:
        raise bad_value("centiles", arr.tolist(), "are not distinct fractions strictly between 0 and 1",
                        "pass e.g. (0.025, 0.25, 0.5, 0.75, 0.975)")
    return tuple(float(c) for c in np.sort(arr))


def check_coefficients(coefficients: Any, n_subjects: int) -> np.ndarray | None:
    """Return spectral coefficients of shape (n_subjects, n_modes), or None."""
    if coefficients is None:
        return None
    arr = as_finite_array(coefficients, "coefficients", ndim=2)
    if arr.shape[0] != n_subjects:
        raise bad_value("coefficients", f"array of shape {arr.shape}",
                        f"does not have one row per subject ({n_subjects})",
                        "pass the (n_subjects, n_modes) spectral coefficients of the scored maps",
                        ShapeMismatchError)
    return arr


def check_max_subjects(max_subjects: Any, name: str = "max_subjects") -> int:
    """Return a non-negative integer."""
    if isinstance(max_subjects, bool) or not isinstance(max_subjects, (int, np.integer)) or max_subjects < 0:
        raise bad_value(name, max_subjects, "is not a non-negative integer", f"pass e.g. {name}=50")
    return int(max_subjects)


def hemisphere_of(name: str) -> str | None:
    """``"left"``/``"right"`` from a structure name such as ``CortexLeft``, else None."""
    low = name.lower()
    if "left" in low:
        return "left"
    if "right" in low:
        return "right"
    return None


def check_surface_meshes(blocks: Sequence[Block], meshes: Mapping | None) -> dict[str, tuple]:
    """Find the mesh (and optional background) of every surface block.

    Parameters
    ----------
    blocks : sequence of Block
        All blocks; only surfaces are considered.
    meshes : dict, optional
        ``{structure name: (vertices (n_total, 3), faces (n_faces, 3)[, background (n_total,)])}``.
        Without an entry, surfaces with 10242 vertices named ...Left/...Right use fsaverage5
        inflated with its sulcal depth.

    Returns
    -------
    dict
        ``{name: (vertices, faces, background or None)}`` with arrays validated, or the string
        ``"fsaverage5"`` as value when the package data mesh is to be used.
    """
    meshes = dict(meshes or {})
    out: dict[str, tuple] = {}
    names = {b.name for b in blocks if b.kind == "surface"}
    unknown = sorted(set(meshes) - names)
    if unknown:
        raise bad_value("meshes", unknown, "name no surface structure of the basis",
                        f"key meshes by structure name, one of {sorted(names)}")
    for block in blocks:
        if block.kind != "surface":
            continue
        n_total = block.structure.n_total
        if block.name not in meshes:
            if n_total == FSAVERAGE5_N_VERTICES and hemisphere_of(block.name):
                out[block.name] = ("fsaverage5",)
                continue
            raise bad_value("meshes", sorted(meshes),
                            f"has no mesh for surface {block.name!r} ({n_total} vertices)",
                            f"pass meshes={{{block.name!r}: (vertices, faces)}}")
        out[block.name] = _check_mesh(meshes[block.name], block.name, n_total)
    return out


def _check_mesh(mesh: Any, name: str, n_total: int) -> tuple:
    arg = f"meshes[{name!r}]"
    if not isinstance(mesh, (tuple, list)) or len(mesh) not in (2, 3):
        raise bad_value(arg, type(mesh).__name__, "is not a (vertices, faces[, background]) tuple",
                        "pass a tuple (vertices (n, 3), faces (m, 3)) with an optional background map")
    vertices = as_finite_array(mesh[0], f"{arg}[0] (vertices)", ndim=2)
    faces = np.asarray(mesh[1])
    if vertices.shape != (n_total, 3):
        raise bad_value(arg, f"vertices of shape {vertices.shape}",
                        f"do not match the {n_total} vertices of the structure",
                        f"pass ({n_total}, 3) vertex coordinates", MeshError)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu" or faces.size == 0 \
            or faces.min() < 0 or faces.max() >= n_total:
        raise bad_value(arg, f"faces of shape {faces.shape} and dtype {faces.dtype}",
                        f"are not integer triangles over vertices 0..{n_total - 1}",
                        "pass an (n_faces, 3) integer array of vertex indices", MeshError)
    background = None
    if len(mesh) == 3 and mesh[2] is not None:
        background = as_finite_array(mesh[2], f"{arg}[2] (background)", ndim=1)
        if background.shape != (n_total,):
            raise bad_value(arg, f"background of shape {background.shape}",
                            f"does not give one value per vertex ({n_total})",
                            "pass a background map (e.g. sulcal depth) of shape (n_vertices,)",
                            ShapeMismatchError)
    return vertices, faces.astype(np.int64), background


def subject_slugs(ids: Sequence[Any]) -> list[str]:
    """File-name-safe, unique slugs for subject ids (``sub 01/a`` -> ``sub_01_a``)."""
    out: list[str] = []
    seen: set[str] = set()
    for value in ids:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", str(value)).strip("_") or "subject"
        base, n = slug, 2
        while slug.lower() in seen:
            slug, n = f"{base}-{n}", n + 1
        seen.add(slug.lower())
        out.append(slug)
    return out

