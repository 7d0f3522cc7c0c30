"""Non-brain figures: the calibration histogram and QQ plot, and the centile charts.

All figures are :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas (no pyplot
state). Each subject's centile chart is drawn at that subject's own covariates; the cohort chart at
the reference covariates with the subjects standardized to them.
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


def _profile_text(values: dict) -> str:
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in values.items())


class CentileChartFigure:
    """Centile charts of regional means: the cohort chart and one chart per subject.

    The cohort chart draws the curves at the reference covariates and every subject standardized
    to them (same centile as at the subject's own covariates). A subject's chart draws the curves
    at that subject's own covariates, the star at its value (so its position is the centile of the
    table) and the cohort, in grey, standardized to the same covariates.

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
        self._kept: dict[int, tuple[Figure, list, object]] = {}

    def _figure(self, queries: Sequence[int], mean: np.ndarray, curves: np.ndarray, title: str,
                note: str, keep: bool = False) -> tuple[Figure, list]:
        """Bands of ``curves`` (n_centiles, n_grid, n_queries) and ``mean`` (n_grid, n_queries).

        With ``keep``, the figure with as many charts drawn last time is emptied and reused (its
        axes and ticks are kept, the limits recomputed from the new data): the same picture, drawn
        in a third of the time.
        """
        c = self.charts
        n_q = len(queries)
        if keep and n_q in self._kept:
            fig, axes, note_text = self._kept[n_q]
            for ax in axes:
                for artist in [*ax.lines, *ax.collections, *ax.patches]:
                    artist.remove()
                ax.relim()  # empty: the next artists set the limits as on a new axes
        else:
            total = 3.3 * n_q + 1.6
            fig = Figure(figsize=(total, 3.3))
            width = 3.3 / total
            axes = [fig.add_axes((0.7 / total + i * width, 0.15, width - 0.75 / total, 0.62)) for i in range(n_q)]
            axes[0].set_ylabel("value (site effects removed)", fontsize=9)
            note_text = fig.text(0.5, 0.875, "", ha="center", va="center", fontsize=8, color="0.3")
            if keep:
                self._kept[n_q] = (fig, axes, note_text)
        levels = np.round(c.centiles, 6)
        for ax, q in zip(axes, queries):
            for i, lo in enumerate(levels):
                hi_idx = np.flatnonzero(np.isclose(levels, 1 - lo))
                if lo < 0.5 and hi_idx.size:
                    alpha = 0.15 + 0.2 * (i / max(len(levels) // 2 - 1, 1))
                    ax.fill_between(c.grid, curves[i, :, q], curves[hi_idx[0], :, q], color=_BAND_COLOUR,
                                    alpha=alpha, lw=0, label=f"{100 * lo:g}–{100 * (1 - lo):g}th centile")
            for i, p in enumerate(levels):
                if not np.isclose(p, 0.5):  # centile lines (the 50th is the mean, drawn below)
                    ax.plot(c.grid, curves[i, :, q], color=_BAND_COLOUR, lw=0.5, alpha=0.7, gid=f"centile-{p:g}")
            ax.plot(c.grid, mean[:, q], color="#1f3b60", lw=1.4, label="normative mean (50th)", gid="mean")
            ax.set_title(c.query_names[q], fontsize=10, y=1.0)  # fixed: no search for overlaps at each draw
            ax.set_xlabel(c.covariate, fontsize=9)
            ax.tick_params(labelsize=8)
        fig.suptitle(title, fontsize=10, y=0.985)
        note_text.set_text(note)
        return fig, axes

    def render_cohort(self) -> bytes:
        """PNG of the reference curves with every subject standardized to them, coloured by group."""
        c = self.charts
        queries = c.cohort_queries
        ref = _profile_text(c.reference)
        note = (f"Curves at {ref}; " if ref else "Curves: ") + \
            "points are subjects standardized to these covariates (each keeps its own centile)"
        fig, axes = self._figure(queries, c.mean, c.curves, "Cohort on the normative centiles", note)
        if c.reference_y is not None:
            groups = self.groups if self.groups is not None else np.full(len(c.subject_x), "", object)
            for ax, q in zip(axes, queries):
                for g, name in enumerate(self.levels or [""]):
                    sel = groups == name
                    ax.scatter(c.subject_x[sel], c.reference_y[sel, q], s=10, color=_GROUP_COLOURS[g % 8],
                               alpha=0.8, lw=0, label=name or "subjects", zorder=3)
        _legend(axes)
        return png_bytes(fig, self.dpi)

    def subject_figure(self, index: int, label: str, keep: bool = False) -> Figure:
        """Figure of subject ``index``: curves at its own covariates, the cohort in grey, a star.

        ``keep=True`` draws it on this object's kept figure (changed by the next such call).
        """
        c = self.charts
        p = int(c.subject_profile[index])
        curves = c.profile_curves(p)
        queries = c.subject_queries(index)
        own = _profile_text(c.profiles[p])
        note = (f"Curves at this subject's covariates ({own}); " if own else "Curves: ") + \
            "grey: cohort standardized to them; star: this subject"
        fig, axes = self._figure(queries, c.profile_mean[p], curves, f"{label} on the normative centiles", note, keep)
        for ax, q in zip(axes, queries):
            if c.subject_z is not None:
                mu = np.interp(c.subject_x, c.grid, c.profile_mean[p, :, q])
                sd = np.interp(c.subject_x, c.grid, c.profile_std[p, :, q])
                ax.scatter(c.subject_x, mu + sd * c.subject_z[:, q], s=6, color="0.6", alpha=0.6, lw=0, zorder=3,
                           label="cohort")
                ax.plot([c.subject_x[index]], [c.subject_y[index, q]], marker="*", ms=13, color="#d7191c",
                        mec="black", mew=0.6, ls="none", zorder=5, label="this subject", gid="subject")
        _legend(axes)
        return fig

    def render_subject(self, index: int, label: str) -> bytes:
        """PNG of :meth:`subject_figure`."""
        return png_bytes(self.subject_figure(index, label, keep=True), self.dpi)


def _legend(axes) -> None:
    handles, labels = axes[-1].get_legend_handles_labels()
    keep = dict(zip(labels, handles))
    axes[-1].legend(keep.values(), keep.keys(), fontsize=7, frameon=False, loc="upper left",
                    bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
