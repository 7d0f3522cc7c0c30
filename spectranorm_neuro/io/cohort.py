"""Cohorts of brain maps on disk: BIDS derivatives or a CSV/TSV file list, read lazily in chunks.

A :class:`Cohort` pairs a covariate table with one map per subject and reads the maps only when
asked, a chunk of subjects at a time, so :func:`encode_cohort` turns thousands of maps into
spectral coefficients with memory that does not grow with the cohort.

Order
-----
* **Subjects** follow the row order of ``participants.tsv`` (BIDS) or of the CSV/TSV table; the
  covariate DataFrame, the file table and every array returned share that order.
* **Features** follow the structures (``basis.structures`` when a basis is given); when they are
  inferred from files, hemispheres concatenate **left then right** (``CortexLeft``,
  ``CortexRight``), each over its kept vertices in ascending order.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._util import check_n_modes, check_positive_int, run_tasks
from ..exceptions import (
    FileFormatError,
    IncompatibleModelError,
    InvalidInputError,
    SpectraNormWarning,
    bad_value,
)
from ..graphs._graph import Structure
from ._common import (
    STRUCTURE_TO_HEMI,
    bad_file,
    is_default_layout,
    map_format,
    normalize_hemi,
    resolve_structures,
    surface_structure,
)
from .bids import normalize_entities, parse_bids_name
from .cifti import read_dscalar
from .maps import filename_hemi, read_map

__all__ = ["Cohort", "CohortMaps", "read_bids_cohort", "read_table_cohort", "read_participants", "encode_cohort"]

_MAP_EXTENSIONS = (".func.gii", ".shape.gii", ".dscalar.nii", ".nii.gz", ".nii")
_SURFACE_COLUMNS = {
    "L": ("lh", "left", "hemi-l", "l", "file_lh", "lh_file", "path_lh", "lh_path"),
    "R": ("rh", "right", "hemi-r", "r", "file_rh", "rh_file", "path_rh", "rh_path"),
}
_SINGLE_COLUMNS = ("file", "path", "filename", "map")
# FreeSurfer template subjects that live in SUBJECTS_DIR next to the participants
_FS_TEMPLATE = re.compile(r"^(fsaverage\d?|fsaverage_sym|cvs_avg35(_inMNI152)?|bert)$")


def _sub(label: Any) -> str:
    text = str(label).strip()
    return text if text.startswith("sub-") else f"sub-{text}"


def _listing(items: Sequence[Any], limit: int = 10) -> str:
    items = [str(i) for i in items]
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# ---------------------------------------------------------------------------------------------- reading
def _row_groups(row: Sequence[str]) -> list[tuple[str, list[int]]]:
    """Group a subject's per-structure paths by file (a CIFTI file fills several structures)."""
    groups: dict[str, list[int]] = {}
    for j, path in enumerate(row):
        groups.setdefault(path, []).append(j)
    return list(groups.items())


def _read_rows(rows: Sequence[Sequence[str]], structures: tuple[Structure, ...],
               map_index: int | None) -> np.ndarray:
    """Read subjects' maps into an (n_rows, n_features) float64 array."""
    offsets = np.cumsum([0, *(s.n_features for s in structures)])
    out = np.empty((len(rows), int(offsets[-1])), dtype=np.float64)
    for i, row in enumerate(rows):
        for path, idx in _row_groups(row):
            data = read_map(path, tuple(structures[j] for j in idx), map_index=map_index)
            if data.shape[0] != 1:
                raise bad_file("path", path, f"holds {data.shape[0]} maps but one per subject is needed",
                                "pass map_index=<i> to pick one map of each file")
            start = 0
            for j in idx:
                n = structures[j].n_features
                out[i, offsets[j]:offsets[j] + n] = data[0, start:start + n]
                start += n
    return out


def _encode_rows(rows, structures, map_index, basis, n_modes):
    """Read and encode one chunk (``run_tasks`` runs it with BLAS on one thread: results do not depend on n_jobs)."""
    return basis.encode(_read_rows(rows, structures, map_index), n_modes=n_modes)


