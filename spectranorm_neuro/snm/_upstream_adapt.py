"""Adaptation of converted reference models to new levels of a categorical covariate (a new site).

The reference's ``adapt_fit`` freezes every fitted parameter and estimates, by ADVI, only the
effects of the new levels: for a hierarchical covariate a new offset ``o`` per level (the effect
is ``o * sigma_intercept``, ``sigma_intercept`` frozen), for a fixed one a new intercept with prior
``N(0, 10)``. :func:`adapt_upstream` estimates the same parameters by their posterior mode (the
reference plugs in posterior means), with the offsets' prior of the trained model, ``N(0, 1)`` (the
new site is a draw from the same population of sites; the reference uses ``N(0, 1)`` for the
correlation models' offsets, and for the mean and log-sd offsets the spread of the trained
*log-sd* offsets, which for sites of similar spread pins every new effect near 0):

* per direct model (one per mode), with every other effect fixed, the new level's mean effect
  ``a`` and log-sd effect ``b`` maximize ``sum_i log N(y_i | m_i + a, exp(v_i + b))`` plus the log
  priors (``y`` standardized as in training, ``m`` and ``v`` the frozen linear predictors):
  ``a`` is a precision-weighted mean given ``b``, ``b`` a one-dimensional monotone root given
  ``a``, alternated to convergence;
* per mode pair, the new level's Fisher-z effect ``c`` maximizes the bivariate normal likelihood
  of the pair's standardized residuals (from the adapted mode models) with correlation
  ``tanh(eta_i + c)``, plus its log prior (bounded scalar search).

The new levels are appended to the covariate's categories and their effects to the parameter
arrays, so the adapted data predict, save and convert like any reference model's.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from ..exceptions import bad_value
from ._upstream import UpstreamParameters, linear_predictor

__all__ = ["adapt_upstream"]

_FIXED_PRIOR_SD = 10.0  # the reference's prior sd of a fixed categorical effect
_OFFSET_SD = 1.0  # prior sd of a new hierarchical offset (the trained offsets' prior)


def _covariate(spec: dict, name) -> dict:
    for cov in spec["covariates"]:
        if cov["name"] == name and cov["cov_type"] == "categorical":
            return cov
    names = [c["name"] for c in spec["covariates"] if c["cov_type"] == "categorical"]
    raise bad_value("covariate_to_adapt", name, "is not a categorical covariate of the model", f"pass one of {names}")


def _levels(spec: dict, covariate, new_category_names, covariates: pd.DataFrame) -> tuple[str, list[str]]:
    """The covariate to adapt and its new levels (inferred from the data when not given)."""
    if covariate is None:
        unseen = {c["name"]: sorted({str(v) for v in covariates[c["name"]].tolist()}
                                    - {str(v) for v in np.asarray(c["categories"]).tolist()})
                  for c in spec["covariates"] if c["cov_type"] == "categorical" and c["name"] in covariates}
        unseen = {k: v for k, v in unseen.items() if v}
        if len(unseen) != 1:
            raise bad_value("covariate_to_adapt", None,
                            f"cannot be inferred (new levels in {sorted(unseen) or 'none'})",
                            "pass adapt_fit(covariate_to_adapt, new_category_names, data, ...)")
        covariate = next(iter(unseen))
    cov = _covariate(spec, covariate)
    if covariate not in covariates.columns:
        raise bad_value("covariates", "table", f"lacks the column {covariate!r}", f"add the {covariate!r} column")
    known = [str(v) for v in np.asarray(cov["categories"]).tolist()]
    present = [str(v) for v in covariates[covariate].tolist()]
    new = sorted(set(present)) if new_category_names is None else \
        [str(v) for v in np.atleast_1d(np.asarray(new_category_names)).tolist()]
    clash = sorted(set(new) & set(known))
    if clash:
        raise bad_value("new_category_names", clash, f"are levels the model already knows ({known})",
                        "adapt only to new levels")
    absent = sorted(set(new) - set(present))
    if absent:
        raise bad_value("new_category_names", absent, f"do not occur in the adaptation data's {covariate!r}",
                        "pass the new levels present in the adaptation data")
    other = sorted(set(present) - set(new))
    if other:
        raise bad_value(covariate, other, "occur in the adaptation data but are not new levels",
                        "pass only the new levels' data (as the reference requires)")
    return covariate, new


def _prior_sd(means: dict, prefix: str, name: str, hierarchical: bool) -> float:
    """Prior sd of a new level's effect (on the effect scale): ``sigma_intercept`` for a hierarchical covariate."""
    if not hierarchical:
        return _FIXED_PRIOR_SD
    sigma = float(np.asarray(means[f"{prefix}sigma_intercept_{name}"]).reshape(-1)[0])
    return max(_OFFSET_SD * sigma, 1e-8)


