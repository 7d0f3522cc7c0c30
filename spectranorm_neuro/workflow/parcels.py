"""Parcel outputs of ``apply`` and ``report`` (``--atlas``): an atlas read onto a basis, parcel tables and maps.

A parcel's value is the model's answer for the parcel-mean query (``io.atlas_queries``): its
z-score is that of the subject's mean over the parcel under the predictive distribution of that
mean, not an average of vertex z-scores. ``apply --atlas`` writes, per map kind,

* ``group/atlas-<name>_desc-<kind>_<measure>.tsv``: one row per subject, one column per parcel
  (``n/a`` where undefined), with a JSON sidecar;
* per subject ``..._atlas-<name>_desc-<kind>_<measure>.shape.gii`` (or ``.func.gii``/``.nii.gz``):
  each vertex/voxel holds its parcel's value (NaN outside every parcel), with a JSON sidecar.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import InvalidInputError, bad_value
from ..io import DerivativesWriter, atlas_queries, build_bids_name, filename_hemi, write_parcel_table
from ..io._common import write_text

__all__ = ["Atlas", "PARCEL_KINDS", "read_atlas", "read_atlas_layout", "region_parcels", "parcel_scores",
           "write_parcel_outputs"]


@dataclass
class Atlas:
    """An atlas read onto a basis.

    Attributes
    ----------
    name : str
        BIDS ``atlas-`` label (letters and digits), e.g. ``"aparc"``.
    names : list of str, length n_parcels
        Parcel names (``L_precentral`` ... for per-hemisphere atlases).
    parcel : numpy.ndarray of int, shape (n_features,)
        Parcel index (column of ``encoded``) of every feature, ``-1`` outside every parcel.
    encoded : numpy.ndarray, shape (n_modes, n_parcels)
        The parcel-mean queries encoded in the basis.
    sources : list of str
        The atlas file names.
    weights : scipy.sparse matrix, shape (n_parcels, n_features), optional
        The parcel-mean weights over features (to score the maps themselves, exact z).
    structures : tuple of Structure, optional
        The feature layout of an atlas read without a basis (:func:`read_atlas_layout`); empty
        for one read onto a basis (whose structures it shares).
    """

    name: str
    names: list[str]
    parcel: np.ndarray
    encoded: np.ndarray | None
    sources: list[str]
    weights: object = None
    structures: tuple = ()

    @property
    def n_parcels(self) -> int:
        """Number of parcels."""
        return len(self.names)

    def report_labels(self) -> tuple[np.ndarray, dict[int, str]]:
        """``(labels, names)`` for ``report.generate_report(atlas_labels=...)``: parcel index per feature."""
        return self.parcel.astype(np.int64), dict(enumerate(self.names))

    def to_features(self, values: np.ndarray) -> np.ndarray:
        """Spread parcel values onto features: (n_rows, n_parcels) -> (n_rows, n_features), NaN outside."""
        values = np.atleast_2d(np.asarray(values, dtype=np.float64))
        out = np.full((values.shape[0], self.parcel.size), np.nan)
        inside = self.parcel >= 0
        out[:, inside] = values[:, self.parcel[inside]]
        return out


def _atlas_name(paths: Sequence[Path]) -> str:
    stem = paths[0].name
    for prefix in ("lh.", "rh.", "L.", "R."):
        stem = stem.removeprefix(prefix)
    stem = re.sub(r"(hemi-[LR]_?|_?hemi-[LR])", "", stem.split(".")[0])
    ents = dict(part.split("-", 1) for part in stem.split("_") if "-" in part)
    label = ents.get("atlas") or ents.get("desc") or stem.split("_")[-1]
    label = re.sub(r"[^A-Za-z0-9]", "", label)
    return label or "atlas"


def read_atlas(paths: str | os.PathLike | Sequence[str | os.PathLike], basis, name: str | None = None,
               argument: str = "--atlas") -> Atlas:
    """Read an atlas onto a basis: one file, or one ``.annot``/``.label.gii`` per hemisphere.

    One file is a ``.dlabel.nii``, a NIfTI atlas on a volume basis' grid, or one hemisphere's
    ``.annot``/``.label.gii`` for a one-hemisphere basis.

    Parameters
    ----------
    paths : path-like or sequence of path-like
        Per-hemisphere files are matched to hemispheres by name (``lh.``/``rh.``, ``hemi-L``/``hemi-R``),
        else taken left then right.
    basis : EigenmodeBasis
    name : str, optional
        The ``atlas-`` label of the outputs (default: from the file name, e.g. ``aparc``).
    argument : str, optional
        How to name the option in messages.

    Returns
    -------
    Atlas
    """
    items = _atlas_files(paths, argument)
    if len(items) == 1:
        atlas = str(items[0])
    else:
        hemis = [filename_hemi(p) for p in items]
        if None in hemis or len(set(hemis)) != 2:
            hemis = ["L", "R"]
        atlas = {h: str(p) for h, p in zip(hemis, items)}
    try:
        q = atlas_queries(basis, atlas)
    except (InvalidInputError, ValueError) as exc:
        raise bad_value(argument, [str(p) for p in items], f"cannot be read onto the basis ({exc})",
                        "pass an atlas on the basis' mesh or grid", InvalidInputError) from None
    weights = q.weights_block(0, q.n_queries).tocsc()
    parcel = np.full(int(basis.n_features), -1, dtype=np.int64)
    rows, cols = weights.nonzero()
    parcel[cols] = rows
    label = name or _atlas_name(items)
    if not re.fullmatch(r"[A-Za-z0-9]+", label):
        raise bad_value("--atlas-name", label, "is not a BIDS label", "use letters and digits only",
                        InvalidInputError)
    return Atlas(label, [str(n) for n in q.names], parcel, np.asarray(q.encoded), [p.name for p in items],
                 weights.tocsr())


def _atlas_files(paths, argument: str) -> list[Path]:
    items = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if not items or len(items) > 2:
        raise bad_value(argument, [str(p) for p in items], "is not one atlas file or one per hemisphere",
                        "pass e.g. --atlas lh.aparc.annot rh.aparc.annot, or one .dlabel.nii", InvalidInputError)
    missing = [str(p) for p in items if not p.is_file()]
    if missing:
        raise bad_value(argument, missing, "do not exist", "pass existing atlas files (annot, label.gii, dlabel, "
                        "NIfTI atlas)", InvalidInputError)
    return items


def read_atlas_layout(paths: str | os.PathLike | Sequence[str | os.PathLike], name: str | None = None,
                      argument: str = "--atlas") -> Atlas:
    """Read an atlas on its own (no basis): its parcels and the layout of the maps it defines.

    Used to write the results of a regional model as parcel maps (each vertex or voxel gets its
    parcel's value). Surface atlases (``.annot``/``.label.gii``, one per hemisphere, matched by
    ``lh.``/``rh.``/``hemi-`` in the name, else left then right) give every vertex of the mesh;
    a NIfTI atlas gives its labelled voxels. Label 0 (and negative labels) is no parcel.

    Parameters
    ----------
    paths : path-like or sequence of path-like
    name : str, optional
        The ``atlas-`` label of the outputs (default from the file name).
    argument : str, optional
        How to name the option in messages.

    Returns
    -------
    Atlas
        With ``structures`` set and ``encoded`` None; parcel names ``"<hemi>_<name>"`` for
        surface atlases, the label value for NIfTI atlases.
    """
    from ..graphs.parcellation import read_labels
    from ..io import surface_structure, volume_structure

    items = _atlas_files(paths, argument)
    hemis = [filename_hemi(p) for p in items]
    if None in hemis or len(set(hemis)) != len(items):
        hemis = ["L", "R"][:len(items)]
    structures, codes, names = [], [], []
    for hemi, path in zip(hemis, items):
        try:
            labels, label_names = read_labels(path)
            volume = len(items) == 1 and path.name.lower().endswith((".nii", ".nii.gz")) and \
                not path.name.lower().endswith(".dlabel.nii")
            if path.name.lower().endswith(".dlabel.nii"):
                raise InvalidInputError("a CIFTI dlabel needs the basis' layout")
            structures.append(volume_structure(path) if volume else surface_structure(hemi, labels.size))
        except (InvalidInputError, ValueError) as exc:
            raise bad_value(argument, str(path), f"cannot be read as an atlas without a basis ({exc})",
                            "pass .annot/.label.gii files (one per hemisphere) or a NIfTI atlas", InvalidInputError
                            ) from None
        values = [int(v) for v in np.unique(labels) if v > 0]
        index = {v: len(names) + k for k, v in enumerate(values)}
        names += [str(label_names.get(v, v)) if volume else f"{hemi}_{label_names.get(v, v)}" for v in values]
        codes.append(np.array([index.get(int(v), -1) for v in labels], dtype=np.int64))
    label = name or _atlas_name(items)
    if not re.fullmatch(r"[A-Za-z0-9]+", label):
        raise bad_value("--atlas-name", label, "is not a BIDS label", "use letters and digits only",
                        InvalidInputError)
    return Atlas(label, names, np.concatenate(codes), None, [p.name for p in items], None, tuple(structures))


_HEMI_PREFIX = re.compile(r"^(lh|rh|left|right|l|r)[_\-.]", re.IGNORECASE)
_MEASURE_SUFFIX = re.compile(r"_(thickness|thicknessstd|area|volume|meancurv|gauscurv|foldind|curvind)$",
                             re.IGNORECASE)


def _region_key(name: str) -> tuple[str, str]:
    """``lh_precentral_thickness`` / ``L_precentral`` / ``Left-Hippocampus`` -> ``("L", "precentral")``."""
    text = _MEASURE_SUFFIX.sub("", str(name).strip())
    hemi = ""
    match = _HEMI_PREFIX.match(text)
    if match:
        hemi = "L" if match.group(1).lower().startswith("l") else "R"
        text = text[match.end():]
    return hemi, re.sub(r"[^a-z0-9]", "", text.lower())


def region_parcels(atlas: Atlas, regions: Sequence[str], argument: str = "--atlas") -> np.ndarray:
    """Which region (table column) each parcel of the atlas is, matched by name.

    Names are compared without the hemisphere prefix (``lh_``, ``L_``, ``Left-``) and the measure
    suffix (``_thickness``, ``_area``, ``_volume`` ...), case and punctuation ignored, within the
    same hemisphere: ``lh_precentral_thickness`` is the parcel ``L_precentral``.

    Returns
    -------
    numpy.ndarray of int, shape (n_parcels,)
        Column index in ``regions``, ``-1`` for a parcel no region matches.

    Raises
    ------
    InvalidInputError
        No region matches any parcel.
    """
    keys = {}
    for j, region in enumerate(regions):
        keys.setdefault(_region_key(region), j)
    out = np.array([keys.get(_region_key(p), -1) for p in atlas.names], dtype=np.int64)
    if not (out >= 0).any():
        raise bad_value(argument, atlas.sources, f"has no parcel named as a region of the table (parcels "
                        f"{atlas.names[:4]} ..., regions {list(regions)[:4]} ...)",
                        "pass the atlas the table was computed on (e.g. lh/rh.aparc.annot for aparcstats2table "
                        "--parc aparc)", InvalidInputError)
    return out


#: Map kinds that have parcel versions (``harmonized`` maps are vertex maps only).
PARCEL_KINDS = ("zscore", "centile", "mu", "sd")


def parcel_scores(model, coefficients: np.ndarray | None, covariates: pd.DataFrame, atlas: Atlas,
                  kinds: Sequence[str], population: bool = False, n_jobs: int | None = None,
                  progress: bool = False, maps=None, z: str | None = None) -> dict[str, np.ndarray]:
    """Per-parcel maps of every subject (:func:`~spectranorm_neuro.workflow.score` of the parcel queries).

    With ``maps`` (e.g. ``cohort.maps()``) the parcel means of the maps themselves are scored (the
    exact z when the model has a residual part, see ``z``); otherwise the parcel queries of the
    spectral ``coefficients`` (the projected z).

    Returns
    -------
    dict of str to numpy.ndarray, each (n_subjects, n_parcels)
        For the ``kinds`` among :data:`PARCEL_KINDS`.
    """
    from .scoring import score

    kinds = [kind for kind in kinds if kind in PARCEL_KINDS]
    if maps is not None and atlas.weights is not None:
        return score(model, None, covariates, kinds, population, n_jobs=n_jobs, progress=progress, maps=maps, z=z,
                     queries=atlas.weights)
    k = int(model.model_params["n_modes"])
    return score(model, np.asarray(coefficients)[:, :k], covariates, kinds, population, Q=atlas.encoded[:k],
                 n_jobs=n_jobs, progress=progress)


def write_parcel_outputs(root: str | os.PathLike, maps: dict[str, np.ndarray], subjects: Sequence[str],
                         measure: str, structures, space: dict, atlas: Atlas, metadata: dict | None = None,
                         ) -> list[Path]:
    """Write parcel tables (``group/``) and parcel maps (per subject) of each kind.

    Parameters
    ----------
    root : path-like
        The derivatives folder (normally a staging folder).
    maps : dict of str to numpy.ndarray, each (n_subjects, n_parcels)
        From :func:`parcel_scores`.
    subjects : sequence of str
    measure : str
    structures : sequence of Structure
    space : dict
        Template entities.
    atlas : Atlas
    metadata : dict, optional
        Extra sidecar keys (e.g. ``{"Model": ...}``).

    Returns
    -------
    list of pathlib.Path
        The tables, then the maps.
    """
    extra = {**(metadata or {}), "Atlas": {"Name": atlas.name, "Files": atlas.sources,
                                           "NParcels": atlas.n_parcels}}
    writer = DerivativesWriter(root, metadata=extra)
    tables, files = [], []
    for kind, values in maps.items():
        name = build_bids_name({"atlas": atlas.name, "desc": kind}, measure, ".tsv")
        path = write_parcel_table(values, Path(root) / "group" / name, atlas.names, index=list(subjects))
        side = {"participant_id": {"Description": "Participant identifier"},
                **{p: {"Description": f"{kind} of the parcel-mean {measure} of {p}"} for p in atlas.names}}
        write_text(path.with_suffix(".json"), json.dumps(side, indent=2) + "\n")
        tables.append(path)
        files += writer.write_cohort(atlas.to_features(values), subjects, kind, measure, structures,
                                     atlas=atlas.name, **space)
    return tables + files