@dataclass(eq=False)
class Cohort:
    """Subjects' maps on disk plus their covariates; data are read lazily.

    Attributes
    ----------
    files : pandas.DataFrame, shape (n_subjects, n_structures)
        Path of each subject's map for each structure (columns named by structure; a CIFTI file
        appears under every structure it fills). Index ``participant_id``.
    covariates : pandas.DataFrame, shape (n_subjects, n_covariates)
        Index ``participant_id``, same order as ``files``.
    structures : tuple of Structure
        The feature layout the maps are read onto.
    map_index : int or None
        Which map of multi-map files to read (``None``: files must hold one map).
    source : str
        Where the cohort came from (for messages and provenance).
    """

    files: pd.DataFrame
    covariates: pd.DataFrame
    structures: tuple[Structure, ...]
    map_index: int | None = None
    source: str = ""
    metadata: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ sizes
    @property
    def subjects(self) -> list[str]:
        """Participant ids (``sub-*``) in cohort order."""
        return [str(s) for s in self.files.index]

    @property
    def n_subjects(self) -> int:
        """Number of subjects."""
        return len(self.files)

    @property
    def n_features(self) -> int:
        """Number of features per map (sum of the structures' kept nodes)."""
        return int(sum(s.n_features for s in self.structures))

    def __len__(self) -> int:
        return self.n_subjects

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.structures)
        return f"Cohort(n_subjects={self.n_subjects}, n_features={self.n_features}, structures=[{names}])"

    # ------------------------------------------------------------------ data access
    def _rows(self, rows) -> list[tuple[str, ...]]:
        cols = [s.name for s in self.structures]
        table = self.files[cols].to_numpy(dtype=object)
        return [tuple(str(p) for p in r) for r in table[rows]]

    def read(self, rows: Any = None) -> np.ndarray:
        """Read some subjects' maps.

        Parameters
        ----------
        rows : int, slice, array of int or bool, or sequence of participant ids, optional
            Subjects to read (all by default — mind the memory for big cohorts).

        Returns
        -------
        numpy.ndarray, shape (n_rows, n_features)
            float64 maps over the structures' kept nodes.
        """
        if rows is None:
            rows = slice(None)
        elif isinstance(rows, (str, np.str_)) or (isinstance(rows, Sequence) and rows and
                                                   isinstance(rows[0], str)):
            ids = [rows] if isinstance(rows, (str, np.str_)) else list(rows)
            pos = self.files.index.get_indexer([_sub(i) for i in ids])
            if (pos < 0).any():
                raise bad_value("rows", [i for i, p in zip(ids, pos) if p < 0], "are not in the cohort",
                                "pass participant ids listed in cohort.subjects")
            rows = pos
        elif isinstance(rows, (int, np.integer)):
            rows = [int(rows)]
        return _read_rows(self._rows(rows), self.structures, self.map_index)

    def iter_chunks(self, chunk_size: int = 64) -> Iterator[tuple[list[str], np.ndarray]]:
        """Yield ``(participant_ids, maps)`` a chunk of subjects at a time.

        Parameters
        ----------
        chunk_size : int, optional
            Subjects per chunk.

        Yields
        ------
        ids : list of str
        maps : numpy.ndarray, shape (n_chunk, n_features)
        """
        chunk_size = _check_chunk(chunk_size)
        subjects = self.subjects
        for start in range(0, self.n_subjects, chunk_size):
            stop = min(start + chunk_size, self.n_subjects)
            yield subjects[start:stop], self.read(slice(start, stop))

    def maps(self) -> CohortMaps:
        """A lazy (n_subjects, n_features) view of the maps: indexing rows reads their files.

        What ``SpectralNormativeModel.iter_evaluate_maps`` takes to score a cohort a block of
        subjects at a time, straight from disk.
        """
        return CohortMaps(self)

    def subset(self, rows: Any) -> Cohort:
        """A new cohort with some subjects (positions, boolean mask or participant ids)."""
        if isinstance(rows, Sequence) and rows and isinstance(rows[0], str):
            pos = self.files.index.get_indexer([_sub(r) for r in rows])
            if (pos < 0).any():
                raise bad_value("rows", [r for r, p in zip(rows, pos) if p < 0], "are not in the cohort",
                                "pass participant ids listed in cohort.subjects")
            rows = pos
        return Cohort(self.files.iloc[rows].copy(), self.covariates.iloc[rows].copy(), self.structures,
                      self.map_index, self.source, dict(self.metadata))


