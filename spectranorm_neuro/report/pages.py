"""Template contexts: turn the report's numbers into the plain rows the HTML templates print."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._inputs import Block
from .calibration import ParcelStats, SubjectStats
from .centiles import CentileCharts
from .html import EmbeddedFigure

__all__ = ["model_card_rows", "cohort_context", "subject_context", "format_value", "cluster_rows"]

_MAX_LEVELS = 12
_HASH = re.compile(r"^(sha256:)?[0-9a-fA-F]{32,}$")


def format_value(value: Any) -> str:
    """Short readable text for a covariate or model-card value.

    Floats to 4 significant digits, lists joined by commas, dicts as ``key: value`` pairs (never a
    Python repr), long hexadecimal digests shortened to their first 12 characters.
    """
    if isinstance(value, (float, np.floating)):
        return "n/a" if np.isnan(value) else f"{float(value):.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        sep = "; " if any(isinstance(v, (Mapping, list, tuple)) for v in value) else ", "
        return sep.join(format_value(v) for v in value) or "none"
    if value is None:
        return "n/a"
    text = str(value)
    if _HASH.match(text):
        return text[:12 + (7 if text.startswith("sha256:") else 0)] + "…"
    return text


def model_card_rows(card: Mapping | None, prefix: str = "") -> list[tuple[str, str]]:
    """Flatten a (nested) model card into ``(dotted key, text)`` rows, in insertion order."""
    if not card:
        return []
    rows: list[tuple[str, str]] = []
    for key, value in card.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(model_card_rows(value, f"{name}."))
        else:
            rows.append((name, format_value(value)))
    return rows


def _covariate_summary(column: pd.Series) -> str:
    values = column.dropna()
    n_missing = int(column.isna().sum())
    missing = f"; {n_missing} missing" if n_missing else ""
    if values.empty:
        return f"all missing ({n_missing})"
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        arr = values.to_numpy(dtype=np.float64)
        return f"{arr.min():.4g} – {arr.max():.4g} (median {np.median(arr):.4g}){missing}"
    counts = values.astype(str).value_counts(sort=False).sort_index()
    if len(counts) > _MAX_LEVELS:
        return f"{len(counts)} levels{missing}"
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) + missing


def cohort_context(table: pd.DataFrame, blocks: Sequence[Block], controls: np.ndarray,
                   group_column: str | None, group_labels: np.ndarray, group_levels: Sequence[str],
                   n_features: int, unit: str, unit_singular: str) -> dict:
    """Rows of the "Scored cohort" section.

    Parameters
    ----------
    table : pandas.DataFrame, shape (n_subjects, n_columns)
    blocks : sequence of Block
    controls : numpy.ndarray of bool, shape (n_subjects,)
    group_column : str or None
    group_labels : numpy.ndarray, shape (n_subjects,)
    group_levels : sequence of str
    n_features : int
    unit, unit_singular : str
        Names of the features ("vertices", "vertex" ...).

    Returns
    -------
    dict
    """
    rows = [("Subjects scored", f"{len(table):,}"),
            ("Calibration subjects", f"{int(controls.sum()):,}"),
            (f"Features ({unit})", f"{n_features:,}")]
    if group_column is not None:
        counts = [(g, int(np.sum(group_labels == g))) for g in group_levels]
        rows.append((f"Groups ({group_column})", ", ".join(f"{g}: {n}" for g, n in counts)))
    structures = [{"name": b.name, "kind": b.kind, "n_features": b.structure.n_features,
                   "n_total": int(b.structure.n_total)} for b in blocks]
    covariates = [(str(c), _covariate_summary(table[c])) for c in table.columns]
    return {"n_subjects": len(table), "n_features": n_features, "unit": unit, "unit_singular": unit_singular,
            "rows": rows, "structures": structures, "covariates": covariates}


def cluster_rows(clusters: Sequence[Any], atlas: tuple[np.ndarray, list[str]] | None) -> list[dict]:
    """Rows of a subject's cluster table: structure, direction, size, peak z and the peak's region.

    Parameters
    ----------
    clusters : sequence of Cluster
        From :func:`~spectranorm_neuro.report.clusters.find_clusters`.
    atlas : (codes (n_features,), names) or None
        Region of every feature (the peak's region names the cluster).

    Returns
    -------
    list of dict
    """
    rows = []
    for c in clusters:
        region = None
        if atlas is not None and atlas[0][c.peak] >= 0:
            region = atlas[1][atlas[0][c.peak]]
        rows.append({"structure": c.structure, "direction": "above" if c.sign > 0 else "below",
                     "size": c.size, "unit": c.unit, "n_features": c.n_features, "peak_z": c.peak_z,
                     "mean_z": c.mean_z, "region": region or "—"})
    return rows


def subject_context(i: int, sid: str, slug: str, table: pd.DataFrame, groups: np.ndarray | None,
                    controls: np.ndarray | None, blocks: Sequence[Block], stats: SubjectStats,
                    parcels: ParcelStats | None, charts: CentileCharts | None,
                    figures: list[EmbeddedFigure], chart: EmbeddedFigure | None,
                    interactive: list[tuple[str, str]], vmax: float, unit: str) -> dict:
    """Everything the ``_subject.html`` partial prints for subject ``i``.

    Parameters
    ----------
    i : int
        Row of the subject in the z-score array.
    sid, slug : str
        Subject id and its file-name-safe slug.
    table : pandas.DataFrame
        Subject table (covariates).
    groups : numpy.ndarray or None, shape (n_subjects,)
        Group labels when a group column was given.
    controls : numpy.ndarray of bool, shape (n_subjects,), or None
        Calibration subjects, when they were designated.
    blocks : sequence of Block
    stats : SubjectStats
    parcels : ParcelStats or None
        Parcel statistics of the detailed subjects (row ``i``).
    charts : CentileCharts or None
    figures : list of EmbeddedFigure
        The z-map panels.
    chart : EmbeddedFigure or None
        The subject's centile chart.
    interactive : list of (label, href)
    vmax : float
        Colour limit of the z-maps.
    unit : str
        Feature unit name.

    Returns
    -------
    dict
    """
    counts = []
    for b, block in enumerate(blocks):
        counts.append({"name": block.name, "total": False, "n_features": int(stats.n_features[b]),
                       "n_extreme": int(stats.n_extreme[i, b]),
                       "frac_extreme": float(stats.n_extreme[i, b] / stats.n_features[b]),
                       "n_positive": int(stats.n_positive[i, b]), "n_negative": int(stats.n_negative[i, b]),
                       "n_severe": int(stats.n_severe[i, b]), "max_abs": float(stats.max_abs[i, b]),
                       "mean": float(stats.mean[i, b])})
    if len(blocks) > 1:
        n = int(stats.n_features.sum())
        counts.append({"name": "All", "total": True, "n_features": n,
                       "n_extreme": int(stats.n_extreme[i].sum()),
                       "frac_extreme": float(stats.n_extreme[i].sum() / n),
                       "n_positive": int(stats.n_positive[i].sum()),
                       "n_negative": int(stats.n_negative[i].sum()),
                       "n_severe": int(stats.n_severe[i].sum()), "max_abs": float(stats.max_abs[i].max()),
                       "mean": float(np.sum(stats.mean[i] * stats.n_features) / n)})
    parcel_rows = None
    if parcels is not None:
        parcel_rows = [{"name": parcels.names[p], "size": int(parcels.sizes[p]),
                        "mean_abs": float(parcels.mean_abs[i, p]), "mean": float(parcels.mean[i, p])}
                       for p in parcels.top[i]]
    centile = None
    if chart is not None and charts is not None and charts.subject_y is not None:
        centile = {"figure": chart, "covariate": charts.covariate,
                   "rows": [{"query": charts.query_names[q], "x": float(charts.subject_x[i]),
                             "value": float(charts.subject_y[i, q]), "z": float(charts.subject_z[i, q]),
                             "centile": float(charts.subject_centile[i, q])}
                            for q in charts.subject_queries(i)]}
    return {
        "id": sid, "slug": slug, "anchor": f"subject-{slug}",
        "group": None if groups is None else str(groups[i]),
        "control": None if controls is None else bool(controls[i]),
        "covariates": [(str(c), format_value(v)) for c, v in table.iloc[i].items()],
        "figures": figures, "counts": counts, "parcels": parcel_rows, "centiles": centile,
        "interactive": interactive, "vmax": vmax, "unit": unit,
    }
