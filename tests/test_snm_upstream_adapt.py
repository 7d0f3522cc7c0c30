"""Converted reference models adapt to a new site (``adapt_fit``), checked against known truth.

The models are the reference-saved fixtures of data/upstream/ (see data/upstream/README.md); the new
sites' data are drawn from a known process, so the effects ``adapt_fit`` must learn are known.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro import snm
from spectranorm_neuro.exceptions import UnseenCategoryError
from spectranorm_neuro.snm._upstream import linear_predictor, read_upstream

DATA = Path(__file__).resolve().parents[1] / "data" / "upstream"
A_TRUE, B_TRUE = 0.8, 0.3  # the new site's mean and log-sd effects (standardized scale)


@pytest.fixture(scope="module")
def direct_data():
    """A reference direct model (mode 0 of the spectral fixture: age spline, hierarchical site on mean and sd)."""
    data = read_upstream(DATA / "spectral")
    return {"kind": "direct", "spec": {**data["spec"], "variable_of_interest": "y"}, "defaults": {},
            "model_params": data["model_params"]["direct_model_params"][0]}


def _new_site(data, n, seed, site="s9"):
    """Rows of a new site drawn from the model with the new site's effects A_TRUE, B_TRUE."""
    rng = np.random.default_rng(seed)
    cov = pd.DataFrame({"age": rng.uniform(10, 80, n), "site": site})
    spec, p = data["spec"], data["model_params"]
    means = p["posterior_means"]
    m = linear_predictor(spec, means, cov, spec["influencing_mean"], ("site",), "mean")
    v = linear_predictor(spec, means, cov, spec["influencing_variance"], ("site",), "variance")
    y_std = m + A_TRUE + np.exp(v + B_TRUE) * rng.standard_normal(n)
    return cov.assign(y=y_std * p["std_VOI"] + p["mean_VOI"])


def test_converted_direct_model_learns_the_new_sites_effects(direct_data, tmp_path):
    model = snm.DirectNormativeModel.from_upstream(direct_data)
    train, held_out = _new_site(direct_data, 400, 1), _new_site(direct_data, 400, 2)
    old = pd.DataFrame({"age": [20.0, 50.0, 70.0], "site": ["s1", "s2", "s3"]})
    before = model.predict(old).predictions
    with pytest.raises(UnseenCategoryError):
        model.predict(held_out)
    assert model.adapt_fit("site", np.array(["s9"]), train) is model  # in place, as the reference
    means = model.model_params["posterior_means"]
    sigma, vsigma = means["sigma_intercept_site"][0], means["variance_sigma_intercept_site"][0]
    a, b = means["intercept_offset_site"][-1] * sigma, means["variance_intercept_offset_site"][-1] * vsigma
    assert abs(a - A_TRUE) < 0.05 and abs(b - B_TRUE) < 0.1  # SEs 0.01, 0.035 (b shrunk by its prior sd 0.09)
    np.testing.assert_allclose(means["intercept_site"][-1], a)
    assert len(model.model_params["posterior_stds"]["intercept_offset_site"]) == 4
    after = model.predict(old).predictions
    for key in ("mu_estimate", "std_estimate"):  # the trained sites' norms are frozen
        np.testing.assert_array_equal(after[key], before[key])
    z = model.predict(held_out, extended=True).predictions["z-score"]
    assert abs(np.mean(z)) < 0.1 and abs(np.std(z) - 1) < 0.08
    model.save_model(tmp_path / "m")  # the adapted reference parameters save and load in the safe format
    again = snm.DirectNormativeModel.load_model(tmp_path / "m")
    np.testing.assert_allclose(again.predict(held_out).predictions["mu_estimate"],
                               model.predict(held_out).predictions["mu_estimate"])


