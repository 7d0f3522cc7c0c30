"""Population-level centile bands (``predict_without=["site"]``) describe individuals, against known truth."""

import numpy as np
import pandas as pd

from spectranorm_neuro.engine import direct as direct_module

from .test_engine_direct import build, cohort, true_sd


def test_population_band_is_the_within_site_sd_not_inflated_by_the_intercept_uncertainty():
    df = cohort(4000, 0)
    model = build(df).fit(df)
    ages = np.linspace(15, 75, 61)
    grid = pd.DataFrame({"age": ages, "site": "B"})
    population = model.predict(grid, predict_without=["site"]).predictions["std_estimate"]
    within_site = model.predict(grid).predictions["std_estimate"]
    # the truth: site shifts only the mean, so every site (and the population) has sd true_sd(age)
    rmse = np.sqrt(np.mean((population - true_sd(ages)) ** 2))
    print("RMSE of the population chart sd against the truth:", rmse)
    assert rmse < 0.03
    np.testing.assert_allclose(population, within_site, rtol=0.02)
    # the old rule (the intercept's own Laplace variance added) is measurably wider and worse
    saved = direct_module._variance_rows
    direct_module._variance_rows = lambda design, X, *args: X
    try:
        old = model.predict(grid, predict_without=["site"]).predictions["std_estimate"]
    finally:
        direct_module._variance_rows = saved
    assert np.all(old > population)
    old_rmse = np.sqrt(np.mean((old - true_sd(ages)) ** 2))
    print("with the intercept's variance added (before the fix):", old_rmse)
    assert old_rmse > rmse + 0.01
