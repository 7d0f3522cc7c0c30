"""The reference's documented API, call by call, on ``spectranorm_neuro.snm``.

``reference_api.json`` lists every public class and function of SpectraNorm 0.1.4 (``snm`` and
``utils.*``) with its parameter names, read with ``inspect.signature`` from the installed reference
(names only). Behaviour is checked against closed forms and known truths.
"""

import inspect
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from joblib import delayed
from scipy import stats

import spectranorm_neuro as spectranorm
from spectranorm_neuro import snm
from spectranorm_neuro.datasets import lattice_basis, seed_lattice_cohort
from spectranorm_neuro.exceptions import NotFittedError

API = json.loads((Path(__file__).with_name("reference_api.json")).read_text())


def _module(name):
    obj = snm
    for part in name.split(".")[0 if name != "snm" else 1:]:
        obj = getattr(obj, part)
    return obj


def _accepts(func, names):
    sig = inspect.signature(func)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return []
    return [n for n in names if n not in sig.parameters and n not in ("self", "cls", "args", "kwargs")]


@pytest.mark.parametrize("module", sorted(API))
def test_every_reference_name_exists_with_its_parameters(module):
    mod = _module(module)
    for name, entry in API[module].items():
        obj = getattr(mod, name, None)
        assert obj is not None, f"{module}.{name} is missing"
        assert not _accepts(obj, entry["params"]), f"{module}.{name} lacks {_accepts(obj, entry['params'])}"
        for method, params in entry.get("methods", {}).items():
            assert hasattr(obj, method), f"{module}.{name}.{method} is missing"
            assert not _accepts(getattr(obj, method), params), f"{module}.{name}.{method}"


def test_import_as_spectranorm():
    assert spectranorm.snm is snm
    assert spectranorm.snm.SpectralNormativeModel is snm.SpectralNormativeModel


# ------------------------------------------------------------------------------ stats and metrics
def test_censored_log_likelihood_and_msll_as_the_reference():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4000, 3))
    mu, sd = np.zeros(3), np.ones(3)
    ll = snm.utils.stats.compute_log_likelihood(y, mu, sd)
    np.testing.assert_allclose(ll, stats.norm.logpdf(y))
    cll = snm.utils.stats.compute_censored_log_likelihood(y, mu, sd, censored_quantile=0.01)
    outside = np.abs(y) > stats.norm.ppf(0.99)
    assert 0.01 < outside.mean() < 0.03
    np.testing.assert_allclose(cll[outside], np.log(0.02))
    np.testing.assert_allclose(cll[~outside], ll[~outside])
    np.testing.assert_array_equal(snm.utils.stats.compute_censored_log_likelihood(y, mu, sd, 0), ll)
    base = snm.utils.stats.compute_log_likelihood(y, 0.5, 2.0)
    np.testing.assert_allclose(snm.utils.metrics.compute_msll(ll, base), -(ll.mean(0) - base.mean(0)))
    np.testing.assert_allclose(snm.utils.stats.compute_centiles_from_z_scores(np.array([0.0, 1.959963984540054])),
                               [50.0, 97.5])
    np.testing.assert_allclose(snm.utils.metrics.compute_bic(ll, 4, 4000), -2 * ll.mean(0) + 4 * np.log(4000))


def test_point_metrics_closed_forms():
    y = np.array([[1.0, 2.0], [2.0, 4.0], [4.0, 8.0]])
    p = y + np.array([[0.5, -1.0], [-0.5, 1.0], [0.5, -1.0]])
    m = snm.utils.metrics
    np.testing.assert_allclose(m.compute_mae(y, p), [0.5, 1.0])
    np.testing.assert_allclose(m.compute_mse(y, p), [0.25, 1.0])
    np.testing.assert_allclose(m.compute_rmse(y, p), [0.5, 1.0])
    np.testing.assert_allclose(m.compute_mape(y, p), 100 * np.mean(np.abs((y - p) / y), axis=0))
    np.testing.assert_allclose(m.compute_r2(y, p), 1 - ((y - p) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0))
    np.testing.assert_allclose(m.compute_expv(y, p), 1 - np.var(y - p, axis=0) / np.var(y, axis=0))