def test_adaptation_input_errors_name_the_problem(direct_data):
    model = snm.DirectNormativeModel.from_upstream(direct_data)
    mixed = pd.concat([_new_site(direct_data, 10, 3), _new_site(direct_data, 10, 4, site="s1")])
    with pytest.raises(ValueError, match="not new levels"):
        model.adapt_fit("site", ["s9"], mixed)
    with pytest.raises(ValueError, match="already knows"):
        model.adapt_fit("site", ["s1"], _new_site(direct_data, 10, 3, site="s1"))
    with pytest.raises(ValueError, match="covariate_to_adapt"):
        model.adapt_fit("age", ["s9"], _new_site(direct_data, 10, 3))
    with pytest.raises(ValueError, match="do not occur"):
        model.adapt_fit("site", ["s9", "s10"], _new_site(direct_data, 10, 3))
    untouched = model.model_params["posterior_means"]["intercept_offset_site"]
    assert len(untouched) == 3  # a failed adaptation changes nothing
    model.adapt_fit(_new_site(direct_data, 50, 5))  # the engine's order: the new level is inferred
    assert len(model.model_params["posterior_means"]["intercept_offset_site"]) == 4


def _maps(n, seed, site, offset):
    """Covariates and (n, 64) maps from the fixture's process (data/upstream/make_fixtures.py)."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(10, 80, n)
    x = np.linspace(0, 1, 64)
    maps = np.sin(age / 20)[:, None] * x[None] + offset + rng.normal(0, 0.2 + 0.002 * age[:, None], (n, 64))
    return pd.DataFrame({"age": age, "site": site}), maps


def test_converted_spectral_model_adapts_to_a_new_site(tmp_path):
    out = snm.convert_upstream(DATA / "spectral", tmp_path / "converted")
    model = snm.SpectralNormativeModel.load_model(out)
    basis = model.eigenmode_basis
    queries = basis.encode(np.eye(64)).T  # every node; the basis is orthonormal (identity mass)

    def true_z(cov, maps, offset):  # the exact z of the maps' projection onto the 6 modes
        x = np.linspace(0, 1, 64)
        mean = np.sin(cov["age"].to_numpy() / 20)[:, None] * x[None] + offset
        sd = (0.2 + 0.002 * cov["age"].to_numpy())[:, None] * np.sqrt((queries ** 2).sum(axis=0))[None]
        return (basis.encode(maps) - basis.encode(mean)) @ queries / sd

    old_cov, _ = _maps(200, 11, "s1", 0.0)
    new_cov, new_maps = _maps(60, 12, "s4", 0.6)  # a new scanner: +0.6 everywhere
    test_cov, test_maps = _maps(200, 13, "s4", 0.6)
    truth = true_z(test_cov, test_maps, 0.6)
    unadapted = model.evaluate(queries, basis.encode(test_maps), test_covariates=test_cov,
                               predict_without=["site"]).predictions["z-score"]
    before = model.compute_spectral_predictions(old_cov)
    assert model.adapt_fit("site", np.array(["s4"]), basis.encode(new_maps), new_cov) is model
    z = model.evaluate(queries, basis.encode(test_maps), test_covariates=test_cov).predictions["z-score"]
    rmse = float(np.sqrt(np.mean((z - truth) ** 2)))
    assert np.mean(unadapted) > 3  # the new scanner's bias, before adaptation
    assert rmse < 0.4 and abs(np.mean(z)) < 0.1 and abs(np.std(z) - 1) < 0.1  # 0.28, 0.04, 0.97
    after = model.compute_spectral_predictions(old_cov)
    for key in before:  # the trained sites' parameters are frozen
        np.testing.assert_array_equal(after[key], before[key])
    assert model.model_params["adapted_levels"] == {"site": ["s4"]}
    model.save_model(tmp_path / "adapted")
    again = snm.SpectralNormativeModel.load_model(tmp_path / "adapted")
    np.testing.assert_allclose(again.compute_spectral_predictions(test_cov)["rho_estimates"],
                               model.compute_spectral_predictions(test_cov)["rho_estimates"])