def _append(means: dict, stds: dict | None, prefix: str, name: str, hierarchical: bool, effect: np.ndarray,
            effect_sd: np.ndarray) -> None:
    """Append the new levels' effects (and their posterior sds) to a model part's arrays."""
    if hierarchical:
        sigma = float(np.asarray(means[f"{prefix}sigma_intercept_{name}"]).reshape(-1)[0])
        updates = {f"{prefix}intercept_offset_{name}": (effect / sigma, effect_sd / sigma),
                   f"{prefix}intercept_{name}": (effect, effect_sd)}
    else:
        updates = {f"{prefix}intercept_{name}": (effect, effect_sd)}
    for key, (value, sd) in updates.items():
        if key in means:
            means[key] = np.concatenate([np.asarray(means[key], dtype=float).reshape(-1), value])
            if stds is not None and key in stds:
                stds[key] = np.concatenate([np.asarray(stds[key], dtype=float).reshape(-1), sd])


def _fit_level(r: np.ndarray, v: np.ndarray, tau_a: float | None, tau_b: float | None
               ) -> tuple[float, float, float, float]:
    """Posterior mode of ``r ~ N(a, exp(v + b))`` with priors ``a ~ N(0, tau_a)``, ``b ~ N(0, tau_b)``.

    ``tau_a`` / ``tau_b`` of ``None`` keep ``a`` / ``b`` at 0 (the covariate does not act there).
    Returns ``a``, ``b`` and their Laplace sds.
    """
    a = b = 0.0
    w0 = np.exp(-2.0 * v)
    for _ in range(200):
        w = w0 * np.exp(-2.0 * b)
        a_new = float(np.sum(w * r) / (np.sum(w) + tau_a ** -2)) if tau_a is not None else 0.0
        b_new = b
        if tau_b is not None:
            s2 = w0 * (r - a_new) ** 2
            for _ in range(50):  # d/db of the negative log posterior: n - sum(s2 e^-2b) + b / tau^2 (increasing)
                g = len(r) - np.sum(s2) * np.exp(-2.0 * b_new) + b_new / tau_b ** 2
                h = 2.0 * np.sum(s2) * np.exp(-2.0 * b_new) + tau_b ** -2
                step = g / h
                b_new -= float(np.clip(step, -2.0, 2.0))
                if abs(step) < 1e-12:
                    break
        done = abs(a_new - a) < 1e-12 and abs(b_new - b) < 1e-12
        a, b = a_new, b_new
        if done:
            break
    w = w0 * np.exp(-2.0 * b)
    sd_a = float((np.sum(w) + tau_a ** -2) ** -0.5) if tau_a is not None else 0.0
    sd_b = float((2.0 * np.sum(w * (r - a) ** 2) + tau_b ** -2) ** -0.5) if tau_b is not None else 0.0
    return a, b, sd_a, sd_b


def _adapt_direct(spec: dict, params: dict, name: str, new: list[str], covariates: pd.DataFrame,
                  y: np.ndarray) -> dict:
    """One direct model's parameters with the new levels' mean and log-sd effects appended."""
    params = copy.deepcopy(params)
    means, stds = params["posterior_means"], params.get("posterior_stds")
    cov = _covariate(spec, name)
    hier = bool(cov.get("hierarchical"))
    m, s = float(params["mean_VOI"]), float(params["std_VOI"])
    r = (np.asarray(y, dtype=float) - m) / s - linear_predictor(spec, means, covariates, spec["influencing_mean"],
                                                                (name,), "mean")
    v = linear_predictor(spec, means, covariates, spec["influencing_variance"], (name,), "variance")
    tau_a = _prior_sd(means, "", name, hier) if name in spec["influencing_mean"] else None
    tau_b = _prior_sd(means, "variance_", name, hier) if name in spec["influencing_variance"] else None
    values = covariates[name].astype(str).to_numpy()
    fits = np.array([_fit_level(r[values == lvl], v[values == lvl], tau_a, tau_b) for lvl in new])
    if tau_a is not None:
        _append(means, stds, "", name, hier, fits[:, 0], fits[:, 2])
    if tau_b is not None:
        _append(means, stds, "variance_", name, hier, fits[:, 1], fits[:, 3])
    params["n_params"] = int(params.get("n_params", 0)) + len(new) * ((tau_a is not None) + (tau_b is not None))
    return params


def _fit_correlation(z1: np.ndarray, z2: np.ndarray, eta: np.ndarray, tau: float) -> tuple[float, float]:
    """Posterior mode (and Laplace sd) of ``c`` for pairs ``(z1, z2)`` with correlation ``tanh(eta + c)``."""

    def nlp(c):
        rho = np.clip(np.tanh(eta + c), -0.999999, 0.999999)
        one = 1.0 - rho ** 2
        return float(np.sum(0.5 * np.log(one) + (z1 ** 2 - 2 * rho * z1 * z2 + z2 ** 2) / (2 * one))
                     + 0.5 * (c / tau) ** 2)

    c = float(minimize_scalar(nlp, bounds=(-8.0, 8.0), method="bounded", options={"xatol": 1e-9}).x)
    h = 1e-4
    curvature = (nlp(c + h) - 2 * nlp(c) + nlp(c - h)) / h ** 2
    return c, float(curvature ** -0.5) if curvature > 0 else float(tau)


