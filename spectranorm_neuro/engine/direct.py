"""Direct (univariate) normative models, fitted for many response variables at once.

``y ~ N(mu, sigma^2)`` (or the SHASHb likelihood: mean ``mu``, sd ``sigma``, plus skew and tail, see
``engine.shash``), ``mu = X_mean @ beta``, ``log sigma = X_var @ gamma`` (and the shape parameters'
own linear predictors, built by the same :class:`~spectranorm_neuro.engine.effects.Design`), on
each response standardized by its training mean and sd. :func:`fit_direct` fits ``M`` responses
(the spectral coefficients of ``M`` eigenmodes, or ``M`` regions of a table) in one batched
MAP/Laplace/empirical-Bayes pass; :class:`DirectNormativeModel` is the one-response model of the
SpectraNorm API.
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .._util import as_finite_array
from ..exceptions import AdaptationWarning, NotFittedError, ShapeMismatchError, UnseenCategoryError, bad_value
from .effects import Design, new_level_mask, relayout
from .inference import ArrayRecord, GaussianFamily, fit_laplace
from .results import NormativePredictions
from .shash import ShashFamily, harmonize_values, quantiles, shape_parameters
from .site_prior import ADAPT_PRIOR_DF, centre_offsets, level_priors, t_prior_variance
from .specs import NormativeModelSpec

__all__ = ["DirectParams", "check_training_data", "fit_direct", "predict_direct", "predict_distribution",
           "adapt_direct", "extend_levels", "check_unseen", "likelihood_comparison", "DirectNormativeModel",
           "UNSEEN_POLICIES", "TARGET_FIELDS", "MIN_ADAPT_CONTROLS", "ADAPT_PRIOR_DF", "SHAPE_SELECTION_ALPHA",
           "fit_responses"]

logger = logging.getLogger("spectranorm_neuro")

UNSEEN_POLICIES = ("error", "population", "marginalize")

#: Fields of :class:`DirectParams` holding each target's coefficients, covariance and hierarchical variances.
TARGET_FIELDS = {"mean": ("beta", "cov_beta", "tau2_mean"), "variance": ("gamma", "cov_gamma", "tau2_var"),
                 "skew": ("skew", "cov_skew", "tau2_skew"), "tail": ("tail", "cov_tail", "tau2_tail")}

#: Fewer controls of a new site than this and :func:`adapt_direct` warns (its spread is poorly estimated).
MIN_ADAPT_CONTROLS = 10

#: A response keeps its SHASHb fit only if the likelihood-ratio test rejects the Normal at this
#: family-wise level (Bonferroni over the responses fitted together: p < alpha / M).
SHAPE_SELECTION_ALPHA = 0.01

_ADAPT_START_VARIANCE = 1.0


@dataclass
class DirectParams(ArrayRecord):
    """Fitted parameters of ``M`` direct models (arrays carry the response axis first).

    Attributes
    ----------
    y_mean, y_std : numpy.ndarray, shape (M,)
        Standardization of each response.
    beta, gamma : numpy.ndarray, shape (M, p_mean), (M, p_var)
        MAP coefficients of the mean and log-sd (standardized scale).
    cov_beta, cov_gamma : numpy.ndarray, shape (M, p, p)
        Laplace posterior covariances.
    tau2_mean, tau2_var : numpy.ndarray, shape (M, h)
        Variances of hierarchical blocks.
    converged : numpy.ndarray of bool, shape (M,)
    skew, tail : numpy.ndarray, shape (M, p_skew), (M, p_tail)
        SHASHb only: coefficients of the skew and tail predictors (width 0 for the Normal).
    cov_skew, cov_tail, tau2_skew, tau2_tail : numpy.ndarray
        Their Laplace covariances (M, p, p) and hierarchical variances (M, h).
    loglik, loglik_normal : numpy.ndarray, shape (M,)
        Training log-likelihood of the SHASHb fit and of the Normal fit (the same for a Normal
        model; NaN when unknown), for :func:`likelihood_comparison`.
    normal_selected : numpy.ndarray of bool, shape (M,)
        SHASHb models: responses for which the Normal was adequate and whose parameters are
        those of the Normal fit (shape at ``epsilon = 0, delta = 1``).
    """

    y_mean: np.ndarray
    y_std: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    cov_beta: np.ndarray
    cov_gamma: np.ndarray
    tau2_mean: np.ndarray
    tau2_var: np.ndarray
    converged: np.ndarray
    skew: np.ndarray | None = None
    tail: np.ndarray | None = None
    cov_skew: np.ndarray | None = None
    cov_tail: np.ndarray | None = None
    tau2_skew: np.ndarray | None = None
    tau2_tail: np.ndarray | None = None
    loglik: np.ndarray | None = None
    loglik_normal: np.ndarray | None = None
    normal_selected: np.ndarray | None = None

    def __post_init__(self) -> None:
        M = np.shape(self.beta)[0]
        for name, shape in (("skew", (M, 0)), ("tail", (M, 0)), ("cov_skew", (M, 0, 0)), ("cov_tail", (M, 0, 0)),
                            ("tau2_skew", (M, 0)), ("tau2_tail", (M, 0))):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(shape))
        for name in ("loglik", "loglik_normal"):
            if getattr(self, name) is None:
                setattr(self, name, np.full(M, np.nan))
        if self.normal_selected is None:
            self.normal_selected = np.zeros(M, dtype=bool)

    @property
    def n_targets(self) -> int:
        """Number of responses ``M``."""
        return int(self.beta.shape[0])

    def target(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coefficients (M, p), covariance (M, p, p) and hierarchical variances (M, h) of a target."""
        return tuple(getattr(self, f) for f in TARGET_FIELDS[name])