REFERENCE_EVALUATIONS = ["MAE", "MSE", "RMSE", "MAPE", "R-squared", "Explained Variance", "MSLL"]


def test_evaluate_predictions_returns_the_reference_metrics_only():
    # the univariate tutorial's cell 18 displays `.evaluations`: the reference's seven metrics, in
    # this order, each a 0-d array; `n_params` is accepted and changes nothing (the reference keeps it "for future use")
    rng = np.random.default_rng(5)
    y = 3.0 + rng.normal(size=500)
    mu, sd = np.full(500, 3.1), np.full(500, 0.9)

    def evaluations(**kwargs):
        pred = snm.NormativePredictions({"mu_estimate": mu, "std_estimate": sd})
        return pred.evaluate_predictions(variable_of_interest=y, train_mean=2.5, train_std=1.5, **kwargs).evaluations

    ev = evaluations(n_params=12)
    assert list(ev) == REFERENCE_EVALUATIONS
    assert all(isinstance(v, np.ndarray) and v.shape == () for v in ev.values())
    assert {k: float(v) for k, v in evaluations().items()} == {k: float(v) for k, v in ev.items()}
    np.testing.assert_allclose(ev["MAE"], np.mean(np.abs(y - 3.1)))
    np.testing.assert_allclose(ev["MAPE"], 100 * np.mean(np.abs((y - 3.1) / y)))
    model_ll = snm.utils.stats.compute_censored_log_likelihood(y, mu, sd)
    base_ll = snm.utils.stats.compute_censored_log_likelihood(y, 2.5, 1.5)
    np.testing.assert_allclose(ev["MSLL"], -(model_ll.mean() - base_ll.mean()))


def test_correlation_significance_with_fdr_holm_bonferroni():
    r = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.1], [0.0, 0.1, 1.0]])
    p = snm.utils.stats.compute_correlation_significance(r.copy(), 103, correction_method="bonferroni")
    raw = stats.norm.sf(np.arctanh(0.5) * 10)
    assert np.isnan(p[0, 0]) and p[0, 1] == p[1, 0]
    np.testing.assert_allclose(p[0, 1], min(3 * raw, 1.0))
    bh = snm.utils.stats.compute_correlation_significance(r.copy(), 103)
    holm = snm.utils.stats.compute_correlation_significance(r.copy(), 103, correction_method="holm")
    assert bh[0, 1] <= holm[0, 1] <= p[0, 1]
    np.testing.assert_allclose(bh[0, 2], 0.5)  # raw p = 0.5 is the largest of 3: unchanged by BH


