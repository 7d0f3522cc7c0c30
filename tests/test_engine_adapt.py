"""Adapting a new site's mean and spread from its controls: known-truth calibration, warnings, report."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.engine import site_prior
from spectranorm_neuro.engine.direct import DirectNormativeModel
from spectranorm_neuro.engine.effects import Block
from spectranorm_neuro.engine.regional import RegionalNormativeModel
from spectranorm_neuro.exceptions import AdaptationWarning

SITES = list("ABCDEFGHIJ")
_rng = np.random.default_rng(123)
SHIFT = dict(zip(SITES, _rng.normal(0, 0.3, len(SITES))))
# training sites' residual sd relative to the population: x0.55 ... x1.8 (FCON-1000-like spread)
LOGSD = dict(zip(SITES, _rng.permutation(np.linspace(np.log(0.6), np.log(2.0), len(SITES)) - np.log(1.1))))


def cohort(n, seed, sites, shift=SHIFT, logsd=LOGSD):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.uniform(10, 80, n), "site": rng.choice(sites, n)})
    a = df["age"].to_numpy()
    s, v = df["site"].map(shift).to_numpy(float), df["site"].map(logsd).to_numpy(float)
    df["y"] = 3 + np.sin(a / 15) + 0.25 * s + (0.2 + 0.004 * a) * np.exp(v) * rng.normal(size=n)
    return df


@pytest.fixture(scope="module")
def model():
    tr = cohort(2000, 0, SITES)
    return DirectNormativeModel.from_dataframe(
        "HBR", tr, "y", numerical_covariates=["age"], categorical_covariates=["site"], batch_covariates=["site"],
        nonlinear_covariates=["age"], influencing_mean=["age", "site"], influencing_variance=["age", "site"]).fit(tr)


@pytest.mark.parametrize("spread", [0.6, 2.0])
def test_new_site_spread_is_calibrated_after_20_controls(model, spread):
    stats = []
    for seed in range(8):  # average over draws of the 20 controls (one draw's sd is itself +-16% noisy)
        shift, logsd = {"NEW": 0.3}, {"NEW": np.log(spread)}
        controls = cohort(20, 100 + seed, ["NEW"], shift, logsd)
        test = cohort(1000, 200 + seed, ["NEW"], shift, logsd)
        adapted = copy.deepcopy(model).adapt_fit(controls)
        z = adapted.evaluate(test).predictions["z-score"]
        stats.append((z.mean(), z.std()))
        report = adapted.model_params["adaptation"]["site"]["NEW"]
        assert report["n_controls"] == 20 and 18 < report["n_effective"] <= 20
        assert 0.5 < report["data_weight_sd"] < 1
    z_mean, z_sd = np.mean(stats, axis=0)
    assert abs(z_mean) < 0.1
    assert 0.9 <= z_sd <= 1.1
    # without adaptation (population norms) the site is clearly miscalibrated
    z_pop = copy.deepcopy(model).predict(test, predict_without=["site"])
    raw_sd = np.std((test["y"] - z_pop.predictions["mu_estimate"]) / z_pop.predictions["std_estimate"])
    assert abs(np.log(raw_sd)) > 0.35


def test_too_few_controls_warn(model):
    one = cohort(1, 7, ["NEW"], {"NEW": 0.0}, {"NEW": 0.0})
    with pytest.warns(AdaptationWarning, match="1 control"):
        copy.deepcopy(model).adapt_fit(one)
    enough = cohort(25, 8, ["NEW"], {"NEW": 0.0}, {"NEW": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error", AdaptationWarning)
        copy.deepcopy(model).adapt_fit(enough)


def test_a_new_spread_is_adapted_even_when_training_sites_share_one():
    # training sites all have the population's spread (the empirical-Bayes scale is ~0); the
    # heavy-tailed (Cauchy) prior still lets 20 controls that clearly show x2 spread have it
    same = {s: 0.0 for s in SITES}
    train = cohort(2000, 0, SITES, logsd=same)
    m = DirectNormativeModel.from_dataframe(
        "HBR", train, "y", numerical_covariates=["age"], categorical_covariates=["site"], batch_covariates=["site"],
        nonlinear_covariates=["age"], influencing_mean=["age", "site"], influencing_variance=["age", "site"]).fit(train)
    sds = []
    for seed in range(6):
        shift, logsd = {"NEW": 0.3}, {"NEW": np.log(2.0)}
        adapted = copy.deepcopy(m).adapt_fit(cohort(20, 100 + seed, ["NEW"], shift, logsd))
        sds.append(adapted.evaluate(cohort(1000, 200 + seed, ["NEW"], shift, logsd)).predictions["z-score"].std())
    assert 0.9 <= np.mean(sds) <= 1.15


def regional_cohort(n, seed, sites, shift, logsd, n_regions=30):
    """Thickness-like regions; a site shifts every region's mean by ``0.1 * shift`` and scales its sd by exp(logsd)."""
    rng = np.random.default_rng(seed)
    cov = pd.DataFrame({"age": rng.uniform(10, 80, n), "site": rng.choice(sites, n)},
                       index=[f"sub-{seed}-{i}" for i in range(n)])
    a = cov["age"].to_numpy()[:, None]
    s = cov["site"].map(shift).to_numpy(float)[:, None]
    v = cov["site"].map(logsd).to_numpy(float)[:, None]
    k = np.arange(n_regions)[None, :]
    sd = (0.1 + 0.001 * a) * np.exp(v)
    y = 2.6 - 0.3 * np.tanh((a - 35) / 20) + 0.05 * np.sin(a / 12 + k) + 0.1 * s + sd * rng.normal(size=(n, n_regions))
    return pd.DataFrame(y, index=cov.index, columns=[f"region{j}" for j in range(n_regions)]), cov


