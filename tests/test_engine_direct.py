"""Direct (univariate) models and the batched solver: closed forms and known generative truths."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.engine.direct import DirectNormativeModel
from spectranorm_neuro.engine.effects import Design, effect_columns, new_level_mask
from spectranorm_neuro.engine.inference import CorrelationFamily, fit_laplace
from spectranorm_neuro.engine.specs import NormativeModelSpec
from spectranorm_neuro.exceptions import (
    ExtrapolationWarning,
    InvalidInputError,
    NotFittedError,
    UnseenCategoryError,
)

SITE_SHIFT = {"A": -0.8, "B": 0.0, "C": 0.5, "D": 1.1}


def true_mu(age):
    return np.sin(age / 15.0)


def true_sd(age):
    return 0.2 + 0.01 * age


def cohort(n, seed, sites=("A", "B", "C"), shift=SITE_SHIFT):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.uniform(10, 80, n), "site": rng.choice(list(sites), n)})
    s = df["site"].map(shift).to_numpy(dtype=float)
    df["y"] = true_mu(df["age"].to_numpy()) + s + rng.normal(size=n) * true_sd(df["age"].to_numpy())
    return df


def build(df, model_type="HBR", **kw):
    return DirectNormativeModel.from_dataframe(
        model_type, df, "y", numerical_covariates=["age"], categorical_covariates=["site"],
        batch_covariates=["site"], nonlinear_covariates=["age"], influencing_mean=["age", "site"],
        influencing_variance=["age"], **kw)


@pytest.fixture(scope="module")
def fitted():
    df = cohort(4000, 0)
    return build(df).fit(df), df


def test_recovers_heteroscedastic_spline_curve(fitted):
    model, _ = fitted
    ages = np.linspace(15, 75, 50)
    grid = pd.DataFrame({"age": ages, "site": "B"})
    pred = model.predict(grid).predictions
    # site B has zero shift; the learned B offset is relative to the pooled mean of A, B, C
    # so compare the curve shape (mean-centred) and the sd directly
    mu_err = (pred["mu_estimate"] - pred["mu_estimate"].mean()) - (true_mu(ages) - true_mu(ages).mean())
    assert np.abs(mu_err / true_sd(ages)).max() < 0.1  # within a tenth of an sd: z error < 0.1
    assert np.abs(pred["std_estimate"] / true_sd(ages) - 1).max() < 0.08


def test_site_offsets_and_population_level(fitted):
    model, _ = fitted
    grid = pd.DataFrame({"age": np.full(3, 40.0), "site": ["A", "B", "C"]})
    mu = model.predict(grid).predictions["mu_estimate"]
    assert np.allclose(np.diff(mu), np.diff([SITE_SHIFT[s] for s in "ABC"]), atol=0.05)
    pop = model.predict(grid[["age"]], predict_without=["site"]).predictions["mu_estimate"]
    assert np.allclose(pop, pop[0])
    # hierarchical offsets have mean ~0 => population level sits near the average site
    assert abs(pop[0] - mu.mean()) < 0.1


def test_harmonize_removes_site_shift_keeps_age_effect(fitted):
    model, _ = fitted
    test = cohort(3000, 1)
    h = model.harmonize(test, ["site"])
    resid = h - true_mu(test["age"].to_numpy())
    site_means = pd.Series(resid).groupby(test["site"].to_numpy()).mean()
    assert site_means.max() - site_means.min() < 0.1  # raw shifts span 1.3; sampling noise ~0.03
    raw_means = pd.Series(test["y"].to_numpy()).groupby(test["site"].to_numpy()).mean()
    assert raw_means.max() - raw_means.min() > 1.0
    slope = np.polyfit(true_mu(test["age"].to_numpy()), h, 1)[0]
    assert abs(slope - 1.0) < 0.05  # the age effect is kept at full size


def test_unseen_site_error_names_site_and_fixes(fitted):
    model, _ = fitted
    new = pd.DataFrame({"age": [30.0, 50.0], "site": ["D", "D"]})
    with pytest.raises(UnseenCategoryError, match=r"site=\['D'\].*adapt_fit.*predict_without.*marginalize"):
        model.predict(new)
    pop = model.predict(new, predict_without=["site"]).predictions
    marg = model.predict(new, unseen_batch="marginalize").predictions
    assert np.allclose(marg["mu_estimate"], pop["mu_estimate"])
    tau2 = model.params.tau2_mean[0, 0] * model.params.y_std[0] ** 2
    assert np.allclose(marg["std_estimate"] ** 2, pop["std_estimate"] ** 2 + tau2, rtol=1e-3)


def test_adapt_fit_recovers_new_site_offset(fitted):
    model, _ = fitted
    import copy

    adapted = copy.deepcopy(model)
    new = cohort(50, 2, sites=("D",))
    before = adapted.params.beta.copy()
    adapted = adapted.adapt_fit(new)
    new_cols = new_level_mask(Design(adapted.spec, "mean"), {"site": ["D"]})
    assert new_cols.sum() == 1
    assert np.array_equal(adapted.params.beta[:, ~new_cols], before)  # everything else frozen
    grid = pd.DataFrame({"age": [40.0, 40.0], "site": ["B", "D"]})
    mu = adapted.predict(grid).predictions["mu_estimate"]
    assert abs((mu[1] - mu[0]) - (SITE_SHIFT["D"] - SITE_SHIFT["B"])) < 0.15
    ev = adapted.evaluate(cohort(400, 3, sites=("D",)))
    assert abs(ev.evaluations["z_mean"]) < 0.2 and 0.85 < ev.evaluations["z_std"] < 1.15


def test_blr_fixed_effects_sum_to_zero():
    df = cohort(1500, 4)
    model = build(df, model_type="BLR").fit(df)
    assert not model.spec.covariate("site").hierarchical
    grid = pd.DataFrame({"age": np.full(3, 40.0), "site": ["A", "B", "C"]})
    mu = model.predict(grid).predictions["mu_estimate"]
    pop = model.predict(grid[["age"]], predict_without=["site"]).predictions["mu_estimate"]
    assert np.allclose(pop, mu.mean(), atol=1e-10)  # deviation coding: population = mean of levels


def test_map_solver_matches_closed_form_ridge():
    """Homoscedastic linear model: at the MAP, beta solves (X'X + s^2 P) beta = X'y exactly."""
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"x": rng.normal(size=300), "g": rng.choice(["u", "v"], 300)})
    y = 1.0 + 2.0 * df["x"].to_numpy() + rng.normal(size=300)
    spec = NormativeModelSpec.from_dataframe("BLR", df, "y", ["x"], ["g"], influencing_mean=["x", "g"],
                                             influencing_variance=[])
    params = DirectNormativeModel(spec).fit(df, y=y).params
    dm = Design(spec, "mean")
    X, _ = dm.matrix(df)
    ys = (y - params.y_mean[0]) / params.y_std[0]
    s2 = np.exp(2 * params.gamma[0, 0])
    P = np.diag(dm.prior_precision(None, 1)[0])
    beta = np.linalg.solve(X.T @ X + s2 * P, X.T @ ys)
    assert np.allclose(params.beta[0], beta, atol=1e-8)
    # and sigma^2 is the MAP residual variance under its N(0, 5^2) prior on log sigma
    r = ys - X @ beta
    grad_logsd = -len(y) + (r @ r) / s2 - params.gamma[0, 0] / 25.0
    assert abs(grad_logsd) < 1e-3  # stationary (the log-sd curvature here is ~2n = 600)


def test_correlation_family_recovers_known_rho():
    rng = np.random.default_rng(6)
    n = 4000
    df = pd.DataFrame({"age": rng.uniform(0, 1, n)})
    eta = -0.5 + 1.5 * df["age"].to_numpy()  # atanh(rho) linear in age
    rho = np.tanh(eta)
    z1 = rng.normal(size=n)
    z2 = rho * z1 + np.sqrt(1 - rho**2) * rng.normal(size=n)
    spec = NormativeModelSpec.from_dataframe("BLR", df, "y", ["age"], influencing_mean=[],
                                             influencing_variance=["age"])
    d = Design(spec, "correlation")
    X, _ = d.matrix(df)
    fit = fit_laplace(CorrelationFamily(z1[:, None], z2[:, None]), [d], [X], [np.zeros((1, 2))])
    est = np.tanh(X @ fit.theta[0][0])
    assert np.abs(est - rho).max() < 0.06
    assert fit.converged.all()


def _many_responses(n=600, M=12, seed=11):
    """``M`` heteroscedastic responses with site offsets of different sizes (some none), one shared design."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.uniform(10, 80, n), "site": rng.choice(list("ABCD"), n)})
    spec = NormativeModelSpec.from_dataframe("HBR", df, "y", ["age"], ["site"], ["site"], ["age"],
                                             influencing_mean=["age", "site"], influencing_variance=["age", "site"])
    site_sd = np.linspace(0.0, 0.6, M)
    codes = df["site"].map({s: i for i, s in enumerate("ABCD")}).to_numpy()
    offsets = rng.normal(size=(4, M)) * site_sd
    age = df["age"].to_numpy()[:, None]
    Y = np.sin(age / rng.uniform(10, 30, M)) + offsets[codes] + rng.normal(size=(n, M)) * (0.2 + 0.01 * age)
    return spec, df, Y


def test_empirical_bayes_solver_reaches_the_fixed_point():
    """MAP coefficients at the returned variances, and variances at MacKay's fixed point for that MAP."""
    from spectranorm_neuro.engine.direct import fit_direct
    from spectranorm_neuro.engine.inference import GaussianFamily

    spec, df, Y = _many_responses()
    params = fit_direct(spec, Y, df)
    assert params.converged.all()
    designs = [Design(spec, "mean"), Design(spec, "variance")]
    Xs = [d.matrix(df)[0] for d in designs]
    Ys = (Y - params.y_mean) / params.y_std
    # refitting with the variances frozen leaves the coefficients where they are (they are the MAP)
    frozen = fit_laplace(GaussianFamily(Ys), designs, Xs, [params.beta, params.gamma],
                         tau2_init=[params.tau2_mean, params.tau2_var], learn_tau=False)
    np.testing.assert_allclose(frozen.theta[0], params.beta, atol=1e-6)
    np.testing.assert_allclose(frozen.theta[1], params.gamma, atol=1e-6)
    np.testing.assert_allclose(frozen.cov[0], params.cov_beta, atol=1e-8)
    # each hierarchical variance satisfies tau^2 = (|theta_B|^2 + 2b) / (K_B - tr(Sigma_B) / tau^2 + 2a + 2)
    for d, theta, cov, tau2 in ((designs[0], params.beta, params.cov_beta, params.tau2_mean),
                                (designs[1], params.gamma, params.cov_gamma, params.tau2_var)):
        for j, blk in enumerate(d.hierarchical_blocks):
            a, b = d.hyperprior(blk)
            sl = blk.slice
            ss = (theta[:, sl] ** 2).sum(axis=1)
            tr = np.trace(cov[:, sl, sl], axis1=1, axis2=2)
            gamma = (blk.stop - blk.start) - tr / tau2[:, j]
            np.testing.assert_allclose(tau2[:, j], (ss + 2 * b) / (gamma + 2 * a + 2), rtol=1e-4)
    # the site variance follows the true spread of the site offsets (0 to 0.6 in sd units of y)
    assert params.tau2_mean[-1, 0] > 10 * params.tau2_mean[0, 0]


def test_solver_results_do_not_depend_on_the_batch():
    """Each response's fit is its own: fitting a few responses alone gives the same parameters."""
    from spectranorm_neuro.engine.direct import fit_direct

    spec, df, Y = _many_responses()
    every = fit_direct(spec, Y, df)
    cols = np.array([0, 5, 11])
    few = fit_direct(spec, Y[:, cols], df)
    for name in ("beta", "gamma", "tau2_mean", "tau2_var", "cov_beta", "cov_gamma"):
        np.testing.assert_allclose(getattr(few, name), getattr(every, name)[cols], rtol=1e-7, atol=1e-10)


def test_fit_is_deterministic():
    df = cohort(500, 7)
    a = build(df).fit(df).params
    b = build(df).fit(df).params
    for k in a.__dict__:
        assert np.array_equal(getattr(a, k), getattr(b, k))


def test_extrapolation_warns_with_range(fitted):
    model, _ = fitted
    with pytest.warns(ExtrapolationWarning, match=r"outside the training range \[10"):
        model.predict(pd.DataFrame({"age": [95.0], "site": ["A"]}))


def test_spline_columns_partition_and_clamp():
    df = pd.DataFrame({"age": np.linspace(10, 80, 101)})
    spec = NormativeModelSpec.from_dataframe("BLR", df, "y", ["age"], nonlinear_covariates=["age"])
    cov = spec.covariate("age")
    assert len(cov.knots) == 5 + 3 + 2 and cov.knots[0] == pytest.approx(10 - 7.0)
    cols, _ = effect_columns(cov, np.array([20.0, 50.0]))
    assert cols.shape == (2, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        far, _ = effect_columns(cov, np.array([1000.0]))
        edge, _ = effect_columns(cov, np.array([cov.knots[-1]]))
    assert np.allclose(far, edge)  # constant extrapolation beyond the padded knots


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"model_type": "GLM"}, r"model_type='GLM'.*Fix: pass one of"),
    ({"batch_covariates": ["age"]}, r"batch_covariates='age'.*categorical"),
    ({"influencing_mean": ["height"]}, r"influencing_mean='height'.*not a declared covariate"),
])
def test_bad_specification(kwargs, match):
    df = cohort(50, 8)
    args = dict(model_type="HBR", dataframe=df, variable_of_interest="y", numerical_covariates=["age"],
                categorical_covariates=["site"], batch_covariates=["site"])
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        DirectNormativeModel.from_dataframe(**args)


def test_bad_data(fitted):
    model, df = fitted
    bad = df.copy()
    bad.loc[3, "age"] = np.nan
    with pytest.raises(InvalidInputError, match=r"test_covariates\['age'\].*rows \[3\].*Fix"):
        model.predict(bad)
    with pytest.raises(InvalidInputError, match=r"lacks covariate column\(s\) \['site'\].*predict_without"):
        model.predict(df[["age"]])
    worse = df.copy()
    worse.loc[5, "y"] = np.inf
    with pytest.raises(InvalidInputError, match=r"y=.*NaN/inf"):
        build(df).fit(worse)
    with pytest.raises(NotFittedError, match="call fit"):
        build(df).predict(df)