def _designs(spec: NormativeModelSpec) -> list[Design]:
    return [Design(spec, t) for t in spec.fitted_targets]


def check_training_data(spec: NormativeModelSpec, Y, covariates: pd.DataFrame) -> np.ndarray:
    """Check training responses (n_subjects, M) and their covariate table; return ``Y`` as floats."""
    Y = as_finite_array(Y, "Y", ndim=2)
    spec.check_dataframe(covariates, "covariates_dataframe")
    if Y.shape[0] != len(covariates):
        raise bad_value("Y", f"array of shape {Y.shape}",
                        f"has {Y.shape[0]} rows but the covariate table has {len(covariates)}",
                        "pass one covariate row per subject, in the same order", ShapeMismatchError)
    return Y


def _family(spec: NormativeModelSpec, Ys: np.ndarray, dof=None):
    return ShashFamily(Ys, dof) if spec.likelihood == "SHASHb" else GaussianFamily(Ys, dof)


def _loglik(family, Xs, fit) -> np.ndarray:
    """Training log-likelihood of a fit (kept by the solver; evaluated where it is missing)."""
    if fit.loglik is not None and np.all(np.isfinite(fit.loglik)):
        return fit.loglik
    return family.evaluate([X @ t.T for X, t in zip(Xs, fit.theta)], hessian=False)[0]


def fit_direct(spec: NormativeModelSpec, Y, covariates: pd.DataFrame, select_normal: bool = True,
               **solver_kwargs) -> DirectParams:
    """Fit ``M`` direct models sharing one specification.

    With ``spec.likelihood == "SHASHb"`` the Normal model is fitted first and the SHASHb fit starts
    from it (shape at the Normal: ``epsilon = 0, delta = 1``) with the Normal fit's hierarchical
    (site and smoothing) variances, re-estimated only when a shape parameter has a hierarchical
    effect of its own; both training log-likelihoods are kept for :func:`likelihood_comparison`.

    Parameters
    ----------
    spec : NormativeModelSpec
        Specification with captured fit-time state.
    Y : array_like, shape (n_subjects, M)
        Responses.
    covariates : pandas.DataFrame, shape (n_subjects, ...)
        Covariates of the same subjects, in the same order.
    select_normal : bool, optional
        SHASHb: keep the Normal fit for responses whose likelihood-ratio test does not reject it
        (default); ``False`` keeps every SHASHb fit.
    **solver_kwargs
        Passed to :func:`~spectranorm_neuro.engine.inference.fit_laplace`.

    Returns
    -------
    DirectParams
    """
    Y = check_training_data(spec, Y, covariates)
    y_mean = Y.mean(axis=0)
    y_std = Y.std(axis=0)
    y_std = np.where(y_std > 0, y_std, 1.0)
    Ys = (Y - y_mean) / y_std
    designs = _designs(spec)
    Xs = [d.matrix(covariates, warn=False)[0] for d in designs]
    Xm = Xs[0]
    M = Y.shape[1]
    # ridge least squares start for the mean, residual scale for the log-sd intercept
    ridge = Xm.T @ Xm + 1e-3 * np.eye(Xm.shape[1])
    beta0 = np.linalg.solve(ridge, Xm.T @ Ys).T
    resid = Ys - Xm @ beta0.T
    gamma0 = np.zeros((M, Xs[1].shape[1]))
    gamma0[:, 0] = np.log(np.maximum(resid.std(axis=0), 1e-6))
    normal = GaussianFamily(Ys)
    fit = fit_laplace(normal, designs[:2], Xs[:2], [beta0, gamma0], **solver_kwargs)
    ll_normal = _loglik(normal, Xs[:2], fit)
    ll = ll_normal
    selected = np.zeros(M, dtype=bool)
    if spec.likelihood == "SHASHb":
        normal_fit = fit
        shash = ShashFamily(Ys)
        init = fit.theta + [np.zeros((M, X.shape[1])) for X in Xs[2:]]
        # hierarchical (site, smoothing) variances stay those of the Normal fit unless a shape parameter
        # has hierarchical effects of its own
        shape_hier = any(d.hierarchical_blocks for d in designs[2:])
        kwargs = dict(solver_kwargs)
        kwargs.setdefault("learn_tau", shape_hier)
        fit = fit_laplace(shash, designs, Xs, init, tau2_init=fit.tau2 + [None] * (len(Xs) - 2), **kwargs)
        ll = _loglik(shash, Xs, fit)
        if select_normal:
            selected = _normal_adequate(ll, ll_normal, sum(X.shape[1] for X in Xs[2:]))
            _select_normal(fit, normal_fit, selected)
    fields = {}
    for design, theta, cov, tau2 in zip(designs, fit.theta, fit.cov, fit.tau2):
        for name, value in zip(TARGET_FIELDS[design.target], (theta, cov, tau2)):
            fields[name] = value
    return DirectParams(y_mean=y_mean, y_std=y_std, converged=fit.converged, loglik=ll, loglik_normal=ll_normal,
                        normal_selected=selected, **fields)