# ------------------------------------------------------------------------------ specs
def test_spline_spec_and_covariate_spec():
    spline = snm.SplineSpec.create_spline_spec(pd.Series(np.linspace(0, 10, 50)))
    assert (spline.lower_bound, spline.upper_bound, spline.df, spline.degree) == (-1.0, 11.0, 5, 3)
    np.testing.assert_allclose(spline.knots, [5.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        snm.SplineSpec(0, 1, df=6, degree=3, knots=[0.6, 0.4])
    age = snm.CovariateSpec("age", "numerical", effect="spline", spline_spec=spline)
    bases = age.make_spline_bases(np.array([-1.0, 2.0, 5.0, 11.0]))
    assert bases.shape == (4, 5)
    np.testing.assert_allclose(bases.sum(axis=1), 1.0)  # B-splines are a partition of unity
    assert age.spline_spec == spline
    site = snm.CovariateSpec("site", "categorical", categories=np.array(["a", "b"]), hierarchical=True)
    np.testing.assert_array_equal(site.factorize_categories(np.array(["b", "a", "b"])), [1, 0, 1])
    site.extend_categories(np.array(["c"]))
    assert site.known_levels == ["a", "b", "c"]
    with pytest.raises(ValueError, match="already exist"):
        site.extend_categories(np.array(["a"]))
    spec = snm.NormativeModelSpec("y", [site, age], ["age", "site"], ["age"])
    assert spec.covariate_names == ["site", "age"]
    cov = snm.CovarianceModelSpec("y1", "y2", [site, age], ["age"])
    assert cov.to_native(spec).targets()["correlation"] == ["age"]


# ------------------------------------------------------------------------------ direct model
@pytest.fixture(scope="module")
def direct_data():
    rng = np.random.default_rng(3)
    n = 1200
    df = pd.DataFrame({"age": rng.uniform(10, 80, n), "site": rng.choice(["a", "b", "c"], n)})
    shift = df["site"].map({"a": -0.5, "b": 0.0, "c": 0.4}).to_numpy()
    df["thickness"] = np.sin(df["age"] / 20) + shift + rng.normal(size=n) * (0.2 + 0.005 * df["age"])
    return df


def _direct(df):
    return snm.DirectNormativeModel.from_dataframe(
        "HBR", df, "thickness", numerical_covariates=["age"], categorical_covariates=["site"],
        batch_covariates=["site"], nonlinear_covariates=["age"], influencing_mean=["age", "site"],
        influencing_variance=["age"])


def test_direct_model_reference_calls(direct_data, tmp_path):
    df = direct_data
    model = _direct(df)
    assert model.defaults["advi_iterations"] == 20_000 and not hasattr(model, "model_params")
    with pytest.raises(NotFittedError):
        model.predict(df)
    assert model.fit(df, save_directory=tmp_path, progress_bar=False) is model
    params = model.model_params
    assert params["sample_size"] == len(df) and params["mean_VOI"] == pytest.approx(df["thickness"].mean())
    pred = model.predict(df, extended=True)
    z = (df["thickness"] - pred.predictions["mu_estimate"]) / pred.predictions["std_estimate"]
    np.testing.assert_allclose(pred.predictions["z-score"], z)
    assert abs(np.mean(z)) < 0.05 and abs(np.std(z) - 1) < 0.05
    again = model.predict(df, model_params=params, predict_without=["site"])
    np.testing.assert_array_equal(again.predictions["mu_estimate"],
                                  model.predict(df, predict_without=["site"]).predictions["mu_estimate"])
    ev = model.evaluate(new_data=df)
    y = df["thickness"].to_numpy()
    baseline = snm.utils.stats.compute_censored_log_likelihood(y, y.mean(), y.std())
    np.testing.assert_allclose(ev.evaluations["MSLL"], -(ev.predictions["log-likelihood"].mean() - baseline.mean()))
    harmonized = model.harmonize(df, ["site"], model_params=params)
    assert harmonized.shape == (len(df),)
    site_means = pd.Series(harmonized - np.sin(df["age"] / 20)).groupby(df["site"]).mean()
    assert site_means.max() - site_means.min() < 0.1
    loaded = snm.DirectNormativeModel.load_model(tmp_path)  # fit(save_directory=) saved it
    np.testing.assert_array_equal(loaded.predict(df).predictions["std_estimate"],
                                  model.predict(df).predictions["std_estimate"])


def test_direct_adapt_fit_reference_order_is_in_place(direct_data):
    model = _direct(direct_data).fit(direct_data)
    rng = np.random.default_rng(9)
    new = pd.DataFrame({"age": rng.uniform(10, 80, 80), "site": "d"})
    new["thickness"] = np.sin(new["age"] / 20) + 1.0 + rng.normal(size=80) * (0.2 + 0.005 * new["age"])
    with pytest.raises(ValueError, match="new_category_names"):
        model.adapt_fit("site", np.array(["e"]), new)
    assert model.adapt_fit("site", np.array(["d"]), new, progress_bar=False) is model
    z = model.predict(new, extended=True).predictions["z-score"]
    assert abs(np.mean(z)) < 0.3


def test_covariance_model_recovers_a_known_correlation(direct_data):
    rng = np.random.default_rng(5)
    n = len(direct_data)
    df = direct_data.copy()
    e = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], size=n)
    df["v1"], df["v2"] = df["age"] / 50 + e[:, 0], -df["age"] / 40 + e[:, 1]
    kw = {"numerical_covariates": ["age"], "categorical_covariates": ["site"], "batch_covariates": ["site"],
          "influencing_mean": ["age"], "influencing_variance": ["age"]}
    m1 = snm.DirectNormativeModel.from_dataframe("HBR", df, "v1", **kw).fit(df)
    m2 = snm.DirectNormativeModel.from_dataframe("HBR", df, "v2", **kw).fit(df)
    df[["v1_mu_estimate", "v1_std_estimate"]] = m1.predict(df).to_array().T
    df[["v2_mu_estimate", "v2_std_estimate"]] = m2.predict(df).to_array().T
    cov = snm.CovarianceNormativeModel.from_direct_model(m1, "v1", "v2", influencing_covariance=["age"])
    cov.fit(df)
    rho = cov.predict(df).predictions["correlation_estimate"]
    assert abs(np.mean(rho) - 0.6) < 0.06


