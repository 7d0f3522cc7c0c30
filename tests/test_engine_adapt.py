"""Adapting a new site's mean and spread from its controls: known-truth calibration, warnings, report."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.engine.direct import DirectNormativeModel
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
