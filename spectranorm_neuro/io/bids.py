"""BIDS file names, ``dataset_description.json`` and the derivatives writer.

Names are parsed, normalised (aliases) and built here.

File names follow BIDS: ``key-value`` entities joined by ``_``, then a suffix, then an extension
that starts at the first dot (``.func.gii``, ``.shape.gii``, ``.dscalar.nii``, ``.nii.gz``).

Why not pybids
--------------
Measured with ``bench/bench_bids_index.py`` (a derivatives folder as ``apply`` writes it for 5,000
subjects, 40,004 files; both ways in the same process, best of 2, on a shared 2-core machine):
finding every subject's z-maps with :func:`~spectranorm_neuro.io.read_bids_cohort` took 2.2 s,
``bids.BIDSLayout`` (pybids 0.22, ``validate=False``) and the same query 50.9 s without indexing the
JSON sidecars (22.8x slower) and 207 s with them (93x). The rule was to adopt pybids for parsing and
naming if it is not more than 2x slower; it is 23x slower (it builds an SQL index of every file and
entity), and it would add pybids, SQLAlchemy and formulaic to the dependencies. Names are therefore
parsed and built here, following the BIDS entity table (:data:`ENTITY_ORDER`), and every dataset
written is checked by the official validator in the tests.

Aliases (normalised by :func:`normalize_entities`)
--------------------------------------------------
* ``space-fsaverage5`` -> ``space-fsaverage_den-10k`` (also ``fsaverage4`` -> ``3k``, ``fsaverage6``
  -> ``41k``; plain ``fsaverage`` is the 164k mesh and is left as is);
* ``hemi-lh``/``hemi-rh`` (and ``left``/``right``) -> ``hemi-L``/``hemi-R``.

Derivatives layout
------------------
``<root>/sub-<label>[/ses-<label>]/<datatype>/<name>`` with names such as
``sub-01_ses-1_hemi-L_space-fsaverage_den-10k_desc-zscore_thickness.shape.gii`` (``.shape.gii`` for
the anatomical measures of :data:`SHAPE_MEASURES`, as sMRIPrep names them, else ``.func.gii``) or
``sub-01_space-MNI152NLin2009aSym_res-2_desc-zscore_GMV.nii.gz``; ``desc-`` takes a value from
:data:`DESC_VOCABULARY`. Every map has a JSON sidecar (:func:`map_sidecar`: what it is, its units,
which model). The per-cohort summary goes to ``<root>/group/desc-<desc>summary_<measure>.tsv`` with a
JSON sidecar describing its columns. The dataset root holds ``dataset_description.json``
(``GeneratedBy`` with version and ``CodeURL``, ``SourceDatasets``), ``README.md`` and a
``.bidsignore`` (:data:`BIDSIGNORE_PATTERNS`); with these, every dataset the package writes passes
the official BIDS validator (bids-validator-deno 3.0.2) with 0 errors.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._version import __url__, __version__
from ..exceptions import FileFormatError, InvalidInputError, OutputExistsError, bad_value
from ..graphs._graph import Structure
from ._common import (
    STRUCTURE_TO_HEMI,
    bad_file,
    check_feature_values,
    normalize_hemi,
    split_features,
    write_text,
)
from .cifti import write_dscalar
from .gifti import write_gifti
from .nifti import write_nifti

__all__ = [
    "ENTITY_ORDER",
    "DESC_VOCABULARY",
    "FSAVERAGE_DENSITIES",
    "parse_bids_name",
    "normalize_entities",
    "build_bids_name",
    "SHAPE_MEASURES",
    "surface_extension",
    "MAP_DESCRIPTIONS",
    "map_sidecar",
    "BIDSIGNORE_PATTERNS",
    "write_bidsignore",
    "write_dataset_readme",
    "write_participants",
    "write_dataset_description",
    "DerivativesWriter",
]

#: BIDS entities in the order they appear in file names (BIDS 1.9 entity table).
ENTITY_ORDER = (
    "sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain", "rec", "dir",
    "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space", "seg", "res", "den",
    "label", "split", "recording", "chunk", "atlas", "roi", "from", "to", "mode", "desc",
)
#: Allowed ``desc-`` values of the maps spectranorm_neuro writes.
DESC_VOCABULARY = ("zscore", "centile", "harmonized", "mu", "sd", "recon")
#: fsaverage meshes and their BIDS ``den-`` labels (vertices per hemisphere).
FSAVERAGE_DENSITIES = {"fsaverage3": "1k", "fsaverage4": "3k", "fsaverage5": "10k",
                       "fsaverage6": "41k", "fsaverage": "164k"}

#: Anatomical surface measures: their maps (and maps derived from them) are ``.shape.gii`` files, as
#: sMRIPrep/FreeSurfer write them; other measures are ``.func.gii``.
SHAPE_MEASURES = frozenset({
    "thickness", "area", "curv", "sulc", "volume", "myelinmap", "smoothedmyelinmap", "MyelinMap", "T1wT2w",
    "lgi", "jacobian", "gwc",
})
#: What each ``desc-`` map is, and its units (``{measure}`` is filled in): the JSON sidecars' text.
MAP_DESCRIPTIONS = {
    "zscore": ("Deviation z-score of {measure} from the normative model: (observed - predicted mean) / predicted "
               "standard deviation at each vertex/voxel, predicted from the subject's covariates; about 5% of "
               "healthy subjects' values have |z| > 1.96.", "z (standard deviations, dimensionless)"),
    "centile": ("Centile of {measure} under the normative model's predictive distribution for the subject's "
                "covariates: 50 at the predicted median, 2.5 and 97.5 at z = -1.96 and +1.96.",
                "percentile (0-100)"),
    "harmonized": ("{measure} with the effects of the named covariates (the acquisition site by default) removed: "
                   "each value keeps its centile under the model predicting without those covariates.",
                   "units of {measure}"),
    "mu": ("Normative mean of {measure} predicted from the subject's covariates.", "units of {measure}"),
    "sd": ("Normative standard deviation of {measure} predicted from the subject's covariates.",
           "units of {measure}"),
    "recon": ("{measure} reconstructed from its eigenmode coefficients (the part of the map the basis holds).",
              "units of {measure}"),
}
#: ``.bidsignore`` lines: file names the released BIDS schema has no rule for (checked with
#: bids-validator 3.0.2, schema of BIDS 1.10): surface metrics (GIFTI/CIFTI, named as sMRIPrep names
#: them), normative maps of an arbitrary measure with their sidecars, the cohort summary folder
#: (``group/``) and the HTML report of ``apply --report`` (``report/``).
BIDSIGNORE_PATTERNS = (
    "*.shape.gii", "*.func.gii", "*.dscalar.nii",
    *(f"*_desc-{desc}_*" for desc in DESC_VOCABULARY),
    "/group", "/report",
)

_LABEL = re.compile(r"^[A-Za-z0-9]+$")
_BIDS_VERSION = "1.10.0"
_GENERATED_BY = {"Name": "spectranorm_neuro", "Version": __version__, "CodeURL": __url__,
                 "Description": "Spectral normative modelling of brain maps (eigenmode bases)."}


def parse_bids_name(path: str | os.PathLike, normalize: bool = True) -> dict[str, str]:
    """Parse a BIDS file name into its entities, suffix and extension.

    Parameters
    ----------
    path : path-like
        A file name or path; only the last component is parsed.
    normalize : bool, optional
        Apply :func:`normalize_entities` (``space-fsaverage5`` -> ``space-fsaverage`` +
        ``den-10k``, ``hemi-lh`` -> ``hemi-L``).

    Returns
    -------
    dict of str to str
        Entities keyed by their short name (``"sub"``, ``"hemi"`` ...), plus ``"suffix"`` and
        ``"extension"`` (with its leading dot, e.g. ``".func.gii"``).

    Raises
    ------
    FileFormatError
        The name is not ``key-value[_key-value...]_suffix.ext``.

    Examples
    --------
    >>> parse_bids_name("sub-01_hemi-lh_space-fsaverage5_desc-zscore_thickness.func.gii")["den"]
    '10k'
    """
    name = Path(path).name
    stem, dot, ext = name.partition(".")
    parts = stem.split("_")
    out: dict[str, str] = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if not sep or not key or not value or not _LABEL.match(value) or not _LABEL.match(key):
            raise bad_file("path", name, f"has {part!r} where a key-value entity was expected",
                            "use BIDS names such as sub-01_hemi-L_space-fsaverage_thickness.func.gii",
                            FileFormatError)
        if key in out:
            raise bad_file("path", name, f"repeats the entity {key!r}", "use each entity once",
                            FileFormatError)
        out[key] = value
    suffix = parts[-1]
    if not suffix or "-" in suffix or not _LABEL.match(suffix):
        raise bad_file("path", name, f"ends in {suffix!r}, not a suffix (e.g. 'thickness')",
                        "end the name with a measure suffix before the extension", FileFormatError)
    if not out:
        raise bad_file("path", name, "holds no BIDS entity", "name files like sub-01_..._thickness.func.gii",
                        FileFormatError)
    out["suffix"] = suffix
    out["extension"] = dot + ext
    return normalize_entities(out) if normalize else out


def normalize_entities(entities: Mapping[str, Any]) -> dict[str, str]:
    """Resolve entity aliases: ``space-fsaverage5`` -> ``space-fsaverage_den-10k``, ``hemi-lh`` -> ``L``.

    Parameters
    ----------
    entities : mapping
        Entities (and optionally ``suffix``/``extension``), values as strings.

    Returns
    -------
    dict of str to str
        A new dict; ``sub``/``ses`` values lose a redundant ``sub-``/``ses-`` prefix.
    """
    out = {str(k): str(v) for k, v in entities.items() if v is not None}
    for key in ("sub", "ses"):
        if key in out and out[key].startswith(f"{key}-"):
            out[key] = out[key][len(key) + 1:]
    if "hemi" in out:
        out["hemi"] = normalize_hemi(out["hemi"], "hemi")
    space = out.get("space")
    if space is not None and space.lower() in FSAVERAGE_DENSITIES and space.lower() != "fsaverage":
        den = FSAVERAGE_DENSITIES[space.lower()]
        if out.get("den", den) != den:
            raise bad_value("den", out["den"], f"contradicts space-{space} (which is den-{den})",
                            f"drop den- or use space-fsaverage_den-{out['den']}")
        out["space"] = "fsaverage"
        out["den"] = den
    return out


def build_bids_name(entities: Mapping[str, Any], suffix: str, extension: str) -> str:
    """Build a BIDS file name with entities in the standard order.

    Parameters
    ----------
    entities : mapping
        Entity values keyed by short name (``{"sub": "01", "hemi": "L", ...}``); ``None`` values
        are skipped. Aliases are normalised first (see :func:`normalize_entities`).
    suffix : str
        The measure, e.g. ``"thickness"`` or ``"GMV"``.
    extension : str
        E.g. ``".func.gii"``, ``".nii.gz"``, ``".dscalar.nii"`` (leading dot optional).

    Returns
    -------
    str
        The file name; :func:`parse_bids_name` returns the same entities.
    """
    ents = normalize_entities({k: v for k, v in entities.items() if v is not None})
    unknown = [k for k in ents if k not in ENTITY_ORDER]
    if unknown:
        raise bad_value("entities", unknown, "are not BIDS entities",
                        f"use entities among {', '.join(ENTITY_ORDER)}")
    for key, value in ents.items():
        if not _LABEL.match(value):
            raise bad_value(key, value, "is not a BIDS label (letters and digits only)",
                            "remove '-', '_', '.' and spaces from the value")
    if not _LABEL.match(str(suffix)):
        raise bad_value("suffix", suffix, "is not a BIDS suffix (letters and digits only)",
                        "use a measure name such as 'thickness' or 'GMV'")
    extension = str(extension)
    extension = extension if extension.startswith(".") else "." + extension
    parts = [f"{k}-{ents[k]}" for k in ENTITY_ORDER if k in ents]
    return "_".join([*parts, str(suffix)]) + extension


def surface_extension(measure: str) -> str:
    """GIFTI extension of a measure's maps: ``.shape.gii`` for anatomical measures, else ``.func.gii``.

    Parameters
    ----------
    measure : str
        The BIDS suffix (``"thickness"``, ``"alff"`` ...).

    Returns
    -------
    str
        ``".shape.gii"`` if ``measure`` is in :data:`SHAPE_MEASURES`, else ``".func.gii"``.
    """
    return ".shape.gii" if str(measure) in SHAPE_MEASURES else ".func.gii"


def map_sidecar(desc: str, measure: str, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """JSON sidecar of a ``desc-<desc>`` map of ``measure``: what it is, its units, then ``metadata``.

    Parameters
    ----------
    desc : str
        A value of :data:`DESC_VOCABULARY`.
    measure : str
        The BIDS suffix.
    metadata : mapping, optional
        Further keys (e.g. ``"Model"``: which model, its checksum and covariates).

    Returns
    -------
    dict
        ``Description``, ``Units``, ``Measure``, ``MapType``, ``GeneratedBy`` (package and version),
        then ``metadata``.
    """
    text, units = MAP_DESCRIPTIONS[desc]
    return {"Description": text.format(measure=measure), "Units": units.format(measure=measure),
            "Measure": str(measure), "MapType": desc,
            "GeneratedBy": {k: _GENERATED_BY[k] for k in ("Name", "Version", "CodeURL")},
            **dict(metadata or {})}


def write_bidsignore(root: str | os.PathLike, patterns: Sequence[str] = BIDSIGNORE_PATTERNS,
                     overwrite: bool = False) -> Path:
    """Write ``<root>/.bidsignore`` (one pattern a line, with a comment saying why).

    Parameters
    ----------
    root : path-like
        Dataset folder.
    patterns : sequence of str, optional
        Default :data:`BIDSIGNORE_PATTERNS`.
    overwrite : bool, optional

    Returns
    -------
    pathlib.Path
    """
    head = ("# Written by spectranorm_neuro: files the released BIDS schema has no name rule for (surface\n"
            "# metric derivatives as sMRIPrep names them, normative maps and their sidecars, group tables, report).\n")
    return write_text(Path(root) / ".bidsignore", head + "\n".join(patterns) + "\n", overwrite=overwrite)


def write_dataset_readme(root: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write ``<root>/README.md`` (the dataset's human-readable description).

    Parameters
    ----------
    root : path-like
    text : str
        Markdown text.
    overwrite : bool, optional

    Returns
    -------
    pathlib.Path
    """
    return write_text(Path(root) / "README.md", text.rstrip("\n") + "\n", overwrite=overwrite)