# ------------------------------------------------------------------------------ spectral model
@pytest.fixture(scope="module")
def spectral():
    basis = lattice_basis(n_side=20, n_modes=24)
    train, _, _, maps, _ = seed_lattice_cohort(500, seed=0, n_side=20)
    test, _, _, test_maps, _ = seed_lattice_cohort(60, seed=1, n_side=20)
    basis = snm.utils.gsp.EigenmodeBasis(basis.eigenvalues, basis.eigenvectors)
    model = snm.SpectralNormativeModel.build_from_dataframe(
        basis, "HBR", train, numerical_covariates=["age"], categorical_covariates=["site"],
        batch_covariates=["site"], nonlinear_covariates=["age"], influencing_mean=["age", "site"],
        influencing_variance=["age", "site"])
    model.fit(basis.encode(maps), train, n_jobs=1)
    return {"basis": basis, "model": model, "train": train, "test": test, "C": basis.encode(test_maps),
            "Q": basis.encode(np.eye(400)).T}


def test_spectral_predictions_dict_round_trip(spectral):
    s = spectral
    model = s["model"]
    sp = model.compute_spectral_predictions(s["test"], n_jobs=1)
    assert isinstance(sp, dict) and set(sp) == {"eigenmode_mu_estimates", "eigenmode_std_estimates",
                                                "rho_estimates"}
    assert sp["eigenmode_mu_estimates"].shape == (60, 24)
    assert sp["rho_estimates"].shape == (60, len(model.model_params["sparse_covariance_structure"]))
    direct = model.predict(s["Q"], test_covariates=s["test"])
    via = model.predict(s["Q"], spectral_predictions=sp, model_params=model.model_params)
    np.testing.assert_allclose(via.predictions["std_estimate"], direct.predictions["std_estimate"])
    ext = model.predict(s["Q"], test_covariates=s["test"], extended=True, spectral_coeff_test_data=s["C"])
    np.testing.assert_allclose(ext.predictions["variable_of_interest"], s["C"] @ s["Q"])
    with pytest.raises(ValueError, match="spectral_coeff_test_data"):
        model.predict(s["Q"], test_covariates=s["test"], extended=True)
    few = model.compute_spectral_predictions(s["test"], n_modes=10)
    assert few["eigenmode_std_estimates"].shape == (60, 10)
    ev = model.evaluate(s["Q"], s["C"], spectral_predictions=sp)
    assert ev.evaluations["MSLL"].shape == (400,) and np.median(ev.evaluations["MSLL"]) < 0


