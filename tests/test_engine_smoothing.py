"""Penalized B-splines whose smoothness is set by empirical Bayes, per response, batched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.engine.direct import fit_direct, predict_direct
from spectranorm_neuro.engine.effects import Design
from spectranorm_neuro.engine.specs import NormativeModelSpec
from spectranorm_neuro.exceptions import InvalidInputError


def _data(n, seed):
    rng = np.random.default_rng(seed)
    cov = pd.DataFrame({"age": rng.uniform(10, 80, n), "site": rng.choice(list("ABC"), n)})
    a = cov["age"].to_numpy()
    wiggly = np.sin(a / 8) + 0.3 * np.exp(-((a - 40) / 5) ** 2)
    straight = 0.02 * a
    Y = np.stack([wiggly, straight], axis=1) + 0.2 * rng.normal(size=(n, 2))
    return cov, Y


def _spec(cov, **spline):
    return NormativeModelSpec.from_dataframe(
        "HBR", cov, "y", numerical_covariates=["age"], categorical_covariates=["site"], batch_covariates=["site"],
        nonlinear_covariates=["age"], influencing_mean=["age", "site"], influencing_variance=["age"],
        spline_kwargs=spline)


def test_penalized_spline_is_a_fixed_linear_part_plus_a_smoothing_variance_block():
    cov, _ = _data(300, 0)
    spec = _spec(cov, df=20, smoothing="eb")
    d = Design(spec, "mean")
    age = [b for b in d.blocks if b.name == "age"]
    assert [(b.stop - b.start, b.hierarchical) for b in age] == [(1, False), (19, True)]
    X, _ = d.matrix(cov)
    # the columns span the full cubic B-spline space of its 21 functions (with the intercept)
    from scipy.interpolate import BSpline

    cov_age = spec.covariate("age")
    B = BSpline.design_matrix(cov["age"].to_numpy(), np.asarray(cov_age.knots), 3).toarray()
    assert B.shape[1] == 21
    cols = X[:, [0, *range(age[0].start, age[1].stop)]]
    coef = np.linalg.lstsq(cols, B, rcond=None)[0]
    np.testing.assert_allclose(cols @ coef, B, atol=1e-8)
    back = NormativeModelSpec.from_dict(spec.to_dict())
    np.testing.assert_array_equal(Design(back, "mean").matrix(cov)[0], X)
    with pytest.raises(InvalidInputError, match="smoothing"):
        _spec(cov, smoothing="gcv")


def test_estimated_smoothness_follows_each_response_and_beats_df5():
    cov, Y = _data(2000, 1)
    grid = pd.DataFrame({"age": np.linspace(12, 78, 100), "site": "A"})
    a = grid["age"].to_numpy()
    truth = np.stack([np.sin(a / 8) + 0.3 * np.exp(-((a - 40) / 5) ** 2), 0.02 * a], axis=1)

    def curve_error(spec):
        params = fit_direct(spec, Y, cov)
        mu, _ = predict_direct(spec, params, grid, without=["site"], warn=False)
        err = (mu - mu.mean(0)) - (truth - truth.mean(0))
        return np.sqrt(np.mean(err**2, axis=0)), params

    fixed, _ = curve_error(_spec(cov, df=5))
    smooth, params = curve_error(_spec(cov, df=20, smoothing="eb"))
    assert smooth[0] < 0.5 * fixed[0]  # the wiggly curve needs more than df=5
    assert smooth[1] < 0.02  # the straight line stays straight
    tau2 = params.tau2_mean[:, 1]  # smoothing variance of each response, learned separately
    assert tau2[0] > 100 * tau2[1]
