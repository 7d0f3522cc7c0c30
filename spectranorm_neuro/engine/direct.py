"""Direct (univariate) normative models, fitted for many response variables at once.

``y ~ N(mu, sigma^2)``, ``mu = X_mean @ beta``, ``log sigma = X_var @ gamma``, on each response
standardized by its training mean and sd. :func:`fit_direct` fits ``M`` responses (e.g. the
spectral coefficients of ``M`` eigenmodes) in one batched MAP/Laplace/empirical-Bayes pass;
:class:`DirectNormativeModel` is the one-response model of the SpectraNorm API.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._util import as_finite_array
from ..exceptions import NotFittedError, ShapeMismatchError, UnseenCategoryError, bad_value
from .effects import Design, new_level_mask, relayout
from .inference import ArrayRecord, GaussianFamily, fit_laplace
from .results import NormativePredictions
from .specs import NormativeModelSpec

__all__ = ["DirectParams", "check_training_data", "fit_direct", "predict_direct", "adapt_direct", "extend_levels",
           "check_unseen", "DirectNormativeModel", "UNSEEN_POLICIES"]

logger = logging.getLogger("spectranorm_neuro")

UNSEEN_POLICIES = ("error", "population", "marginalize")


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

    @property
    def n_targets(self) -> int:
        """Number of responses ``M``."""
        return int(self.beta.shape[0])





def _designs(spec: NormativeModelSpec) -> tuple[Design, Design]:
    return Design(spec, "mean"), Design(spec, "variance")


def check_training_data(spec: NormativeModelSpec, Y, covariates: pd.DataFrame) -> np.ndarray:
    """Check training responses (n_subjects, M) and their covariate table; return ``Y`` as floats."""
    Y = as_finite_array(Y, "Y", ndim=2)
    spec.check_dataframe(covariates, "covariates_dataframe")
    if Y.shape[0] != len(covariates):
        raise bad_value("Y", f"array of shape {Y.shape}",
                        f"has {Y.shape[0]} rows but the covariate table has {len(covariates)}",
                        "pass one covariate row per subject, in the same order", ShapeMismatchError)
    return Y


def fit_direct(spec: NormativeModelSpec, Y, covariates: pd.DataFrame, **solver_kwargs) -> DirectParams:
    """Fit ``M`` direct models sharing one specification.

    Parameters
    ----------
    spec : NormativeModelSpec
        Specification with captured fit-time state.
    Y : array_like, shape (n_subjects, M)
        Responses.
    covariates : pandas.DataFrame, shape (n_subjects, ...)
        Covariates of the same subjects, in the same order.
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
    dm, dv = _designs(spec)
    Xm, _ = dm.matrix(covariates, warn=False)
    Xv, _ = dv.matrix(covariates, warn=False)
    M = Y.shape[1]
    # ridge least squares start for the mean, residual scale for the log-sd intercept
    ridge = Xm.T @ Xm + 1e-3 * np.eye(Xm.shape[1])
    beta0 = np.linalg.solve(ridge, Xm.T @ Ys).T
    resid = Ys - Xm @ beta0.T
    gamma0 = np.zeros((M, Xv.shape[1]))
    gamma0[:, 0] = np.log(np.maximum(resid.std(axis=0), 1e-6))
    fit = fit_laplace(GaussianFamily(Ys), [dm, dv], [Xm, Xv], [beta0, gamma0], **solver_kwargs)
    return DirectParams(y_mean, y_std, fit.theta[0], fit.theta[1], fit.cov[0], fit.cov[1],
                        fit.tau2[0], fit.tau2[1], fit.converged)


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
    """Laplace variance ``x' C x`` (n, M) of a linear predictor."""
    return np.einsum("np,mpq,nq->nm", X, cov, X, optimize=True)


