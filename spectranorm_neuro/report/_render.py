"""Per-subject figure rendering, in chunks, optionally in parallel worker processes.

Every chunk builds its own centile-chart figure and draws its subjects in order, so the PNGs do
not depend on ``n_jobs`` or on the chunking. Files are written by the caller (main process).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .._util import blas_threads
from ..exceptions import bad_value
from .brainviews import BrainRenderer, ColourScale, Panel
from .centiles import CentileCharts
from .figures import CentileChartFigure
from .interactive import interactive_pages

__all__ = ["SubjectFigures", "render_subjects", "check_n_jobs"]

CHUNK = 5


@dataclass(frozen=True)
class SubjectFigures:
    """Rendered figures of one subject.

    Parameters
    ----------
    index : int
        Row of the subject in the z-score array.
    panels : list of Panel
        Z-map figures (surface montage, volume slices ...).
    chart : bytes or None
        PNG of the subject on the centile charts.
    interactive : list of (str, str)
        ``(structure name, HTML)`` interactive pages.
    """

    index: int
    panels: list[Panel]
    chart: bytes | None
    interactive: list[tuple[str, str]]


def check_n_jobs(n_jobs: int | None) -> int:
    """Resolve ``n_jobs`` (None -> 1, -1 -> all CPUs) to a positive worker count."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise bad_value("n_jobs", n_jobs, "is not a positive integer or -1",
                        "pass e.g. n_jobs=2 (or -1 for all CPUs)")
    return int(os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)


def _render_chunk(renderer: BrainRenderer, charts: CentileCharts | None, groups, levels,
                  tasks: Sequence[tuple[int, str, np.ndarray, np.ndarray | None]], scale: ColourScale,
                  interactive: bool, title_suffix: str) -> list[SubjectFigures]:
    chart_fig = None
    if charts is not None and charts.subject_y is not None:
        chart_fig = CentileChartFigure(charts, groups, levels)
    out = []
    with blas_threads(1):  # drawing needs no BLAS; idle BLAS threads only spin on a shared machine
        for i, sid, values, shown in tasks:
            title = f"{sid}: z-scores{title_suffix}"
            panels = renderer.render(values, scale, title, shown)
            chart = chart_fig.render_subject(i, sid) if chart_fig is not None else None
            pages = interactive_pages(renderer, values, scale, title) if interactive else []
            out.append(SubjectFigures(i, panels, chart, pages))
    return out


def render_subjects(renderer: BrainRenderer, charts: CentileCharts | None, groups: np.ndarray | None,
                    levels: Sequence[str], zscores: np.ndarray, ids: Sequence[str], scale: ColourScale,
                    interactive: bool = False, n_jobs: int = 1, shown: np.ndarray | None = None,
                    title_suffix: str = "") -> Iterator[SubjectFigures]:
    """Render the detailed subjects' figures, yielding them in subject order.

    Parameters
    ----------
    renderer : BrainRenderer
    charts : CentileCharts or None
    groups : numpy.ndarray of str, shape (n_subjects,), optional
    levels : sequence of str
    zscores : numpy.ndarray, shape (n_shown, n_features)
        Z-maps of the detailed subjects (rows ``0 .. n_shown - 1``).
    ids : sequence of str, length n_shown
        Their ids.
    scale : ColourScale
        Colour scale of the z-maps.
    interactive : bool
        Also build nilearn interactive pages.
    n_jobs : int
        Worker processes (1 renders in this process).
    shown : numpy.ndarray of bool, shape (n_shown, n_features), optional
        Thresholded maps: the features coloured for each subject (default: all).
    title_suffix : str
        Appended to each map's title (e.g. the threshold).

    Yields
    ------
    SubjectFigures
    """
    tasks = [(i, str(ids[i]), zscores[i], None if shown is None else shown[i]) for i in range(len(ids))]
    chunks = [tasks[a:a + CHUNK] for a in range(0, len(tasks), CHUNK)]
    if n_jobs <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield from _render_chunk(renderer, charts, groups, levels, chunk, scale, interactive, title_suffix)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=min(n_jobs, len(chunks)), backend="loky", return_as="generator")
    for result in parallel(delayed(_render_chunk)(renderer, charts, groups, levels, chunk, scale, interactive,
                                                  title_suffix) for chunk in chunks):
        yield from result