def _adapt_correlation(spec: dict, params: dict, name: str, new: list[str], covariates: pd.DataFrame,
                       z1: np.ndarray, z2: np.ndarray) -> dict:
    params = copy.deepcopy(params)
    infl = params.get("influencing_covariance", spec.get("influencing_covariance", spec["influencing_mean"]))
    if name not in infl:
        return params
    means, stds = params["posterior_means"], params.get("posterior_stds")
    hier = bool(_covariate(spec, name).get("hierarchical"))
    tau = _prior_sd(means, "", name, hier)
    eta = linear_predictor(spec, means, covariates, infl, (name,), "correlation")
    values = covariates[name].astype(str).to_numpy()
    fits = np.array([_fit_correlation(z1[values == lvl], z2[values == lvl], eta[values == lvl], tau) for lvl in new])
    _append(means, stds, "", name, hier, fits[:, 0], fits[:, 1])
    params["n_params"] = int(params.get("n_params", 0)) + len(new)
    return params


def adapt_upstream(data: dict, covariate, new_category_names, covariates: pd.DataFrame, responses) -> dict:
    """A reference model's plain data adapted to new levels of ``covariate`` (the input is not changed).

    Parameters
    ----------
    data : dict
        Plain data of a reference direct or spectral model (see :func:`._upstream.read_upstream`).
    covariate : str or None
        The categorical covariate with new levels (``None``: the one whose levels in
        ``covariates`` are new).
    new_category_names : array_like of str or None
        The new levels (``None``: every level of ``covariates[covariate]``).
    covariates : pandas.DataFrame, shape (n, ...)
        The new levels' controls; every row must belong to a new level.
    responses : array_like, shape (n,) or (n, n_modes)
        The response (direct model) or the spectral coefficients (spectral model).

    Returns
    -------
    dict
        The adapted plain data.
    """
    if not isinstance(covariates, pd.DataFrame) or len(covariates) == 0:
        raise bad_value("covariates", type(covariates).__name__, "is not a non-empty table",
                        "pass the new site's covariates as a pandas DataFrame")
    covariates = covariates.reset_index(drop=True)
    out = copy.deepcopy(data)
    spec = out["spec"]
    name, new = _levels(spec, covariate, new_category_names, covariates)
    y = np.asarray(responses, dtype=float)
    if y.shape[0] != len(covariates) or not np.all(np.isfinite(y)):
        raise bad_value("data", f"shape {y.shape}",
                        f"must be finite with one row per covariate row ({len(covariates)})",
                        "pass the response (or spectral coefficients) of the adaptation rows")
    mp = out["model_params"]
    cov = _covariate(spec, name)
    if out["kind"] == "direct":
        out["model_params"] = _adapt_direct(spec, mp, name, new, covariates, y.reshape(len(y), -1)[:, 0])
    else:
        k = int(mp["n_modes"])
        if y.ndim != 2 or y.shape[1] < k:
            raise bad_value("spectral_coeff_train_data", f"shape {y.shape}", f"needs at least {k} columns (modes)",
                            "encode the maps with the model's eigenmode basis")
        mp["direct_model_params"] = [_adapt_direct(spec, p, name, new, covariates, y[:, j]) if j < k else p
                                     for j, p in enumerate(mp["direct_model_params"])]
        cov["categories"] = np.array(list(np.asarray(cov["categories"]).tolist()) + new, dtype=object)
        adapted = UpstreamParameters(out)  # the adapted mode models give the pairs' standardized residuals
        z = np.column_stack([np.subtract(y[:, j], mu) / sd for j, (mu, sd) in enumerate(
            adapted.direct_moments(p, covariates) for p in mp["direct_model_params"][:k])])
        all_pairs = np.asarray(mp["sparse_covariance_structure"], dtype=int).reshape(-1, 2)
        mp["covariance_model_params"] = [
            _adapt_correlation(spec, p, name, new, covariates, z[:, i], z[:, j]) if i < k and j < k else p
            for (i, j), p in zip(all_pairs, mp["covariance_model_params"], strict=True)]
        mp.setdefault("adapted_levels", {}).setdefault(name, []).extend(new)
        return out
    cov["categories"] = np.array(list(np.asarray(cov["categories"]).tolist()) + new, dtype=object)
    out["model_params"].setdefault("adapted_levels", {}).setdefault(name, []).extend(new)
    return out
