"""Per-subject figure rendering, in chunks, optionally in parallel worker processes.

Every chunk builds its own centile-chart figure and draws its subjects in order, so the PNGs do
not depend on ``n_jobs`` or on the chunking. Files are written by the caller (main process).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .._util import blas_threads, block_slices, run_tasks
from .brainviews import BrainRenderer, ColourScale, Panel
from .centiles import CentileCharts
from .figures import CentileChartFigure
from .interactive import interactive_pages

__all__ = ["SubjectFigures", "render_subjects"]

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
                    interactive: bool = False, n_jobs: int | None = 1, shown: np.ndarray | None = None,
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
    n_jobs : int or None
        Workers (joblib semantics, through the package's one runner ``_util.run_tasks``, so
        ``joblib.parallel_config`` chooses the backend; 1 renders in this process).
    shown : numpy.ndarray of bool, shape (n_shown, n_features), optional
        Thresholded maps: the features coloured for each subject (default: all).
    title_suffix : str
        Appended to each map's title (e.g. the threshold).

    Yields
    ------
    SubjectFigures
    """
    tasks = [(i, str(ids[i]), zscores[i], None if shown is None else shown[i]) for i in range(len(ids))]
    chunks = [tasks[rows] for rows in block_slices(len(tasks), CHUNK)]
    arguments = ((renderer, charts, groups, levels, chunk, scale, interactive, title_suffix) for chunk in chunks)
    for result in run_tasks(_render_chunk, arguments, 1 if len(chunks) <= 1 else n_jobs):
        yield from result