def _check_chunk(chunk_size: Any) -> int:
    return check_positive_int(chunk_size, "chunk_size", 64)


def encode_cohort(
    cohort: Cohort,
    basis: Any,
    n_modes: int | None = None,
    chunk_size: int = 64,
    n_jobs: int | None = 1,
    progress: bool = True,
) -> np.ndarray:
    """Encode every subject's map into spectral coefficients, chunk by chunk.

    Only ``chunk_size`` maps per running job are in memory at once; the result holds
    ``n_subjects x n_modes`` numbers. Chunks run through :class:`joblib.Parallel`, so
    ``with joblib.parallel_config(backend="dask"): encode_cohort(...)`` spreads them over a dask
    cluster unchanged. Each chunk is encoded with BLAS pinned to one thread, so the output is
    bitwise identical for any ``n_jobs`` (and equal up to rounding for any ``chunk_size``).

    Parameters
    ----------
    cohort : Cohort
        From :func:`read_bids_cohort` or :func:`read_table_cohort`.
    basis : EigenmodeBasis
        Basis over the cohort's features (same structures, same order).
    n_modes : int, optional
        Number of leading modes (all by default).
    chunk_size : int, optional
        Subjects per task.
    n_jobs : int, optional
        Parallel jobs (joblib semantics; 1 runs in this process).
    progress : bool, optional
        Show a tqdm progress bar (subjects).

    Returns
    -------
    numpy.ndarray, shape (n_subjects, n_modes)
        Coefficients in cohort order (``cohort.subjects``).
    """
    if not isinstance(cohort, Cohort):
        raise bad_value("cohort", type(cohort).__name__, "is not a Cohort",
                        "build one with read_bids_cohort or read_table_cohort")
    chunk_size = _check_chunk(chunk_size)
    n_feat = getattr(basis, "n_features", None)
    if n_feat != cohort.n_features:
        raise bad_value("basis", repr(basis), f"has {n_feat} features but the cohort's maps have "
                        f"{cohort.n_features} ({', '.join(s.name for s in cohort.structures)})",
                        "build the cohort with basis=basis so both share the structures",
                        IncompatibleModelError)
    _check_same_structures(getattr(basis, "structures", None), cohort.structures)
    k = check_n_modes(n_modes, basis.n_modes)
    out = np.empty((cohort.n_subjects, k), dtype=np.float64)
    bounds = [(s, min(s + chunk_size, cohort.n_subjects)) for s in range(0, cohort.n_subjects, chunk_size)]
    rows = cohort._rows(slice(None))
    tasks = ((rows[a:b], cohort.structures, cohort.map_index, basis, n_modes) for a, b in bounds)
    results = run_tasks(_encode_rows, tasks, n_jobs, total=cohort.n_subjects, progress=progress,
                        desc="encoding maps", unit="subject", weights=(b - a for a, b in bounds))
    for (a, b), coeffs in zip(bounds, results):
        out[a:b] = coeffs
    return out


def _check_same_structures(basis_structures, structures) -> None:
    if basis_structures is None:
        return
    basis_structures = tuple(basis_structures)
    if is_default_layout(basis_structures):
        return  # a basis built without a layout: only the feature count can be checked
    same = len(basis_structures) == len(structures) and all(
        a.matches(b) for a, b in zip(basis_structures, structures))
    if not same:
        raise bad_value("basis", [s.name for s in basis_structures],
                        f"has other structures/masks than the cohort ({[s.name for s in structures]})",
                        "build the cohort with basis=basis so the maps are read onto the basis' nodes",
                        IncompatibleModelError)


# ---------------------------------------------------------------------------------------------- tables
def _read_table(table: Any, argument: str) -> tuple[pd.DataFrame, Path | None]:
    if isinstance(table, pd.DataFrame):
        return table.copy(), None
    path = Path(table)
    if not path.exists():
        raise bad_file(argument, path, "does not exist", "check the path", FileFormatError)
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, na_values=["n/a", "NA", ""], keep_default_na=False)
    except Exception as exc:
        raise bad_file(argument, path, f"cannot be parsed ({type(exc).__name__}: {exc})",
                        "pass a tab-separated .tsv or comma-separated .csv with a header row",
                        FileFormatError) from None
    return frame, path


