"""The HTML report of a cohort scored with a regional bundle (tables of regional measures).

The same page as for maps where it applies (summary, calibration of the controls' z-scores with
its figure and coverage and per-site tables, sortable subject table, collapsed model card), and in
place of brain views the table of regions: the likelihood each uses (Normal or SHASHb, with the
likelihood-ratio test's p-value and the fitted skew and tails), the controls' calibration per
region and each group's mean z.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._version import __version__
from ..workflow import ModelBundle, RegionalCohort, prepare_regional, regional_tables, staged_directory
from ..workflow.output import check_destination
from ._generate import TITLE, _calibration_label, _png, _Writer
from .calibration import calibration_summary
from .figures import calibration_figure
from .html import render_page
from .pages import model_card_rows

__all__ = ["regional_report", "render_regional"]

_TOP = 3  # most deviant regions listed per subject


def _groups(covariates: pd.DataFrame, group_column: str | None) -> tuple[np.ndarray, list[str]]:
    if group_column is None:
        return np.full(len(covariates), "", dtype=object), []
    labels = covariates[group_column].astype(str).to_numpy()
    return labels, sorted(set(labels))


def _region_rows(bundle: ModelBundle, z: pd.DataFrame, controls: np.ndarray, labels: np.ndarray,
                 levels: list[str]) -> list[dict]:
    lik = bundle.card.get("regions", {}).get("likelihood", {})
    zc = z.to_numpy()[controls]
    rows = []
    for j, region in enumerate(z.columns):
        info = lik.get(region, {})
        rows.append({"name": region, "likelihood": info.get("used", "-"), "p_value": info.get("p_value"),
                     "epsilon": info.get("epsilon"), "delta": info.get("delta"),
                     "mean": float(zc[:, j].mean()), "sd": float(zc[:, j].std()),
                     "frac": float(np.mean(np.abs(zc[:, j]) > 1.96)),
                     "groups": [float(z.to_numpy()[labels == g, j].mean()) for g in levels]})
    return rows


def _subject_rows(z: pd.DataFrame, controls: np.ndarray | None, labels: np.ndarray) -> list[dict]:
    values = z.to_numpy()
    absz = np.abs(values)
    order = sorted(range(len(z)), key=lambda i: (-float(absz[i].max()), i))
    rows = []
    for i in order:
        top = np.argsort(-absz[i], kind="stable")[:_TOP]
        rows.append({"id": str(z.index[i]), "group": labels[i] or "—",
                     "control": None if controls is None else bool(controls[i]),
                     "max_abs": float(absz[i].max()), "n_extreme": int((absz[i] > 2).sum()),
                     "mean": float(values[i].mean()),
                     "top": ", ".join(f"{z.columns[k]} ({values[i, k]:+.2f})" for k in top)})
    return rows


def regional_report(bundle: ModelBundle, cohort: RegionalCohort, out: str | os.PathLike, *,
                    population: bool = False, controls: tuple[str, str] | None = None,
                    group_column: str | None = None, overwrite: bool = False, warn=None) -> Path:
    """Score a regional cohort with a regional bundle and write its HTML report (``spectranorm-neuro report``).

    Parameters
    ----------
    bundle : ModelBundle
        Of kind ``"regional"``.
    cohort : RegionalCohort
    out : path-like
        Report folder (complete or absent; an earlier output only with ``overwrite``).
    population : bool, optional
        Population-level norms (no site effects).
    controls : (column, value), optional
        Subjects used for the calibration (default all).
    group_column : str, optional
        Covariate column defining groups.
    overwrite : bool, optional
    warn : callable, optional
        Receives warnings about the cohort.

    Returns
    -------
    pathlib.Path
        The ``index.html`` written.
    """
    from ._bundle import BundleReport

    out = check_destination(out, overwrite)
    covariates, _ = prepare_regional(bundle, cohort, population, warn or (lambda message: None))
    options = BundleReport(controls, group_column)
    options.check(bundle, covariates)
    z = regional_tables(bundle.model, cohort, covariates, ["zscore"], population)["zscore"]
    with staged_directory(out, overwrite, command="report") as stage:
        render_regional(stage, bundle, covariates, z, options._mask(covariates), group_column, population)
    return out / "index.html"


def render_regional(out: Path, bundle: ModelBundle, covariates: pd.DataFrame, z: pd.DataFrame,
                    controls: np.ndarray | None = None, group_column: str | None = None,
                    population: bool = False) -> Path:
    """Write the regional report of scored z-scores into the folder ``out`` (``index.html`` + ``figures/``).

    Parameters
    ----------
    out : pathlib.Path
    bundle : ModelBundle
        Of kind ``"regional"`` (its card names the likelihood of every region).
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    z : pandas.DataFrame, shape (n_subjects, n_regions)
    controls : numpy.ndarray of bool, shape (n_subjects,), optional
        The calibration subjects (default all).
    group_column : str, optional
    population : bool, optional
        The norms left the site effects out (said in the report).

    Returns
    -------
    pathlib.Path
    """
    control_mask = np.ones(len(z), dtype=bool) if controls is None else np.asarray(controls, dtype=bool)
    labels, levels = _groups(covariates, group_column)
    batch = list(bundle.model.spec.batch_covariates)
    site = batch[0] if batch and batch[0] in covariates.columns else None
    cal = calibration_summary(z.to_numpy()[control_mask],
                              None if site is None else covariates[site].astype(str).to_numpy()[control_mask])
    writer = _Writer(Path(out), overwrite=False)
    cal_fig = writer.png("figures/calibration.png", _png(calibration_figure(cal)), "calibration",
                         "Calibration: histogram of z against N(0, 1) and normal QQ plot")
    context = {
        "title": TITLE, "version": __version__, "measure": bundle.measure or "the measure",
        "cohort": {"n_subjects": len(z), "n_features": z.shape[1], "unit": "regions"},
        "notes": (["Population-level norms: site effects left out."] if population else []),
        "summary": _summary(bundle, z, cal, labels, levels), "calibration": cal, "calibration_figure": cal_fig,
        "controls_given": controls is not None,
        "calibration_label": _calibration_label(controls is not None, labels, control_mask, levels),
        "coverage": [{"label": f"{100 * p:g}th", "threshold": t, "observed": o, "expected": p,
                      "difference": o - p} for p, t, o in zip(cal.centiles, cal.thresholds, cal.coverage)],
        "sites": [] if cal.sites is None else cal.sites.to_dict("records"), "site_column": site or "site",
        "group_levels": levels, "region_rows": _region_rows(bundle, z, control_mask, labels, levels),
        "subject_rows": _subject_rows(z, controls, labels), "model_card": model_card_rows(bundle.card),
    }
    return writer.text("index.html", render_page("regional.html", **context))


def _summary(bundle: ModelBundle, z: pd.DataFrame, cal, labels: np.ndarray, levels: list[str]) -> list[tuple]:
    used = pd.Series([r.get("used") for r in bundle.card.get("regions", {}).get("likelihood", {}).values()])
    rows = [("Calibration", f"mean z {cal.mean:.2f} (0 expected), sd {cal.sd:.2f} (1 expected), "
                            f"|z| > 2 in {100 * cal.frac_extreme:.2f} % (4.55 % expected)"),
            ("Regions", f"{z.shape[1]}; likelihood "
             + ", ".join(f"{k} in {v}" for k, v in used.value_counts().items()))]
    extreme = (np.abs(z.to_numpy()) > 2).any(axis=1)
    for g in levels or [None]:
        member = np.ones(len(z), dtype=bool) if g is None else labels == g
        rows.append((f"Group {g}" if g else "Subjects", f"{int(member.sum())} subjects, "
                     f"{int(extreme[member].sum())} with a region at |z| > 2"))
    return rows
