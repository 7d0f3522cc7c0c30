"""Specification classes with the reference's constructors, mapped onto the engine's specification.

* :class:`SplineSpec` and :meth:`SplineSpec.create_spline_spec`: B-spline settings (bounds, df,
  degree, interior knots; by default equally spaced between the bounds, as the reference).
* :class:`CovariateSpec`: the reference's keywords (``effect``, ``categories``, ``hierarchical``,
  ``spline_spec``, ``moments``) on top of the engine's
  :class:`spectranorm_neuro.engine.specs.CovariateSpec`, which the engine uses as it is.
* :class:`CovarianceModelSpec`: the specification of one pair correlation model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..engine.specs import CovariateSpec as _NativeCovariate
from ..engine.specs import NormativeModelSpec
from ..exceptions import bad_value
from ._upstream import _bspline_columns

__all__ = ["CovarianceModelSpec", "CovariateSpec", "NormativeModelSpec", "SplineSpec"]


@dataclass
class SplineSpec:
    """B-spline basis settings of a numerical covariate.

    Parameters
    ----------
    lower_bound, upper_bound : float
        Domain of the basis.
    df : int, optional
        Number of basis functions (intercept included), greater than ``degree``.
    degree : int, optional
        Polynomial degree (at least 1).
    knots : list of float, optional
        ``df - degree - 1`` strictly increasing interior knots within the bounds.
    """

    lower_bound: float
    upper_bound: float
    df: int = 5
    degree: int = 3
    knots: list[float] | None = None

    def __post_init__(self) -> None:
        if self.df <= self.degree:
            raise bad_value("df", self.df, f"is not greater than the degree {self.degree}", "raise df")
        if self.degree < 1:
            raise bad_value("degree", self.degree, "is below 1", "pass degree >= 1")
        if not self.lower_bound < self.upper_bound:
            raise bad_value("lower_bound", self.lower_bound, f"is not below upper_bound={self.upper_bound}",
                            "pass lower_bound < upper_bound")
        if self.knots is not None:
            k = [float(v) for v in self.knots]
            if any(b <= a for a, b in itertools.pairwise(k)):
                raise bad_value("knots", k, "are not strictly increasing", "sort them and drop duplicates")
            if any(v < self.lower_bound or v > self.upper_bound for v in k):
                raise bad_value("knots", k, "leave the bounds", "keep knots within [lower_bound, upper_bound]")
            if len(k) != self.df - self.degree - 1:
                raise bad_value("knots", k, f"are not {self.df - self.degree - 1} values",
                                "pass df - degree - 1 interior knots")

    @classmethod
    def create_spline_spec(cls, values, df: int = 5, degree: int = 3, knots=None, extrapolation_factor: float = 0.1,
                           lower_bound: float | None = None, upper_bound: float | None = None) -> SplineSpec:
        """Settings from data: bounds padded by ``extrapolation_factor`` x range, equally spaced knots."""
        values = pd.Series(np.asarray(values, dtype=float))
        pad = extrapolation_factor * (values.max() - values.min())
        lo = float(values.min() - pad) if lower_bound is None else float(lower_bound)
        hi = float(values.max() + pad) if upper_bound is None else float(upper_bound)
        if knots is None:
            knots = np.linspace(lo, hi, df - degree + 1)[1:-1].tolist()
        return cls(lower_bound=lo, upper_bound=hi, df=df, degree=degree, knots=list(knots))

    def full_knots(self) -> list[float]:
        """Full knot vector: each bound repeated ``degree + 1`` times around the interior knots."""
        inner = self.knots if self.knots is not None else np.linspace(
            self.lower_bound, self.upper_bound, self.df - self.degree + 1)[1:-1].tolist()
        return [self.lower_bound] * (self.degree + 1) + list(inner) + [self.upper_bound] * (self.degree + 1)


class CovariateSpec(_NativeCovariate):
    """One covariate, built with the reference's keywords.

    Parameters
    ----------
    name : str
    cov_type : {"numerical", "categorical"}
    effect : {"linear", "spline"}, optional
        Numerical only (required).
    categories : array_like of str, optional
        Categorical only (required): the levels.
    hierarchical : bool, optional
        Categorical only (required): partially pooled effect.
    spline_spec : SplineSpec, optional
        Required for spline effects.
    moments : tuple of float, optional
        ``(mean, sd)`` standardizing a linear effect.
    **native
        Further fields of the engine's covariate (``mean``, ``std``, ``minimum``, ...).
    """

    def __init__(self, name: str, cov_type: str, effect: str | None = None, categories=None,
                 hierarchical: bool | None = None, spline_spec: SplineSpec | None = None, moments=None, **native):
        if cov_type == "categorical":
            if effect is not None or spline_spec is not None:
                raise bad_value("effect", effect, "is set for a categorical covariate", "leave effect=None")
            if categories is None or hierarchical is None:
                raise bad_value("categories", categories, "or hierarchical is missing for a categorical covariate",
                                "pass categories=[...] and hierarchical=True/False")
            super().__init__(name, cov_type, "categorical", bool(hierarchical),
                             [str(c) for c in np.asarray(categories).tolist()], **native)
            return
        if cov_type != "numerical":
            raise bad_value("cov_type", cov_type, "is not a covariate type", "pass 'numerical' or 'categorical'")
        if effect not in ("linear", "spline"):
            raise bad_value("effect", effect, "is not a numerical effect", "pass 'linear' or 'spline'")
        if effect == "spline" and spline_spec is None and "knots" not in native:
            raise bad_value("spline_spec", None, "is missing for a spline effect",
                            "pass spline_spec=SplineSpec.create_spline_spec(values)")
        if spline_spec is not None:
            native.setdefault("knots", spline_spec.full_knots())
            native.setdefault("degree", spline_spec.degree)
            native.setdefault("minimum", spline_spec.lower_bound)
            native.setdefault("maximum", spline_spec.upper_bound)
        if moments is not None:
            native.setdefault("mean", float(moments[0]))
            native.setdefault("std", float(moments[1]))
        super().__init__(name, cov_type, effect, False, None, **native)

    @property
    def spline_spec(self) -> SplineSpec | None:
        """Spline settings (from the full knot vector), ``None`` for other effects."""
        if self.effect != "spline" or self.knots is None:
            return None
        d = int(self.degree)
        k = list(self.knots)
        return SplineSpec(k[0], k[-1], len(k) - d - 1, d, k[d + 1:-(d + 1)])

    @property
    def moments(self) -> tuple[float, float] | None:
        """``(mean, sd)`` of a numerical covariate at fit time."""
        return None if self.mean is None else (self.mean, self.std)

    def validate_numerical(self) -> None:
        """Raise unless this is a valid numerical covariate."""
        if self.cov_type != "numerical" or self.effect not in ("linear", "spline"):
            raise bad_value(self.name, self.effect, "is not a numerical effect", "use 'linear' or 'spline'")

    def validate_categorical(self) -> None:
        """Raise unless this is a valid categorical covariate."""
        if self.cov_type != "categorical" or not self.categories:
            raise bad_value(self.name, self.categories, "are not categories of a categorical covariate",
                            "pass categories=[...]")

    def make_spline_bases(self, values, *, include_intercept: bool = True) -> np.ndarray:
        """B-spline basis (n, df) of ``values`` (without the first function if not ``include_intercept``)."""
        spline = self.spline_spec
        if spline is None:
            raise bad_value(self.name, self.effect, "is not a spline covariate", "use a spline effect")
        cols = _bspline_columns(np.asarray(values, dtype=float), {
            "lower_bound": spline.lower_bound, "upper_bound": spline.upper_bound, "df": spline.df,
            "degree": spline.degree, "knots": spline.knots})
        return cols if include_intercept else cols[:, 1:]

    def factorize_categories(self, values) -> np.ndarray:
        """Integer codes (n,) of ``values`` among :attr:`known_levels`."""
        self.validate_categorical()
        lookup = {c: i for i, c in enumerate(self.known_levels)}
        vals = [str(v) for v in np.asarray(values).tolist()]
        unseen = sorted(set(vals) - set(lookup))
        if unseen:
            raise bad_value(self.name, unseen, "are unknown levels", f"use levels among {self.known_levels}")
        return np.array([lookup[v] for v in vals], dtype=int)

    def extend_categories(self, new_categories) -> None:
        """Append new levels (all must be new) as adapted levels."""
        new = [str(c) for c in np.asarray(new_categories).tolist()]
        clash = sorted(set(new) & set(self.known_levels))
        if clash:
            raise bad_value("new_categories", clash, f"already exist in {self.name!r}", "pass only new levels")
        self.adapted = list(self.adapted or []) + new


@dataclass
class CovarianceModelSpec:
    """Specification of the correlation model of two variables.

    Parameters
    ----------
    variable_of_interest_1, variable_of_interest_2 : str
    covariates : list of CovariateSpec
    influencing_covariance : list of str
        Covariates acting on the (Fisher-z) correlation.
    """

    variable_of_interest_1: str
    variable_of_interest_2: str
    covariates: list[Any]
    influencing_covariance: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [c.name for c in self.covariates]
        unknown = [c for c in self.influencing_covariance if c not in names]
        if unknown:
            raise bad_value("influencing_covariance", unknown, "are not covariates of the specification",
                            f"use names among {names}")

    def to_native(self, base: NormativeModelSpec) -> NormativeModelSpec:
        """The engine's specification with these covariates acting on the correlation."""
        spec = NormativeModelSpec(base.variable_of_interest, list(self.covariates), list(base.influencing_mean),
                                  list(base.influencing_variance), base.model_type,
                                  influencing_correlation=list(self.influencing_covariance),
                                  spline_kwargs=dict(base.spline_kwargs), priors=base.priors)
        spec.batch_covariates = list(base.batch_covariates)
        return spec
