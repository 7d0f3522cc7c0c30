"""Assemble a deviation report: check inputs, compute the numbers, draw the figures, write the pages."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._util import atomic_write_bytes, atomic_write_text, blas_threads, check_n_jobs, check_output_path
from .._version import __version__
from ..exceptions import InvalidInputError, OutputExistsError, bad_value
from . import _inputs as checks
from ._render import render_subjects
from .brainviews import BrainRenderer, ColourScale, Panel
from .calibration import calibration_summary, group_maps, parcel_stats, subject_stats
from .centiles import CentileCharts, centile_charts
from .clusters import cluster_geometries, find_clusters
from .figures import CentileChartFigure, calibration_figure
from .html import EmbeddedFigure, data_uri, render_page
from .pages import cluster_rows, cohort_context, model_card_rows, subject_context
from .severity import MultivariateSeverity

__all__ = ["generate_report"]

TITLE = "Normative deviation report"
DEFAULT_THRESHOLD = 2.0
DEFAULT_MIN_CLUSTER_AREA = 100.0
_UNITS = {"surface": ("vertices", "vertex"), "volume": ("voxels", "voxel"),
          "lattice": ("cells", "cell"), "parcels": ("parcels", "parcel")}


@dataclass
class _Writer:
    """Writes files under the report folder, atomically, refusing to overwrite unless asked."""

    root: Path
    overwrite: bool

    def png(self, relative: str, png: bytes, key: str, caption: str) -> EmbeddedFigure:
        _readable(atomic_write_bytes(self.root / relative, png, self.overwrite))
        return EmbeddedFigure(key=key, file=relative, uri=data_uri(png), caption=caption)

    def text(self, relative: str, text: str) -> Path:
        return _readable(atomic_write_text(self.root / relative, text, self.overwrite))


def _readable(path: Path) -> Path:
    """Give a written file the usual ``rw-r--r--`` mode (temporary files are created private)."""
    path.chmod(0o644)
    return path


def _nice_ceiling(value: float, floor: float) -> float:
    """Round ``max(value, floor)`` up to 1, 2, 2.5 or 5 times a power of ten."""
    value = max(float(value), floor)
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power  # pragma: no cover


def _safe(text: str) -> str:
    """File-name-safe version of a structure name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def _figures(writer: _Writer, panels: list[Panel], stem: str, what: str) -> list[EmbeddedFigure]:
    return [writer.png(f"figures/{stem}-{_safe(p.key)}.png", p.png, f"{stem}-{_safe(p.key)}",
                       f"{what} — {p.caption}") for p in panels]


def _planned_paths(root: Path, slugs: list[str], pages: bool,
                   interactive: dict[str, list[str]]) -> list[Path]:
    paths = [root / "index.html"]
    if pages:
        paths += [root / "subjects" / f"{slug}.html" for slug in slugs]
    for slug, names in interactive.items():
        paths += [root / "interactive" / f"{slug}-{name}.html" for name in names]
    return paths