def write_participants(root: str | os.PathLike, table: pd.DataFrame, descriptions: Mapping[str, Any] | None = None,
                       description: str = "Participants and their covariates.", overwrite: bool = False,
                       ) -> tuple[Path, Path]:
    """Write ``participants.tsv`` and its ``participants.json`` (a description of every column).

    Parameters
    ----------
    root : path-like
        Dataset folder.
    table : pandas.DataFrame, shape (n_subjects, n_columns)
        Indexed by participant id (``sub-<label>`` or ``<label>``), or with a ``participant_id`` column.
    descriptions : mapping, optional
        Per column: a description string or a dict of BIDS keys (``Description``, ``Units``,
        ``Levels``). Columns without one are described by name; ``Levels`` of text columns default
        to the values present.
    description : str, optional
        The sidecar's own ``Description``.
    overwrite : bool, optional

    Returns
    -------
    tsv, json : pathlib.Path
    """
    frame = table.copy() if "participant_id" in table.columns else table.rename_axis("participant_id").reset_index()
    frame["participant_id"] = ["sub-" + normalize_entities({"sub": str(s)})["sub"] for s in frame["participant_id"]]
    side: dict[str, Any] = {"Description": str(description)}
    given = dict(descriptions or {})
    for col in frame.columns:
        entry = given.get(col, "Participant identifier" if col == "participant_id" else col)
        entry = {"Description": entry} if isinstance(entry, str) else dict(entry)
        if col != "participant_id" and "Levels" not in entry and not pd.api.types.is_numeric_dtype(frame[col]):
            entry["Levels"] = {str(v): str(v) for v in sorted(frame[col].dropna().astype(str).unique())}
        side[str(col)] = entry
    root = Path(root)
    tsv = write_text(root / "participants.tsv", frame.to_csv(sep="\t", index=False, lineterminator="\n",
                                                             na_rep="n/a"), overwrite=overwrite)
    return tsv, write_text(root / "participants.json", json.dumps(side, indent=2) + "\n", overwrite=overwrite)