def _typed_covariates(frame: pd.DataFrame, sidecar: dict | None, path: Path | None = None) -> pd.DataFrame:
    """Numbers become floats; columns with ``Levels`` in the JSON sidecar become categorical.

    A value that is not among a column's declared ``Levels`` (e.g. a new site to adapt a model to)
    becomes a further level, with a warning giving the edit that declares it.
    """
    out = frame.copy()
    for col in out.columns:
        levels = (sidecar or {}).get(col, {}).get("Levels") if isinstance((sidecar or {}).get(col), dict) \
            else None
        if levels:
            declared = [str(k) for k in levels]
            values = out[col].astype(str).where(out[col].notna())
            unknown = sorted(set(values.dropna()) - set(declared))
            if unknown:
                sidecar_path = path.with_suffix(".json") if path is not None else "participants.json"
                edit = ", ".join(f'"{u}": "{u}"' for u in unknown)
                warnings.warn(f"{sidecar_path}: column {col!r} holds {unknown}, not among its declared Levels "
                              f"{declared}; they are used as further levels (to declare them, add {edit} to "
                              f'"{col}": {{"Levels": {{...}}}} in that file)', SpectraNormWarning, stacklevel=4)
                declared = declared + unknown
            out[col] = pd.Categorical(values, categories=declared)
            continue
        try:
            out[col] = pd.to_numeric(out[col])
        except (ValueError, TypeError):
            pass
    return out


def _participants(participants: Any, root: Path | None,
                  argument: str) -> tuple[pd.DataFrame, dict, Path | None]:
    if participants is None:
        if root is None or not (root / "participants.tsv").exists():
            raise bad_file(argument, root / "participants.tsv" if root else None, "does not exist",
                            "pass participants=<path to the raw dataset's participants.tsv> (command line: "
                            "--participants PATH; derivatives folders often lack one)", FileFormatError)
        participants = root / "participants.tsv"
    frame, path = _read_table(participants, argument)
    sidecar = {}
    if path is not None and path.with_suffix(".json").exists():
        try:
            sidecar = json.loads(path.with_suffix(".json").read_text())
        except ValueError as exc:
            raise bad_file(argument, path.with_suffix(".json"), f"is not valid JSON ({exc})",
                            "fix or remove the sidecar", FileFormatError) from None
    if "participant_id" not in frame.columns:
        raise bad_file(argument, path or "DataFrame", "has no participant_id column",
                        "add a participant_id column (sub-<label>) as BIDS requires", FileFormatError)
    frame["participant_id"] = [_sub(p) for p in frame["participant_id"]]
    _check_duplicates(frame["participant_id"], str(path or "participants"))
    covs = _typed_covariates(frame.set_index("participant_id"), sidecar, path)
    return covs, sidecar, path


def read_participants(participants: Any, argument: str = "participants") -> tuple[pd.DataFrame, dict]:
    """Read a BIDS ``participants.tsv`` (or a CSV, or a DataFrame with ``participant_id``) as typed covariates.

    Parameters
    ----------
    participants : path-like or pandas.DataFrame
    argument : str, optional
        Option name used in messages.

    Returns
    -------
    covariates : pandas.DataFrame
        Indexed by ``participant_id`` (``sub-<label>``); numbers as floats, columns with ``Levels``
        in the JSON sidecar as categories.
    sidecar : dict
        The JSON sidecar (empty when there is none).
    """
    covariates, sidecar, _ = _participants(participants, None, argument)
    return covariates, sidecar


def _check_duplicates(ids: pd.Series | Sequence[str], where: str) -> None:
    ids = pd.Series(list(ids))
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise bad_value("participant_id", dup, f"appear more than once in {where}",
                        "keep one row per participant (select one session or run per subject)",
                        InvalidInputError)


# ---------------------------------------------------------------------------------------------- layout
def _infer_structures(found: dict[str, dict[str, str]]) -> tuple[Structure, ...]:
    """Structures from the first listed files: a CIFTI file's brain models, else full hemispheres L, R."""
    first: dict[str, str] = {}
    for per in found.values():
        for key, path in per.items():
            first.setdefault(key, path)
    if "cifti" in first:
        structs = read_dscalar(first["cifti"], allow_nan=True).structures
        surfaces = tuple(s for s in structs if s.kind == "surface")
        return surfaces + tuple(s for s in structs if s.kind != "surface")
    if "volume" in first:
        raise bad_value("structures", None, f"cannot be inferred for NIfTI maps such as {first['volume']}",
                        "pass structures=(io.volume_structure(mask_img),) or basis=<basis on that mask>")
    return tuple(surface_structure(h, _map_length(first[h])) for h in ("L", "R") if h in first)