def test_spectral_harmonize_keyword_and_engine_orders(spectral, caplog):
    s = spectral
    model = s["model"]
    a = model.harmonize(s["Q"], s["C"], covariates_to_harmonize=["site"], covariates_dataframe=s["test"])
    b = model.harmonize(s["Q"], s["test"], s["C"], ["site"])  # the engine's order, still accepted
    np.testing.assert_array_equal(a, b)
    full = model.compute_spectral_predictions(s["test"])
    part = model.compute_spectral_predictions(s["test"], predict_without=["site"])
    c = model.harmonize(s["Q"], s["C"], spectral_predictions_full=full, spectral_predictions_partial=part)
    np.testing.assert_allclose(a, c)
    with caplog.at_level(logging.INFO, logger="spectranorm_neuro"):
        model.evaluate(s["Q"], s["C"], test_covariates=s["test"])
    assert "Query moments not provided" in caplog.text


def test_spectral_fit_options_reduce_and_load(spectral, tmp_path):
    s = spectral
    model = snm.SpectralNormativeModel.build_from_dataframe(
        s["basis"], "BLR", s["train"], numerical_covariates=["age"], categorical_covariates=["site"],
        influencing_mean=["age", "site"], influencing_variance=["age"])
    C = s["basis"].encode(np.zeros((1, 400)))  # shape check only
    assert C.shape == (1, 24)
    train_C = s["model"].eigenmode_basis.encode(
        s["model"].eigenmode_basis.decode(np.random.default_rng(0).normal(size=(500, 24))))
    model.fit(train_C, s["train"], n_modes=12, n_jobs=1, save_directory=tmp_path / "m", save_separate=True,
              progress_bar=False)
    assert model.model_params["n_modes"] == 12
    loaded = snm.SpectralNormativeModel.load_model(tmp_path / "m", mmap_mode="r")
    assert isinstance(loaded.eigenmode_basis, snm.utils.gsp.EigenmodeBasis)
    small = model.reduce_model(6)
    assert small is not model and small.model_params["n_modes"] == 6 and model.model_params["n_modes"] == 12
    assert model.eigenmode_basis.n_modes == 24  # the engine never shrinks a basis in place
    same = model.reduce_model(6, inplace=True)
    assert same is model and model.model_params["n_modes"] == 6


def test_spectral_adapt_fit_reference_order_in_place(spectral):
    import copy

    s = spectral
    model = copy.deepcopy(s["model"])
    new, _, _, maps, _ = seed_lattice_cohort(60, seed=4, n_side=20)
    new = new.assign(site="Z")
    before = model.compute_spectral_predictions(s["test"])
    assert model.adapt_fit("site", np.array(["Z"]), s["basis"].encode(maps), new) is model
    assert "Z" in model.spec.covariate("site").known_levels
    after = model.compute_spectral_predictions(s["test"])
    np.testing.assert_allclose(after["eigenmode_mu_estimates"], before["eigenmode_mu_estimates"])