def write_dataset_description(
    root: str | os.PathLike,
    name: str = "spectranorm_neuro derivatives",
    source_datasets: Sequence[str | Mapping[str, str]] | None = None,
    overwrite: bool = False,
    readme: str | None = None,
) -> Path:
    """Write a derivative ``dataset_description.json``, a ``README.md`` and a ``.bidsignore``.

    Parameters
    ----------
    root : path-like
        Derivatives dataset folder (created if needed).
    name : str, optional
        ``Name`` field.
    source_datasets : sequence of str or dict, optional
        ``SourceDatasets``: URLs/DOIs/paths (strings; ``doi:`` prefixes become ``DOI``) or dicts with
        ``URL``/``DOI``/``Version``.
    overwrite : bool, optional
        Replace existing files (refused by default).
    readme : str, optional
        Text of ``README.md`` (default: the name, the generator and the file layout).

    Returns
    -------
    pathlib.Path
        Path of the JSON file, holding ``DatasetType: "derivative"`` and ``GeneratedBy`` with the
        package name, version and ``CodeURL``. The README and ``.bidsignore`` (see
        :func:`write_bidsignore`) are written next to it unless already there.
    """
    sources = []
    for item in source_datasets or ():
        if isinstance(item, Mapping):
            sources.append({str(k): str(v) for k, v in item.items()})
        elif str(item).lower().startswith("doi:"):
            sources.append({"DOI": str(item)})
        else:
            sources.append({"URL": str(item)})
    desc = {
        "Name": str(name),
        "BIDSVersion": _BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [dict(_GENERATED_BY)],
    }
    if sources:
        desc["SourceDatasets"] = sources
    root = Path(root)
    path = write_text(root / "dataset_description.json", json.dumps(desc, indent=2) + "\n", overwrite=overwrite)
    if overwrite or not (root / "README.md").exists():
        write_dataset_readme(root, readme or _default_readme(str(name)), overwrite=overwrite)
    if overwrite or not (root / ".bidsignore").exists():
        write_bidsignore(root, overwrite=overwrite)
    return path


