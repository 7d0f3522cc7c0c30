"""Low-rank cross-mode correlation, the residual part of maps, and exact map scoring (issue #13)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from spectranorm_neuro.datasets import lattice_basis
from spectranorm_neuro.engine.lowrank import FactorParams, choose_rank, factor_variance, fit_factor, heldout_loglik
from spectranorm_neuro.engine.spectral import SpectralNormativeModel, SpectralPredictions
from spectranorm_neuro.exceptions import IncompatibleModelError, InvalidInputError


def _lowrank_draw(rng, n, K, rank):
    L = rng.normal(size=(K, rank)) * 0.5
    scale = np.sqrt(np.sum(L**2, axis=1) + rng.uniform(0.3, 1.0, K))
    L = L / scale[:, None]
    u = 1.0 - np.sum(L**2, axis=1)
    z = rng.normal(size=(n, rank)) @ L.T + rng.normal(size=(n, K)) * np.sqrt(u)
    return z, FactorParams(L, u)


def test_factor_rank_and_correlation_recovered():
    rng = np.random.default_rng(0)
    z, truth = _lowrank_draw(rng, 6000, 30, 3)
    rank = choose_rank(z)[0]
    assert rank == 3
    fit = fit_factor(z)
    assert fit.rank == 3
    np.testing.assert_allclose(np.diag(fit.correlation()), 1.0, atol=1e-12)
    assert np.max(np.abs(fit.correlation() - truth.correlation())) < 0.06
    # held-out likelihood: the true model beats a diagonal one on new draws
    z_new = _lowrank_draw(np.random.default_rng(0), 2000, 30, 3)[0]
    assert heldout_loglik(fit, z_new) > heldout_loglik(FactorParams(np.zeros((30, 0)), np.ones(30)), z_new) + 1.0


def test_factor_variance_matches_explicit_quadratic_form():
    rng = np.random.default_rng(1)
    K, n, q = 12, 5, 7
    _, params = _lowrank_draw(rng, 10, K, 4)
    sd = rng.uniform(0.5, 2.0, (n, K))
    Q = rng.normal(size=(K, q))
    R = params.correlation()
    expected = np.einsum("kq,nk,kl,nl,lq->nq", Q, sd, R, sd, Q)
    np.testing.assert_allclose(factor_variance(sd, Q, params), expected, rtol=1e-10)


def test_query_moments_with_factor_and_pairs_equal_full_covariance():
    rng = np.random.default_rng(2)
    K, n, q = 10, 4, 6
    _, params = _lowrank_draw(rng, 10, K, 2)
    pairs = np.array([[0, 3], [2, 7]])
    rho = rng.uniform(-0.3, 0.3, (n, 2))
    sp = SpectralPredictions(rng.normal(size=(n, K)), rng.uniform(0.5, 2, (n, K)), rho, pairs, params)
    Q = rng.normal(size=(K, q))
    sd = sp.query_moments(Q)[1]
    for i in range(n):
        C = sp.covariance(i)
        assert C[0, 3] == pytest.approx(rho[i, 0] * sp.sd[i, 0] * sp.sd[i, 3])
        np.testing.assert_allclose(sd[i] ** 2, np.einsum("kq,kl,lq->q", Q, C, Q), rtol=1e-10)
    np.testing.assert_allclose(sp.truncate(5).query_moments(Q[:5])[1] ** 2,
                               np.stack([np.einsum("kq,kl,lq->q", Q[:5], sp.covariance(i)[:5, :5], Q[:5])
                                         for i in range(n)]), rtol=1e-10)


# ---------------------------------------------------------------------------------------------- maps
N_SIDE, K = 14, 20


class _Truth:
    """Maps on a lattice: mean and sd known per feature, smooth (in the modes) plus feature-level noise."""

    def __init__(self, basis, seed=0):
        rng = np.random.default_rng([seed, 3])
        V = basis.n_features
        psi = np.asarray(basis.eigenvectors)
        self.psi = psi
        self.pattern = np.linspace(0.0, 1.0, V)
        self.site = {"A": 0.0, "B": 0.3 * rng.normal(size=V), "C": 0.3 * rng.normal(size=V)}
        self.a_smooth = 0.4
        self.a_white = 0.3 + 0.5 * rng.uniform(size=V)

    def mean(self, cov):
        age = cov["age"].to_numpy() - 50.0
        off = np.stack([np.broadcast_to(self.site[s], self.pattern.shape) for s in cov["site"]])
        return 2.0 + np.outer(0.02 * age, self.pattern) + off

    def gain(self, cov):
        return np.exp(0.01 * (cov["age"].to_numpy() - 50.0))

    def sd(self, cov):
        smooth_var = self.a_smooth**2 * np.sum(self.psi[:, :5] ** 2, axis=1)
        return self.gain(cov)[:, None] * np.sqrt(smooth_var + self.a_white**2)

    def draw(self, cov, rng):
        n = len(cov)
        smooth = self.a_smooth * rng.normal(size=(n, 5)) @ self.psi[:, :5].T
        white = rng.normal(size=(n, self.psi.shape[0])) * self.a_white
        return self.mean(cov) + self.gain(cov)[:, None] * (smooth + white)


def _cov(rng, n, sites=("A", "B", "C")):
    return pd.DataFrame({"age": rng.uniform(20, 80, n), "site": rng.choice(list(sites), n)},
                        index=pd.Index([f"s{i}" for i in range(n)]))


@pytest.fixture(scope="module")
def fitted():
    basis = lattice_basis(N_SIDE, K)
    truth = _Truth(basis)
    rng = np.random.default_rng(5)
    train = _cov(rng, 800)
    Y = truth.draw(train, rng)
    model = SpectralNormativeModel.build_from_dataframe(
        basis, "HBR", train, numerical_covariates=["age"], categorical_covariates=["site"],
        batch_covariates=["site"], influencing_mean=["age", "site"], influencing_variance=["age", "site"])
    model.fit(basis.encode(Y), train, covariance_structure="lowrank", maps=Y, n_jobs=1, progress=False)
    test = _cov(rng, 300)
    Yt = truth.draw(test, rng)
    return basis, truth, model, test, Yt


def test_exact_vertex_z_close_to_true_z_and_better_than_projected(fitted):
    basis, truth, model, test, Yt = fitted
    assert model.residual_params is not None and model.residual_params.n_features == basis.n_features
    z_true = (Yt - truth.mean(test)) / truth.sd(test)
    exact = model.evaluate_maps(Yt, test).predictions
    projected = model.evaluate_maps(Yt, test, score="projected").predictions
    rmse = np.sqrt(np.mean((exact["z-score"] - z_true) ** 2))
    assert rmse < 0.1
    assert np.sqrt(np.mean((projected["z-score"] - z_true) ** 2)) > 3 * rmse
    ratio = np.median(exact["std_estimate"] / truth.sd(test), axis=0)
    assert 0.9 < np.percentile(ratio, 5) and np.percentile(ratio, 95) < 1.1
    # projected scoring is the seed API on coefficients
    C = basis.encode(Yt)
    seed = model.evaluate(basis.eigenvectors.T, C, test, query_train_moments=np.ones((2, basis.n_features)))
    np.testing.assert_allclose(projected["z-score"], seed.predictions["z-score"], rtol=1e-8, atol=1e-10)


def test_exact_query_scores_match_closed_form(fitted):
    basis, _, model, test, Yt = fitted
    W = sparse.random(7, basis.n_features, density=0.1, random_state=3, format="csr")
    pred = model.evaluate_maps(Yt[:20], test.iloc[:20], queries=W).predictions
    sp = model.compute_spectral_predictions(test.iloc[:20])
    Q = basis.encode_queries(W)
    m_s, s_s = sp.query_moments(Q)
    from spectranorm_neuro.engine.residual import predict_residual

    r_mu, r_var = predict_residual(model.spec, model.residual_params, test.iloc[:20])
    mean = m_s + r_mu @ W.T.toarray()
    sd = np.sqrt(s_s**2 + r_var @ (W.T.toarray() ** 2))
    np.testing.assert_allclose(pred["mu_estimate"], mean, rtol=1e-10)
    np.testing.assert_allclose(pred["z-score"], (Yt[:20] @ W.T.toarray() - mean) / sd, rtol=1e-8)
    # streamed blocks equal the whole
    blocks = list(model.iter_evaluate_maps(Yt[:20], test.iloc[:20], queries=W, subject_block=6, query_block=3))
    assert len(blocks) == 4 * 3
    rows, cols, block = blocks[5]
    np.testing.assert_allclose(block.predictions["z-score"], pred["z-score"][rows, cols], rtol=1e-12)


def test_save_load_roundtrip_and_old_format(fitted, tmp_path, caplog):
    _, _, model, test, Yt = fitted
    model.save_model(tmp_path / "m")
    back = SpectralNormativeModel.load_model(tmp_path / "m")
    assert back.factor_params.rank == model.factor_params.rank
    np.testing.assert_array_equal(back.evaluate_maps(Yt[:10], test.iloc[:10]).predictions["z-score"],
                                  model.evaluate_maps(Yt[:10], test.iloc[:10]).predictions["z-score"])
    # a format-1 model: no factor arrays, no residual file
    import copy

    old = copy.copy(model)
    old.factor_params, old.residual_params = None, None
    old.save_model(tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "manifest.json").read_text())
    manifest["format_version"] = 1
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest))
    loaded = SpectralNormativeModel.load_model(tmp_path / "old")
    assert loaded.residual_params is None and loaded.factor_params is None
    with caplog.at_level("WARNING", logger="spectranorm_neuro"):
        z = loaded.evaluate_maps(Yt[:10], test.iloc[:10]).predictions["z-score"]
    assert "no residual part" in caplog.text
    np.testing.assert_allclose(z, loaded.evaluate_maps(Yt[:10], test.iloc[:10], score="projected")
                               .predictions["z-score"])
    with pytest.raises(IncompatibleModelError, match="fit_residual"):
        loaded.evaluate_maps(Yt[:10], test.iloc[:10], score="exact")


def test_maps_with_nan_are_named(fitted):
    _, _, model, test, Yt = fitted
    bad = Yt[:5].copy()
    bad[3, :4] = np.nan
    with pytest.raises(InvalidInputError, match=r"row 3.*4 NaN/inf"):
        model.evaluate_maps(bad, test.iloc[:5], score="exact")
    with pytest.raises(InvalidInputError, match=r"sub-x"):
        list(model.iter_evaluate_maps(bad, test.iloc[:5], names=[f"sub-{c}" for c in "abcxe"]))


def test_adapt_with_residual_learns_new_site(fitted):
    basis, truth, model, _, _ = fitted
    import copy

    m = copy.deepcopy(model)
    rng = np.random.default_rng(11)
    truth.site["D"] = 0.3 * rng.normal(size=basis.n_features)
    new = _cov(rng, 150, sites=("D",))
    Yn = truth.draw(new, rng)
    with pytest.raises(Exception, match="maps"):
        copy.deepcopy(model).adapt_fit(basis.encode(Yn), new)
    m = m.adapt_fit(basis.encode(Yn), new, maps=Yn)
    test_new = _cov(rng, 200, sites=("D",))
    Yt_new = truth.draw(test_new, rng)
    z = m.evaluate_maps(Yt_new, test_new).predictions["z-score"]
    z_true = (Yt_new - truth.mean(test_new)) / truth.sd(test_new)
    assert np.sqrt(np.mean((z - z_true) ** 2)) < 0.2


def test_map_store_reads_blocks_and_nan_names_the_file(tmp_path):
    from spectranorm_neuro.engine.residual import encode_maps
    from spectranorm_neuro.io import MapStore

    basis = lattice_basis(4, 5)
    maps = np.random.default_rng(0).normal(size=(6, 16)).astype(np.float32)
    np.save(tmp_path / "m.npy", maps)
    store = MapStore(tmp_path / "m.npy", names=[f"sub-{i}.gii" for i in range(6)])
    np.testing.assert_array_equal(store[1:3], maps[1:3].astype(np.float64))
    np.testing.assert_array_equal(store[:, 2:5], maps[:, 2:5].astype(np.float64))
    sub = store.subset(np.array([True, False, True, False, False, True]))
    assert sub.shape == (3, 16) and list(sub.names) == ["sub-0.gii", "sub-2.gii", "sub-5.gii"]
    np.testing.assert_array_equal(sub[:, :3], maps[[0, 2, 5], :3].astype(np.float64))
    exact = basis.encode(maps.astype(np.float64), n_modes=5)
    np.testing.assert_allclose(encode_maps(basis, store, 5), exact)
    # coefficients stored with the maps are used when a sample of the maps agrees with them ...
    stored = exact + 1e-9
    reused = MapStore(tmp_path / "m.npy", coefficients=np.hstack([stored, np.ones((6, 2))]))
    np.testing.assert_array_equal(encode_maps(basis, reused, 5), stored)
    # ... and ignored when they are those of another basis
    other = MapStore(tmp_path / "m.npy", coefficients=lattice_basis(4, 7).encode(maps.astype(np.float64))[:, ::-1])
    np.testing.assert_allclose(encode_maps(basis, other, 5), exact)
    maps[4, :3] = np.inf
    np.save(tmp_path / "m.npy", maps)
    with pytest.raises(InvalidInputError, match=r"sub-4\.gii.*3 NaN/inf"):
        encode_maps(basis, MapStore(tmp_path / "m.npy", names=store.names), 5)


def test_mahalanobis_of_maps_is_chi2_in_controls(fitted):
    basis, _, model, test, Yt = fitted
    W = sparse.csr_matrix(np.eye(basis.n_features)[[3, 40, 41, 100, 150]])
    d2, p = model.mahalanobis_maps(Yt, test, W)
    assert d2.shape == (len(test),) and np.all(d2 > 0)
    assert abs(np.mean(d2) - 5.0) < 0.8  # chi2(5) has mean 5 (sd of the mean over 300 subjects ~0.18)
    assert 0.005 < np.mean(p < 0.05) < 0.1  # the per-query calibration factors do not enter d2


def test_local_score_removes_the_subjects_coarse_modes(fitted):
    basis, truth, model, test, Yt = fitted
    W = sparse.random(6, basis.n_features, density=0.2, random_state=4, format="csr")
    pred = model.evaluate_maps(Yt[:15], test.iloc[:15], queries=W, score="local", local_modes=5).predictions
    # closed form: w'y - q_A' c_A against the moments of the modes B (q with the coarse modes zeroed) + residual
    sp = model.compute_spectral_predictions(test.iloc[:15])
    Q = basis.encode_queries(W)
    C = basis.encode(Yt[:15])
    QB = Q.copy()
    QB[:5] = 0.0
    m_s, s_s = sp.query_moments(QB)
    from spectranorm_neuro.engine.residual import predict_residual

    r_mu, r_var = predict_residual(model.spec, model.residual_params, test.iloc[:15])
    Wd = W.T.toarray()
    mean = m_s + r_mu @ Wd
    sd = np.sqrt(s_s**2 + r_var @ Wd**2)
    obs = Yt[:15] @ Wd - C[:, :5] @ Q[:5]
    np.testing.assert_allclose(pred["z-score"], (obs - mean) / sd, rtol=1e-8)
    # the truth's smooth noise lives in the first 5 modes: the local vertex z no longer sees it, so a
    # deviation spread over those modes vanishes from the local z and stays in the exact z
    shifted = Yt[:15] + 3.0 * truth.gain(test.iloc[:15])[:, None] * truth.psi[:, 1] / np.abs(truth.psi[:, 1]).max()
    local = model.evaluate_maps(shifted, test.iloc[:15], score="local", local_modes=5).predictions["z-score"]
    base = model.evaluate_maps(Yt[:15], test.iloc[:15], score="local", local_modes=5).predictions["z-score"]
    exact = model.evaluate_maps(shifted, test.iloc[:15]).predictions["z-score"]
    np.testing.assert_allclose(local, base, atol=1e-8)
    assert np.max(np.abs(exact - model.evaluate_maps(Yt[:15], test.iloc[:15]).predictions["z-score"])) > 1.0


def test_local_score_declared_at_fit_is_calibrated_and_saved(fitted, tmp_path):
    import copy

    _, _, model, test, Yt = fitted
    with pytest.raises(InvalidInputError, match="local_modes"):
        model.evaluate_maps(Yt[:5], test.iloc[:5], score="local")
    with pytest.raises(InvalidInputError, match="below the model's"):
        model.evaluate_maps(Yt[:5], test.iloc[:5], score="local", local_modes=K)
    m = copy.deepcopy(model)
    m.fit_residual(Yt, test, local_modes=5, calibration_subjects=300)
    assert m.model_params["residual"]["local_modes"] == 5
    assert "vertex_local5" in m.residual_params.calibration
    z = m.evaluate_maps(Yt, test, score="local").predictions["z-score"]
    # calibrated for new subjects (leave-one-out): the training maps' own z are smaller by ~2 dof / n
    assert 0.93 < np.mean(z**2) < 0.99
    from spectranorm_neuro.engine.maps import calibrate_maps

    m.residual_params.calibration.update(calibrate_maps(m, Yt, test, local_modes=5, shrink=False,
                                                        leave_one_out=False))
    z = m.evaluate_maps(Yt, test, score="local").predictions["z-score"]
    assert np.mean(z**2, axis=0) == pytest.approx(1.0, abs=1e-8)  # raw factors: exactly, at every vertex
    m.save_model(tmp_path / "m")
    back = SpectralNormativeModel.load_model(tmp_path / "m")
    np.testing.assert_allclose(back.evaluate_maps(Yt[:10], test.iloc[:10], score="local").predictions["z-score"],
                               z[:10], rtol=1e-12, atol=1e-12)


def test_leave_one_out_moments_predict_new_subjects_z():
    """Training rows' leave-one-out z^2 and exceedance match those of new subjects; in-sample ones do not."""
    from spectranorm_neuro.engine.direct import fit_direct, predict_direct
    from spectranorm_neuro.engine.maps import loo_moments
    from spectranorm_neuro.engine.specs import NormativeModelSpec

    rng = np.random.default_rng(4)
    M = 200
    offsets = rng.normal(size=(3, M)) * 0.3

    def draw(n):
        cov = _cov(rng, n)
        a = (cov["age"].to_numpy()[:, None] - 50.0) / 30.0
        site = cov["site"].map({"A": 0, "B": 1, "C": 2}).to_numpy()
        return cov, 1.0 - 0.3 * a**2 + offsets[site] + 0.2 * (1.0 + 0.3 * a) * rng.normal(size=(n, M))

    cov, Y = draw(150)
    spec = NormativeModelSpec.from_dataframe("HBR", cov, "y", ["age"], ["site"], ["site"], ["age"],
                                             influencing_mean=["age", "site"], influencing_variance=["age", "site"])
    params = fit_direct(spec, Y, cov)
    new_cov, Y_new = draw(4000)

    def z2(mu_sd, Y):
        return ((Y - mu_sd[0]) / mu_sd[1]) ** 2

    inside = z2(predict_direct(spec, params, cov, warn=False), Y)
    loo = z2(loo_moments(spec, params, Y, cov), Y)
    new = z2(predict_direct(spec, params, new_cov, warn=False), Y_new)
    assert np.mean(new) - np.mean(inside) > 0.08  # in-sample z are too small for new subjects
    assert np.mean(loo) == pytest.approx(np.mean(new), abs=0.03)
    assert np.mean(loo > 1.96**2) == pytest.approx(np.mean(new > 1.96**2), abs=0.004)
    assert np.mean(new > 1.96**2) - np.mean(inside > 1.96**2) > 0.008
    # the one-step moments are close to those of an actual refit without the row
    mu_loo, sd_loo = loo_moments(spec, params, Y[:2], cov.iloc[:2])
    mu_in, sd_in = predict_direct(spec, params, cov.iloc[:2], warn=False)
    for i in range(2):
        keep = np.arange(len(cov)) != i
        mu_out, sd_out = predict_direct(spec, fit_direct(spec, Y[keep], cov.iloc[keep]), cov.iloc[i:i + 1],
                                        warn=False)
        # errors measured at 0.08 (mean) and 0.12-0.15 (sd) of the in-sample moments' errors
        assert np.mean(np.abs(mu_loo[i] - mu_out[0])) < 0.25 * np.mean(np.abs(mu_in[i] - mu_out[0]))
        assert np.mean(np.abs(np.log(sd_loo[i] / sd_out[0]))) < 0.3 * np.mean(np.abs(np.log(sd_in[i] / sd_out[0])))