def generate_report(
    out_dir: str | os.PathLike,
    zscores: Any,
    subjects: pd.DataFrame | None,
    basis: Any,
    *,
    model: Any = None,
    coefficients: Any = None,
    model_card: Mapping | None = None,
    centiles: Any = None,
    controls: Any = None,
    group_column: str | None = None,
    atlas_labels: Any = None,
    max_subjects: int = 50,
    meshes: Mapping | None = None,
    interactive: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    structures: Any = None,
    site_column: str | None = None,
    inline_subjects: int = 10,
    n_top_parcels: int = 5,
    n_jobs: int | None = 1,
    threshold: float | None = DEFAULT_THRESHOLD,
    min_cluster_area: float = DEFAULT_MIN_CLUSTER_AREA,
    multivariate: MultivariateSeverity | None = None,
) -> Path:
    """Write a self-contained HTML deviation report.

    The report folder holds ``index.html`` (images embedded as base64 PNG, no external resources;
    one small inline script sorts the subject table) and ``figures/`` with the same PNGs. When more
    than ``inline_subjects`` subjects are shown in detail, each gets a page ``subjects/<id>.html``
    linked from the index, with links to the previous and next subject (in order of severity).

    Results come first: summary, calibration (on the ``controls`` only), group maps and the cohort
    centile chart, the subject table sorted by severity (the multivariate z when ``multivariate`` is
    given, else the area of suprathreshold clusters), the subjects; the scored cohort and the model
    card (collapsed) close the page.

    Parameters
    ----------
    out_dir : path-like
        Report folder (created if needed).
    zscores : array_like, shape (n_subjects, n_features)
        Deviation z-scores, columns in the basis' feature order.
    subjects : pandas.DataFrame or None
        One row per z-score row, indexed by unique subject ids, with the covariates (and the
        group and site columns). ``None`` numbers the subjects ``sub-001`` ...
    basis : EigenmodeBasis
        Basis of the model; its ``structures`` (tuple of :class:`~spectranorm_neuro.graphs.Structure`)
        say how features map onto surfaces, volumes, lattices or parcels.
    model : fitted spectral normative model, optional
        Enables the centile charts (see :mod:`spectranorm_neuro.report.centiles`).
    coefficients : array_like, shape (n_subjects, n_modes), optional
        Spectral coefficients of the subjects' maps; places subjects on the centile charts.
    model_card : dict, optional
        Description of the model (training cohort, basis, version, seed); nested dicts are
        flattened to ``a.b`` keys. Defaults to ``model.model_card`` when the model has one, else
        to the model's covariates and scalar ``model_params``.
    centiles : sequence of float, optional
        Centile levels (fractions) for the coverage table and the charts; default
        (0.025, 0.25, 0.5, 0.75, 0.975).
    controls : array_like of bool, shape (n_subjects,), optional
        Control (or held-out) subjects: the calibration section uses only them. Without them the
        calibration pools every scored subject and the report says so (patients bias it).
    group_column : str, optional
        Column of ``subjects`` defining groups for the group view.
    atlas_labels : array_like, shape (n_features,), or (labels, names), optional
        Region of each feature (int or str; negative/empty = unlabelled) with optional names, e.g.
        ``(labels, names)`` from ``io.read_labels``: region names of clusters, top-region
        tables and regional centile charts.
    max_subjects : int
        Number of subjects (in input order) shown in detail; every subject is in the summary table.
    meshes : dict, optional
        ``{structure name: (vertices, faces[, background])}`` for surfaces other than fsaverage5.
    interactive : bool
        Also write nilearn ``view_surf``/``view_img`` pages per detailed subject (``interactive/``).
    overwrite : bool
        Replace existing files; otherwise an existing ``index.html`` (or any other output file)
        raises :class:`~spectranorm_neuro.exceptions.OutputExistsError` before anything is drawn.
    progress : bool
        Show a progress bar while rendering.
    structures : sequence of Structure, optional
        Overrides ``basis.structures``.
    site_column : str, optional
        Column with the acquisition site for the per-site calibration table; defaults to the
        model's first batch covariate, else a ``site`` column when present.
    inline_subjects : int
        Up to this many detailed subjects are shown inside ``index.html``; more get own pages.
    n_top_parcels : int
        Number of parcels listed per subject.
    n_jobs : int or None, optional
        Workers for the per-subject figures (joblib semantics: -1 all CPUs, None joblib's default;
        ``joblib.parallel_config`` chooses the backend, dask included). Output does not depend on it.
    threshold : float or None
        Subject maps show only ``|z| > threshold`` in clusters of at least ``min_cluster_area``
        (default 2.0); ``None`` draws them unthresholded. Severity (table order) always uses the
        clusters at ``threshold`` (2.0 when None).
    min_cluster_area : float
        Smallest cluster kept on surfaces, in mm² measured on the mesh (fsaverage5: midthickness).
    multivariate : MultivariateSeverity, optional
        Multivariate deviation of every subject
        (:func:`~spectranorm_neuro.report.severity.multivariate_severity`): a column of the subject
        table, on each subject's page, and the table's default order.

    Returns
    -------
    pathlib.Path
        Path of ``index.html``.
    """
    from tqdm.auto import tqdm

    z = checks.check_zscores(zscores)
    n_subjects, n_features = z.shape
    table = checks.check_subjects(subjects, n_subjects)
    blocks = checks.resolve_blocks(basis, structures, n_features)
    control_mask = checks.check_controls(controls, n_subjects)
    group_labels, group_levels = checks.check_groups(table, group_column)
    site_col = checks.check_site_column(table, site_column, model)
    atlas = checks.check_atlas(atlas_labels, n_features)
    levels = checks.check_centiles(centiles)
    coeffs = checks.check_coefficients(coefficients, n_subjects)
    n_shown = min(checks.check_max_subjects(max_subjects), n_subjects)
    inline_limit = checks.check_max_subjects(inline_subjects, "inline_subjects")
    n_top = checks.check_max_subjects(n_top_parcels, "n_top_parcels")
    mesh_specs = checks.check_surface_meshes(blocks, meshes)
    jobs = check_n_jobs(n_jobs)
    z_threshold, min_area = checks.check_threshold(threshold, min_cluster_area)
    mv = _check_multivariate(multivariate, n_subjects)
    if model_card is not None and not isinstance(model_card, Mapping):
        raise bad_value("model_card", type(model_card).__name__, "is not a dict",
                        "pass the model card as a dict (e.g. loaded from the model's JSON)")
    if model_card is None and model is not None:
        model_card = _default_model_card(model)

    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise bad_value("out_dir", str(root), "is an existing file", "pass a folder path",
                        InvalidInputError)
    ids = [str(i) for i in table.index]
    slugs = checks.subject_slugs(ids)
    shown = list(range(n_shown))
    pages = n_shown > inline_limit
    interactive_names = {slugs[i]: [_safe(b.name) for b in blocks if b.kind in ("surface", "volume")]
                         for i in shown} if interactive else {}
    if not overwrite:
        existing = [p for p in _planned_paths(root, [slugs[i] for i in shown], pages, interactive_names)
                    if p.exists()]
        figures_dir = root / "figures"
        if figures_dir.is_dir():
            existing += sorted(p for p in figures_dir.rglob("*.png"))[:1]
        if existing:
            raise bad_value("out_dir", str(root), f"already holds a report ({existing[0].name} exists)",
                            "choose another folder or pass overwrite=True (CLI: --overwrite)",
                            OutputExistsError)
    check_output_path(root / "index.html", overwrite)
    writer = _Writer(root, bool(overwrite))

    # ---------------------------------------------------------------- numbers
    renderer = BrainRenderer(blocks, mesh_specs)
    geometries = cluster_geometries(blocks, {b.name: (g.vertices if g.area_vertices is None else g.area_vertices,
                                                      g.faces) for b, g in renderer.surfaces})
    found = [find_clusters(z[i], geometries, z_threshold, min_area) for i in range(n_subjects)]
    severity = np.array([[sum(c.size for c in cl if c.sign < 0), sum(c.size for c in cl if c.sign > 0)]
                         for _, cl in found]).reshape(n_subjects, 2)
    first = np.zeros(n_subjects) if mv is None else -mv.d2  # same null for all: d2 orders as p
    order = sorted(range(n_subjects), key=lambda i: (first[i], -severity[i].sum(), -float(np.abs(z[i]).max()), i))
    cal = calibration_summary(z[control_mask],
                              None if site_col is None else table[site_col].to_numpy()[control_mask],
                              levels)
    stats = subject_stats(z, [b.start for b in blocks])
    parcels = parcel_stats(z[:n_shown], atlas[0], atlas[1], n_top) if atlas and n_shown else None
    view_groups = ["All subjects", *group_levels]
    group_slugs = [s.lower() for s in checks.subject_slugs(["all", *group_levels])]
    view_labels = np.full(n_subjects, "All subjects", dtype=object)
    mean_all, frac_all, size_all = group_maps(z, view_labels, ["All subjects"])
    if group_levels:
        mean_g, frac_g, size_g = group_maps(z, group_labels, group_levels)
        mean_all = np.vstack([mean_all, mean_g])
        frac_all = np.vstack([frac_all, frac_g])
        size_all = np.concatenate([size_all, size_g])
    charts: CentileCharts | None = None
    if model is not None:
        charts = centile_charts(model, table, n_features, coeffs, levels, blocks=blocks, atlas=atlas)

    z_vmax = _nice_ceiling(np.percentile(np.abs(z[:n_shown]), 99.5) if n_shown else 3.0, 3.0)
    group_vmax = _nice_ceiling(np.percentile(np.abs(mean_all), 99.5), 0.5)
    frac_vmax = _nice_ceiling(frac_all.max(), 0.1)
    z_scale = ColourScale("RdBu_r", -z_vmax, z_vmax, "z")
    mean_scale = ColourScale("RdBu_r", -group_vmax, group_vmax, "mean z")
    frac_scale = ColourScale("YlOrRd", 0.0, min(frac_vmax, 1.0), "fraction |z| > 2")
    shown_maps = None if threshold is None else np.vstack([found[i][0] for i in shown]) if shown else None
    unit, unit_singular = _unit_names(blocks)
    area_unit = geometries[0].unit if len({g.unit for g in geometries}) == 1 else "size"
    thresholding = {"threshold": z_threshold, "min_area": min_area, "applied": threshold is not None,
                    "area_unit": area_unit, "surfaces": bool(renderer.surfaces)}

    # ---------------------------------------------------------------- figures
    chart_fig = CentileChartFigure(charts, group_labels if group_levels else None, group_levels) \
        if charts is not None else None
    n_tasks = 1 + len(view_groups) + n_shown + (1 if chart_fig else 0)
    with blas_threads(1):  # drawing needs no BLAS; idle BLAS threads only spin on a shared machine
        bar = tqdm(total=n_tasks, desc="Rendering report", unit="fig", disable=not progress)
        try:
            cal_fig = writer.png("figures/calibration.png", _png(calibration_figure(cal)), "calibration",
                                 "Calibration: histogram of z against N(0, 1) and normal QQ plot")
            bar.update()
            groups = []
            for name, slug in zip(view_groups, group_slugs):
                g = len(groups)
                figs = _figures(writer, renderer.render(mean_all[g], mean_scale, f"{name}: mean z"),
                                f"group-{slug}-mean-z", f"{name}: mean z")
                frac_panels = renderer.render(frac_all[g], frac_scale, f"{name}: fraction |z| > 2")
                figs += _figures(writer, frac_panels,
                                 f"group-{slug}-frac-extreme", f"{name}: fraction of subjects with |z| > 2")
                groups.append({"name": name, "slug": slug, "n": int(size_all[g]), "figures": figs})
                bar.update()
            cohort_chart = None
            if chart_fig is not None:
                cohort_chart = {
                    "figure": writer.png("figures/centiles-cohort.png", chart_fig.render_cohort(),
                                         "centiles-cohort", "Cohort on the normative centile charts"),
                    "covariate": charts.covariate,
                    "reference": ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                                           for k, v in charts.reference.items()) or "their defaults",
                    "fit": _fit_by_level(charts, table, control_mask if controls is not None else None),
                }
                bar.update()

            cohort = cohort_context(table, blocks, control_mask, group_column, group_labels, group_levels,
                                    n_features, unit, unit_singular)
            context = {
                "title": TITLE, "version": __version__, "cohort": cohort, "n_rendered": n_shown,
                "model_card": model_card_rows(model_card), "thresholding": thresholding,
                "calibration": cal, "calibration_figure": cal_fig, "controls_given": controls is not None,
                "calibration_label": _calibration_label(controls is not None, group_labels, control_mask,
                                                        group_levels),
                "coverage": [{"label": f"{100 * p:g}th", "threshold": t, "observed": o, "expected": p,
                              "difference": o - p}
                             for p, t, o in zip(cal.centiles, cal.thresholds, cal.coverage)],
                "sites": [] if cal.sites is None else cal.sites.to_dict("records"),
                "site_column": site_col or "site", "groups": groups, "group_vmax": group_vmax,
                "frac_vmax": frac_scale.vmax, "cohort_centiles": cohort_chart,
                "notes": _notes(n_subjects, n_shown, max_subjects, model, coeffs, charts),
                "multivariate": None if mv is None else mv.describe(),
            }

            inline = {}
            groups_or_none = group_labels if group_levels else None
            page_order = [i for i in order if i < n_shown]
            suffix = "" if threshold is None else \
                f" (|z| > {z_threshold:g}{_area_text(min_area, thresholding)})"
            for item in render_subjects(renderer, charts, groups_or_none, group_levels,
                                        z[:n_shown], ids[:n_shown], z_scale, interactive, jobs,
                                        shown=shown_maps, title_suffix=suffix):
                i = item.index
                slug = slugs[i]
                figs = _figures(writer, item.panels, f"subjects/{slug}-zmap", f"{ids[i]}: z-scores")
                chart = None if item.chart is None else writer.png(
                    f"figures/subjects/{slug}-centiles.png", item.chart, f"subjects/{slug}-centiles",
                    f"{ids[i]} on the normative centile charts")
                links = []
                for name, html in item.interactive:
                    rel = f"interactive/{slug}-{_safe(name)}.html"
                    writer.text(rel, html)
                    links.append((name, ("../" if pages else "") + rel))
                s = subject_context(i, ids[i], slug, table, group_labels if group_levels else None,
                                    control_mask if controls is not None else None, blocks, stats, parcels,
                                    charts, figs, chart, links, z_scale.vmax, unit)
                s["clusters"] = cluster_rows(found[i][1], atlas)
                s["has_atlas"] = atlas is not None
                s["thresholding"] = thresholding
                s["severity"] = [float(v) for v in severity[i]]
                s["multivariate"] = None if mv is None else {"z": float(mv.z[i]), "p": float(mv.p_value[i]),
                                                             "text": mv.describe()}
                k = page_order.index(i)
                s["position"], s["n_pages"] = k + 1, len(page_order)
                neighbours = [page_order[k - 1] if k > 0 else None,
                              page_order[k + 1] if k + 1 < len(page_order) else None]
                s["prev"], s["next"] = [None if j is None else {"id": ids[j], "href": f"{slugs[j]}.html" if pages
                                                                else f"#subject-{slugs[j]}"} for j in neighbours]
                if pages:
                    writer.text(f"subjects/{slug}.html",
                                render_page("subject.html", title=TITLE, version=__version__, s=s,
                                            index_href="../index.html"))
                else:
                    inline[i] = s
                bar.update()
        finally:
            bar.close()

    context["inline_subjects"] = [inline[i] for i in order if i in inline]
    context["summary"] = _summary(severity, control_mask if controls is not None else None, group_labels,
                                  group_levels, cal, mv)
    context["subject_rows"] = [
        {"id": ids[i], "group": group_labels[i] if group_levels else "",
         "control": None if controls is None else bool(control_mask[i]),
         "area_negative": float(severity[i, 0]), "area_positive": float(severity[i, 1]),
         "n_clusters": len(found[i][1]),
         "n_extreme": int(stats.n_extreme[i].sum()),
         "frac_extreme": float(stats.n_extreme[i].sum() / n_features),
         "n_severe": int(stats.n_severe[i].sum()), "max_abs": float(stats.max_abs[i].max()),
         "mean": float(z[i].mean()),
         "mv_z": None if mv is None else float(mv.z[i]),
         "href": (f"subjects/{slugs[i]}.html" if pages else f"#subject-{slugs[i]}") if i < n_shown else None}
        for i in order
    ]
    return writer.text("index.html", render_page("index.html", **context))