def _normal_adequate(ll, ll_normal, df: int) -> np.ndarray:
    """Responses whose likelihood-ratio test does not reject the Normal (:data:`SHAPE_SELECTION_ALPHA`, Bonferroni)."""
    lr = np.maximum(2.0 * (ll - ll_normal), 0.0)
    return stats.chi2.sf(lr, df) * len(lr) >= SHAPE_SELECTION_ALPHA


def _select_normal(fit, normal_fit, rows: np.ndarray) -> None:
    """Put the Normal fit's parameters (shape at the Normal) into ``fit`` for ``rows``, in place."""
    for k in range(len(fit.theta)):
        if k < len(normal_fit.theta):
            fit.theta[k][rows] = normal_fit.theta[k][rows]
            fit.cov[k][rows] = normal_fit.cov[k][rows]
            fit.tau2[k][rows] = normal_fit.tau2[k][rows]
        else:
            fit.theta[k][rows] = 0.0
            fit.cov[k][rows] = 0.0
    fit.converged[rows] = normal_fit.converged[rows]


def check_unseen(spec: NormativeModelSpec, covariates: pd.DataFrame, without, unseen_batch: str) -> None:
    """Raise :class:`UnseenCategoryError` for unseen batch levels unless a policy handles them."""
    if unseen_batch not in UNSEEN_POLICIES:
        raise bad_value("unseen_batch", unseen_batch, "is not a known policy", f"pass one of {UNSEEN_POLICIES}")
    if unseen_batch != "error":
        return
    for cov in spec.covariates:
        if not cov.hierarchical or cov.name in without or cov.name not in covariates.columns:
            continue
        new = cov.unseen_levels(covariates[cov.name])
        if new:
            raise bad_value(
                cov.name, new, f"holds level(s) never seen in training (known: {sorted(cov.known_levels)})",
                f"adapt the model to the new level(s) with adapt_fit(...), predict at population level "
                f"with predict_without=[{cov.name!r}], or pass unseen_batch='marginalize' to add the "
                f"learned between-{cov.name} variance to the predictive sd", UnseenCategoryError)


def _variance_rows(design: Design, X: np.ndarray, without, unseen: np.ndarray) -> np.ndarray:
    """Design rows (n, p) whose Laplace variance ``x' C x`` enters the predictive sd.

    At population level (a hierarchical batch effect dropped through ``without``, or a level unseen
    at fit time) the mean's row is ``intercept + other effects``, and the intercept alone is poorly
    determined with few batches (it trades off against the batch offsets): its variance measures
    where the average batch lies, not the spread of individuals. The variance is therefore taken
    for the average of the fitted batches (each hierarchical block set to the mean of its level
    columns), which the data determine; adding the intercept's own variance widened population
    centile bands beyond the within-batch sd.
    """
    out = X
    for k, block in enumerate(design.hierarchical_blocks):
        if block.name in without:
            rows = slice(None)
        elif unseen.size and unseen[:, k].any():
            rows = unseen[:, k]
        else:
            continue
        if out is X:
            out = X.copy()
        out[rows, block.slice] = 1.0 / (block.stop - block.start)
    return out