def _map_length(path: str) -> int:
    """Number of vertices of a single-hemisphere surface map file."""
    from .freesurfer import read_morph
    from .gifti import read_gifti

    return int((read_gifti(path) if map_format(path) == "gifti" else read_morph(path)).data.shape[1])


def _file_key(path: str, hemi: str | None) -> str:
    fmt = map_format(path)
    if fmt == "cifti":
        return "cifti"
    if fmt == "nifti":
        return "volume"
    if hemi is None:
        raise bad_file("path", path, "is a surface map whose hemisphere is not known",
                        "name it with hemi-L/hemi-R (BIDS) or lh./rh. (FreeSurfer)", FileFormatError)
    return hemi


def _assemble(found: dict[str, dict[str, str]], covariates: pd.DataFrame, structures, basis, hemis,
              missing: str, map_index, source: str, check_first: bool, metadata: dict,
              maps_from: str) -> Cohort:
    """Match found files ({participant: {key: path}}) to participants and structures."""
    if missing not in ("raise", "drop"):
        raise bad_value("missing", missing, "is not 'raise' or 'drop'", "pass missing='raise' or 'drop'")
    if hemis is not None:
        want = {_hemi(h) for h in ([hemis] if isinstance(hemis, str) else hemis)}
        found = {p: {k: v for k, v in per.items() if k not in ("L", "R") or k in want}
                 for p, per in found.items()}
        found = {p: per for p, per in found.items() if per}
    if not found:
        raise bad_file("participants", source, f"match no map: no file in {maps_from} fits the selection",
                       "check the measure (file suffix), the entity filters and the extension")
    if structures is None and basis is None:
        structures = _infer_structures(found)
    else:
        structures = resolve_structures(basis, structures)
    names = [s.name for s in structures]

    def key_for(structure: Structure, per: dict[str, str]) -> str | None:
        hemi = STRUCTURE_TO_HEMI.get(structure.name)
        if hemi is not None and hemi in per:
            return per[hemi]
        if "cifti" in per:
            return per["cifti"]
        if structure.kind in ("volume", "lattice") and "volume" in per:
            return per["volume"]
        return None

    rows, no_map = {}, []
    for pid in covariates.index:
        per = found.get(pid, {})
        paths = [key_for(s, per) for s in structures]
        if any(p is None for p in paths):
            lacking = [n for n, p in zip(names, paths) if p is None]
            no_map.append(f"{pid} (no {'/'.join(lacking)} map)")
        else:
            rows[pid] = paths
    orphans = sorted(set(found) - set(covariates.index))
    if (no_map or orphans) and missing == "raise":
        parts = []
        if no_map:
            parts.append(f"{len(no_map)} participant(s) have no map: {_listing(no_map)}")
        if orphans:
            parts.append(f"{len(orphans)} subject(s) have maps but are not in the participants table: "
                         f"{_listing(orphans)}")
        raise bad_file("participants", source, f"{'; '.join(parts)} (maps: {maps_from})",
                        "add the missing maps/participants, or pass missing='drop' (command line: "
                        "--missing drop) to leave those subjects out",
                        InvalidInputError)
    if no_map or orphans:
        warnings.warn(f"{source}: left out {len(no_map)} participant(s) without maps and "
                      f"{len(orphans)} subject(s) missing from the participants table", SpectraNormWarning,
                      stacklevel=3)
    if not rows:
        raise bad_file("participants", source, f"match no map in {maps_from}",
                       "check the measure, space and entity filters")
    ids = [pid for pid in covariates.index if pid in rows]
    files = pd.DataFrame([rows[i] for i in ids], columns=names,
                         index=pd.Index(ids, name="participant_id"))
    cohort = Cohort(files, covariates.loc[ids].copy(), tuple(structures), map_index, source, metadata)
    if check_first:
        cohort.read(0)  # fail fast on vertex count / hemisphere / grid / NaN problems
    return cohort