def _default_model_card(model: Any) -> dict:
    """A model card from the model itself: ``model.model_card`` if it has one, else its scalars."""
    card = getattr(model, "model_card", None)
    if isinstance(card, Mapping):
        return dict(card)
    out: dict = {"model": type(model).__name__}
    for name in ("numerical_covariates", "categorical_covariates", "batch_covariates"):
        value = getattr(model, name, None)
        if value is not None:
            out[name.replace("_", " ")] = list(value) or "none"
    params = getattr(model, "model_params", None)
    if isinstance(params, Mapping):
        out.update({str(k): v for k, v in params.items()
                    if isinstance(v, (str, int, float, bool, np.integer, np.floating)) or v is None})
    return out


def _area_text(min_area: float, thresholding: dict) -> str:
    if not thresholding["surfaces"] or min_area <= 0:
        return ""
    return f", clusters ≥ {min_area:g} mm²"


def _calibration_label(given: bool, group_labels: np.ndarray, control_mask: np.ndarray,
                       group_levels: list[str]) -> str:
    """Who the calibration is computed on, e.g. ``"40 control subjects (group = control)"``."""
    n = int(control_mask.sum())
    if not given:
        return f"all {n} scored subjects (no controls designated: any patients are included)"
    which = sorted({str(g) for g in group_labels[control_mask]}) if group_levels else []
    return f"{n} control subject{'' if n == 1 else 's'}" + (f" (group {', '.join(which)})" if which else "")


