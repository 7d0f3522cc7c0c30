"""A report from the real SpectralNormativeModel (MAP fit on a small lattice cohort)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.engine.spectral import SpectralNormativeModel
from spectranorm_neuro.graphs.lattice import lattice_graph
from spectranorm_neuro.report import generate_report

from .test_report_render import body_rows, check_self_contained, parse, value


def cohort(n, seed, side=12):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"age": rng.uniform(20, 80, n), "sex": rng.choice(["F", "M"], n),
                       "site": rng.choice(["A", "B", "C"], n)})
    g = np.linspace(0, 1, side)
    xx, yy = np.meshgrid(g, g)
    blob = np.exp(-((xx.ravel() - 0.5) ** 2 + (yy.ravel() - 0.5) ** 2) / 0.1)
    site_shift = df["site"].map({"A": 0.0, "B": 0.4, "C": -0.3}).to_numpy()
    mean = (1 + df["age"].to_numpy()[:, None] / 40) * blob[None] + site_shift[:, None]
    maps = mean + 0.2 * rng.normal(size=(n, 1)) + 0.05 * rng.normal(size=(n, side * side))
    return df, maps


@pytest.mark.slow
def test_report_from_a_fitted_spectral_model(tmp_path):
    basis = EigenmodeBasis.from_graph(lattice_graph((12, 12)), 12)
    train, train_maps = cohort(200, 0)
    model = SpectralNormativeModel.build_from_dataframe(
        basis, "HBR", train, numerical_covariates=["age"], categorical_covariates=["sex", "site"],
        batch_covariates=["site"])
    model.fit(basis.encode(train_maps), train, n_jobs=1, progress=False)

    test, test_maps = cohort(8, 1)
    test.index = [f"t{i}" for i in range(8)]
    coefficients = basis.encode(test_maps)
    pixels = basis.encode_queries(np.eye(basis.n_features))
    z = np.asarray(model.evaluate(pixels, coefficients, test, query_train_moments=np.ones((2, 144)))
                   .predictions["z-score"])
    index = generate_report(tmp_path / "rep", z, test, basis, model=model, coefficients=coefficients,
                            progress=False)
    p = parse(index)
    check_self_contained(p, index.parent, index.parent)
    assert "centiles-cohort" in {img["data-figure"] for img in p.images}
    assert "n_train" in index.read_text()  # default model card from model_params

    mean_query = basis.encode_queries(np.full((1, 144), 1 / 144))
    harmonized = model.harmonize(mean_query, test, coefficients, covariates_to_harmonize=["site"])
    own = model.predict(mean_query, test, predict_without=["site"]).predictions
    centile = stats.norm.cdf((harmonized - own["mu_estimate"]) / own["std_estimate"])
    for i, sid in enumerate(test.index):
        rows = {r[0][0]: r for r in body_rows(p, f"subject-{sid}-centiles")}
        assert value(rows["Whole-map mean"][2]) == pytest.approx(harmonized[i, 0], rel=1e-9)
        assert value(rows["Whole-map mean"][4]) == pytest.approx(centile[i, 0], rel=1e-9)
    summary = {r[0][0]: r for r in body_rows(p, "calibration-summary")}
    assert value(summary["SD of z"][1]) == pytest.approx(z.std(ddof=1))
