"""The numbers of a deviation report: calibration of z-scores, extreme counts, parcel and group means.

Everything here is plain numpy on a z-score array of shape (n_subjects, n_features); nothing is
drawn. Under a calibrated model, z-scores of held-out or control subjects follow N(0, 1): about
2.5 % of them fall below -1.96, 50 % below 0, and 4.55 % have ``|z| > 2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse, special

from ..exceptions import ShapeMismatchError, bad_value

__all__ = [
    "EXTREME_Z",
    "SEVERE_Z",
    "HIST_EDGES",
    "N_QQ",
    "qq_probabilities",
    "Calibration",
    "calibration_summary",
    "SubjectStats",
    "subject_stats",
    "ParcelStats",
    "parcel_stats",
    "group_maps",
]

EXTREME_Z = 2.0
SEVERE_Z = 3.0
HIST_EDGES = np.linspace(-5.0, 5.0, 41)
N_QQ = 199


def qq_probabilities(n_values: int, n_points: int = N_QQ) -> np.ndarray:
    """Probabilities of the QQ plot, from the smallest to the largest observation.

    Evenly spaced in normal quantile between the plotting positions ``0.5 / n`` and
    ``1 - 0.5 / n`` of the extreme observations, so the plot reaches the observed extremes.

    Parameters
    ----------
    n_values : int
        Number of pooled values.
    n_points : int
        Number of points.

    Returns
    -------
    numpy.ndarray, shape (n_points,)
    """
    first = 0.5 / max(int(n_values), 1)
    edge = special.ndtri(first)
    probs = special.ndtr(np.linspace(edge, -edge, n_points))
    probs[0], probs[-1] = first, 1.0 - first
    return probs


@dataclass(frozen=True)
class Calibration:
    """Distribution of the z-scores of the calibration (control) subjects.

    Attributes
    ----------
    n_subjects, n_values : int
        Subjects used and z-scores pooled (``n_subjects * n_features``).
    mean, sd : float
        Mean and standard deviation (``ddof=1``) of all pooled z-scores.
    frac_extreme, expected_extreme : float
        Observed fraction of ``|z| > 2`` and its N(0, 1) expectation ``2 * (1 - Phi(2))``.
    hist_edges : numpy.ndarray, shape (n_bins + 1,)
        Histogram bin edges (-5 .. 5).
    hist_density, normal_density : numpy.ndarray, shape (n_bins,)
        Observed density (count / (n_values * width)) and the N(0, 1) mass of each bin / width.
    frac_outside : float
        Fraction of z-scores outside the histogram range.
    qq_probs, qq_theoretical, qq_sample : numpy.ndarray, shape (n_q,)
        Probabilities (:func:`qq_probabilities`, reaching the extremes), their N(0, 1) quantiles
        and the sample quantiles of the z-scores (Hazen plotting positions: the first and last
        points are the smallest and largest z).
    centiles, thresholds, coverage : numpy.ndarray, shape (n_centiles,)
        Centile levels ``p``, N(0, 1) quantiles ``Phi^-1(p)`` and the observed fraction of
        z-scores strictly below each threshold (expected: ``p``).
    sites : pandas.DataFrame or None
        One row per site: ``site``, ``n_subjects``, ``mean``, ``sd`` (``ddof=1``) of the pooled
        z-scores of that site's calibration subjects.
    """

    n_subjects: int
    n_values: int
    mean: float
    sd: float
    frac_extreme: float
    expected_extreme: float
    hist_edges: np.ndarray
    hist_density: np.ndarray
    normal_density: np.ndarray
    frac_outside: float
    qq_probs: np.ndarray
    qq_theoretical: np.ndarray
    qq_sample: np.ndarray
    centiles: np.ndarray
    thresholds: np.ndarray
    coverage: np.ndarray
    sites: pd.DataFrame | None


def _pooled_moments(sums: np.ndarray, sumsq_centered: np.ndarray, counts: np.ndarray,
                    means: np.ndarray) -> tuple[float, float]:
    """Combine per-row (count, mean, centred sum of squares) into a pooled mean and sd (ddof=1)."""
    n = counts.sum()
    mean = sums.sum() / n
    m2 = sumsq_centered.sum() + np.sum(counts * (means - mean) ** 2)
    sd = np.sqrt(m2 / (n - 1)) if n > 1 else np.nan
    return float(mean), float(sd)


def calibration_summary(zscores: np.ndarray, sites: Sequence | np.ndarray | None = None,
                        centiles: Sequence[float] = (0.025, 0.25, 0.5, 0.75, 0.975)) -> Calibration:
    """Compare pooled z-scores with N(0, 1).

    Parameters
    ----------
    zscores : numpy.ndarray, shape (n_subjects, n_features)
        Z-scores of the calibration (held-out or control) subjects.
    sites : array_like, shape (n_subjects,), optional
        Site of each subject, for the per-site table.
    centiles : sequence of float
        Centile levels (fractions) for the coverage table.

    Returns
    -------
    Calibration
        All numbers of the report's calibration section.
    """
    z = np.asarray(zscores, dtype=np.float64)
    if z.ndim != 2 or z.size == 0:
        raise bad_value("zscores", f"array of shape {z.shape}", "is not a non-empty 2-D array",
                        "pass (n_subjects, n_features) z-scores", ShapeMismatchError)
    n_subjects, n_features = z.shape
    flat = z.ravel()
    n_values = flat.size
    row_means = z.mean(axis=1)
    row_m2 = np.sum((z - row_means[:, None]) ** 2, axis=1)
    counts = np.full(n_subjects, n_features, dtype=np.float64)
    mean, sd = _pooled_moments(row_means * n_features, row_m2, counts, row_means)

    widths = np.diff(HIST_EDGES)
    hist, _ = np.histogram(flat, bins=HIST_EDGES)
    density = hist / (n_values * widths)
    normal_density = np.diff(special.ndtr(HIST_EDGES)) / widths
    outside = float(np.mean((flat < HIST_EDGES[0]) | (flat > HIST_EDGES[-1])))

    levels = np.asarray(centiles, dtype=np.float64)
    thresholds = special.ndtri(levels)
    sorted_z = np.sort(flat)
    coverage = np.searchsorted(sorted_z, thresholds, side="left") / n_values
    qq_probs = qq_probabilities(n_values)
    positions = np.clip(qq_probs * n_values - 0.5, 0, n_values - 1)  # Hazen plotting positions
    positions[0], positions[-1] = 0, n_values - 1  # exactly the smallest and largest z
    qq_sample = np.interp(positions, np.arange(n_values), sorted_z)

    site_table = None
    if sites is not None:
        site_arr = np.asarray(sites, dtype=object)
        if site_arr.shape != (n_subjects,):
            raise bad_value("sites", f"array of shape {site_arr.shape}",
                            f"does not give one site per subject ({n_subjects})",
                            "pass one site label per row of zscores", ShapeMismatchError)
        labels = np.where(np.asarray(pd.isna(site_arr), dtype=bool), "(missing)", site_arr).astype(str)
        codes, uniques = pd.factorize(labels, sort=True)
        n_sites = len(uniques)
        sub_per_site = np.bincount(codes, minlength=n_sites)
        sums = np.bincount(codes, weights=row_means * n_features, minlength=n_sites)
        site_n = sub_per_site * n_features
        site_mean = sums / site_n
        within = np.bincount(codes, weights=row_m2, minlength=n_sites)
        between = np.bincount(codes, weights=n_features * (row_means - site_mean[codes]) ** 2,
                              minlength=n_sites)
        with np.errstate(invalid="ignore", divide="ignore"):
            site_sd = np.sqrt((within + between) / (site_n - 1))
        site_table = pd.DataFrame({"site": list(uniques), "n_subjects": sub_per_site,
                                   "mean": site_mean, "sd": site_sd})

    return Calibration(
        n_subjects=n_subjects, n_values=n_values, mean=mean, sd=sd,
        frac_extreme=float(np.mean(np.abs(flat) > EXTREME_Z)),
        expected_extreme=float(2.0 * special.ndtr(-EXTREME_Z)),
        hist_edges=HIST_EDGES.copy(), hist_density=density, normal_density=normal_density,
        frac_outside=outside, qq_probs=qq_probs, qq_theoretical=special.ndtri(qq_probs),
        qq_sample=qq_sample, centiles=levels, thresholds=thresholds, coverage=coverage,
        sites=site_table,
    )


@dataclass(frozen=True)
class SubjectStats:
    """Per-subject counts of extreme z-scores, per block (structure) of features.

    Attributes
    ----------
    n_features : numpy.ndarray of int, shape (n_blocks,)
        Features per block.
    n_extreme, n_positive, n_negative, n_severe : numpy.ndarray of int, shape (n_subjects, n_blocks)
        Counts of ``|z| > 2``, ``z > 2``, ``z < -2`` and ``|z| > 3``.
    max_abs, mean : numpy.ndarray, shape (n_subjects, n_blocks)
        Largest ``|z|`` and mean z.
    """

    n_features: np.ndarray
    n_extreme: np.ndarray
    n_positive: np.ndarray
    n_negative: np.ndarray
    n_severe: np.ndarray
    max_abs: np.ndarray
    mean: np.ndarray


def subject_stats(zscores: np.ndarray, starts: Sequence[int]) -> SubjectStats:
    """Count extreme z-scores of every subject in every block of features.

    Parameters
    ----------
    zscores : numpy.ndarray, shape (n_subjects, n_features)
        Z-scores.
    starts : sequence of int, shape (n_blocks,)
        First feature of each block (ascending, starting at 0; blocks are non-empty).

    Returns
    -------
    SubjectStats
    """
    z = np.asarray(zscores, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.intp)
    sizes = np.diff(np.append(starts, z.shape[1]))

    def count(mask: np.ndarray) -> np.ndarray:
        return np.add.reduceat(mask.astype(np.int64), starts, axis=1)

    absz = np.abs(z)
    return SubjectStats(
        n_features=sizes,
        n_extreme=count(absz > EXTREME_Z),
        n_positive=count(z > EXTREME_Z),
        n_negative=count(z < -EXTREME_Z),
        n_severe=count(absz > SEVERE_Z),
        max_abs=np.maximum.reduceat(absz, starts, axis=1),
        mean=np.add.reduceat(z, starts, axis=1) / sizes,
    )


@dataclass(frozen=True)
class ParcelStats:
    """Mean z and mean ``|z|`` of every subject in every parcel.

    Attributes
    ----------
    names : list of str, length n_parcels
    sizes : numpy.ndarray of int, shape (n_parcels,)
        Features per parcel.
    mean, mean_abs : numpy.ndarray, shape (n_subjects, n_parcels)
    top : numpy.ndarray of int, shape (n_subjects, n_top)
        Parcels ordered by decreasing mean ``|z|`` (ties: lower parcel first).
    """

    names: list[str]
    sizes: np.ndarray
    mean: np.ndarray
    mean_abs: np.ndarray
    top: np.ndarray


def parcel_stats(zscores: np.ndarray, codes: np.ndarray, names: list[str], n_top: int = 5) -> ParcelStats:
    """Average z-scores within parcels and rank parcels by mean ``|z|``.

    Parameters
    ----------
    zscores : numpy.ndarray, shape (n_subjects, n_features)
    codes : numpy.ndarray of int, shape (n_features,)
        Parcel of each feature, ``-1`` for unlabelled features.
    names : list of str
        Parcel names, indexed by code.
    n_top : int
        Number of parcels to keep in ``top``.

    Returns
    -------
    ParcelStats
    """
    z = np.asarray(zscores, dtype=np.float64)
    n_parcels = len(names)
    keep = codes >= 0
    cols = np.flatnonzero(keep)
    member = sparse.csr_matrix((np.ones(cols.size), (codes[keep], cols)), shape=(n_parcels, z.shape[1]))
    sizes = np.asarray(member.sum(axis=1)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.asarray(member @ z.T).T / sizes
        mean_abs = np.asarray(member @ np.abs(z).T).T / sizes
    ranked = np.argsort(-np.nan_to_num(mean_abs, nan=-np.inf), axis=1, kind="stable")
    return ParcelStats(names=list(names), sizes=sizes.astype(np.int64), mean=mean, mean_abs=mean_abs,
                       top=ranked[:, :min(n_top, n_parcels)])


def group_maps(zscores: np.ndarray, labels: np.ndarray, levels: Sequence[str]) -> tuple[np.ndarray,
                                                                                          np.ndarray,
                                                                                          np.ndarray]:
    """Mean z and fraction of ``|z| > 2`` per group.

    Parameters
    ----------
    zscores : numpy.ndarray, shape (n_subjects, n_features)
    labels : numpy.ndarray, shape (n_subjects,)
        Group of each subject.
    levels : sequence of str, length n_groups
        Groups to summarise, in order.

    Returns
    -------
    mean_z, frac_extreme : numpy.ndarray, shape (n_groups, n_features)
    sizes : numpy.ndarray of int, shape (n_groups,)
    """
    z = np.asarray(zscores, dtype=np.float64)
    onehot = (np.asarray(labels, dtype=object)[None, :] == np.asarray(list(levels), dtype=object)[:, None])
    weights = onehot.astype(np.float64)
    sizes = onehot.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_z = (weights @ z) / sizes[:, None]
        frac = (weights @ (np.abs(z) > EXTREME_Z).astype(np.float64)) / sizes[:, None]
    return mean_z, frac, sizes.astype(np.int64)