def _fit_by_level(charts: CentileCharts, table: pd.DataFrame, controls: np.ndarray | None) -> list[dict]:
    """Mean z of the (control) subjects against the drawn reference curves, per categorical level.

    Points on the cohort chart are standardized to the reference, so this is each level's mean z
    of the whole-map mean; near 0 for every level when the model fits them.
    """
    if charts.subject_z is None:
        return []
    sel = np.ones(len(table), dtype=bool) if controls is None else controls
    rows = []
    for name in charts.profiles[0]:
        column = table[name]
        if pd.api.types.is_numeric_dtype(column) and not isinstance(column.dtype, pd.CategoricalDtype):
            continue
        for level in sorted({str(v) for v in column[sel]}):
            member = sel & (column.astype(str).to_numpy() == level)
            zq = charts.subject_z[member, 0]
            rows.append({"covariate": name, "level": level, "n": int(member.sum()),
                         "mean_z": float(np.mean(zq)) if zq.size else float("nan")})
    return rows


def _check_multivariate(multivariate, n_subjects: int) -> MultivariateSeverity | None:
    if multivariate is None:
        return None
    if not isinstance(multivariate, MultivariateSeverity) or np.shape(multivariate.z) != (n_subjects,):
        raise bad_value("multivariate", type(multivariate).__name__,
                        f"is not a MultivariateSeverity of the {n_subjects} subjects",
                        "pass report.severity.multivariate_severity(model, maps, covariates) of the same subjects")
    return multivariate