def predict_direct(spec: NormativeModelSpec, params: DirectParams, covariates: pd.DataFrame, without=(),
                   unseen_batch: str = "error", parameter_uncertainty: bool = True,
                   warn: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Predictive mean and sd of ``M`` direct models.

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
        Include the Laplace posterior variance of the coefficients in the predictive sd.
    warn : bool, optional
        Warn about extrapolation.

    Returns
    -------
    mu, sd : numpy.ndarray, shape (n, M)
    """
    without = tuple(without or ())
    required = [c for c in spec.covariate_names
                if c not in without and (c in spec.influencing_mean or c in spec.influencing_variance)]
    spec.check_dataframe(covariates, "test_covariates", required)
    check_unseen(spec, covariates, without, unseen_batch)
    dm, dv = _designs(spec)
    Xm, um = dm.matrix(covariates, without, warn=warn)
    Xv, uv = dv.matrix(covariates, without, warn=False)
    eta_m = Xm @ params.beta.T
    eta_v = Xv @ params.gamma.T
    if parameter_uncertainty:
        var_m = _coefficient_variance(_variance_rows(dm, Xm, without, um), params.cov_beta)
        var_v = _coefficient_variance(_variance_rows(dv, Xv, without, uv), params.cov_gamma)
    else:
        var_m = np.zeros_like(eta_m)
        var_v = np.zeros_like(eta_v)
    if unseen_batch == "marginalize":
        if um.size:
            var_m = var_m + um.astype(float) @ params.tau2_mean.T
        if uv.size:
            var_v = var_v + uv.astype(float) @ params.tau2_var.T
    var = np.exp(2.0 * eta_v + 2.0 * var_v) + var_m
    mu = params.y_mean + params.y_std * eta_m
    sd = params.y_std * np.sqrt(var)
    return mu, sd


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


def adapt_direct(spec: NormativeModelSpec, params: DirectParams, Y, covariates: pd.DataFrame,
                 **solver_kwargs) -> tuple[NormativeModelSpec, DirectParams, dict]:
    """Learn the effects of new batch levels with every other parameter frozen.

    The new levels' mean and log-sd offsets get the fitted hierarchical prior ``N(0, tau^2)``
    (HBR) or the fixed-effect prior (BLR), and are fitted on the new subjects only.

    Parameters
    ----------
    spec : NormativeModelSpec
    params : DirectParams
    Y : array_like, shape (n_new, M)
        Responses of the new subjects (controls of the new site).
    covariates : pandas.DataFrame, shape (n_new, ...)

    Returns
    -------
    new_spec : NormativeModelSpec
    new_params : DirectParams
    added : dict of str to list of str
        The new levels.
    """
    Y = as_finite_array(Y, "spectral_coeff_data", ndim=2)
    spec.check_dataframe(covariates, "covariates_dataframe")
    new_spec, added = extend_levels(spec, covariates)
    if not added:
        raise bad_value("covariates_dataframe", f"levels of {spec.batch_covariates}",
                        "contain no level unseen at fit time, so there is nothing to adapt",
                        "pass data from the new site(s) only, with their new site labels")
    old_dm, old_dv = _designs(spec)
    dm, dv = _designs(new_spec)
    beta = relayout(params.beta, old_dm, dm, (1,))
    gamma = relayout(params.gamma, old_dv, dv, (1,))
    free_m, free_v = new_level_mask(dm, added), new_level_mask(dv, added)
    Ys = (Y - params.y_mean) / params.y_std
    Xm, _ = dm.matrix(covariates, warn=False)
    Xv, _ = dv.matrix(covariates, warn=False)
    fit = fit_laplace(GaussianFamily(Ys), [dm, dv], [Xm, Xv], [beta, gamma],
                      tau2_init=[params.tau2_mean, params.tau2_var], learn_tau=False,
                      free=[free_m, free_v], **solver_kwargs)
    cov_beta = relayout(params.cov_beta, old_dm, dm, (1, 2))
    cov_gamma = relayout(params.cov_gamma, old_dv, dv, (1, 2))
    for C, F, fm in ((cov_beta, fit.cov[0], free_m), (cov_gamma, fit.cov[1], free_v)):
        idx = np.flatnonzero(fm)
        C[:, idx[:, None], idx[None, :]] = F[:, idx[:, None], idx[None, :]]
    new_params = DirectParams(params.y_mean, params.y_std, fit.theta[0], fit.theta[1], cov_beta, cov_gamma,
                              params.tau2_mean, params.tau2_var, params.converged & fit.converged)
    return new_spec, new_params, added


class DirectNormativeModel:
    """A heteroscedastic normative model of one variable (SpectraNorm's ``DirectNormativeModel``).

    Parameters
    ----------
    spec : NormativeModelSpec
        The specification (see :meth:`from_dataframe`).
    """

    def __init__(self, spec: NormativeModelSpec):
        self.spec = spec
        self.params: DirectParams | None = None

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

    # ------------------------------------------------------------------ API
    def fit(self, train_data: pd.DataFrame, y=None, **solver_kwargs) -> DirectNormativeModel:
        """Fit on a table holding the covariates (and the response, unless ``y`` is given).

        Parameters
        ----------
        train_data : pandas.DataFrame, shape (n_subjects, ...)
        y : array_like, shape (n_subjects,), optional
            Response; defaults to the ``variable_of_interest`` column.

        Returns
        -------
        DirectNormativeModel
            ``self``.
        """
        y = self._response(train_data, y, "train_data")
        self.params = fit_direct(self.spec, y[:, None], train_data, **solver_kwargs)
        return self

    def predict(self, test_covariates: pd.DataFrame, predict_without=(), unseen_batch: str = "error",
                extended: bool = False) -> NormativePredictions:
        """Predictive mean and sd for each row of ``test_covariates``.

        Returns
        -------
        NormativePredictions
            ``mu_estimate`` and ``std_estimate`` of shape (n_subjects,).
        """
        params = self._check_fitted()
        mu, sd = predict_direct(self.spec, params, test_covariates, predict_without, unseen_batch)
        return NormativePredictions({"mu_estimate": mu[:, 0], "std_estimate": sd[:, 0]},
                                    index=test_covariates.index)

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

        Each value keeps its centile: ``harmonized = mu_without + z * sd_without``.

        Returns
        -------
        numpy.ndarray, shape (n_subjects,)
        """
        y = self._response(data, y, "data")
        full = self.predict(data)
        wo = self.predict(data, predict_without=list(covariates_to_harmonize))
        z = (y - full.predictions["mu_estimate"]) / full.predictions["std_estimate"]
        return wo.predictions["mu_estimate"] + z * wo.predictions["std_estimate"]

    def adapt_fit(self, new_data: pd.DataFrame, y=None, **solver_kwargs) -> DirectNormativeModel:
        """Learn the effects of new batch levels (sites) from their data, everything else frozen.

        Returns
        -------
        DirectNormativeModel
            A new, adapted model; this one is left unchanged.
        """
        params = self._check_fitted()
        y = self._response(new_data, y, "new_data")
        new = copy.copy(self)
        new.spec, new.params, added = adapt_direct(self.spec, params, y[:, None], new_data, **solver_kwargs)
        logger.info("adapted to new levels %s", added)
        return new
