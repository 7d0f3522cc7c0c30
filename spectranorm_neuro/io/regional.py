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

__all__ = ["read_regional_table", "align_subjects", "SUBJECT_COLUMNS"]

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
    keep = [c for c in frame.columns if c != subj] if regions is None else list(regions)
    missing = [r for r in keep if r not in frame.columns]
    if missing:
        raise bad_value("regions", missing, f"are not columns of {path}", "pass region names from its header",
                       InvalidInputError)
    values = frame[keep].apply(pd.to_numeric, errors="coerce")
    bad = [c for c in keep if values[c].isna().all()]
    if bad:
        raise bad_file("path", path, f"has non-numeric region column(s) {bad[:5]}",
                       "drop them, or pass regions=[...] with the numeric columns only", FileFormatError)
    out = values.astype(np.float64)
    out.index = pd.Index(ids.to_list(), name="participant_id")
    return out


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