def _summary(severity: np.ndarray, controls: np.ndarray | None, group_labels: np.ndarray,
             group_levels: list[str], cal, mv: MultivariateSeverity | None = None) -> list[tuple[str, str]]:
    """Key numbers for the top of the page."""
    with_clusters = severity.sum(axis=1) > 0
    rows = [("Calibration", f"mean z {cal.mean:.2f} (0 expected), sd {cal.sd:.2f} (1 expected), "
                            f"|z| > 2 in {100 * cal.frac_extreme:.2f} % (4.55 % expected)")]
    if group_levels:
        for g in group_levels:
            member = group_labels == g
            rows.append((f"Group {g}", f"{int(member.sum())} subjects, {int(with_clusters[member].sum())} with "
                                       f"suprathreshold clusters"))
    else:
        rows.append(("Subjects with suprathreshold clusters", f"{int(with_clusters.sum())} of {len(severity)}"))
    if controls is not None:
        rows.append(("Controls with suprathreshold clusters",
                     f"{int(with_clusters[controls].sum())} of {int(controls.sum())} (false-positive rate)"))
    if mv is not None:
        flagged = mv.p_value < 0.05
        where = [(f"group {g}", group_labels == g) for g in group_levels] or [("all", np.ones(len(flagged), bool))]
        rows.append(("Multivariate p < 0.05", "; ".join(f"{int(flagged[m].sum())} of {int(m.sum())} ({name})"
                                                       for name, m in where) + " (5 % of controls expected)"))
    return rows


def _png(fig) -> bytes:
    from .brainviews import png_bytes

    return png_bytes(fig)


def _unit_names(blocks) -> tuple[str, str]:
    kinds = {b.kind for b in blocks}
    if len(kinds) == 1:
        return _UNITS[next(iter(kinds))]
    return "features", "feature"


def _notes(n_subjects, n_shown, max_subjects, model, coeffs, charts) -> list[str]:
    notes = []
    if n_shown < n_subjects:
        notes.append(f"{n_subjects - n_shown} of {n_subjects} subjects are listed without figures "
                     f"(max_subjects={max_subjects}); raise max_subjects (CLI: --max-subjects) to see them.")
    if model is None:
        notes.append("No model was given, so there are no centile charts.")
    elif charts is None:
        notes.append("The model has no numerical covariate to chart centiles against.")
    elif coeffs is None:
        notes.append("No spectral coefficients were given, so subjects are not placed on the centile charts.")
    return notes
