"""The reference's own test suite (SpectraNorm 0.1.4, tests/), run against the facade.

Ported with the import changed to ``from spectranorm_neuro import snm``; the reference's model
runs ADVI, ours the batched MAP engine, so ``defaults["advi_iterations"]`` is accepted and unused.
One assertion is adapted: the reference checks that ``save_model`` wrote a pickle
(``saved_model/model_dict.joblib``); this package never writes pickles, so the test checks its
checksummed ``saved_model/manifest.json`` instead, then reloads and compares predictions.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro import snm


@pytest.fixture
def mock_dataframe() -> Callable[..., pd.DataFrame]:
    def _make_df(n_rows: int = 100, n_categorical: int = 2, n_numerical: int = 4,
                 random_state: int = 42) -> pd.DataFrame:
        rng = np.random.default_rng(random_state)
        categorical_data = {}
        for i in range(n_categorical):
            n_categories = rng.integers(2, 5)
            categories = [f"cat_{j}" for j in range(n_categories)]
            categorical_data[f"cat_col_{i}"] = rng.choice(categories, size=n_rows)
        numerical_data = {f"num_col_{i}": rng.random(n_rows) for i in range(n_numerical)}
        return pd.DataFrame({**categorical_data, **numerical_data})

    return _make_df


def test_snm_import() -> None:
    assert hasattr(snm, "SpectralNormativeModel")
    assert hasattr(snm, "DirectNormativeModel")


def test_direct_model(mock_dataframe, tmp_path: Path) -> None:
    df = mock_dataframe(n_rows=100, n_categorical=2, n_numerical=2)
    assert df.shape == (100, 4)
    df["voi"] = df["num_col_0"] * 2 + df["num_col_1"] * 3 + (df["cat_col_0"] == "cat_0").astype(float) * 0.5
    model = snm.DirectNormativeModel.from_dataframe(
        model_type="HBR", dataframe=df, variable_of_interest="voi",
        numerical_covariates=["num_col_0", "num_col_1"], categorical_covariates=["cat_col_0", "cat_col_1"],
        batch_covariates=["cat_col_1"], nonlinear_covariates=["num_col_0"],
        influencing_mean=["num_col_0", "num_col_1", "cat_col_0", "cat_col_1"], influencing_variance=["num_col_1"])
    model.defaults["advi_iterations"] = 100
    assert isinstance(model, snm.DirectNormativeModel)
    assert not hasattr(model, "model_params")  # as the reference: no parameters before fit
    model.fit(df)
    assert hasattr(model, "model_params")
    predictions = model.predict(df, extended=True)
    assert isinstance(predictions, snm.NormativePredictions)
    pred_df = predictions.to_dataframe()
    assert isinstance(pred_df, pd.DataFrame)
    predictions.evaluate_predictions(
        variable_of_interest=df["voi"].to_numpy(dtype=np.float64),
        train_mean=np.asarray(df["voi"].mean()), train_std=np.asarray(df["voi"].std()),
        n_params=len(model.model_params))
    assert hasattr(predictions, "evaluations")
    # the noise-free response is predicted closely: the z-scores are the standardized residuals
    resid = df["voi"].to_numpy() - predictions.predictions["mu_estimate"]
    np.testing.assert_allclose(predictions.predictions["z-score"], resid / predictions.predictions["std_estimate"])
    assert predictions.evaluations["R-squared"] > 0.95
    model_path = tmp_path / "saved_direct_model"
    snm.utils.general.ensure_dir(model_path / "saved_model")
    assert model_path.exists()
    model.save_model(model_path)
    assert (model_path / "saved_model/manifest.json").exists()  # adapted: never a pickle
    loaded_model = snm.DirectNormativeModel.load_model(model_path)
    assert isinstance(loaded_model, snm.DirectNormativeModel)
    np.testing.assert_array_equal(loaded_model.predict(df).predictions["mu_estimate"],
                                  model.predict(df).predictions["mu_estimate"])


def test_covariance_model(mock_dataframe) -> None:
    df = mock_dataframe(n_rows=100, n_categorical=2, n_numerical=2)
    df["voi_1"] = df["num_col_0"] * 2 + df["num_col_1"] * 3 + (df["cat_col_0"] == "cat_0").astype(float) * 0.5
    df["voi_2"] = df["num_col_0"] * 4 + df["num_col_1"] * 2 + (df["cat_col_1"] == "cat_0").astype(float) * 0.5
    kwargs = {"model_type": "HBR", "dataframe": df, "numerical_covariates": ["num_col_0", "num_col_1"],
              "categorical_covariates": ["cat_col_0", "cat_col_1"], "batch_covariates": ["cat_col_1"],
              "nonlinear_covariates": ["num_col_0"],
              "influencing_mean": ["num_col_0", "num_col_1", "cat_col_0", "cat_col_1"],
              "influencing_variance": ["num_col_1"]}
    model_1 = snm.DirectNormativeModel.from_dataframe(variable_of_interest="voi_1", **kwargs)
    model_2 = snm.DirectNormativeModel.from_dataframe(variable_of_interest="voi_2", **kwargs)
    model_1.defaults["advi_iterations"] = 100
    model_2.defaults["advi_iterations"] = 100
    model_1.fit(df)
    model_2.fit(df)
    df[["voi_1_mu_estimate", "voi_1_std_estimate"]] = model_1.predict(df).to_array().T
    df[["voi_2_mu_estimate", "voi_2_std_estimate"]] = model_2.predict(df).to_array().T
    cov_model = snm.CovarianceNormativeModel.from_direct_model(model_1, variable_of_interest_1="voi_1",
                                                               variable_of_interest_2="voi_2")
    assert isinstance(cov_model, snm.CovarianceNormativeModel)
    cov_model.fit(df)
    assert hasattr(cov_model, "model_params")
    rho = cov_model.predict(df).predictions["correlation_estimate"]
    assert rho.shape == (100,) and np.all(np.abs(rho) < 1)