def _hemi(value: Any) -> str:
    return normalize_hemi(value, "hemis")


# ---------------------------------------------------------------------------------------------- BIDS
def _measures_present(root: Path, exts: tuple[str, ...], limit: int = 2000) -> set[str]:
    """Suffixes (measures) of the map files under ``root/sub-*`` (the first ``limit`` files)."""
    found: set[str] = set()
    for i, path in enumerate(root.glob("sub-*/**/*")):
        if i >= limit:
            break
        if path.name.endswith(exts):
            try:
                found.add(parse_bids_name(path)["suffix"])
            except (FileFormatError, InvalidInputError):
                continue
    return found


def read_bids_cohort(
    root: str | os.PathLike,
    measure: str,
    basis: Any = None,
    structures: Sequence[Structure] | None = None,
    participants: Any = None,
    space: str | None = None,
    den: str | None = None,
    desc: str | None = None,
    session: str | None = None,
    extension: str | Sequence[str] | None = None,
    hemis: Sequence[str] | None = None,
    fs_suffix: str = "",
    missing: str = "raise",
    map_index: int | None = None,
    check_first: bool = True,
) -> Cohort:
    """Read a cohort from a BIDS derivatives folder (or a FreeSurfer subjects folder).

    Files are matched by entities: ``sub-<label>[_ses-<label>][_hemi-L|R][_space-X][_den-Y]
    [_desc-Z]_<measure>.<ext>`` anywhere under ``<root>/sub-<label>/``, with ``ext`` one of
    ``.func.gii``, ``.shape.gii``, ``.dscalar.nii``, ``.nii.gz``, ``.nii``. Aliases are accepted
    (``space-fsaverage5`` = ``space-fsaverage_den-10k``, ``hemi-lh`` = ``hemi-L``). FreeSurfer
    layouts are read too: ``<root>/<subject>/surf/lh.<measure><fs_suffix>`` (template subjects such
    as ``fsaverage*`` and ``bert`` are skipped; ``<subject>`` gains a ``sub-`` prefix if it lacks one).

    Parameters
    ----------
    root : path-like
        Dataset folder.
    measure : str
        The suffix (``"thickness"``) or FreeSurfer measure name.
    basis : EigenmodeBasis, optional
        Read the maps onto its structures (masks included).
    structures : sequence of Structure, optional
        Explicit feature layout (inferred from the first files otherwise: full hemispheres, left
        then right; NIfTI needs a mask structure).
    participants : path-like or DataFrame, optional
        Covariate table with ``participant_id`` (default ``<root>/participants.tsv`` and its JSON
        sidecar: columns with ``Levels`` become categorical, numeric columns float).
    space, den, desc, session : str, optional
        Keep only files with these entity values; ``""`` keeps only files *without* the entity
        (e.g. ``desc=""`` skips ``desc-zscore`` maps written next to the inputs).
    extension : str or sequence of str, optional
        Keep only these extensions (e.g. ``".func.gii"``).
    hemis : sequence of str, optional
        Keep only these hemispheres (``("L",)``); both by default.
    fs_suffix : str, optional
        FreeSurfer file suffix after the measure, e.g. ``".fwhm10.fsaverage5.mgh"``.
    missing : {"raise", "drop"}, optional
        What to do with participants without a map and maps without a participant.
    map_index : int, optional
        Map to read from multi-map files.
    check_first : bool, optional
        Read the first subject at once so format problems surface before encoding.

    Returns
    -------
    Cohort
        Subjects in the row order of the participants table.
    """
    root = Path(root)
    if not root.is_dir():
        raise bad_file("root", root, "is not a folder", "pass the derivatives dataset folder",
                        FileFormatError)
    covariates, sidecar, table_path = _participants(participants, root, "participants")
    given = {"space": space, "den": den, "desc": desc, "ses": session}
    absent = {k for k, v in given.items() if v == ""}
    query = normalize_entities({k: v for k, v in given.items() if v not in (None, "")})
    exts = (extension,) if isinstance(extension, str) else tuple(extension or _MAP_EXTENSIONS)
    exts = tuple(e if e.startswith(".") else "." + e for e in exts)
    hits: dict[tuple[str, str], list[str]] = {}
    for sub_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if sub_dir.name.startswith("sub-"):
            for path in sorted(sub_dir.rglob(f"*_{measure}.*")):
                if not path.name.endswith(exts):
                    continue
                try:
                    ents = parse_bids_name(path)
                except (FileFormatError, InvalidInputError):
                    continue
                if ents["suffix"] != measure or ents.get("sub") != sub_dir.name[4:]:
                    continue
                if any(ents.get(k) != v for k, v in query.items()) or any(k in ents for k in absent):
                    continue
                key = _file_key(str(path), ents.get("hemi"))
                hits.setdefault((_sub(ents["sub"]), key), []).append(str(path))
        surf = sub_dir / "surf"
        if surf.is_dir() and not _FS_TEMPLATE.match(sub_dir.name):
            for hemi, prefix in (("L", "lh"), ("R", "rh")):
                path = surf / f"{prefix}.{measure}{fs_suffix}"
                if path.is_file():
                    hits.setdefault((_sub(sub_dir.name), hemi), []).append(str(path))
    if not hits:
        present = _measures_present(root, exts)
        if present and measure not in present:
            raise bad_value("measure", measure, f"matches no map in {root}; the maps there are of "
                            f"{sorted(present)}", f"pass one of {sorted(present)} (command line: --measure)",
                            InvalidInputError)
    dups = {k: v for k, v in hits.items() if len(v) > 1}
    if dups:
        lines = [f"{pid} {key}: {[Path(p).name for p in paths]}"
                 for (pid, key), paths in sorted(dups.items())]
        raise bad_file("root", root, f"holds several matching maps per subject ({_listing(lines, 5)})",
                        "narrow the selection with session=, space=, den=, desc= or extension= so each "
                        "subject has one map per hemisphere", InvalidInputError)
    found: dict[str, dict[str, str]] = {}
    for (pid, key), paths in hits.items():
        found.setdefault(pid, {})[key] = paths[0]
    kinds = {k for per in found.values() for k in per}
    if "cifti" in kinds and kinds & {"L", "R"}:
        raise bad_file("root", root, "holds both per-hemisphere and CIFTI maps for the measure",
                        "pass extension='.dscalar.nii' or extension='.func.gii'", InvalidInputError)
    source = str(table_path) if table_path is not None else "participants DataFrame"
    return _assemble(found, covariates, structures, basis, hemis, missing, map_index, source, check_first,
                     {"participants_sidecar": sidecar, "root": str(root), "measure": measure,
                      "entities": query}, f"{root} ({measure})")


