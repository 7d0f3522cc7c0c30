"""Model specifications: which covariates act where, and the fit-time state they need at predict time.

A :class:`NormativeModelSpec` is built once from the training table (:meth:`NormativeModelSpec.
from_dataframe`). It captures everything needed to rebuild identical design matrices later
(category levels, standardization constants, spline knots, covariate ranges) and round-trips
through JSON (:meth:`to_dict` / :meth:`from_dict`), so a saved model predicts exactly as it did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import InvalidInputError, bad_value

__all__ = ["CovariateSpec", "NormativeModelSpec", "DEFAULT_PRIORS", "DEFAULT_SPLINE_KWARGS", "MODEL_TYPES",
           "LIKELIHOODS", "SMOOTHING", "default_influencing_variance"]

MODEL_TYPES = ("HBR", "BLR")

#: Likelihoods of direct models: ``"Normal"``, or ``"SHASHb"`` (sinh-arcsinh with the response's mean
#: and sd as location and scale, plus skew and tail parameters; see ``engine.shash``).
LIKELIHOODS = ("Normal", "SHASHb")

#: Smoothness of spline effects: ``None`` (fixed ``df``, the reference's B-spline) or ``"eb"``
#: (penalized B-spline with ``df`` basis functions, smoothing set per model by empirical Bayes).
SMOOTHING = (None, "eb")


def default_influencing_variance(numerical, batch) -> list[str]:
    """Covariates acting on the log-sd when none are named: the numerical then the batch covariates.

    Normative spread changes with age-like covariates and from scanner to scanner; categorical
    covariates that are not batch effects act on the mean only. This is the package's single
    default (``NormativeModelSpec.from_dataframe``, the workflow and the command line use it).
    """
    return [*numerical, *[b for b in batch if b not in numerical]]


DEFAULT_SPLINE_KWARGS = {"df": 5, "degree": 3, "extrapolation_factor": 0.1}

#: Prior scales on the standardized scale of the response (each mode is z-scored before fitting).
#: ``intercept``/``effect`` are normal prior sds for fixed coefficients of each target;
#: ``hier_a``/``hier_b`` are the shape/scale of the inverse-gamma hyperprior on hierarchical
#: variances (estimated by empirical Bayes on the fast path, sampled on the pymc path).
DEFAULT_PRIORS: dict[str, dict[str, float]] = {
    "mean": {"intercept": 5.0, "effect": 3.0, "hier_a": 1.0, "hier_b": 0.01},
    "variance": {"intercept": 5.0, "effect": 2.0, "hier_a": 1.0, "hier_b": 0.01},
    "correlation": {"intercept": 1.0, "effect": 1.0, "hier_a": 1.0, "hier_b": 0.01},
    "skew": {"intercept": 1.0, "effect": 0.5, "hier_a": 1.0, "hier_b": 0.01},
    "tail": {"intercept": 1.0, "effect": 0.5, "hier_a": 1.0, "hier_b": 0.01},
}


@dataclass
class CovariateSpec:
    """One covariate and the fit-time state its effect needs.

    Parameters
    ----------
    name : str
        Column name in covariate tables.
    cov_type : {"numerical", "categorical"}
        Type of covariate.
    effect : {"linear", "spline", "pspline", "categorical"}
        Form of its effect (``"categorical"`` for categorical covariates).
    hierarchical : bool
        Categorical only: partially pooled random effect (batch covariate under HBR).
    categories : list of str, optional
        Categorical only: levels seen at fit time (strings), in a fixed sorted order.
    mean, std, minimum, maximum : float, optional
        Numerical only: training mean, sd and range.
    knots : list of float, optional
        Spline only: full knot vector (boundary knots repeated ``degree + 1`` times).
    degree : int, optional
        Spline only: polynomial degree.
    adapted : list of str, optional
        Categorical only: levels added after fitting by ``adapt_fit`` (each gets its own column,
        appended after the fit-time columns).
    """

    name: str
    cov_type: str
    effect: str
    hierarchical: bool = False
    categories: list[str] | None = None
    mean: float | None = None
    std: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    knots: list[float] | None = None
    degree: int | None = None
    adapted: list[str] | None = None

    def __repr__(self) -> str:
        if self.cov_type == "categorical":
            n = len(self.categories or []) + len(self.adapted or [])
            return (f"CovariateSpec(name={self.name}, cov_type=categorical, "
                    f"hierarchical={self.hierarchical}, n_categories={n})")
        return f"CovariateSpec(name={self.name}, cov_type=numerical, effect={self.effect})"

    # ------------------------------------------------------------------ levels
    @property
    def known_levels(self) -> list[str]:
        """Categorical levels the model has effects for: fit-time levels, then adapted ones."""
        return list(self.categories or []) + list(self.adapted or [])

    @staticmethod
    def levels_in(values, dropna: bool = False) -> set[str]:
        """Distinct values as level strings (``str`` of each distinct value, not of each row)."""
        uniques = pd.unique(np.asarray(values, dtype=object))
        return {str(v) for v in uniques if not (dropna and pd.isna(v))}

    def unseen_levels(self, values) -> list[str]:
        """Sorted levels in ``values`` that are not :attr:`known_levels`."""
        return sorted(self.levels_in(values) - set(self.known_levels))

    # ------------------------------------------------------------------ fit-time state
    def capture(self, column: pd.Series, spline_kwargs: dict[str, Any]) -> None:
        """Record levels, scaling, range and knots from the training column."""
        if self.cov_type == "categorical":
            self.categories = sorted(self.levels_in(column))
            return
        x = column.to_numpy(dtype=float)
        self.mean, self.std = float(x.mean()), float(x.std())
        if not self.std > 0:
            self.std = 1.0
        self.minimum, self.maximum = float(x.min()), float(x.max())
        if self.effect in ("spline", "pspline"):
            df = int(spline_kwargs["df"])
            degree = int(spline_kwargs["degree"])
            if df < degree:
                raise bad_value("spline_kwargs['df']", df, f"is smaller than the degree {degree}",
                                "pass df >= degree")
            pad = float(spline_kwargs["extrapolation_factor"]) * (self.maximum - self.minimum)
            lo, hi = self.minimum - pad, self.maximum + pad
            n_inner = df - degree
            if self.effect == "pspline":  # equally spaced knots: the difference penalty is a curvature penalty
                inner = np.linspace(lo, hi, n_inner + 2)[1:-1] if n_inner > 0 else []
            else:
                inner = np.quantile(x, np.linspace(0, 1, n_inner + 2)[1:-1]) if n_inner > 0 else []
            self.degree = degree
            self.knots = [lo] * (degree + 1) + [float(k) for k in inner] + [hi] * (degree + 1)


@dataclass
class NormativeModelSpec:
    """What a normative model contains: response, covariates, where each acts, priors.

    Parameters
    ----------
    variable_of_interest : str
        Name of the response.
    covariates : list of CovariateSpec
        Categorical covariates first, then numerical, each once.
    influencing_mean, influencing_variance : list of str
        Covariates acting on the mean and on the log standard deviation.
    model_type : {"HBR", "BLR"}
        ``"HBR"``: batch covariates get hierarchical (partially pooled) effects; ``"BLR"``: all
        categorical effects are fixed (sum-to-zero).
    influencing_correlation : list of str, optional
        Covariates acting on cross-mode correlations (default: ``influencing_variance``).
    spline_kwargs : dict
        ``df``, ``degree`` and ``extrapolation_factor`` of B-spline effects.
    priors : dict
        Prior scales, see :data:`DEFAULT_PRIORS`.
    likelihood : {"Normal", "SHASHb"}
        Likelihood of the direct models (see :data:`LIKELIHOODS`).
    influencing_skew, influencing_tail : list of str
        ``"SHASHb"`` only: covariates acting on the skew (``epsilon``) and tail (``delta``)
        parameters (empty: one constant shape per response).
    """

    variable_of_interest: str
    covariates: list[CovariateSpec]
    influencing_mean: list[str]
    influencing_variance: list[str]
    model_type: str = "HBR"
    influencing_correlation: list[str] | None = None
    spline_kwargs: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPLINE_KWARGS))
    priors: dict[str, dict[str, float]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_PRIORS.items()})
    likelihood: str = "Normal"
    influencing_skew: list[str] = field(default_factory=list)
    influencing_tail: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"NormativeModelSpec(variable_of_interest={self.variable_of_interest!r}, "
                f"covariates={self.covariates!r}, influencing_mean={self.influencing_mean!r}, "
                f"influencing_variance={self.influencing_variance!r})")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dataframe(
        cls,
        model_type: str,
        dataframe: pd.DataFrame,
        variable_of_interest: str = "dummy_VOI",
        numerical_covariates: list[str] | None = None,
        categorical_covariates: list[str] | None = None,
        batch_covariates: list[str] | None = None,
        nonlinear_covariates: list[str] | None = None,
        influencing_mean: list[str] | None = None,
        influencing_variance: list[str] | None = None,
        spline_kwargs: dict[str, Any] | None = None,
        influencing_correlation: list[str] | None = None,
        priors: dict[str, dict[str, float]] | None = None,
        likelihood: str = "Normal",
        influencing_skew: list[str] | None = None,
        influencing_tail: list[str] | None = None,
    ) -> NormativeModelSpec:
        """Build a spec and capture its fit-time state from a covariate table.

        Parameters
        ----------
        model_type : {"HBR", "BLR"}
            Hierarchical (partially pooled batch effects) or fixed effects only.
        dataframe : pandas.DataFrame, shape (n_subjects, n_columns)
            Training covariates.
        variable_of_interest : str, optional
            Name of the response.
        numerical_covariates, categorical_covariates : list of str
            Covariate columns by type.
        batch_covariates : list of str, optional
            Categorical covariates that are batch (site/scanner) effects.
        nonlinear_covariates : list of str, optional
            Numerical covariates modelled by B-splines (others are linear).
        influencing_mean, influencing_variance : list of str, optional
            Where each covariate acts. Defaults (the package's one choice, used by the Python API
            and the command line alike): every covariate acts on the mean; the numerical and batch
            covariates act on the log-sd (pass ``[]`` for a homoscedastic model).
        spline_kwargs : dict, optional
            Overrides of :data:`DEFAULT_SPLINE_KWARGS`.
        influencing_correlation : list of str, optional
            Covariates acting on cross-mode correlations (default: ``influencing_variance``).
        priors : dict, optional
            Overrides of :data:`DEFAULT_PRIORS` (nested by target).
        likelihood : {"Normal", "SHASHb"}, optional
            Likelihood of the direct models (``"SHASHb"``: skewed / heavy-tailed responses).
        influencing_skew, influencing_tail : list of str, optional
            ``"SHASHb"`` only: covariates acting on the skew and tail parameters (default: none,
            one constant shape per response).

        Returns
        -------
        NormativeModelSpec
        """
        if model_type not in MODEL_TYPES:
            raise bad_value("model_type", model_type, "is not a known model type",
                            f"pass one of {list(MODEL_TYPES)}")
        if not isinstance(dataframe, pd.DataFrame):
            raise bad_value("dataframe", type(dataframe).__name__, "is not a pandas DataFrame",
                            "pass the covariates as a DataFrame with one row per subject")
        numerical = list(numerical_covariates or [])
        categorical = list(categorical_covariates or [])
        batch = list(batch_covariates or [])
        nonlinear = list(nonlinear_covariates or [])
        every = categorical + numerical
        for arg, names in (("batch_covariates", batch), ("nonlinear_covariates", nonlinear)):
            pool = categorical if arg == "batch_covariates" else numerical
            for n in names:
                if n not in pool:
                    kind = "categorical" if arg == "batch_covariates" else "numerical"
                    raise bad_value(arg, n, f"is not among the {kind} covariates {pool}",
                                    f"add {n!r} to {kind}_covariates or remove it from {arg}")
        dup = {n for n in every if every.count(n) > 1}
        if dup:
            raise bad_value("covariates", sorted(dup), "are listed more than once",
                            "list each covariate once, as numerical or categorical")
        mean_names = every if influencing_mean is None else list(influencing_mean)
        var_names = default_influencing_variance(numerical, batch) if influencing_variance is None \
            else list(influencing_variance)
        corr_names = var_names if influencing_correlation is None else list(influencing_correlation)
        if likelihood not in LIKELIHOODS:
            raise bad_value("likelihood", likelihood, "is not a known likelihood", f"pass one of {list(LIKELIHOODS)}")
        skew_names, tail_names = list(influencing_skew or []), list(influencing_tail or [])
        if likelihood == "Normal" and (skew_names or tail_names):
            raise bad_value("influencing_skew", skew_names + tail_names, "act on shape parameters the Normal has not",
                            "pass likelihood='SHASHb', or leave influencing_skew/influencing_tail empty")
        for arg, names in (("influencing_mean", mean_names), ("influencing_variance", var_names),
                           ("influencing_correlation", corr_names), ("influencing_skew", skew_names),
                           ("influencing_tail", tail_names)):
            for n in names:
                if n not in every:
                    raise bad_value(arg, n, "is not a declared covariate",
                                    "declare it in numerical_covariates or categorical_covariates")
        kwargs = dict(DEFAULT_SPLINE_KWARGS)
        kwargs.update(spline_kwargs or {})
        if kwargs.get("smoothing") not in SMOOTHING:
            raise bad_value("spline_kwargs['smoothing']", kwargs.get("smoothing"), "is not a known smoothing rule",
                            "pass 'eb' (smoothness estimated by empirical Bayes) or leave it out (fixed df)")
        spline_effect = "pspline" if kwargs.get("smoothing") == "eb" else "spline"
        pri = {k: dict(v) for k, v in DEFAULT_PRIORS.items()}
        for k, v in (priors or {}).items():
            pri.setdefault(k, {}).update(v)
        covs = [CovariateSpec(n, "categorical", "categorical", hierarchical=(model_type == "HBR" and n in batch))
                for n in categorical]
        covs += [CovariateSpec(n, "numerical", spline_effect if n in nonlinear else "linear") for n in numerical]
        spec = cls(variable_of_interest, covs, mean_names, var_names, model_type,
                   influencing_correlation=corr_names, spline_kwargs=kwargs, priors=pri, likelihood=likelihood,
                   influencing_skew=skew_names, influencing_tail=tail_names)
        spec.batch_covariates = batch
        spec.capture(dataframe)
        return spec

    def __post_init__(self) -> None:
        if not hasattr(self, "batch_covariates"):
            self.batch_covariates = [c.name for c in self.covariates if c.hierarchical]

    # ------------------------------------------------------------------ helpers
    def covariate(self, name: str) -> CovariateSpec:
        """The :class:`CovariateSpec` called ``name``."""
        for cov in self.covariates:
            if cov.name == name:
                return cov
        raise bad_value("covariate", name, "is not part of this model",
                        f"use one of {[c.name for c in self.covariates]}")

    @property
    def covariate_names(self) -> list[str]:
        """Names of all covariates, in spec order."""
        return [c.name for c in self.covariates]

    @property
    def numerical_covariates(self) -> list[str]:
        """Names of numerical covariates."""
        return [c.name for c in self.covariates if c.cov_type == "numerical"]

    @property
    def categorical_covariates(self) -> list[str]:
        """Names of categorical covariates."""
        return [c.name for c in self.covariates if c.cov_type == "categorical"]

    def targets(self) -> dict[str, list[str]]:
        """Covariate names acting on each target (``mean``, ``variance``, ``correlation``, ``skew``, ``tail``)."""
        corr = self.influencing_variance if self.influencing_correlation is None else self.influencing_correlation
        return {"mean": list(self.influencing_mean), "variance": list(self.influencing_variance),
                "correlation": list(corr), "skew": list(self.influencing_skew), "tail": list(self.influencing_tail)}

    @property
    def fitted_targets(self) -> list[str]:
        """Linear predictors of each direct model: mean and log-sd, then skew and tail for SHASHb."""
        return ["mean", "variance"] + (["skew", "tail"] if self.likelihood == "SHASHb" else [])

    def check_dataframe(self, dataframe: Any, argument: str, required: list[str] | None = None) -> pd.DataFrame:
        """Check that ``dataframe`` holds finite values for the required covariate columns."""
        if not isinstance(dataframe, pd.DataFrame):
            raise bad_value(argument, type(dataframe).__name__, "is not a pandas DataFrame",
                            "pass covariates as a DataFrame with one row per subject")
        required = self.covariate_names if required is None else required
        missing = [c for c in required if c not in dataframe.columns]
        if missing:
            raise bad_value(argument, f"DataFrame with columns {list(dataframe.columns)}",
                            f"lacks covariate column(s) {missing}",
                            "add the columns, or list them in predict_without to predict without them")
        for name in required:
            col = dataframe[name]
            cov = self.covariate(name)
            if cov.cov_type == "numerical":
                vals = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
                bad = ~np.isfinite(vals)
            else:
                bad = col.isna().to_numpy()
            if bad.any():
                rows = dataframe.index[bad][:5].tolist()
                shown = [None if pd.isna(v) else v for v in col[bad].tolist()[:5]]
                raise bad_value(f"{argument}[{name!r}]", shown,
                                f"{int(bad.sum())} value(s) are missing, not finite or not numbers (rows {rows})",
                                "drop or impute those rows before calling")
        return dataframe

    def capture(self, dataframe: pd.DataFrame) -> None:
        """Capture the fit-time state of every covariate from the training table."""
        self.check_dataframe(dataframe, "dataframe")
        if len(dataframe) < 2:
            raise bad_value("dataframe", f"{len(dataframe)} row(s)", "is too small to fit a model",
                            "pass at least a few dozen subjects")
        for cov in self.covariates:
            cov.capture(dataframe[cov.name], self.spline_kwargs)

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable representation (fit-time state included)."""
        return {
            "variable_of_interest": self.variable_of_interest,
            "model_type": self.model_type,
            "covariates": [asdict(c) for c in self.covariates],
            "influencing_mean": list(self.influencing_mean),
            "influencing_variance": list(self.influencing_variance),
            "influencing_correlation": list(self.targets()["correlation"]),
            "batch_covariates": list(self.batch_covariates),
            "spline_kwargs": dict(self.spline_kwargs),
            "priors": {k: dict(v) for k, v in self.priors.items()},
            "likelihood": self.likelihood,
            "influencing_skew": list(self.influencing_skew),
            "influencing_tail": list(self.influencing_tail),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormativeModelSpec:
        """Rebuild a spec written by :meth:`to_dict`."""
        try:
            covs = [CovariateSpec(**c) for c in data["covariates"]]
            spec = cls(data["variable_of_interest"], covs, list(data["influencing_mean"]),
                       list(data["influencing_variance"]), data["model_type"],
                       influencing_correlation=list(data["influencing_correlation"]),
                       spline_kwargs=dict(data["spline_kwargs"]), priors=dict(data["priors"]),
                       likelihood=data.get("likelihood", "Normal"),
                       influencing_skew=list(data.get("influencing_skew", [])),
                       influencing_tail=list(data.get("influencing_tail", [])))
            for target, prior in DEFAULT_PRIORS.items():  # specs saved before a target existed
                spec.priors.setdefault(target, dict(prior))
            spec.batch_covariates = list(data.get("batch_covariates", []))
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"spec: malformed specification ({exc}). Fix: re-save the model.") from None
        return spec
