"""Per-cohort summary of z-maps: one TSV row per subject (mean |z|, count of |z| > 2, per parcel).

Columns
-------
``participant_id``
    Row label.
``n_features``
    Finite z-values of the subject (NaN values are skipped everywhere).
``mean_abs_z``
    Mean of ``|z|`` over the subject's finite values.
``max_abs_z``
    Largest ``|z|``.
``n_abs_z_gt_<t>``
    Number of features with ``|z| > t`` (``t = 2`` by default).
``mean_abs_z_<label>``, ``n_abs_z_gt_<t>_<label>``
    The same within each parcel, when per-feature parcel labels are given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from ..exceptions import ShapeMismatchError, bad_value
from ._common import write_text

__all__ = ["cohort_summary", "write_summary"]


def _fmt(t: float) -> str:
    return f"{t:g}"


def cohort_summary(
    zscores: Any,
    subjects: Sequence[str],
    labels: Any = None,
    threshold: float = 2.0,
    ignore: Sequence[Any] = (0,),
) -> pd.DataFrame:
    """Summarise a cohort's z-maps.

    Parameters
    ----------
    zscores : array_like, shape (n_subjects, n_features)
        z-scores (NaN marks missing values).
    subjects : sequence of str, length n_subjects
        Participant ids (``sub-`` is added when missing).
    labels : array_like, shape (n_features,), optional
        Parcel label of each feature; adds per-parcel columns.
    threshold : float, optional
        ``|z|`` above which a feature counts as extreme (2 by default).
    ignore : sequence, optional
        Labels that are not parcels (0, the background, by default).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``participant_id``; columns as in the module docstring.
    """
    z = np.asarray(zscores, dtype=np.float64)
    if z.ndim != 2:
        raise bad_value("zscores", f"array of shape {z.shape}", "is not 2-D",
                        "pass (n_subjects, n_features) z-scores", ShapeMismatchError)
    ids = [s if str(s).startswith("sub-") else f"sub-{s}" for s in map(str, subjects)]
    if len(ids) != z.shape[0]:
        raise bad_value("subjects", f"{len(ids)} ids", f"do not match the {z.shape[0]} rows of zscores",
                        "pass one participant id per row", ShapeMismatchError)
    absz = np.abs(z)
    finite = np.isfinite(absz)
    absz0 = np.where(finite, absz, 0.0)
    extreme = (absz0 > threshold).astype(np.float64)
    n_fin = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = {
            "n_features": n_fin,
            "mean_abs_z": absz0.sum(axis=1) / n_fin,
            "max_abs_z": np.where(n_fin > 0, np.max(np.where(finite, absz, -np.inf), axis=1, initial=-np.inf),
                                  np.nan),
            f"n_abs_z_gt_{_fmt(threshold)}": extreme.sum(axis=1).astype(np.int64),
        }
        if labels is not None:
            lab = np.asarray(labels)
            if lab.shape != (z.shape[1],):
                raise bad_value("labels", f"array of shape {lab.shape}",
                                f"does not give one label per feature ({z.shape[1]})",
                                "pass per-feature parcel labels in the basis' feature order",
                                ShapeMismatchError)
            keep = ~np.isin(lab, np.asarray(list(ignore), dtype=lab.dtype)) if len(ignore) else \
                np.ones(lab.shape, bool)
            uniq, inv = np.unique(lab[keep], return_inverse=True)
            onehot = sparse.csr_matrix((np.ones(inv.size), (np.flatnonzero(keep), inv)),
                                       shape=(lab.size, uniq.size))
            sums = np.asarray((onehot.T @ absz0.T).T)
            counts = np.asarray((onehot.T @ finite.T.astype(np.float64)).T)
            ext = np.asarray((onehot.T @ extreme.T).T)
            mean_parcel = sums / counts
            for j, u in enumerate(uniq):
                cols[f"mean_abs_z_{u}"] = mean_parcel[:, j]
            for j, u in enumerate(uniq):
                cols[f"n_abs_z_gt_{_fmt(threshold)}_{u}"] = ext[:, j].astype(np.int64)
    return pd.DataFrame(cols, index=pd.Index(ids, name="participant_id"))


def write_summary(table: pd.DataFrame, path: str | os.PathLike, threshold: float = 2.0,
                  overwrite: bool = False) -> Path:
    """Write a :func:`cohort_summary` table as TSV plus a JSON sidecar describing the columns.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`cohort_summary`.
    path : path-like
        ``.tsv`` destination; the sidecar goes next to it with a ``.json`` extension.
    threshold : float, optional
        The threshold used for the counts (documented in the sidecar).
    overwrite : bool, optional
        Replace existing files (refused by default).

    Returns
    -------
    pathlib.Path
        The TSV path. Missing values are written ``n/a``.
    """
    path = Path(path)
    t = _fmt(threshold)
    side = {
        "participant_id": {"Description": "Participant identifier"},
        "n_features": {"Description": "Number of finite z-values"},
        "mean_abs_z": {"Description": "Mean absolute z-score over the finite values"},
        "max_abs_z": {"Description": "Largest absolute z-score"},
        f"n_abs_z_gt_{t}": {"Description": f"Number of features with |z| > {t}"},
    }
    for col in table.columns:
        if col not in side and col.startswith("mean_abs_z_"):
            side[col] = {"Description": f"Mean absolute z-score in parcel {col[len('mean_abs_z_'):]}"}
        elif col not in side and col.startswith(f"n_abs_z_gt_{t}_"):
            side[col] = {"Description": f"Number of features with |z| > {t} in parcel "
                                        f"{col[len(f'n_abs_z_gt_{t}_'):]}"}
    text = table.to_csv(sep="\t", na_rep="n/a", float_format="%.6g", lineterminator="\n")
    json_path = path.with_name(path.name.removesuffix(".tsv") + ".json")
    out = write_text(path, text, overwrite=overwrite)
    write_text(json_path, json.dumps(side, indent=2) + "\n", overwrite=overwrite)
    return out