# ---------------------------------------------------------------------------------------------- CSV/TSV
def _file_columns(frame: pd.DataFrame, file_columns: Any) -> dict[str, str]:
    """Map keys ("L", "R" or "single") to table columns."""
    lower = {c.lower(): c for c in frame.columns}
    if file_columns is None:
        out = {}
        for hemi, cands in _SURFACE_COLUMNS.items():
            for cand in cands:
                if cand in lower:
                    out[hemi] = lower[cand]
                    break
        if not out:
            for cand in _SINGLE_COLUMNS:
                if cand in lower:
                    return {"single": lower[cand]}
            raise bad_value("file_columns", None,
                            f"could not be guessed from the columns {list(frame.columns)}",
                            "name the path columns lh/rh (or file), or pass "
                            "file_columns={'L': col, 'R': col}")
        return out
    if isinstance(file_columns, str):
        file_columns = {"single": file_columns}
    out = {}
    for key, col in dict(file_columns).items():
        if col not in frame.columns:
            raise bad_value("file_columns", col, f"is not a column of the table ({list(frame.columns)})",
                            "pass existing column names")
        out["single" if key == "single" else _hemi_key(key)] = col
    return out


def _hemi_key(key: Any) -> str:
    if str(key) in ("cifti", "volume", "Volume"):
        return "volume" if str(key) != "cifti" else "cifti"
    return normalize_hemi(key, "file_columns")