@pytest.fixture(scope="module")
def regional_model():
    sites = [f"S{i}" for i in range(12)]
    rng = np.random.default_rng(7)
    shift = dict(zip(sites, rng.normal(0, 1, 12)))
    logsd = dict(zip(sites, rng.permutation(np.linspace(np.log(0.6), np.log(2.0), 12)) - np.log(1.1)))
    table, cov = regional_cohort(1200, 0, sites, shift, logsd)
    model = RegionalNormativeModel.from_dataframe(
        "HBR", cov, numerical_covariates=["age"], nonlinear_covariates=["age"], categorical_covariates=["site"],
        batch_covariates=["site"], influencing_mean=["age", "site"], influencing_variance=["age", "site"])
    return model.fit(table, cov), np.mean(list(shift.values()))


@pytest.mark.parametrize("spread", [0.6, 2.0])
def test_regional_new_site_spread_is_calibrated_after_20_controls(regional_model, spread):
    # a held-out site one between-site sd above the training sites' average, with 0.6x or 2x their
    # spread: after adapting on 20 of its controls, its other subjects' z (averaged over regions)
    # have mean within +-0.1 and sd within 0.9-1.1 (the prior that shrank every region's offsets to
    # the training sites' average gave z sd 0.88 at x0.6 and z mean +0.095 at x2 on these draws)
    model, centre = regional_model
    shift, logsd = {"NEW": centre + 1.0}, {"NEW": np.log(spread)}
    controls, ccov = regional_cohort(20, 100, ["NEW"], shift, logsd)
    test, tcov = regional_cohort(400, 200, ["NEW"], shift, logsd)
    adapted = copy.deepcopy(model).adapt_fit(controls, ccov)
    z = adapted.evaluate(test, tcov)["z-score"]
    assert abs(z.mean().mean()) < 0.1
    assert 0.9 <= z.std().mean() <= 1.1
    report = adapted.model_params["adaptation"]["site"]["NEW"]
    assert report["n_controls"] == 20 and 18 < report["n_effective"] <= 20
    assert 0.5 < report["data_weight_sd"] < 1  # the spread is learned from the controls, not the prior
    unadapted = model.evaluate(test, tcov.assign(site="S0"))["z-score"]  # another site's norms: miscalibrated
    assert abs(unadapted.mean().mean()) > 0.3 or abs(np.log(unadapted.std().mean())) > 0.3


def _offsets(centre_sd, dev_sd, M=40, K=12, noise=1e-4, seed=0):
    rng = np.random.default_rng(seed)
    loading = rng.uniform(0.5, 1.5, M)  # each response's sensitivity to its site's centre
    theta = np.outer(loading, rng.normal(0, centre_sd, K)) + rng.normal(0, dev_sd, (M, K))
    cov = np.broadcast_to(np.eye(K) * noise, (M, K, K)).copy()
    return theta, cov, np.full(M, 10.0), Block("site", 0, K, True, 1.0), loading


def test_common_structure_recovers_site_centres_loadings_and_deviations():
    theta, cov, tau2, block, loading = _offsets(0.5, 0.1)
    omega2, centre2, fitted = site_prior.common_structure(theta, cov, tau2, block, np.ones(len(theta)))
    assert 0.007 < omega2 < 0.013  # deviations' variance 0.01
    assert 0.1 < centre2 < 0.5  # centres' variance 0.25 (12 sites)
    assert np.corrcoef(fitted, loading)[0, 1] > 0.95 and fitted.mean() == pytest.approx(1.0)
    # offsets specific to each response: the deviations carry the spread, the centres almost none
    omega2, centre2, _ = site_prior.common_structure(*_offsets(0.0, 0.5)[:4], np.ones(40))
    assert 0.2 < omega2 < 0.3 and centre2 < 0.05
    # a single response or two sites: no factor model
    theta, cov, tau2, block, _ = _offsets(0.5, 0.1, M=1)
    assert site_prior.common_structure(theta, cov, tau2, block, np.ones(1)) is None
    theta, cov, tau2, block, _ = _offsets(0.5, 0.1, K=2)
    assert site_prior.common_structure(theta, cov, tau2, block, np.ones(40)) is None


def test_site_centre_is_no_more_precise_than_its_controls():
    rng = np.random.default_rng(1)
    n, M = 20, 50
    subject = rng.normal(0, 1, (n, 1))  # each control's responses share a subject effect (correlated)
    scores = 0.7 * subject + 0.7 * rng.normal(0, 1, (n, M))
    est, var = scores.mean(axis=0), np.full(M, 1.0 / n)
    c_indep, v_indep, _ = site_prior.site_centre(est, var, 1e-6, 100.0)
    c, v, _ = site_prior.site_centre(est, var, 1e-6, 100.0, scores)
    assert c == pytest.approx(c_indep, rel=1e-3) and c == pytest.approx(scores.mean(), abs=1e-3)
    assert v_indep == pytest.approx(1.0 / (n * M), rel=1e-3)
    assert v == pytest.approx(np.var(scores.mean(axis=1), ddof=1) / n, rel=1e-3)  # ~0.5 / 20, not 1 / 1000
