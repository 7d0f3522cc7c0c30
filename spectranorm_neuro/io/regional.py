"""Tables of regional measures: FreeSurfer ``aparcstats2table`` / ``asegstats2table`` output and plain CSV/TSV.

A regional table has one row per subject and one column per region (cortical thickness per
parcel, subcortical volumes, any ROI values). :func:`read_regional_table` reads it with the
subject column named or detected:

* FreeSurfer's tables put the subject ids in the first column, whose header names the table
  (``lh.aparc.thickness``, ``lh.aparc.a2009s.area``, ``Measure:volume``); columns are separated by
  tabs (the default), commas, semicolons or spaces (``--delimiter``);
* plain CSV/TSV: the column named ``participant_id``, ``subject_id``, ``subject``, ``sub``, ``id``
  (any case), or else the first column if it is not numeric.

:func:`align_subjects` then pairs the table with a covariate table by subject id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import FileFormatError, InvalidInputError, ShapeMismatchError, bad_value
from ._common import bad_file

__all__ = ["read_regional_table", "read_regional_cohort", "align_subjects", "SUBJECT_COLUMNS"]

#: Headers recognized as the subject column of a plain table (compared case-insensitively).
SUBJECT_COLUMNS = ("participant_id", "subject_id", "subject", "sub", "id", "subjects", "participant")

_FS_HEADER = re.compile(r"^(Measure:\w+|(lh|rh)\.[\w.\-]+\.(thickness|area|volume|thicknessstd|meancurv|gauscurv|"
                        r"foldind|curvind)|[\w.\-]+\.(thickness|area|volume))$", re.IGNORECASE)


def _separator(first_line: str) -> str | None:
    for sep in ("\t", ",", ";"):
        if sep in first_line:
            return sep
    return None  # whitespace


def _subject_column(frame: pd.DataFrame, subject_column: str | None, path: Path) -> str:
    columns = list(frame.columns)
    if subject_column is not None:
        if subject_column not in columns:
            raise bad_value("subject_column", subject_column, f"is not a column of {path} (columns: {columns[:8]}...)",
                           "pass the header of the column holding the subject ids", InvalidInputError)
        return subject_column
    first = columns[0]
    if _FS_HEADER.match(str(first)):
        return first
    for col in columns:
        if str(col).strip().lower() in SUBJECT_COLUMNS:
            return col
    if pd.to_numeric(frame[first], errors="coerce").isna().any():
        return first
    raise bad_file("path", path, "has no column recognizable as the subject ids",
                   f"name it one of {list(SUBJECT_COLUMNS)} or pass subject_column=", FileFormatError)


def _read_frame(path: Path, subject_column: str | None) -> tuple[pd.DataFrame, pd.Index]:
    """The table as text columns (the subject column removed) and the subject ids (checked unique)."""
    if not path.is_file():
        raise bad_file("path", path, "does not exist or is not a file", "check the path", FileFormatError)
    with open(path, encoding="utf-8", errors="replace") as fh:
        first_line = fh.readline()
    sep = _separator(first_line)
    try:
        frame = pd.read_csv(path, sep=sep if sep else r"\s+", dtype=str, engine="python" if not sep else "c",
                            na_values=["n/a", "NA", "nan", ""], keep_default_na=False)
    except Exception as exc:
        raise bad_file("path", path, f"cannot be parsed as a table ({type(exc).__name__}: {exc})",
                       "pass a tab-, comma- or space-separated table with a header row", FileFormatError) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    subj = _subject_column(frame, subject_column, path)
    ids = frame[subj].astype(str).str.strip()
    dup = sorted(set(ids[ids.duplicated()]))
    if dup:
        raise bad_file("path", path, f"lists subject(s) {dup[:5]} more than once",
                       "keep one row per subject", FileFormatError)
    frame = frame.drop(columns=[subj])
    frame.index = pd.Index(ids.to_list(), name="participant_id")
    return frame, frame.index


def _region_values(frame: pd.DataFrame, keep: list[str], path: Path) -> pd.DataFrame:
    missing = [r for r in keep if r not in frame.columns]
    if missing:
        raise bad_value("regions", missing, f"are not columns of {path}", "pass region names from its header",
                        InvalidInputError)
    values = frame[keep].apply(pd.to_numeric, errors="coerce")
    bad = [c for c in keep if values[c].isna().all()]
    if bad:
        raise bad_file("path", path, f"has non-numeric region column(s) {bad[:5]}",
                       "drop them, or pass regions=[...] with the numeric columns only", FileFormatError)
    return values.astype(np.float64)


def read_regional_table(path: str | os.PathLike, subject_column: str | None = None,
                        regions: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a table of regional measures (FreeSurfer stats table, CSV or TSV).

    Parameters
    ----------
    path : path-like
        ``aparcstats2table`` / ``asegstats2table`` output, or a CSV/TSV with a header row.
    subject_column : str, optional
        Header of the subject-id column (default: detected, see the module notes).
    regions : sequence of str, optional
        Region columns to keep, in this order (default: every other column).

    Returns
    -------
    pandas.DataFrame, shape (n_subjects, n_regions)
        Float values indexed by the subject ids (strings, index name ``participant_id``).

    Raises
    ------
    FileFormatError
        Missing or unparsable file, no subject column, duplicate subjects, non-numeric regions.
    """
    path = Path(path)
    frame, _ = _read_frame(path, subject_column)
    return _region_values(frame, list(frame.columns) if regions is None else list(regions), path)