def _coefficient_variance(X: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Laplace variance ``x' C x`` (n, M) of a linear predictor.

    Floored at 0: a posterior covariance whose Hessian was barely positive definite (e.g. a response
    the covariates fit almost exactly) can give tiny negative quadratic forms in floating point.
    """
    return np.maximum(np.einsum("np,mpq,nq->nm", X, cov, X, optimize=True), 0.0)


def predict_distribution(spec: NormativeModelSpec, params: DirectParams, covariates: pd.DataFrame, without=(),
                         unseen_batch: str = "error", parameter_uncertainty: bool = True,
                         warn: bool = True) -> dict[str, np.ndarray]:
    """Predictive distribution of ``M`` direct models: mean, sd, and (SHASHb) shape.

    Parameters
    ----------
    spec : NormativeModelSpec
    params : DirectParams
    covariates : pandas.DataFrame, shape (n, ...)
    without : sequence of str, optional
        Covariates to predict without (population level for categorical covariates).
    unseen_batch : {"error", "population", "marginalize"}, optional
        What to do with levels of hierarchical covariates unseen at fit time: raise, use the
        population level, or use it and add the learned between-level variance.
    parameter_uncertainty : bool, optional
        Include the Laplace posterior variance of the mean and log-sd coefficients in the
        predictive sd (the shape parameters enter at their posterior mode).
    warn : bool, optional
        Warn about extrapolation.

    Returns
    -------
    dict of str to numpy.ndarray, each (n, M)
        ``mu`` and ``sd`` (the predictive mean and sd, whatever the likelihood) and, for SHASHb,
        ``epsilon`` and ``delta``.
    """
    without = tuple(without or ())
    needed = set(spec.influencing_mean) | set(spec.influencing_variance) | set(spec.influencing_skew) | set(
        spec.influencing_tail)
    required = [c for c in spec.covariate_names if c not in without and c in needed]
    spec.check_dataframe(covariates, "test_covariates", required)
    check_unseen(spec, covariates, without, unseen_batch)
    etas, variances = {}, {}
    for i, design in enumerate(_designs(spec)):
        X, unseen = design.matrix(covariates, without, warn=warn and i == 0)
        theta, cov, tau2 = params.target(design.target)
        etas[design.target] = X @ theta.T
        var = (_coefficient_variance(_variance_rows(design, X, without, unseen), cov) if parameter_uncertainty
               else np.zeros_like(etas[design.target]))
        if unseen_batch == "marginalize" and unseen.size:
            var = var + unseen.astype(float) @ tau2.T
        variances[design.target] = var
    var = np.exp(2.0 * etas["variance"] + 2.0 * variances["variance"]) + variances["mean"]
    out = {"mu": params.y_mean + params.y_std * etas["mean"], "sd": params.y_std * np.sqrt(var)}
    if spec.likelihood == "SHASHb":
        out["epsilon"], out["delta"] = shape_parameters(etas["skew"], etas["tail"])
    return out


def predict_direct(spec: NormativeModelSpec, params: DirectParams, covariates: pd.DataFrame, without=(),
                   unseen_batch: str = "error", parameter_uncertainty: bool = True,
                   warn: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and sd of ``M`` direct models (see :func:`predict_distribution`).

    Returns
    -------
    mu, sd : numpy.ndarray, shape (n, M)
    """
    dist = predict_distribution(spec, params, covariates, without, unseen_batch, parameter_uncertainty, warn)
    return dist["mu"], dist["sd"]


def likelihood_comparison(spec: NormativeModelSpec, params: DirectParams, names=None) -> pd.DataFrame:
    """Is the Normal adequate? Likelihood-ratio test of the fitted SHASHb against the Normal, per response.

    The statistic ``2 (loglik - loglik_normal)`` of the training fit is referred to a chi-square
    with as many degrees of freedom as the shape coefficients (the Normal is nested: ``epsilon = 0,
    delta = 1``); the priors on the shape make this approximate and slightly conservative. Where
    it does not reject the Normal at the family-wise level :data:`SHAPE_SELECTION_ALPHA`
    (Bonferroni over the responses), the fit keeps the Normal (``likelihood_used``). For a held-out
    comparison use the ``MSLL`` of both fits.

    Parameters
    ----------
    spec : NormativeModelSpec
    params : DirectParams
    names : sequence of str, optional
        Labels of the ``M`` responses.

    Returns
    -------
    pandas.DataFrame
        One row per response: ``loglik``, ``loglik_normal``, ``lr_statistic``, ``df``,
        ``p_value``, ``normal_adequate`` (``p * M >= SHAPE_SELECTION_ALPHA``), ``likelihood_used``,
        and the fitted intercept shape ``epsilon`` and ``delta`` (covariates at the reference).
    """
    df = params.skew.shape[1] + params.tail.shape[1]
    lr = np.maximum(2.0 * (params.loglik - params.loglik_normal), 0.0)
    p = stats.chi2.sf(lr, df) if df else np.ones_like(lr)
    M = params.n_targets
    out = pd.DataFrame({"loglik": params.loglik, "loglik_normal": params.loglik_normal, "lr_statistic": lr,
                        "df": df, "p_value": p, "normal_adequate": p * M >= SHAPE_SELECTION_ALPHA,
                        "likelihood_used": np.where(params.normal_selected | (df == 0), "Normal", spec.likelihood)},
                       index=pd.Index(list(names) if names is not None else range(M), name="response"))
    eps = params.skew[:, 0] if df else np.zeros(M)
    tail = params.tail[:, 0] if df else np.zeros(M)
    out["epsilon"], out["delta"] = shape_parameters(eps, tail)
    return out


def extend_levels(spec: NormativeModelSpec, covariates: pd.DataFrame) -> tuple[NormativeModelSpec, dict]:
    """Copy ``spec`` with unseen levels of batch covariates added as adapted levels.

    Returns
    -------
    new_spec : NormativeModelSpec
    added : dict of str to list of str
        New levels per covariate.
    """
    new_spec = copy.deepcopy(spec)
    added = {}
    for cov in new_spec.covariates:
        if cov.cov_type != "categorical" or cov.name not in covariates.columns:
            continue
        if cov.name not in spec.batch_covariates:
            continue
        new = cov.unseen_levels(covariates[cov.name])
        if new:
            cov.adapted = list(cov.adapted or []) + new
            added[cov.name] = new
    return new_spec, added


def _restricted_dof(Xm_new: np.ndarray, free_m: np.ndarray, w: np.ndarray, tau2_new: np.ndarray) -> np.ndarray:
    """``1 - h_i``: one minus each row's leverage on the free (new-level) mean columns, (n, M).

    ``w`` (n, M) are the precisions of the rows under the frozen model, ``tau2_new`` (M, n_free)
    the prior variances of the free mean coefficients.
    """
    Z = Xm_new[:, free_m]
    if not Z.shape[1]:
        return np.ones_like(w)
    # new levels are one-hot (each row on at most one free column): leverage w_i / (sum_level w + 1/tau2)
    level_prec = Z.T @ w + 1.0 / tau2_new.T  # (n_free, M)
    h = (Z**2) @ (1.0 / level_prec) * w
    return np.clip(1.0 - h, 0.0, 1.0)


def adapt_direct(spec: NormativeModelSpec, params: DirectParams, Y, covariates: pd.DataFrame,
                 return_report: bool = False, **solver_kwargs):
    """Learn the effects of new batch levels with every other parameter frozen.

    Each new level (site) gets mean and log-sd offsets (and shape offsets where the site acts on
    them) fitted on its controls only, with

    * an empirical-Bayes prior learned from the training levels' offsets, turned back into their
      data-only estimates so the hyperprior's shrinkage does not make them look alike (see
      ``engine.site_prior``). A site acts on all responses at once, so the training offsets are
      modelled as each site's centre times each response's loading plus a deviation (pooled
      variance); each new offset is shrunk towards its loading times the new site's own centre,
      estimated from all its responses at once (its variance no smaller than the spread of the
      controls' own average scores, since one subject's responses are correlated; the log-sd bias
      of few controls removed). With one response or fewer than three training levels it is
      shrunk towards the population level with the between-level variance of each response;
    * Student-t tails (:data:`ADAPT_PRIOR_DF` degree(s) of freedom, Cauchy; fitted as a scale
      mixture of normals by EM started from the data's own estimate) with the scale whose
      curvature at zero is that of the normal prior of variance ``tau^2 (1 + 1/K)`` (``K`` fitted
      levels): small offsets are shrunk no more than by that normal prior, and a site whose
      controls clearly show another spread keeps it, even when the training sites shared one;
    * a small-sample correction of the log-sd offset: each control's weight in
      the variance is ``1 - h_i``, ``h_i`` its leverage on the new site's mean offset, as in REML,
      so the spread is not under-estimated from few controls.

    The predictive sd then includes the new offsets' Laplace posterior variance (that of the
    centre included).

    A warning (:class:`~spectranorm_neuro.exceptions.AdaptationWarning`) is issued for a new level
    with fewer than :data:`MIN_ADAPT_CONTROLS` controls.

    Parameters
    ----------
    spec : NormativeModelSpec
    params : DirectParams
    Y : array_like, shape (n_new, M)
        Responses of the new subjects (controls of the new site).
    covariates : pandas.DataFrame, shape (n_new, ...)
    return_report : bool, optional
        Also return the adaptation report.

    Returns
    -------
    new_spec : NormativeModelSpec
    new_params : DirectParams
    added : dict of str to list of str
        The new levels.
    report : dict, only with ``return_report=True``
        ``{covariate: {level: {"n_controls", "n_effective", "data_weight_sd"}}}``: the controls,
        the effective number of controls informing the spread (``sum(1 - h_i)``, median over
        responses), and the share of the data (vs the prior) in the log-sd offset's posterior
        precision (median over responses).
    """
    Y = as_finite_array(Y, "spectral_coeff_data", ndim=2)
    spec.check_dataframe(covariates, "covariates_dataframe")
    new_spec, added = extend_levels(spec, covariates)
    if not added:
        raise bad_value("covariates_dataframe", f"levels of {spec.batch_covariates}",
                        "contain no level unseen at fit time, so there is nothing to adapt",
                        "pass data from the new site(s) only, with their new site labels")
    old_designs, designs = _designs(spec), _designs(new_spec)
    thetas, covs, frees, Xs = [], [], [], []
    for od, d in zip(old_designs, designs):
        theta, cov, _ = params.target(d.target)
        thetas.append(relayout(theta, od, d, (1,)))
        covs.append(relayout(cov, od, d, (1, 2)))
        frees.append(new_level_mask(d, added))
        Xs.append(d.matrix(covariates, warn=False)[0])
    # each response's residual sd at the controls (population level): the unit of its mean offsets
    log_sd = np.mean(Xs[1] @ thetas[1].T, axis=0)
    scales = [np.exp(log_sd) if d.target == "mean" else np.ones_like(log_sd) for d in designs]
    priors = [level_priors(od, params, sc) for od, sc in zip(old_designs, scales)]
    tau2s, structures = [p[0] for p in priors], [p[1] for p in priors]
    n_levels = [[b.stop - b.start for b in od.hierarchical_blocks] for od in old_designs]
    Ys = (Y - params.y_mean) / params.y_std
    w = np.exp(-2.0 * (Xs[1] @ thetas[1].T))  # the mean's information per control (SHASHb: up to a constant)
    tau_free = np.concatenate([np.repeat(tau2s[0][:, [j]], np.count_nonzero(frees[0][b.slice]), axis=1)
                               for j, b in enumerate(designs[0].hierarchical_blocks)]
                              or [np.zeros((Y.shape[1], 0))], axis=1)
    if tau_free.shape[1] != np.count_nonzero(frees[0]):  # BLR: fixed-effect prior on new levels
        tau_free = np.full((Y.shape[1], np.count_nonzero(frees[0])), designs[0].blocks[-1].scale ** 2)
    dof = _restricted_dof(Xs[0], frees[0], w, tau_free)
    family = _family(spec, Ys, dof)
    # a wide prior (the data's own estimate) first: it gives each new level's centre over responses,
    # and starts the Student-t prior's EM (a scale mixture of normals) at the mode the data support
    wide = [np.maximum(t, _ADAPT_START_VARIANCE) for t in tau2s]
    fit = fit_laplace(family, designs, Xs, thetas, tau2_init=wide, learn_tau=False, free=frees, **solver_kwargs)
    offsets, centres = centre_offsets(designs, Xs, fit, frees, wide, structures, scales, n_levels, dof, Ys)
    prior_t2 = [t.copy() for t in wide]
    for _round in range(12):
        fit = fit_laplace(family, designs, Xs, thetas, offsets=offsets, tau2_init=prior_t2, learn_tau=False,
                          free=frees, **solver_kwargs)
        thetas = fit.theta
        for k, d in enumerate(designs):
            for j, b in enumerate(d.hierarchical_blocks):
                cols = np.flatnonzero(frees[k][b.slice]) + b.start
                if not cols.size or d.spec.covariate(b.name).effect != "categorical":
                    continue
                e2 = np.mean(fit.theta[k][:, cols] ** 2 + np.diagonal(fit.cov[k], axis1=1, axis2=2)[:, cols], axis=1)
                prior_t2[k][:, j] = t_prior_variance(e2, tau2s[k][:, j])
    # the offsets are the centre plus each response's deviation from it; the prior variance of each
    # new log-sd offset (for the report's data weight) is the deviation's plus the centre's
    prior_v = np.zeros_like(fit.theta[1])
    for j, b in enumerate(designs[1].hierarchical_blocks):
        prior_v[:, b.slice] = prior_t2[1][:, [j]]
    for k, col, c, c_var, c_prior in centres:
        fit.theta[k][:, col] += c
        fit.cov[k][:, col, col] += c_var
        if k == 1:
            prior_v[:, col] += c_prior
    fields = {}
    for d, C, F, fm, theta in zip(designs, covs, fit.cov, frees, fit.theta):
        idx = np.flatnonzero(fm)
        C[:, idx[:, None], idx[None, :]] = F[:, idx[:, None], idx[None, :]]
        f_theta, f_cov, f_tau = TARGET_FIELDS[d.target]
        fields.update({f_theta: theta, f_cov: C, f_tau: params.target(d.target)[2]})
    new_params = DirectParams(y_mean=params.y_mean, y_std=params.y_std, converged=params.converged & fit.converged,
                              loglik=params.loglik, loglik_normal=params.loglik_normal,
                              normal_selected=params.normal_selected, **fields)
    report = _adaptation_report(designs[1], covariates, added, dof, fit.cov[1], prior_v)
    if not return_report:
        return new_spec, new_params, added
    return new_spec, new_params, added, report


def _adaptation_report(dv: Design, covariates: pd.DataFrame, added: dict, dof, cov_v, prior_v) -> dict:
    """Controls, effective controls and data weight of each new level; warn when too few.

    ``cov_v`` (M, p, p) is the log-sd coefficients' posterior covariance, ``prior_v`` (M, p) the prior
    variance of each new log-sd offset.
    """
    report = {}
    for name, levels in added.items():
        col = covariates[name].astype(str).to_numpy()
        report[name] = {}
        blocks = [b for b in dv.hierarchical_blocks if b.name == name]
        for level in levels:
            rows = col == str(level)
            n = int(rows.sum())
            n_eff = float(np.median(dof[rows].sum(axis=0))) if dof is not None else float(n)
            weight = float("nan")
            if blocks:
                b = blocks[0]
                k = b.stop - len(added[name]) + levels.index(level)
                weight = float(np.median(np.clip(1.0 - cov_v[:, k, k] / prior_v[:, k], 0.0, 1.0)))
            report[name][str(level)] = {"n_controls": n, "n_effective": n_eff, "data_weight_sd": weight}
            if n < MIN_ADAPT_CONTROLS:
                warnings.warn(
                    f"{name}={level!r} is adapted from {n} control(s) (effective number for its spread "
                    f"{n_eff:.1f}): fewer than {MIN_ADAPT_CONTROLS}, so its mean and above all its spread stay "
                    f"close to the population's and its z-scores may be miscalibrated; adapt with at least "
                    f"{MIN_ADAPT_CONTROLS} (better 20 or more) controls", AdaptationWarning, stacklevel=4)
    return report


class DirectNormativeModel:
    """A heteroscedastic normative model of one variable (SpectraNorm's ``DirectNormativeModel``).

    Parameters
    ----------
    spec : NormativeModelSpec
        The specification (see :meth:`from_dataframe`; ``likelihood="SHASHb"`` for skewed or
        heavy-tailed responses).
    """

    def __init__(self, spec: NormativeModelSpec):
        self.spec = spec
        self.params: DirectParams | None = None
        self.model_params: dict = {}

    def __repr__(self) -> str:
        return f"DirectNormativeModel(spec={self.spec!r})"

    @classmethod
    def from_dataframe(cls, model_type: str, dataframe: pd.DataFrame, variable_of_interest: str = "dummy_VOI",
                       numerical_covariates=None, categorical_covariates=None, batch_covariates=None,
                       nonlinear_covariates=None, influencing_mean=None, influencing_variance=None,
                       spline_kwargs=None, **kwargs) -> DirectNormativeModel:
        """Build a model from a covariate table; see :meth:`NormativeModelSpec.from_dataframe`."""
        spec = NormativeModelSpec.from_dataframe(
            model_type, dataframe, variable_of_interest, numerical_covariates, categorical_covariates,
            batch_covariates, nonlinear_covariates, influencing_mean, influencing_variance, spline_kwargs,
            **kwargs)
        return cls(spec)

    # ------------------------------------------------------------------ helpers
    def _response(self, data: pd.DataFrame, y, argument: str) -> np.ndarray:
        if y is None:
            voi = self.spec.variable_of_interest
            if not isinstance(data, pd.DataFrame) or voi not in data.columns:
                raise bad_value(argument, "table without the response column",
                                f"lacks the variable of interest {voi!r}",
                                f"add a {voi!r} column or pass the response as y=")
            y = data[voi].to_numpy()
        y = as_finite_array(y, "y", ndim=(1, 2)).reshape(-1)
        if y.shape[0] != len(data):
            raise bad_value("y", f"{y.shape[0]} values", f"does not match the {len(data)} table rows",
                            "pass one response per row", ShapeMismatchError)
        return y

    def _check_fitted(self) -> DirectParams:
        if self.params is None:
            raise NotFittedError("DirectNormativeModel: the model is not fitted. Fix: call fit(...) first.")
        return self.params

    def _distribution(self, covariates, predict_without=(), unseen_batch="error") -> dict[str, np.ndarray]:
        return {k: v[:, 0] for k, v in predict_distribution(self.spec, self._check_fitted(), covariates,
                                                            predict_without, unseen_batch).items()}

    # ------------------------------------------------------------------ API
    def fit(self, train_data: pd.DataFrame, y=None, inference: str = "map", random_state=None,
            **solver_kwargs) -> DirectNormativeModel:
        """Fit on a table holding the covariates (and the response, unless ``y`` is given).

        Parameters
        ----------
        train_data : pandas.DataFrame, shape (n_subjects, ...)
        y : array_like, shape (n_subjects,), optional
            Response; defaults to the ``variable_of_interest`` column.
        inference : {"map", "advi", "nuts"}, optional
            Batched MAP + Laplace + empirical Bayes (default), or the pymc backend.
        random_state : int, optional
            Seed of the pymc paths.
        **solver_kwargs
            Passed to the inference backend.

        Returns
        -------
        DirectNormativeModel
            ``self``.
        """
        y = self._response(train_data, y, "train_data")
        self.params = fit_responses(self.spec, y[:, None], train_data, inference, random_state, **solver_kwargs)
        self.model_params = {"inference": inference, "n_train": len(train_data), "random_state": random_state}
        return self

    def predict(self, test_covariates: pd.DataFrame, predict_without=(), unseen_batch: str = "error",
                extended: bool = False) -> NormativePredictions:
        """Predictive mean and sd for each row of ``test_covariates``.

        Returns
        -------
        NormativePredictions
            ``mu_estimate`` and ``std_estimate`` of shape (n_subjects,) (and, SHASHb, ``epsilon``
            and ``delta``).
        """
        dist = self._distribution(test_covariates, predict_without, unseen_batch)
        preds = {"mu_estimate": dist.pop("mu"), "std_estimate": dist.pop("sd"), **dist}
        return NormativePredictions(preds, index=test_covariates.index)

    def predict_centiles(self, test_covariates: pd.DataFrame, centiles=(5, 25, 50, 75, 95), predict_without=(),
                         unseen_batch: str = "error") -> pd.DataFrame:
        """Centile curves: the response value at each centile (0-100) for each row, from the exact CDF.

        Returns
        -------
        pandas.DataFrame, shape (n_subjects, n_centiles)
        """
        dist = self._distribution(test_covariates, predict_without, unseen_batch)
        q = np.asarray(centiles, dtype=float)
        if q.ndim != 1 or not np.all((q > 0) & (q < 100)):
            raise bad_value("centiles", centiles, "are not centiles strictly between 0 and 100",
                            "pass e.g. centiles=(5, 50, 95)")
        values = quantiles(dist, q[None, :] / 100.0, axis=1)
        return pd.DataFrame(values, index=test_covariates.index, columns=list(centiles))

    def evaluate(self, test_data: pd.DataFrame, y=None, train_moments=None,
                 unseen_batch: str = "error") -> NormativePredictions:
        """Predict, then score observations: z-scores, centiles, log-likelihoods and metrics."""
        y = self._response(test_data, y, "test_data")
        if train_moments is None:
            params = self._check_fitted()
            train_moments = np.array([params.y_mean[0], params.y_std[0]])
        pred = self.predict(test_data, unseen_batch=unseen_batch)
        return pred.evaluate(y, train_moments)

    def harmonize(self, data: pd.DataFrame, covariates_to_harmonize, y=None) -> np.ndarray:
        """Remove the effects of ``covariates_to_harmonize`` (e.g. site) from observations.

        Each value keeps its centile: it is mapped to the same centile of the distribution
        predicted without those covariates (``mu_without + z * sd_without`` for the Normal).

        Returns
        -------
        numpy.ndarray, shape (n_subjects,)
        """
        y = self._response(data, y, "data")
        full = self._distribution(data)
        wo = self._distribution(data, list(covariates_to_harmonize))
        return harmonize_values(y, full, wo)

    def adapt_fit(self, new_data: pd.DataFrame, y=None, **solver_kwargs) -> DirectNormativeModel:
        """Learn the effects of new batch levels (sites) from their data, everything else frozen.

        See :func:`adapt_direct` (empirical-Bayes prior from the training sites' true spread,
        small-sample correction of the spread, a warning below :data:`MIN_ADAPT_CONTROLS` controls);
        the report (controls and effective controls per new level) is kept in
        ``model_params["adaptation"]`` of the new model.

        Returns
        -------
        DirectNormativeModel
            A new, adapted model; this one is left unchanged.
        """
        params = self._check_fitted()
        y = self._response(new_data, y, "new_data")
        new = copy.copy(self)
        new.model_params = copy.deepcopy(self.model_params)
        new.spec, new.params, added, report = adapt_direct(self.spec, params, y[:, None], new_data,
                                                           return_report=True, **solver_kwargs)
        new.model_params.setdefault("adaptation", {}).update(report)
        logger.info("adapted to new levels %s", added)
        return new

    def likelihood_comparison(self) -> pd.DataFrame:
        """Likelihood-ratio test of the fitted likelihood against the Normal (see :func:`likelihood_comparison`)."""
        return likelihood_comparison(self.spec, self._check_fitted(), [self.spec.variable_of_interest])

    def save_model(self, directory, overwrite: bool = False) -> None:
        """Save to a directory in the safe format of ``engine.regional`` (JSON + npz, checksummed)."""
        from .regional import save_direct_params

        save_direct_params(directory, self.spec, self._check_fitted(), [self.spec.variable_of_interest],
                           self.model_params, kind="direct", overwrite=overwrite)

    @classmethod
    def load_model(cls, directory) -> DirectNormativeModel:
        """Load a model written by :meth:`save_model` (checksums and format version verified)."""
        from .regional import load_direct_params

        spec, params, _, model_params = load_direct_params(directory, kind="direct")
        model = cls(spec)
        model.params, model.model_params = params, model_params
        return model


def fit_responses(spec: NormativeModelSpec, Y, covariates: pd.DataFrame, inference: str = "map",
                  random_state=None, **kwargs) -> DirectParams:
    """Fit ``M`` responses with the chosen inference: batched MAP (``"map"``) or pymc (``"advi"``, ``"nuts"``)."""
    if inference == "map":
        return fit_direct(spec, Y, covariates, **kwargs)
    if inference in ("advi", "nuts"):
        from .pymc_backend import fit_direct_pymc

        return fit_direct_pymc(spec, Y, covariates, method=inference, random_state=random_state, **kwargs)
    raise bad_value("inference", inference, "is not a known inference method",
                    "pass 'map' (fast, default), 'advi' or 'nuts'")
