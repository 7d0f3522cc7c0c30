"""Spectral models: known-truth recovery, closed-form query moments, persistence, bad input."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2

from spectranorm_neuro.engine.covariance import select_pairs
from spectranorm_neuro.engine.spectral import SpectralNormativeModel
from spectranorm_neuro.exceptions import (
    ChecksumError,
    FormatVersionError,
    InvalidInputError,
    OutputExistsError,
    ShapeMismatchError,
    UnsafeFormatError,
    UnseenCategoryError,
)

from ._synth import lattice_basis, lattice_cohort

N_SIDE = 20


@pytest.fixture(scope="module")
def setup():
    basis = lattice_basis(N_SIDE, 30)
    train, _, _, obs, _ = lattice_cohort(2000, 0, N_SIDE)
    test, mte, ste, obs_te, eps_te = lattice_cohort(500, 1, N_SIDE)
    model = SpectralNormativeModel.build_from_dataframe(
        eigenmode_basis=basis, model_type="HBR", covariates_dataframe=train, numerical_covariates=["age"],
        nonlinear_covariates=["age"], categorical_covariates=["site"], batch_covariates=["site"],
        influencing_mean=["age", "site"], influencing_variance=["age", "site"])
    Ctr, Cte = basis.encode(obs), basis.encode(obs_te)
    model.fit(Ctr, train, n_jobs=1)
    g = np.linspace(0, 1, N_SIDE)
    X, Y = np.meshgrid(g, g)
    centres = np.stack([X.ravel(), Y.ravel()], 1)
    w = np.exp(-((X.ravel()[None] - centres[:, :1]) ** 2 + (Y.ravel()[None] - centres[:, 1:]) ** 2) / (2 * 0.08**2))
    w /= w.sum(1, keepdims=True)
    Q = basis.encode_queries(w)
    return dict(basis=basis, model=model, train=train, test=test, Ctr=Ctr, Cte=Cte, Q=Q, mte=mte, ste=ste,
                eps_te=eps_te)


def test_repr_matches_seed(setup):
    assert repr(setup["model"]).startswith(
        "SpectralNormativeModel(eigenmode_basis=EigenmodeBasis(n_modes=30, n_features=400), "
        "base_model=DirectNormativeModel(spec=NormativeModelSpec(variable_of_interest='dummy_VOI', "
        "covariates=[CovariateSpec(name=site, cov_type=categorical, hierarchical=True, n_categories=6), "
        "CovariateSpec(name=age, cov_type=numerical, effect=spline)]")
    assert setup["model"].model_params["n_modes"] == 30
    assert setup["model"].model_params["n_pairs"] == 15
    assert setup["model"].model_params["converged_fraction"] == 1.0


def test_recovers_known_query_moments_and_z(setup):
    s = setup
    basis, Q = s["basis"], s["Q"]
    # truth for the encoded queries: the process is mean + eps * sd with one eps per subject
    true_mu = basis.encode(s["mte"]) @ Q
    true_sd = np.abs(basis.encode(s["ste"]) @ Q)
    ev = s["model"].evaluate(Q, s["Cte"], s["test"],
                             query_train_moments=np.stack([(s["Ctr"] @ Q).mean(0), (s["Ctr"] @ Q).std(0, ddof=1)]))
    mu, sd = ev.predictions["mu_estimate"], ev.predictions["std_estimate"]
    assert np.sqrt(np.mean(((mu - true_mu) / true_sd) ** 2)) < 0.12  # 2000 training subjects
    assert np.sqrt(np.mean((sd / true_sd - 1) ** 2)) < 0.1
    z_rmse = np.sqrt(np.mean((ev.predictions["z-score"] - s["eps_te"][:, None]) ** 2))
    assert z_rmse < 0.15
    assert np.all(ev.evaluations["MSLL"] < 0)
    assert abs(np.mean(ev.evaluations["z_mean"])) < 0.1
    assert np.allclose(ev.predictions["centiles"], 100 * __import__("scipy").stats.norm.cdf(ev.predictions["z-score"]))


def test_query_variance_equals_explicit_covariance(setup):
    s = setup
    sub = s["test"].iloc[:7]
    sp = s["model"].compute_spectral_predictions(sub)
    pred = s["model"].predict(s["Q"][:, :40], sub, spectral_predictions=sp).predictions
    for i in range(7):
        S = sp.covariance(i)
        assert np.allclose(pred["std_estimate"][i] ** 2, np.einsum("kq,kl,lq->q", s["Q"][:, :40], S, s["Q"][:, :40]))
        assert np.allclose(pred["mu_estimate"][i], sp.mu[i] @ s["Q"][:, :40])


def test_identity_queries_give_mode_level_predictions(setup):
    s = setup
    pred = s["model"].predict(np.eye(30), s["test"]).predictions
    sp = s["model"].compute_spectral_predictions(s["test"])
    assert np.allclose(pred["mu_estimate"], sp.mu) and np.allclose(pred["std_estimate"], sp.sd)


def test_harmonize_identity_queries_removes_site(setup):
    s = setup
    h = s["model"].harmonize(np.eye(30), s["test"], s["Cte"], ["site"])
    pop = s["model"].predict(np.eye(30), s["test"], predict_without=["site"]).predictions["mu_estimate"]
    sites = s["test"]["site"].to_numpy()
    raw = pd.Series(s["Cte"][:, 0] - pop[:, 0]).groupby(sites).mean()
    har = pd.Series(h[:, 0] - pop[:, 0]).groupby(sites).mean()
    assert raw.max() - raw.min() > 5 * (har.max() - har.min())  # remaining spread = sampling noise


def test_reduce_model_matches_truncated_predictions(setup):
    s = setup
    small = s["model"].reduce_model(12)
    a = small.predict(s["Q"][:12], s["test"]).predictions
    b = s["model"].predict(s["Q"], s["test"], n_modes=12).predictions
    assert np.allclose(a["std_estimate"], b["std_estimate"]) and np.allclose(a["mu_estimate"], b["mu_estimate"])
    assert np.all(small.covariance_params.pairs < 12)


def test_adapt_fit_new_site(setup):
    s = setup
    model = copy.deepcopy(s["model"])
    new_sites = {"A": 0.0, "B": 0.0, "C": 0.0, "D": 0.0, "E": 0.0, "F": 0.0, "G": 2.0}
    new, _, _, obs_new, _ = lattice_cohort(50, 5, N_SIDE, site_effects=new_sites, sites=("G",))
    held, _, _, obs_held, _ = lattice_cohort(300, 6, N_SIDE, site_effects=new_sites, sites=("G",))
    with pytest.raises(UnseenCategoryError, match="G"):
        model.predict(s["Q"], held)
    before = model.evaluate(s["Q"], s["basis"].encode(obs_held), held, predict_without=["site"])
    unchanged = model.predict(s["Q"], s["test"]).predictions["mu_estimate"]
    adapted = model.adapt_fit(s["basis"].encode(obs_new), new)
    assert np.array_equal(model.predict(s["Q"], s["test"]).predictions["mu_estimate"], unchanged)  # not mutated
    assert "adapted_levels" not in model.model_params
    model = adapted
    after = model.evaluate(s["Q"], s["basis"].encode(obs_held), held)
    assert np.mean(np.abs(before.evaluations["z_mean"])) > 1.0
    assert np.mean(np.abs(after.evaluations["z_mean"])) < 0.25
    assert model.model_params["adapted_levels"] == {"site": ["G"]}


def test_mahalanobis_is_sum_of_squares_without_pairs_and_calibrated(setup):
    s = setup
    m = copy.deepcopy(s["model"])
    m.fit(s["Ctr"], s["train"], covariance_structure=0, n_jobs=1)
    d2, p = m.mahalanobis(np.eye(30), s["Cte"], s["test"])
    sp = m.compute_spectral_predictions(s["test"])
    assert np.allclose(d2, (((s["Cte"] - sp.mu) / sp.sd) ** 2).sum(1))
    assert np.allclose(p, chi2.sf(d2, df=30))
    # simulate from the full model's own covariance: d2 ~ chi2(q)
    rng = np.random.default_rng(0)
    full = s["model"]
    sp = full.compute_spectral_predictions(s["test"].iloc[:200])
    sims = np.stack([rng.multivariate_normal(sp.mu[i], _nearest_pd(sp.covariance(i))) for i in range(200)])
    d2, _ = full.mahalanobis(s["Q"][:, ::50], sims, s["test"].iloc[:200])
    assert abs(d2.mean() / s["Q"][:, ::50].shape[1] - 1) < 0.25


def _nearest_pd(S):
    """Floor the eigenvalues of the correlation matrix of S at 1e-6, as ``mahalanobis`` does."""
    d = np.sqrt(np.diag(S))
    w, V = np.linalg.eigh(S / np.outer(d, d))
    return np.outer(d, d) * ((V * np.maximum(w, 1e-6)) @ V.T)


def test_select_pairs_variants():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 6))
    z[:, 4] = 0.9 * z[:, 1] + 0.1 * rng.normal(size=500)
    assert select_pairs(z, 1).tolist() == [[1, 4]]
    assert select_pairs(z, 0.5).shape == (3, 2)
    assert select_pairs(z, np.array([[3, 0]])).tolist() == [[0, 3]]
    with pytest.raises(InvalidInputError, match="covariance_structure"):
        select_pairs(z, np.array([[0, 9]]))


def test_save_load_round_trip_and_safety(setup, tmp_path):
    s = setup
    d = tmp_path / "model"
    s["model"].save_model(d)
    loaded = SpectralNormativeModel.load_model(d)
    a = s["model"].predict(s["Q"], s["test"]).predictions
    b = loaded.predict(s["Q"], s["test"]).predictions
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(OutputExistsError, match="not empty"):
        s["model"].save_model(d)
    # tampering is caught by the checksum
    spec = json.loads((d / "spec.json").read_text())
    spec["covariates"][1]["mean"] += 1.0
    (d / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ChecksumError, match=r"spec.json.*SHA-256"):
        SpectralNormativeModel.load_model(d)
    # a newer format is refused with both version numbers
    d2 = tmp_path / "model2"
    s["model"].save_model(d2)
    man = json.loads((d2 / "manifest.json").read_text())
    man["format_version"] = 99
    (d2 / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(FormatVersionError, match=r"format_version=99.*version 2"):
        SpectralNormativeModel.load_model(d2)
    # pickles are never loaded
    p = tmp_path / "model.pkl"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UnsafeFormatError, match="never unpickles"):
        SpectralNormativeModel.load_model(p)


def test_bad_inputs(setup):
    s = setup
    m = s["model"]
    with pytest.raises(ShapeMismatchError, match="encoded_query"):
        m.predict(s["Q"][:10], s["test"], n_modes=20)
    with pytest.raises(InvalidInputError, match=r"n_modes=40.*1\.\.30"):
        m.predict(s["Q"], s["test"], n_modes=40)
    bad = s["Cte"].copy()
    bad[2, 3] = np.nan
    with pytest.raises(InvalidInputError, match=r"spectral_coeff_test_data.*NaN"):
        m.evaluate(s["Q"], bad, s["test"])
    with pytest.raises(ShapeMismatchError, match="has 499 subjects"):
        m.evaluate(s["Q"], s["Cte"][:-1], s["test"])
    with pytest.raises(InvalidInputError, match=r"n_modes=50"):
        copy.deepcopy(m).fit(s["Ctr"], s["train"], n_modes=50)
    with pytest.raises(ShapeMismatchError, match="query_train_moments"):
        m.evaluate(s["Q"], s["Cte"], s["test"], query_train_moments=np.zeros((2, 3)))


def test_fit_is_deterministic_and_parallel_equals_serial(setup):
    s = setup
    import spectranorm_neuro.engine.spectral as spectral

    def fit(n_jobs, block=None):
        old = spectral.MODE_BLOCK
        spectral.MODE_BLOCK = block or old
        try:
            return copy.deepcopy(s["model"]).fit(s["Ctr"][:600], s["train"].iloc[:600], n_jobs=n_jobs)
        finally:
            spectral.MODE_BLOCK = old

    a = fit(1)
    serial_blocks, parallel_blocks = fit(1, block=8), fit(2, block=8)  # several blocks, through joblib
    # the same blocks serially or on two workers: bit-identical
    for k, va in serial_blocks.direct_params.__dict__.items():
        assert np.array_equal(va, getattr(parallel_blocks.direct_params, k)), k
    np.testing.assert_array_equal(serial_blocks.covariance_params.theta, parallel_blocks.covariance_params.theta)
    # other block widths: equal to rounding (BLAS kernels and their summation order depend on the batch width)
    for k, va in a.direct_params.__dict__.items():
        np.testing.assert_allclose(va, getattr(parallel_blocks.direct_params, k), rtol=1e-6, atol=1e-8, err_msg=k)
    assert np.array_equal(a.covariance_params.pairs, parallel_blocks.covariance_params.pairs)
    np.testing.assert_allclose(a.covariance_params.theta, parallel_blocks.covariance_params.theta,
                               rtol=1e-6, atol=1e-8)
    # and the same call twice gives bit-identical results
    c = fit(1)
    for k, va in a.direct_params.__dict__.items():
        assert np.array_equal(va, getattr(c.direct_params, k)), k


def test_identical_models_save_to_identical_bytes(setup, tmp_path):
    import time

    s = setup
    s["model"].save_model(tmp_path / "a")
    time.sleep(2.1)  # zip timestamps have a 2-second resolution
    s["model"].save_model(tmp_path / "b")
    for name in ("params.npz", "basis.npz", "spec.json", "model.json", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
