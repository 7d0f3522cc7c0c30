"""Centile charts: normative mean and centile bands of regional means against age.

The charted quantities are interpretable averages of the map (whole-cortex mean, one mean per
hemisphere or structure, atlas regions when an atlas is given), never raw eigen-coefficients.
The charts use a fitted spectral normative model through three members only::

    model.predict(encoded_query (n_modes, n_queries), covariates: DataFrame,
                  predict_without=[batch covariates]).predictions
        -> {"mu_estimate": (n_rows, n_queries), "std_estimate": (n_rows, n_queries)}
    model.harmonize(encoded_query, covariates, coefficients (n_subjects, n_modes),
                    covariates_to_harmonize=[batch covariates]) -> (n_subjects, n_queries)
    model.eigenmode_basis.encode_queries(weights (n_queries, n_features)) -> (n_modes, n_queries)

plus the covariate lists ``numerical_covariates``, ``categorical_covariates`` and
``batch_covariates``. The predictive distribution of a query is taken as Normal(mu, std), so the
centile ``p`` curve is ``mu + std * Phi^-1(p)``.

Two kinds of chart agree with the subject tables by construction:

* a subject's own chart draws the curves at the subject's own covariates (every covariate but the
  x axis and the batch covariates, which harmonization removes), so the star sits at the centile
  printed in the table;
* the cohort chart draws the curves at one reference profile and places every subject at the
  same centile of the reference distribution (``mu_ref(x) + std_ref(x) * z_own``): points are
  standardized to the drawn reference, so subjects of every sex lie around the curves when the
  model fits them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from .._util import as_finite_array
from ..exceptions import IncompatibleModelError, ShapeMismatchError, bad_value

__all__ = ["CentileCharts", "summary_queries", "centile_charts", "MAX_REGION_QUERIES"]

N_GRID = 60
MAX_REGION_QUERIES = 500


@dataclass(frozen=True)
class CentileCharts:
    """Everything needed to draw the centile charts of a cohort.

    Attributes
    ----------
    query_names : list of str, length n_queries
        Charted quantities: ``"Whole-cortex mean"`` first, then structures, then atlas regions.
    query_kinds : list of str, length n_queries
        ``"whole"``, ``"structure"`` or ``"region"``.
    covariate : str
        The x axis (first numerical covariate, typically age).
    reference : dict
        Values at which the other covariates are held for the cohort chart.
    grid : numpy.ndarray, shape (n_grid,)
        Values of ``covariate`` along the x axis.
    centiles : numpy.ndarray, shape (n_centiles,)
        Centile levels (fractions).
    mean, std : numpy.ndarray, shape (n_grid, n_queries)
        Normative mean and standard deviation at the reference covariates (cohort chart).
    curves : numpy.ndarray, shape (n_centiles, n_grid, n_queries)
        Reference centile curves ``mean + std * Phi^-1(centile)``.
    profiles : list of dict, length n_profiles
        Distinct covariate profiles (all covariates but the x axis and batch) of the subjects.
    profile_mean, profile_std : numpy.ndarray, shape (n_profiles, n_grid, n_queries)
        Normative mean and sd along the grid at each profile (subject charts).
    subject_profile : numpy.ndarray of int, shape (n_subjects,)
        Profile of each subject.
    subject_x : numpy.ndarray, shape (n_subjects,)
        Each subject's value of ``covariate``.
    subject_y : numpy.ndarray, shape (n_subjects, n_queries) or None
        Each subject's query values with batch effects removed (None without coefficients).
    subject_z : numpy.ndarray, shape (n_subjects, n_queries) or None
        ``(y - mu_i) / std_i`` at the subject's own covariates.
    subject_centile : numpy.ndarray, shape (n_subjects, n_queries) or None
        ``Phi(subject_z)``, the centile printed in the tables.
    reference_y : numpy.ndarray, shape (n_subjects, n_queries) or None
        Each subject standardized to the reference profile: ``mu_ref(x_i) + std_ref(x_i) * z_i``
        (the cohort chart's points).
    """

    query_names: list[str]
    query_kinds: list[str]
    covariate: str
    reference: dict
    grid: np.ndarray
    centiles: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    curves: np.ndarray
    profiles: list[dict]
    profile_mean: np.ndarray
    profile_std: np.ndarray
    subject_profile: np.ndarray
    subject_x: np.ndarray
    subject_y: np.ndarray | None
    subject_z: np.ndarray | None
    subject_centile: np.ndarray | None
    reference_y: np.ndarray | None

    def profile_curves(self, profile: int) -> np.ndarray:
        """Centile curves at one profile, shape (n_centiles, n_grid, n_queries)."""
        return (self.profile_mean[profile][None] + self.profile_std[profile][None]
                * special.ndtri(self.centiles)[:, None, None])

    @property
    def cohort_queries(self) -> list[int]:
        """Queries on the cohort chart: the whole-map mean and the structure means."""
        return [q for q, kind in enumerate(self.query_kinds) if kind in ("whole", "structure")]

    def subject_queries(self, index: int, n_regions: int = 2) -> list[int]:
        """Queries on subject ``index``'s chart: the whole-map mean, then its most deviant regions.

        Regions are atlas regions when there are any, else structures, ranked by ``|z|``.
        """
        kinds = np.asarray(self.query_kinds)
        pool = np.flatnonzero(kinds == "region")
        if pool.size == 0:
            pool = np.flatnonzero(kinds == "structure")
        if self.subject_z is not None and pool.size:
            order = np.argsort(-np.abs(self.subject_z[index, pool]), kind="stable")
            pool = pool[order]
        return [0, *[int(q) for q in pool[:n_regions]]]


def _structure_label(name: str) -> str:
    low = name.lower()
    if low.startswith("cortex") and ("left" in low or "right" in low):
        return f"{'Left' if 'left' in low else 'Right'} hemisphere mean"
    return f"{name} mean"


def summary_queries(model: Any, n_features: int, blocks: Sequence[Any] = (),
                    atlas: tuple[np.ndarray, list[str]] | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """Encode the charted quantities: whole-map mean, structure means and atlas-region means.

    Parameters
    ----------
    model : fitted spectral normative model
        Provides ``eigenmode_basis.encode_queries``.
    n_features : int
        Number of features of the maps.
    blocks : sequence of Block
        Structures of the features (``name``, ``kind``, ``start``, ``stop``); with more than one,
        each gets a mean query.
    atlas : (codes, names), optional
        Region of every feature, shape (n_features,), ``-1`` unlabelled, and the region names (as
        returned by :func:`~spectranorm_neuro.report._inputs.check_atlas`); each region with
        features gets a mean query (at most ``MAX_REGION_QUERIES``, the largest).

    Returns
    -------
    names : list of str, length n_queries
    kinds : list of str, length n_queries
        ``"whole"``, ``"structure"`` or ``"region"``.
    encoded : numpy.ndarray, shape (n_modes, n_queries)
    """
    basis = getattr(model, "eigenmode_basis", None)
    if basis is None or not hasattr(basis, "encode_queries"):
        raise bad_value("model", type(model).__name__, "has no eigenmode_basis with encode_queries",
                        "pass a fitted SpectralNormativeModel (or model=None to skip centile charts)",
                        IncompatibleModelError)
    basis_n = getattr(basis, "n_features", n_features)
    if int(basis_n) != n_features:
        raise bad_value("model", f"model over {basis_n} features",
                        f"does not match the {n_features} features of zscores",
                        "pass the model that produced the z-scores", IncompatibleModelError)
    surfaces = bool(blocks) and all(getattr(b, "kind", "") == "surface" for b in blocks)
    names, kinds, masks = ["Whole-cortex mean" if surfaces else "Whole-map mean"], ["whole"], \
        [np.ones(n_features, dtype=bool)]
    if len(blocks) > 1:
        for block in blocks:
            mask = np.zeros(n_features, dtype=bool)
            mask[block.start:block.stop] = True
            names.append(_structure_label(block.name))
            kinds.append("structure")
            masks.append(mask)
    if atlas is not None:
        codes, region_names = atlas
        sizes = np.bincount(codes[codes >= 0], minlength=len(region_names))
        keep = np.flatnonzero(sizes > 0)
        keep = np.sort(keep[np.argsort(-sizes[keep], kind="stable")][:MAX_REGION_QUERIES])
        for r in keep:
            names.append(str(region_names[r]))
            kinds.append("region")
            masks.append(codes == r)
    weights = np.vstack([m / m.sum() for m in masks])
    encoded = np.asarray(basis.encode_queries(weights), dtype=np.float64).reshape(-1, len(names))
    return names, kinds, encoded


def _covariate_lists(model: Any) -> tuple[list[str], list[str], list[str]]:
    def names(attr: str) -> list[str]:
        return [str(c) for c in getattr(model, attr, []) or []]

    return names("numerical_covariates"), names("categorical_covariates"), names("batch_covariates")


def _reference(subjects: pd.DataFrame, model: Any) -> dict:
    """Reference covariates: medians of the other numericals, most frequent level of categoricals."""
    numerical, categorical, batch = _covariate_lists(model)
    reference: dict = {}
    for name in numerical[1:]:
        reference[name] = float(np.median(subjects[name].to_numpy(dtype=np.float64)))
    for name in dict.fromkeys(categorical + batch):
        if name in reference:
            continue
        counts = subjects[name].value_counts(sort=False)
        best = counts[counts == counts.max()].index
        reference[name] = sorted(best, key=str)[0]
    return reference


def _rows(subjects: pd.DataFrame, x_name: str, x: np.ndarray, values: dict) -> pd.DataFrame:
    """Covariate rows with ``x_name = x`` and every other covariate at ``values``."""
    rows = pd.DataFrame({x_name: np.asarray(x, dtype=np.float64)})
    for name, value in values.items():
        rows[name] = [value] * len(rows)
        if isinstance(subjects[name].dtype, pd.CategoricalDtype):
            rows[name] = pd.Categorical(rows[name], categories=subjects[name].cat.categories)
    return rows


def _predict(model: Any, encoded: np.ndarray, rows: pd.DataFrame, batch: list[str]) -> tuple[np.ndarray,
                                                                                          np.ndarray]:
    result = model.predict(encoded, rows, predict_without=list(batch))
    predictions = getattr(result, "predictions", result)
    try:
        mu = np.asarray(predictions["mu_estimate"], dtype=np.float64)
        std = np.asarray(predictions["std_estimate"], dtype=np.float64)
    except (KeyError, TypeError, IndexError):
        raise bad_value("model", type(model).__name__,
                        "returned predictions without 'mu_estimate' and 'std_estimate'",
                        "pass a fitted SpectralNormativeModel", IncompatibleModelError) from None
    shape = (len(rows), encoded.shape[1])
    return mu.reshape(shape), std.reshape(shape)


def _profiles(subjects: pd.DataFrame, names: list[str], reference: dict) -> tuple[list[dict], np.ndarray]:
    """Distinct values of ``names`` among the subjects (batch covariates held at the reference)."""
    if not names:
        return [{}], np.zeros(len(subjects), dtype=np.int64)
    keys = [tuple(row) for row in subjects[names].itertuples(index=False, name=None)]
    unique = list(dict.fromkeys(keys))
    lookup = {key: p for p, key in enumerate(unique)}
    return [dict(zip(names, key)) for key in unique], np.array([lookup[k] for k in keys], dtype=np.int64)


def centile_charts(model: Any, subjects: pd.DataFrame, n_features: int,
                   coefficients: np.ndarray | None = None,
                   centiles: Sequence[float] = (0.025, 0.25, 0.5, 0.75, 0.975),
                   n_grid: int = N_GRID, blocks: Sequence[Any] = (),
                   atlas: tuple[np.ndarray, list[str]] | None = None) -> CentileCharts | None:
    """Compute normative centile curves of regional means and the subjects' positions.

    Parameters
    ----------
    model : fitted spectral normative model
        See the module docstring for the members used.
    subjects : pandas.DataFrame, shape (n_subjects, n_columns)
        Covariates of the scored subjects (every model covariate must be a column).
    n_features : int
        Number of features of the maps.
    coefficients : numpy.ndarray, shape (n_subjects, n_modes), optional
        Spectral coefficients of the subjects' maps; without them subjects are not placed.
    centiles : sequence of float
        Centile levels (fractions) to draw.
    n_grid : int
        Number of points along the x axis.
    blocks : sequence of Block
        Structures of the features (one mean per structure when there are several).
    atlas : (codes, names), optional
        Atlas regions (one mean per region), see :func:`summary_queries`.

    Returns
    -------
    CentileCharts or None
        None when the model has no numerical covariate to put on the x axis.
    """
    numerical, categorical, batch = _covariate_lists(model)
    if not numerical:
        return None
    needed = list(dict.fromkeys(numerical + categorical + batch))
    missing = [c for c in needed if c not in subjects.columns]
    if missing:
        raise bad_value("subjects", f"DataFrame with columns {list(subjects.columns)}",
                        f"lacks the model covariate(s) {missing}",
                        "add the covariates the model was fitted with to the subjects table")
    names, kinds, encoded = summary_queries(model, n_features, blocks, atlas)
    x_name = numerical[0]
    x = as_finite_array(subjects[x_name].to_numpy(dtype=np.float64), f"subjects[{x_name!r}]", ndim=1)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:  # a single age: chart a small window around it
        lo, hi = lo - 1.0, hi + 1.0
    grid = np.linspace(lo, hi, n_grid)
    reference_all = _reference(subjects, model)
    batch_reference = {k: v for k, v in reference_all.items() if k in batch}
    reference = {k: v for k, v in reference_all.items() if k not in batch}
    others = [c for c in needed if c != x_name and c not in batch]
    profiles, subject_profile = _profiles(subjects, others, reference)

    # one predict call: the reference curve, every profile's curve, the reference at each subject's x
    parts = [_rows(subjects, x_name, grid, reference_all)]
    parts += [_rows(subjects, x_name, grid, {**p, **batch_reference}) for p in profiles]
    parts.append(_rows(subjects, x_name, x, reference_all))
    mu, std = _predict(model, encoded, pd.concat(parts, ignore_index=True), batch)
    n_p = len(profiles)
    mean, sd = mu[:n_grid], std[:n_grid]
    profile_mean = mu[n_grid:n_grid * (n_p + 1)].reshape(n_p, n_grid, -1)
    profile_std = std[n_grid:n_grid * (n_p + 1)].reshape(n_p, n_grid, -1)
    ref_mu_x, ref_std_x = mu[n_grid * (n_p + 1):], std[n_grid * (n_p + 1):]
    levels = np.asarray(centiles, dtype=np.float64)
    curves = mean[None] + sd[None] * special.ndtri(levels)[:, None, None]

    subject_y = subject_z = subject_centile = reference_y = None
    if coefficients is not None:
        covariates = subjects[needed]
        if batch:
            subject_y = np.asarray(model.harmonize(encoded, covariates, coefficients,
                                                   covariates_to_harmonize=list(batch)), dtype=np.float64)
        else:
            subject_y = coefficients[:, :encoded.shape[0]] @ encoded
        if subject_y.shape != (len(subjects), encoded.shape[1]):
            raise bad_value("model", type(model).__name__,
                            f"harmonize returned shape {subject_y.shape}",
                            f"return (n_subjects, n_queries) = {(len(subjects), encoded.shape[1])}",
                            ShapeMismatchError)
        own_mu, own_std = _predict(model, encoded, covariates.reset_index(drop=True), batch)
        with np.errstate(invalid="ignore", divide="ignore"):
            subject_z = (subject_y - own_mu) / own_std
        subject_centile = special.ndtr(subject_z)
        reference_y = ref_mu_x + ref_std_x * subject_z
    return CentileCharts(query_names=names, query_kinds=kinds, covariate=x_name, reference=reference, grid=grid,
                         centiles=levels, mean=mean, std=sd, curves=curves, profiles=profiles,
                         profile_mean=profile_mean, profile_std=profile_std, subject_profile=subject_profile,
                         subject_x=x, subject_y=subject_y, subject_z=subject_z, subject_centile=subject_centile,
                         reference_y=reference_y)