def test_shrunk_calibration_factors_are_closer_to_the_truth():
    from spectranorm_neuro.engine.maps import shrink_calibration

    basis = lattice_basis(30, 60)
    psi = np.asarray(basis.eigenvectors)
    rng = np.random.default_rng(8)
    true = np.exp(0.15 * psi[:, 1:6] @ rng.normal(size=5) / np.abs(psi[:, 1:6]).max())  # smooth factors
    errors = {}
    for n in (100, 400):
        z = rng.normal(size=(n, basis.n_features)) * np.sqrt(true)
        z2, z4 = np.sum(z**2, axis=0), np.sum(z**4, axis=0)
        shrunk = shrink_calibration(basis, 30, z2, z4, n)
        errors[n] = (np.sqrt(np.mean(np.log(shrunk / true) ** 2)), np.sqrt(np.mean(np.log(z2 / n / true) ** 2)))
        assert errors[n][0] < 0.5 * errors[n][1]
    assert errors[100][1] == pytest.approx(np.sqrt(2 / 100), rel=0.15)  # the raw factors' sampling error
    # factors with real vertex-level structure keep it (the shrinkage weight follows the data)
    rough = true * np.exp(0.3 * rng.normal(size=basis.n_features))
    z = rng.normal(size=(400, basis.n_features)) * np.sqrt(rough)
    shrunk = shrink_calibration(basis, 30, np.sum(z**2, axis=0), np.sum(z**4, axis=0), 400)
    assert np.corrcoef(np.log(shrunk), np.log(rough))[0, 1] > 0.9