def read_regional_cohort(path: str | os.PathLike, covariates: Sequence[str] = (), subject_column: str | None = None,
                         regions: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a table that holds both the regional measures and the covariates.

    Parameters
    ----------
    path : path-like
        CSV/TSV (or FreeSurfer-style) table with a subject column.
    covariates : sequence of str, optional
        Covariate columns (they are never regions). Non-numeric columns are covariates too.
    subject_column : str, optional
        As in :func:`read_regional_table`.
    regions : sequence of str, optional
        Region columns, in this order (default: every numeric column that is not a covariate);
        every other column is then a covariate.

    Returns
    -------
    table : pandas.DataFrame, shape (n_subjects, n_regions)
        Float region values indexed by subject id.
    covariates : pandas.DataFrame, shape (n_subjects, n_covariates)
        The other columns (numbers as floats, text as text), same index.
    """
    path = Path(path)
    frame, _ = _read_frame(path, subject_column)
    named = [str(c) for c in covariates]
    missing = [c for c in named if c not in frame.columns]
    if missing:
        raise bad_value("covariates", missing, f"are not columns of {path} (columns: {list(frame.columns)[:8]}...)",
                        "fix the names, or pass the covariate table separately (participants=...)", InvalidInputError)
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    if regions is None:
        keep = [c for c in frame.columns if c not in named and numeric[c].notna().any()]
    else:
        keep = [str(r) for r in regions]
        clash = [r for r in keep if r in named]
        if clash:
            raise bad_value("regions", clash, "are also named as covariates", "name each column once",
                            InvalidInputError)
    if not keep:
        raise bad_file("path", path, "has no numeric column left for the regions once the covariates are set apart",
                       "add the regional measures, or name the region columns", FileFormatError)
    table = _region_values(frame, keep, path)
    cov = frame[[c for c in frame.columns if c not in keep]].copy()
    for col in cov.columns:
        if numeric[col].notna().sum() == cov[col].notna().sum():
            cov[col] = numeric[col].astype(np.float64)
    return table, cov


def align_subjects(table: pd.DataFrame, covariates: pd.DataFrame,
                   subject_column: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pair a regional table with a covariate table by subject id (table order kept).

    Parameters
    ----------
    table : pandas.DataFrame, shape (n, n_regions)
        Indexed by subject id (as :func:`read_regional_table` returns it).
    covariates : pandas.DataFrame
        Covariates indexed by subject id, or with a ``subject_column`` (default: a column named
        as in :data:`SUBJECT_COLUMNS`, else the index).
    subject_column : str, optional

    Returns
    -------
    table, covariates : pandas.DataFrame
        The same subjects in the same order (covariates indexed by subject id, as strings).
    """
    cov = covariates.copy()
    if subject_column is None:
        subject_column = next((c for c in cov.columns if str(c).strip().lower() in SUBJECT_COLUMNS), None)
    if subject_column is not None:
        if subject_column not in cov.columns:
            raise bad_value("subject_column", subject_column, "is not a column of the covariate table",
                            "pass the header of its subject-id column", InvalidInputError)
        cov = cov.set_index(subject_column)
    cov.index = pd.Index([str(i).strip() for i in cov.index], name="participant_id")
    ids = [str(i) for i in table.index]
    missing = [i for i in ids if i not in cov.index]
    if missing:
        raise bad_value("covariates", f"{len(missing)} subject(s) of the table, e.g. {missing[:3]}",
                        "have no covariate row", "add their covariates or drop them from the table",
                        ShapeMismatchError)
    return table, cov.loc[ids]

