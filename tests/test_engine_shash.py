"""SHASHb likelihood: closed forms, the batched fit, and known-truth calibration of skewed/heavy-tailed data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from spectranorm_neuro.engine.direct import DirectNormativeModel
from spectranorm_neuro.engine.shash import (
    ShashFamily,
    shape_parameters,
    shash_log_density,
    shash_moments,
    shash_quantile,
    shash_z,
)
from spectranorm_neuro.exceptions import InvalidInputError

EPS, DELTA = 0.6, 0.7


def _draw(kind, n, seed):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.uniform(10, 80, n), "site": rng.choice(list("ABCD"), n)})
    a = df["age"].to_numpy()
    mu, sd = 3 + np.sin(a / 15), 0.2 + 0.004 * a
    if kind == "shash":
        m, v = shash_moments(np.float64(EPS), np.float64(DELTA))
        x = np.sinh((np.arcsinh(rng.normal(size=n)) + EPS) / DELTA)
        df["y"] = mu + sd * (x - m) / v
    elif kind == "lognormal":  # a volume: log-normal around the age curve
        df["y"] = np.exp(np.log(mu) + 0.35 * rng.normal(size=n))
    elif kind == "t4":  # a thickness with t(4) tails
        df["y"] = mu + sd * rng.standard_t(4, size=n)
    else:
        df["y"] = mu + sd * rng.normal(size=n)
    return df, mu, sd


def _model(df, likelihood, **kw):
    return DirectNormativeModel.from_dataframe(
        "HBR", df, "y", numerical_covariates=["age"], categorical_covariates=["site"], batch_covariates=["site"],
        nonlinear_covariates=["age"], influencing_mean=["age", "site"], influencing_variance=["age"],
        likelihood=likelihood, **kw)


def test_density_cdf_and_moments_are_exact():
    eps, delta = shape_parameters(0.4, -0.5)
    dens = lambda y: np.exp(shash_log_density(y, 1.0, 2.0, eps, delta))  # noqa: E731
    assert integrate.quad(dens, -np.inf, np.inf)[0] == pytest.approx(1.0, abs=1e-9)
    assert integrate.quad(lambda y: y * dens(y), -np.inf, np.inf)[0] == pytest.approx(1.0, abs=1e-8)  # mean = mu
    assert integrate.quad(lambda y: (y - 1) ** 2 * dens(y), -np.inf, np.inf)[0] == pytest.approx(4.0, abs=1e-7)
    for y in (-3.0, 0.7, 5.0):
        cdf = integrate.quad(dens, -np.inf, y)[0]
        assert stats.norm.cdf(shash_z(y, 1.0, 2.0, eps, delta)) == pytest.approx(cdf, abs=1e-9)
        assert shash_quantile(cdf, 1.0, 2.0, eps, delta) == pytest.approx(y, abs=1e-6)
    # epsilon = 0, delta = 1 is the normal
    y = np.linspace(-4, 4, 9)
    np.testing.assert_allclose(shash_log_density(y, 0.5, 1.5, 0.0, 1.0), stats.norm.logpdf(y, 0.5, 1.5), atol=1e-9)
    np.testing.assert_allclose(shash_z(y, 0.5, 1.5, 0.0, 1.0), (y - 0.5) / 1.5, atol=1e-9)


def test_family_scores_match_finite_differences_and_nothing_is_nan():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(40, 3)) * 2 + 1
    fam = ShashFamily(Y)
    etas = [np.full((1, 3), 0.3), np.full((1, 3), 0.5), np.array([[0.4, -0.7, 1.5]]), np.array([[-0.5, 0.3, 0.9]])]
    full = [np.broadcast_to(e, Y.shape) for e in etas]
    _, scores = fam._scores(full)
    for k in range(4):
        up, dn = list(full), list(full)
        up[k], dn[k] = full[k] + 1e-6, full[k] - 1e-6
        fd = (fam._scores(up)[0] - fam._scores(dn)[0]) / 2e-6
        np.testing.assert_allclose(scores[k], fd, atol=1e-6)
    # extreme but finite inputs and predictors: bounded parameters, no NaN anywhere
    big = ShashFamily(np.array([[1e12, -1e12, 0.0]]))
    ll, sc, fi, ob = big.evaluate([np.zeros((1, 3)), np.full((1, 3), -20.0), np.full((1, 3), 50.0),
                                   np.full((1, 3), -50.0)])
    assert not np.isnan(ll).any()
    assert all(np.isfinite(s).all() for s in sc)
    assert all(np.isfinite(w).all() for w in [*fi.values(), *ob.values()])
    z = shash_z(np.array([1e300, -1e300]), 0.0, 1.0, *shape_parameters(40.0, 40.0))
    assert not np.isnan(z).any()


@pytest.fixture(scope="module")
def shash_fit():
    df, _, _ = _draw("shash", 3000, 0)
    return _model(df, "SHASHb").fit(df)


def test_shash_process_is_recovered(shash_fit):
    model = shash_fit
    comp = model.likelihood_comparison()
    assert comp["epsilon"].iloc[0] == pytest.approx(EPS, abs=0.08)
    assert comp["delta"].iloc[0] == pytest.approx(DELTA, abs=0.07)
    assert not comp["normal_adequate"].iloc[0] and comp["p_value"].iloc[0] < 1e-10
    # centile curves against the true quantiles of the generating process
    ages = np.array([20.0, 45.0, 70.0])
    grid = pd.DataFrame({"age": ages, "site": "B"})
    curves = model.predict_centiles(grid, centiles=(5, 50, 95), predict_without=["site"]).to_numpy()
    mu, sd = 3 + np.sin(ages / 15), 0.2 + 0.004 * ages
    true = shash_quantile(np.array([0.05, 0.5, 0.95])[None, :], mu[:, None], sd[:, None], EPS, DELTA)
    np.testing.assert_allclose(curves, true, atol=0.06)


@pytest.mark.parametrize("kind", ["lognormal", "t4"])
def test_skewed_and_heavy_tailed_measures_get_calibrated_z(kind):
    train, _, _ = _draw(kind, 3000, 1)
    test, _, _ = _draw(kind, 4000, 2)
    normal = _model(train, "Normal").fit(train).evaluate(test)
    shash = _model(train, "SHASHb").fit(train).evaluate(test)
    z = shash.predictions["z-score"]
    assert abs(stats.skew(z)) < 0.2
    assert 0.04 <= np.mean(np.abs(z) > 1.959964) <= 0.06
    assert shash.evaluations["MSLL"] < normal.evaluations["MSLL"] - 0.03
    # the Normal's z are visibly off (what the SHASHb fixes)
    zn = normal.predictions["z-score"]
    assert abs(stats.skew(zn)) > 0.5 or stats.kurtosis(zn) > 1.0


def test_normal_data_lose_nothing_and_the_normal_is_found_adequate():
    train, _, _ = _draw("normal", 2000, 3)
    test, _, _ = _draw("normal", 3000, 4)
    normal = _model(train, "Normal").fit(train)
    shash = _model(train, "SHASHb").fit(train)
    assert shash.evaluate(test).evaluations["MSLL"] <= normal.evaluate(test).evaluations["MSLL"] + 0.01
    comp = shash.likelihood_comparison()
    assert bool(comp["normal_adequate"].iloc[0]) and comp["likelihood_used"].iloc[0] == "Normal"
    # the Normal was adequate, so the fit is the Normal one: identical predictions
    np.testing.assert_allclose(shash.evaluate(test).predictions["z-score"],
                               normal.evaluate(test).predictions["z-score"], atol=1e-9)


def test_harmonize_keeps_centiles_and_covariate_dependent_shape(shash_fit):
    df, _, _ = _draw("shash", 400, 5)
    model = shash_fit
    h = model.harmonize(df, ["site"])
    z_full = model.evaluate(df).predictions["z-score"]
    wo = model.predict(df, predict_without=["site"]).predictions
    np.testing.assert_allclose(shash_z(h, wo["mu_estimate"], wo["std_estimate"], wo["epsilon"], wo["delta"]),
                               z_full, atol=1e-8)
    # skew and tail can depend on covariates through the same effects as the mean
    train, _, _ = _draw("shash", 1500, 6)
    m = _model(train, "SHASHb", influencing_skew=["age"], influencing_tail=["site"]).fit(train)
    assert m.params.skew.shape[1] > 1 and m.params.tail.shape[1] == 5
    assert np.isfinite(m.evaluate(train).predictions["z-score"]).all()


def test_shape_effects_need_shash():
    df, _, _ = _draw("normal", 50, 0)
    with pytest.raises(InvalidInputError, match="likelihood='SHASHb'"):
        _model(df, "Normal", influencing_skew=["age"])
    with pytest.raises(InvalidInputError, match="likelihood"):
        _model(df, "Gamma")


def test_spectral_models_stay_gaussian():
    from spectranorm_neuro import snm
    from spectranorm_neuro.datasets import lattice_basis

    df, _, _ = _draw("normal", 50, 0)
    with pytest.raises(InvalidInputError, match="spectral models"):
        snm.SpectralNormativeModel.build_from_dataframe(
            eigenmode_basis=lattice_basis(n_side=5, n_modes=4), model_type="HBR", covariates_dataframe=df,
            numerical_covariates=["age"], likelihood="SHASHb")


@pytest.mark.slow
def test_pymc_advi_fits_the_same_shash_model_as_map():
    train, _, _ = _draw("shash", 400, 7)
    test, _, _ = _draw("shash", 200, 8)
    m_map = _model(train, "SHASHb").fit(train)
    m_advi = _model(train, "SHASHb").fit(train, inference="advi", random_state=0)
    a, b = m_map.predict(test).predictions, m_advi.predict(test).predictions
    assert np.abs(a["epsilon"] - b["epsilon"]).max() < 0.1
    assert np.abs(np.log(a["delta"] / b["delta"])).max() < 0.1
    z_map, z_advi = (m.evaluate(test).predictions["z-score"] for m in (m_map, m_advi))
    assert np.abs(z_map - z_advi).max() < 0.15