def test_stepwise_fit_equals_fit(spectral):
    s = spectral
    base = snm.SpectralNormativeModel.build_from_dataframe(
        s["basis"], "HBR", s["train"], numerical_covariates=["age"], categorical_covariates=["site"],
        batch_covariates=["site"], nonlinear_covariates=["age"], influencing_mean=["age", "site"],
        influencing_variance=["age", "site"])
    _, _, _, maps, _ = seed_lattice_cohort(500, seed=0, n_side=20)
    C = s["basis"].encode(maps)
    base.fit_all_direct(C, s["train"], n_jobs=1)
    pairs = s["model"].model_params["sparse_covariance_structure"]
    base.sparse_covariance_structure = np.asarray(pairs)
    base.fit_all_covariance(C, s["train"])
    np.testing.assert_allclose(base.direct_params.beta, s["model"].direct_params.beta)
    np.testing.assert_allclose(base.covariance_params.theta, s["model"].covariance_params.theta, atol=1e-8)
    z = np.random.default_rng(1).normal(size=(300, 5))
    z[:, 3] = z[:, 0] + 0.1 * z[:, 3]
    np.testing.assert_array_equal(base.identify_sparse_covariance_structure(z, 0.2), [[0, 3]])
    one = base.fit_single_direct(C[:, 0], s["train"])
    np.testing.assert_allclose(one["params"].beta[0], s["model"].direct_params.beta[0], rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------ utils
def test_general_utils(tmp_path):
    g = snm.utils.general
    target = g.ensure_dir(tmp_path / "a" / "b" / "file.txt")
    assert target.parent.is_dir()
    sub = g.prepare_save_directory(tmp_path, "saved_model")
    (sub / "x").write_text("1")
    with pytest.raises(ValueError, match="not empty"):
        g.prepare_save_directory(tmp_path, "saved_model")
    assert g.validate_load_directory(tmp_path, "saved_model") == sub
    with pytest.raises(FileNotFoundError):
        g.validate_load_directory(tmp_path, "missing")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['b'\]"):
        g.validate_dataframe(pd.DataFrame({"a": [1]}), ["a", "b"])
    with pytest.raises(TypeError):
        g.validate_dataframe({"a": [1]}, ["a"])
    assert isinstance(g.report_time(), str) and g.report_time(relative_to=0, absolute=True) > 1e9
    logger = g.get_logger("spectranorm_neuro.test")
    assert logger is logging.getLogger("spectranorm_neuro.test")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert g.ReportTimeFormatter("%(report_time)s %(message)s").format(record).endswith(" hello")


def test_parallel_tqdm_runs_tasks_in_order():
    out = snm.utils.parallel.ParallelTqdm(n_jobs=2, total_tasks=5, disable_progressbar=True)(
        delayed(pow)(i, 2) for i in range(5))
    assert out == [0, 1, 4, 9, 16]


def test_nitools_mesh_measures_and_templates(monkeypatch, tmp_path):
    from .test_graphs_mesh import icosphere

    nt = snm.utils.nitools
    v, f = icosphere(2)
    assert nt.get_euler_number(v, f) == 2
    areas = nt.compute_vertex_areas(v, f)
    tri = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    np.testing.assert_allclose(areas.sum(), tri.sum())
    ident = nt.compute_barycentric_transformation(v, f, v).tocsr()
    np.testing.assert_allclose(ident @ np.arange(len(v), dtype=float), np.arange(len(v)), atol=1e-8)
    adap = nt.compute_adaptive_area_barycentric_transformation(v, f, areas, v, f, areas)
    np.testing.assert_allclose(np.asarray(adap.sum(axis=1)).ravel(), 1.0)
    monkeypatch.setenv(nt.TEMPLATES_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"SPECTRANORM_TEMPLATES.*ships none"):
        nt.get_fslr_surface_indices_from_cifti()


def test_predictions_tables_and_the_reference_save_layout(spectral, tmp_path):
    s = spectral
    pred = s["model"].evaluate(s["Q"][:, :3], s["C"], test_covariates=s["test"], query_train_moments=np.ones((2, 3)))
    wide = pred.to_dataframe()
    assert {"mu_estimate_1", "z-score_3", "centiles_2"} <= set(wide.columns) and len(wide) == 60
    assert list(pred.to_dataframe("evaluations").index) == [0, 1, 2]  # the engine's call still works
    assert pred.to_array(["mu_estimate", "std_estimate"]).shape == (2, 60, 3)
    s["model"].save_model(tmp_path / "run" / "spectral_normative_model")  # as the reference lays it out
    loaded = snm.SpectralNormativeModel.load_model(tmp_path / "run")
    np.testing.assert_array_equal(loaded.predict(s["Q"], s["test"]).predictions["mu_estimate"],
                                  s["model"].predict(s["Q"], s["test"]).predictions["mu_estimate"])
