"""Non-brain figures: the calibration histogram and QQ plot, and the centile charts.

All figures are :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas (no pyplot
state). Per-subject centile charts reuse one figure: the bands and the cohort are drawn once and
only the highlighted subject changes between PNGs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .brainviews import DPI, png_bytes
from .calibration import Calibration
from .centiles import CentileCharts

__all__ = ["calibration_figure", "CentileChartFigure"]

_BAND_COLOUR = "#4a7ab5"
_GROUP_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")


def calibration_figure(cal: Calibration) -> Figure:
    """Histogram of the pooled z-scores against the N(0, 1) density, and a normal QQ plot.

    Parameters
    ----------
    cal : Calibration
        Output of :func:`~spectranorm_neuro.report.calibration.calibration_summary`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(9.0, 3.3))
    ax_h = fig.add_axes((0.07, 0.16, 0.4, 0.72))
    ax_q = fig.add_axes((0.575, 0.16, 0.4, 0.72))
    edges = cal.hist_edges
    ax_h.bar(edges[:-1], cal.hist_density, width=np.diff(edges), align="edge", color="#9ab8d9",
             edgecolor="white", linewidth=0.5, label="z-scores")
    ax_h.step(edges, np.append(cal.normal_density, cal.normal_density[-1]), where="post",
              color="#b2182b", lw=1.4, label="N(0, 1)")
    ax_h.set_xlabel("z", fontsize=9)
    ax_h.set_ylabel("density", fontsize=9)
    ax_h.set_title(f"Distribution of z ({cal.n_subjects} subjects, {cal.n_values:,} values)", fontsize=10)
    ax_h.legend(fontsize=8, frameon=False)
    lim = float(max(np.abs(cal.qq_theoretical).max(), np.abs(cal.qq_sample).max())) * 1.05
    ax_q.plot([-lim, lim], [-lim, lim], color="0.5", lw=1, ls="--", label="identity")
    ax_q.plot(cal.qq_theoretical, cal.qq_sample, "o", ms=2.5, color="#2166ac", label="z quantiles")
    ax_q.set_xlim(-lim, lim)
    ax_q.set_ylim(-lim, lim)
    ax_q.set_xlabel("N(0, 1) quantile", fontsize=9)
    ax_q.set_ylabel("z quantile", fontsize=9)
    ax_q.set_title("Normal QQ plot", fontsize=10)
    ax_q.legend(fontsize=8, frameon=False, loc="upper left")
    for ax in (ax_h, ax_q):
        ax.tick_params(labelsize=8)
    return fig


class CentileChartFigure:
    """Centile bands of the summary queries with the cohort on top.

    Parameters
    ----------
    charts : CentileCharts
        Curves and subject positions.
    groups : numpy.ndarray of str, shape (n_subjects,), optional
        Group of each subject (colours the cohort chart).
    levels : sequence of str, optional
        Group order for the legend.
    dpi : int
        PNG resolution.
    """

    def __init__(self, charts: CentileCharts, groups: np.ndarray | None = None,
                 levels: Sequence[str] = (), dpi: int = DPI):
        self.charts = charts
        self.groups = groups
        self.levels = list(levels)
        self.dpi = dpi
        n_q = len(charts.query_names)
        total = 3.3 * n_q + 1.6
        self.fig = Figure(figsize=(total, 3.1))
        width = 3.3 / total
        self.axes = [self.fig.add_axes((0.7 / total + i * width, 0.16, width - 0.75 / total, 0.66))
                     for i in range(n_q)]
        self._draw_bands()
        self._cohort: list = []
        self._highlight: list = []
        self._mode = ""


    def _draw_bands(self) -> None:
        c = self.charts
        levels = np.round(c.centiles, 6)
        for q, ax in enumerate(self.axes):
            for i, lo in enumerate(levels):
                hi_idx = np.flatnonzero(np.isclose(levels, 1 - lo))
                if lo < 0.5 and hi_idx.size:
                    alpha = 0.15 + 0.2 * (i / max(len(levels) // 2 - 1, 1))
                    ax.fill_between(c.grid, c.curves[i, :, q], c.curves[hi_idx[0], :, q],
                                    color=_BAND_COLOUR, alpha=alpha, lw=0,
                                    label=f"{100 * lo:g}–{100 * (1 - lo):g}th centile")
            ax.plot(c.grid, c.mean[:, q], color="#1f3b60", lw=1.4, label="normative mean")
            ax.set_title(c.query_names[q], fontsize=10)
            ax.set_xlabel(c.covariate, fontsize=9)
            ax.tick_params(labelsize=8)
        self.axes[0].set_ylabel("harmonized value", fontsize=9)

    def _set_mode(self, mode: str) -> None:
        """Draw the cohort for ``mode`` ("cohort": coloured by group; "subject": grey + highlight)."""
        if self._mode == mode:
            return
        for artist in self._cohort + self._highlight:
            artist.remove()
        self._cohort, self._highlight = [], []
        c = self.charts
        if c.subject_y is not None:
            if mode == "cohort":
                groups = self.groups if self.groups is not None else np.full(len(c.subject_x), "", object)
                for q, ax in enumerate(self.axes):
                    for g, name in enumerate(self.levels or [""]):
                        sel = groups == name
                        self._cohort.append(ax.scatter(
                            c.subject_x[sel], c.subject_y[sel, q], s=10, color=_GROUP_COLOURS[g % 8],
                            alpha=0.8, lw=0, label=name or "subjects", zorder=3))
            else:
                for q, ax in enumerate(self.axes):
                    self._cohort.append(ax.scatter(c.subject_x, c.subject_y[:, q], s=6, color="0.6",
                                                   alpha=0.6, lw=0, zorder=3, label="cohort"))
                    (line,) = ax.plot([], [], marker="*", ms=13, color="#d7191c", mec="black", mew=0.6,
                                      ls="none", zorder=5, label="this subject")
                    self._highlight.append(line)
        self.axes[-1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                             borderaxespad=0.0)
        self._mode = mode

    def render_cohort(self) -> bytes:
        """PNG of the bands with every subject, coloured by group."""
        self._set_mode("cohort")
        self.fig.suptitle("Normative centiles (other covariates at reference values)", fontsize=10, y=0.985)
        return png_bytes(self.fig, self.dpi)

    def render_subject(self, index: int, label: str) -> bytes:
        """PNG of the bands with the cohort in grey and subject ``index`` highlighted."""
        self._set_mode("subject")
        c = self.charts
        for q, line in enumerate(self._highlight):
            line.set_data([c.subject_x[index]], [c.subject_y[index, q]])
        self.fig.suptitle(f"{label} on the normative centiles", fontsize=10, y=0.985)
        return png_bytes(self.fig, self.dpi)