def _default_readme(name: str) -> str:
    return f"""# {name}

BIDS derivatives written by spectranorm_neuro {__version__} ({__url__}): spectral normative modelling of
brain maps.

Layout: `sub-<label>/anat/sub-<label>_[hemi-<L|R>_]space-<template>_desc-<map>_<measure>.<ext>`, one file
per hemisphere (GIFTI: `.shape.gii` for anatomical measures such as thickness, else `.func.gii`) or per
volume (`.nii.gz`), each with a JSON sidecar saying what the map is (`Description`), its `Units` (z-scores
in standard deviations, centiles 0-100) and which model produced it (`Model`). `desc-` values: zscore,
centile, harmonized (site effects removed), mu and sd (the normative mean and standard deviation).
`group/desc-zscoresummary_<measure>.tsv` summarises each subject's z-map (columns described in its JSON).

`.bidsignore` lists the file patterns the released BIDS schema has no rule for (surface metric
derivatives, normative maps); the rest of the dataset passes the BIDS validator.
"""


def _is_ours(path: Path) -> bool:
    try:
        desc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    gen = desc.get("GeneratedBy") or [{}]
    return desc.get("DatasetType") == "derivative" and any(g.get("Name") == "spectranorm_neuro" for g in gen)


class DerivativesWriter:
    """Write per-subject maps, each with its JSON sidecar, into a BIDS derivatives tree.

    Parameters
    ----------
    root : path-like
        Dataset folder. ``dataset_description.json`` (with ``README.md`` and ``.bidsignore``, see
        :func:`write_dataset_description`) is written on creation, unless one made by
        spectranorm_neuro is already there (so several writers may add to one tree).
    source_datasets : sequence of str or dict, optional
        ``SourceDatasets`` of the description.
    name : str, optional
        ``Name`` of the description.
    datatype : str, optional
        Folder under each subject (``"anat"`` by default).
    overwrite : bool, optional
        Replace existing files (refused by default).
    metadata : mapping, optional
        Keys added to every map's sidecar after those of :func:`map_sidecar` (e.g. ``"Model"``).
    readme : str, optional
        Text of the dataset's ``README.md``.

    Examples
    --------
    >>> writer = DerivativesWriter(tmp_dir)  # doctest: +SKIP
    >>> writer.write_subject(z, "01", "zscore", "thickness", basis.structures, space="fsaverage5")
    ... # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike, source_datasets=None,
                 name: str = "spectranorm_neuro derivatives", datatype: str = "anat",
                 overwrite: bool = False, metadata: Mapping[str, Any] | None = None, readme: str | None = None):
        self.root = Path(root)
        self.datatype = str(datatype)
        self.overwrite = bool(overwrite)
        self.metadata = dict(metadata or {})
        json.dumps(self.metadata)  # fail now, not in a worker, if it cannot be written
        desc_path = self.root / "dataset_description.json"
        if desc_path.exists() and not overwrite:
            if not _is_ours(desc_path):
                raise bad_file("root", self.root,
                                "already holds a dataset_description.json not written by spectranorm_neuro",
                                "write derivatives to a new folder (e.g. <bids>/derivatives/spectranorm) or "
                                "pass overwrite=True", OutputExistsError)
        else:
            write_dataset_description(self.root, name=name, source_datasets=source_datasets,
                                      overwrite=overwrite, readme=readme)
        self.description = desc_path

    # ------------------------------------------------------------------ names
    @staticmethod
    def _check_desc(desc: str) -> str:
        if desc not in DESC_VOCABULARY:
            raise bad_value("desc", desc, "is not in the derivatives vocabulary",
                            f"use one of {', '.join(DESC_VOCABULARY)}")
        return desc

    def path_for(self, subject: str, desc: str, measure: str, extension: str, session: str | None = None,
                 **entities: Any) -> Path:
        """Path of one derivative file.

        Parameters
        ----------
        subject : str
            Participant label, with or without ``sub-``.
        desc : str
            A value of :data:`DESC_VOCABULARY`.
        measure : str
            The suffix (``"thickness"``, ``"GMV"``).
        extension : str
            ``".func.gii"``, ``".nii.gz"``, ``".dscalar.nii"``.
        session : str, optional
            Session label (adds ``ses-`` to the name and a session folder).
        **entities
            Further entities (``hemi``, ``space``, ``den``, ``res`` ...).

        Returns
        -------
        pathlib.Path
        """
        self._check_desc(desc)
        ents = normalize_entities({"sub": subject, "ses": session, **entities, "desc": desc})
        name = build_bids_name(ents, measure, extension)
        folder = self.root / f"sub-{ents['sub']}"
        if "ses" in ents:
            folder = folder / f"ses-{ents['ses']}"
        return folder / self.datatype / name

    # ------------------------------------------------------------------ writing
    def write_subject(
        self,
        values: Any,
        subject: str,
        desc: str,
        measure: str,
        structures: Sequence[Structure],
        session: str | None = None,
        space: str | None = None,
        den: str | None = None,
        res: str | None = None,
        cifti: bool = False,
        template: Any = None,
        meta: dict | None = None,
        **entities: Any,
    ) -> list[Path]:
        """Write one subject's map over the features: one GIFTI per hemisphere, NIfTI per volume.

        Parameters
        ----------
        values : array_like, shape (n_features,)
            The subject's values over the concatenated kept nodes of ``structures``.
        subject, desc, measure, session :
            See :meth:`path_for`.
        structures : sequence of Structure
            Feature layout (normally ``basis.structures``).
        space, den, res : str, optional
            Template entities (``space="fsaverage5"`` becomes ``space-fsaverage_den-10k``).
        cifti : bool, optional
            Write all structures into one ``.dscalar.nii`` instead of GIFTI/NIfTI files.
        template : path-like or nibabel image, optional
            Mask image whose header NIfTI outputs reuse.
        meta : dict, optional
            File-level metadata of GIFTI outputs (e.g. which z-score the map holds).
        **entities
            Any further BIDS entities.

        Returns
        -------
        list of pathlib.Path
            The map files (the JSON sidecar of each is written next to it, same name, ``.json``).
        """
        structures = tuple(structures)
        arr, _ = check_feature_values(values, sum(s.n_features for s in structures))
        if arr.shape[0] != 1:
            raise bad_value("values", f"array of shape {arr.shape}", "holds several maps for one subject",
                            "pass one (n_features,) map, or use write_cohort")
        ents = {"space": space, "den": den, "res": res, **entities}
        if cifti:
            path = self.path_for(subject, desc, measure, ".dscalar.nii", session, **ents)
            written = [write_dscalar(arr, path, structures, kind=desc, overwrite=self.overwrite)]
            self._sidecar(path, desc, measure)
            return written
        written = []
        for s, block in split_features(arr, structures).items():
            structure = next(x for x in structures if x.name == s)
            if structure.kind == "surface":
                hemi = STRUCTURE_TO_HEMI.get(structure.name)
                if hemi is None:
                    raise bad_value("structures", structure.name, "is a surface that is not a hemisphere",
                                    "use cifti=True to write it")
                path = self.path_for(subject, desc, measure, surface_extension(measure), session, hemi=hemi, **ents)
                written.append(write_gifti(block, path, structure, kind=desc, overwrite=self.overwrite, meta=meta))
            elif structure.kind == "volume":
                path = self.path_for(subject, desc, measure, ".nii.gz", session, **ents)
                written.append(write_nifti(block, path, structure, kind=desc, template=template,
                                           overwrite=self.overwrite))
            else:
                raise bad_value("structures", structure.name, f"is a {structure.kind!r} structure",
                                "write lattices/parcels with write_map or write_parcel_table")
            self._sidecar(written[-1], desc, measure)
        return written

    def _sidecar(self, path: Path, desc: str, measure: str) -> Path:
        """Write the JSON sidecar of a map file (same name, ``.json``)."""
        side = path.with_name(path.name.partition(".")[0] + ".json")
        return write_text(side, json.dumps(map_sidecar(desc, measure, self.metadata), indent=2) + "\n",
                          overwrite=self.overwrite)

    def write_cohort(
        self,
        values: Any,
        subjects: Sequence[str],
        desc: str,
        measure: str,
        structures: Sequence[Structure],
        sessions: Sequence[str | None] | None = None,
        progress: bool = False,
        **kwargs: Any,
    ) -> list[Path]:
        """Write one map per subject (see :meth:`write_subject`).

        Parameters
        ----------
        values : array_like, shape (n_subjects, n_features)
            One row per subject, e.g. z-scores from the engine's predictions.
        subjects : sequence of str, length n_subjects
            Participant labels (``"sub-01"`` or ``"01"``), e.g. ``cohort.subjects``.
        desc, measure, structures :
            See :meth:`write_subject`.
        sessions : sequence of str or None, optional
            One session label per subject.
        progress : bool, optional
            Show a tqdm progress bar.
        **kwargs
            Passed on to :meth:`write_subject` (``space``, ``den``, ``res``, ``cifti``, ``template``).

        Returns
        -------
        list of pathlib.Path
        """
        self._check_desc(desc)
        arr = np.asarray(values, dtype=np.float64)
        subjects = [normalize_entities({"sub": s})["sub"] for s in subjects]
        if arr.ndim != 2 or arr.shape[0] != len(subjects):
            raise bad_value("values", f"array of shape {arr.shape}",
                            f"does not have one row per subject ({len(subjects)})",
                            "pass (n_subjects, n_features) values in the order of subjects")
        counts = pd.Series(subjects).value_counts()
        dup = sorted(f"sub-{s}" for s in counts.index[counts > 1])
        if dup and sessions is None:
            raise bad_value("subjects", dup, "appear more than once",
                            "pass sessions=... to tell repeated visits apart, or drop duplicates",
                            InvalidInputError)
        sessions = [None] * len(subjects) if sessions is None else list(sessions)
        if len(sessions) != len(subjects):
            raise bad_value("sessions", f"{len(sessions)} labels", f"do not match {len(subjects)} subjects",
                            "pass one session per subject")
        from tqdm.auto import tqdm

        written = []
        for row, sub, ses in tqdm(zip(arr, subjects, sessions), total=len(subjects), disable=not progress,
                                  desc=f"writing desc-{desc}", unit="subject"):
            written.extend(self.write_subject(row, sub, desc, measure, structures, session=ses, **kwargs))
        return written

    def write_summary(self, zscores: Any, subjects: Sequence[str], measure: str, desc: str = "zscore",
                      labels: Any = None, threshold: float = 2.0) -> Path:
        """Write the per-cohort summary TSV (and its JSON sidecar) under ``<root>/group/``.

        See :func:`spectranorm_neuro.io.summary.cohort_summary` for the columns.

        Returns
        -------
        pathlib.Path
            ``<root>/group/desc-<desc>summary_<measure>.tsv``.
        """
        from .summary import cohort_summary, write_summary

        self._check_desc(desc)
        table = cohort_summary(zscores, subjects, labels=labels, threshold=threshold)
        name = build_bids_name({"desc": f"{desc}summary"}, measure, ".tsv")
        return write_summary(table, self.root / "group" / name, threshold=threshold,
                             overwrite=self.overwrite)