def read_table_cohort(
    table: Any,
    basis: Any = None,
    structures: Sequence[Structure] | None = None,
    file_columns: str | Mapping[str, str] | None = None,
    participant_column: str = "participant_id",
    base_dir: str | os.PathLike | None = None,
    map_index: int | None = None,
    check_first: bool = True,
) -> Cohort:
    """Read a cohort from a CSV/TSV (or DataFrame) listing map files and covariates.

    Parameters
    ----------
    table : path-like or pandas.DataFrame
        One row per subject: ``participant_id``, path column(s), covariates. ``.tsv``/``.txt``
        files are tab-separated, others comma-separated; ``n/a``/empty cells are missing.
    basis, structures :
        Feature layout, as in :func:`read_bids_cohort`.
    file_columns : str or mapping, optional
        The path column(s): a column name (one file per subject: CIFTI, NIfTI, or one
        hemisphere), or ``{"L": col, "R": col}``. Guessed by default from columns named
        ``lh``/``rh`` (``left``/``right``, ``file_lh`` ...) or ``file``/``path``.
    participant_column : str, optional
        Column with participant ids (``sub-`` is added when missing).
    base_dir : path-like, optional
        Folder relative paths start from (default: the table's folder, else the working folder).
    map_index : int, optional
        Map to read from multi-map files.
    check_first : bool, optional
        Read the first subject at once so format problems surface before encoding.

    Returns
    -------
    Cohort
        Subjects in table row order; covariates are the columns that are neither ids nor paths.
    """
    frame, path = _read_table(table, "table")
    where = str(path) if path is not None else "table"
    if participant_column not in frame.columns:
        raise bad_value("participant_column", participant_column, f"is not a column of {where}",
                        f"pass one of {list(frame.columns)}")
    frame[participant_column] = [_sub(p) for p in frame[participant_column]]
    _check_duplicates(frame[participant_column], where)
    cols = _file_columns(frame, file_columns)
    base = Path(base_dir) if base_dir is not None else (path.parent if path is not None else Path.cwd())
    found: dict[str, dict[str, str]] = {}
    no_file, not_there, wrong = [], [], []
    for _, rec in frame.iterrows():
        pid = rec[participant_column]
        for key, col in cols.items():
            cell = rec[col]
            if cell is None or (isinstance(cell, float) and np.isnan(cell)) or str(cell).strip() == "":
                no_file.append(f"{pid} ({col})")
                continue
            p = Path(str(cell))
            p = p if p.is_absolute() else base / p
            if not p.exists():
                not_there.append(str(p))
                continue
            hemi = filename_hemi(p)
            if key in ("L", "R") and hemi is not None and hemi != key:
                wrong.append(f"{p} (in column {col!r}, which holds hemi-{key} maps)")
            k = key if key != "single" else (_file_key(str(p), hemi))
            found.setdefault(pid, {})[k] = str(p)
    if wrong:
        raise bad_file("table", where, f"lists maps of the wrong hemisphere: {_listing(wrong)}",
                        "swap the left/right paths so lh/hemi-L files sit in the left column",
                        IncompatibleModelError)
    if no_file or not_there:
        parts = []
        if no_file:
            parts.append(f"{len(no_file)} participant(s) have no map: {_listing(no_file)}")
        if not_there:
            parts.append(f"{len(not_there)} listed map(s) do not exist: {_listing(not_there)}")
        raise bad_file("table", where, "; ".join(parts),
                        "fix the paths (relative paths start at base_dir, default the table's folder) or "
                        "drop those rows", FileFormatError)
    covariates = _typed_covariates(frame.drop(columns=list(cols.values())).set_index(participant_column), {})
    covariates.index.name = "participant_id"
    return _assemble(found, covariates, structures, basis, None, "raise", map_index, where, check_first,
                     {"table": where}, where)



class CohortMaps:
    """Lazy (n_subjects, n_features) array of a cohort's maps (see :meth:`Cohort.maps`).

    ``view[rows]`` reads those subjects' files (rows: slice, int array); ``view.names[rows]``
    gives their files for messages.
    """

    ndim = 2

    def __init__(self, cohort: Cohort):
        self.cohort = cohort
        self.shape = (cohort.n_subjects, cohort.n_features)
        self.names = np.asarray([" + ".join(dict.fromkeys(row)) for row in cohort._rows(slice(None))], dtype=object)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        rows, cols = (index if isinstance(index, tuple) else (index, slice(None)))
        if isinstance(rows, slice):
            rows = np.arange(self.shape[0])[rows]
        data = _read_rows(self.cohort._rows(np.atleast_1d(rows)), self.cohort.structures, self.cohort.map_index)
        return data[:, cols]
