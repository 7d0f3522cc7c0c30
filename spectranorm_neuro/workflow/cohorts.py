"""Reading the cohort a workflow step works on: a BIDS derivatives folder or a CSV/TSV table of map files.

:func:`load_cohort` reads the maps onto a basis (vertex counts, hemispheres and masks checked),
finds their template space, refuses maps in another space than a bundle's, and keeps the
subjects selected by covariate values. :func:`covariates_frame` gives the covariates as the engine
expects them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import (
    FileFormatError,
    IncompatibleModelError,
    InvalidInputError,
    SpectraNormError,
    UsageError,
    bad_value,
)
from ..io import Cohort, normalize_entities, parse_bids_name, read_bids_cohort, read_table_cohort
from .bundle import ModelBundle, space_label

__all__ = ["load_basis", "load_cohort", "covariates_frame", "files_space", "bids_spaces", "select_subjects"]


def load_basis(path: str | os.PathLike, argument: str = "--basis"):
    """Read a basis file, naming ``argument`` (the option it came from) in every error.

    Returns
    -------
    EigenmodeBasis
    """
    from ..basis import EigenmodeBasis

    if not Path(path).exists():
        raise bad_value(argument, str(path), "does not exist",
                        "compute one with `spectranorm-neuro basis ... --out basis.npz`", InvalidInputError)
    try:
        return EigenmodeBasis.load(path)
    except SpectraNormError as exc:
        text = str(exc)
        raise type(exc)(f"{argument}={text.removeprefix('path=')}" if text.startswith("path=") else text) from None


def _space_of(entities: dict) -> dict[str, str]:
    return {k: entities[k] for k in ("space", "den", "res") if entities.get(k)}


def bids_spaces(root: str | os.PathLike, measure: str) -> set[tuple[tuple[str, str], ...]]:
    """Distinct template entities (space/den/res) of the maps of ``measure`` under ``root/sub-*``."""
    found = set()
    for sub in Path(root).glob("sub-*"):
        for path in sub.rglob(f"*_{measure}.*"):
            try:
                ents = parse_bids_name(path)
            except (FileFormatError, InvalidInputError):
                continue
            if ents.get("suffix") == measure:
                found.add(tuple(sorted(_space_of(ents).items())))
    return found


def files_space(paths) -> dict[str, str]:
    """Template entities shared by every file name (``{}`` when names carry none or disagree)."""
    spaces = set()
    for p in paths:
        try:
            spaces.add(tuple(sorted(_space_of(parse_bids_name(p)).items())))
        except (FileFormatError, InvalidInputError):
            spaces.add(())
    return dict(next(iter(spaces))) if len(spaces) == 1 else {}


def _pairs(select) -> list[tuple[str, str]]:
    if not select:
        return []
    items = select.items() if isinstance(select, Mapping) else select
    return [(str(c), str(v)) for c, v in items]


def select_subjects(cohort: Cohort, select) -> Cohort:
    """Keep the subjects whose covariates equal the given values (compared as text).

    Parameters
    ----------
    cohort : Cohort
    select : mapping or sequence of (column, value)
        Every condition must hold.

    Returns
    -------
    Cohort
    """
    select = _pairs(select)
    if not select:
        return cohort
    keep = np.ones(cohort.n_subjects, dtype=bool)
    for column, value in select:
        if column not in cohort.covariates.columns:
            raise bad_value("--select", f"{column}={value}", f"names no covariate column of the cohort "
                            f"({list(cohort.covariates.columns)})", "select on an existing column")
        keep &= cohort.covariates[column].astype(str).to_numpy() == value
    if not keep.any():
        raise bad_value("--select", [f"{c}={v}" for c, v in select], "keeps no subject",
                        "check the column values (compared as text)")
    return cohort.subset(np.flatnonzero(keep))


def _bids_space(source: Path, measure: str, requested: dict, bundle_space: dict) -> dict:
    space = dict(requested)
    if bundle_space and not requested:
        found = bids_spaces(source, measure)
        labelled = {s for s in found if s}
        if tuple(sorted(bundle_space.items())) in found:
            space = dict(bundle_space)
        elif labelled and not (found - labelled):
            listing = ", ".join(sorted(space_label(dict(s)) for s in labelled))
            raise bad_value("cohort", str(source), f"holds {measure} maps in {listing} but the bundle was fitted "
                            f"in {space_label(bundle_space)}",
                            f"resample the maps to {space_label(bundle_space)}, or use a bundle fitted in "
                            "their space", IncompatibleModelError)
    return space


def load_cohort(source: str | os.PathLike, basis, *, bundle: ModelBundle | None = None, measure: str | None = None,
                participants: str | os.PathLike | None = None, space: str | None = None, den: str | None = None,
                desc: str | None = None, session: str | None = None, file_columns: Any = None,
                missing: str = "raise", select: Mapping | Sequence[tuple[str, str]] | None = None,
                ) -> tuple[Cohort, dict[str, str]]:
    """Read a cohort (BIDS derivatives folder or CSV/TSV table) onto ``basis``.

    Parameters
    ----------
    source : path-like
        A BIDS derivatives folder (with ``participants.tsv``) or a CSV/TSV table with
        ``participant_id``, map path column(s) and covariates.
    basis : EigenmodeBasis
        The maps are read onto its structures (vertex counts, hemispheres and masks are checked).
    bundle : ModelBundle, optional
        The bundle the data are for: maps in another template space are refused, and its measure
        is the default ``measure``.
    measure : str, optional
        BIDS suffix of the maps (needed for BIDS folders unless the bundle records one).
    participants : path-like, optional
        Covariate table of a BIDS folder (default ``<source>/participants.tsv``).
    space, den, desc, session : str, optional
        Keep maps with these entities (``space="fsaverage5"`` means fsaverage + den-10k).
    file_columns : str or dict, optional
        Path column(s) of a table (one name, or ``{"L": col, "R": col}``; guessed by default).
    missing : {"raise", "drop"}, optional
        Participants of a BIDS folder without maps.
    select : mapping or sequence of (column, value), optional
        Keep subjects whose covariate equals the value (compared as text); all must hold.

    Returns
    -------
    cohort : Cohort
        Subjects in table order, after ``select``; its ``source`` is ``str(source)``.
    space : dict of str to str
        Template entities of the maps (``{}`` when unknown).
    """
    source = Path(source)
    if not source.exists():
        raise bad_value("cohort", str(source), "does not exist",
                        "pass a BIDS derivatives folder or a CSV/TSV table of map files and covariates",
                        FileFormatError)
    requested = _space_of(normalize_entities({k: v for k, v in {"space": space, "den": den}.items() if v}))
    bundle_space = bundle.space if bundle is not None else {}
    clash = {k: v for k, v in requested.items() if k in bundle_space and v != bundle_space[k]}
    if clash:
        raise bad_value("--space", space_label(requested),
                        f"differs from the bundle's template space {space_label(bundle_space)}",
                        f"apply this bundle to maps in {space_label(bundle_space)} (resample yours), or use a bundle "
                        f"fitted in {space_label(requested)}", IncompatibleModelError)
    if source.is_dir():
        measure = measure or (bundle.measure if bundle is not None else None)
        if not measure:
            raise UsageError("--measure is required for a BIDS folder (the BIDS suffix of the maps, e.g. thickness)")
        found = _bids_space(source, measure, requested, bundle_space)
        cohort = read_bids_cohort(source, measure, basis=basis, participants=participants,
                                  space=found.get("space"), den=found.get("den"), desc=desc,
                                  session=session, missing=missing)
        found = found or files_space(cohort.files.to_numpy().ravel())
    else:
        if participants is not None:
            raise UsageError("--participants is for BIDS folders; a CSV/TSV cohort holds the covariates itself")
        cohort = read_table_cohort(source, basis=basis, file_columns=file_columns)
        found = files_space(cohort.files.to_numpy().ravel()) or dict(requested)
        if bundle_space and found:
            if any(k in bundle_space and v != bundle_space[k] for k, v in found.items()):
                raise bad_value("cohort", str(source), f"lists maps in {space_label(found)} but the bundle was "
                                f"fitted in {space_label(bundle_space)}",
                                f"resample the maps to {space_label(bundle_space)}", IncompatibleModelError)
    cohort.source = str(source)  # the folder or table as named (recorded in cards and provenance)
    return select_subjects(cohort, select), found


def covariates_frame(cohort: Cohort) -> pd.DataFrame:
    """The cohort's covariates with categorical columns as plain strings (what the engine expects)."""
    frame = cohort.covariates.copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(str).where(frame[col].notna(), None)
    return frame
