"""Issue 18: the multivariate severity score of the report, on synthetic known truth.

* a subject with a planted focal lesion (-3 sd over a small patch) scores above every control;
* recalibrated on one half of the controls, the score is N(0, 1) in the other half (p uniform);
* without controls the null is the model's chi2(n_parcels);
* the report's subject table shows it and is sorted by it by default.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from spectranorm_neuro.datasets import lattice_basis
from spectranorm_neuro.engine.spectral import SpectralNormativeModel
from spectranorm_neuro.exceptions import InvalidInputError
from spectranorm_neuro.report import generate_report
from spectranorm_neuro.report.severity import (
    MultivariateSeverity,
    chi2_z_equivalent,
    multivariate_severity,
    spectral_parcels,
)

from .test_report_render import body_rows, parse, value

N_SIDE, K = 12, 16


def _truth(basis, cov, rng):
    """Smooth (5 modes) plus white noise around an age trend; returns maps and the true sd."""
    psi = np.asarray(basis.eigenvectors)
    age = cov["age"].to_numpy() - 50.0
    mean = 2.0 + np.outer(0.02 * age, np.linspace(0, 1, basis.n_features))
    smooth = 0.4 * rng.normal(size=(len(cov), 5)) @ psi[:, :5].T
    white = 0.4 * rng.normal(size=(len(cov), basis.n_features))
    sd = np.sqrt(0.16 * np.sum(psi[:, :5] ** 2, axis=1) + 0.16)
    return mean + smooth + white, sd


def _cov(rng, n, prefix):
    return pd.DataFrame({"age": rng.uniform(20, 80, n)}, index=pd.Index([f"{prefix}{i:03d}" for i in range(n)]))


@pytest.fixture(scope="module")
def fitted():
    basis = lattice_basis(N_SIDE, K)
    rng = np.random.default_rng(11)
    train = _cov(rng, 400, "t")
    Y, _ = _truth(basis, train, rng)
    model = SpectralNormativeModel.build_from_dataframe(basis, "HBR", train, numerical_covariates=["age"],
                                                        influencing_mean=["age"], influencing_variance=["age"])
    model.fit(basis.encode(Y), train, covariance_structure="lowrank", maps=Y, n_jobs=1, progress=False)
    test = _cov(rng, 240, "c")
    Yt, sd = _truth(basis, test, rng)
    return basis, model, test, Yt, sd


def test_spectral_parcels_are_region_means_covering_every_feature():
    basis = lattice_basis(N_SIDE, K)
    W = spectral_parcels(basis, 20, seed=0)
    assert W.shape == (20, basis.n_features)
    np.testing.assert_allclose(np.asarray(W.sum(axis=1)).ravel(), 1.0)
    assert np.all(np.asarray((W > 0).sum(axis=0)).ravel() == 1)  # each feature in exactly one parcel
    assert (spectral_parcels(basis, 20, seed=0) != W).nnz == 0  # same seed, same parcels


def test_lesion_ranks_above_every_control_and_null_is_calibrated(fitted):
    _, model, test, Yt, sd = fitted
    maps = Yt.copy()
    patch = (np.arange(N_SIDE)[:, None] * N_SIDE + np.arange(3, 6)[None, :]).ravel()[9:18]  # a 3 x 3 patch
    maps[0, patch] -= 3.0 * sd[patch]
    controls = np.zeros(len(test), dtype=bool)
    controls[1:121] = True  # recalibrate on half of the controls
    sev = multivariate_severity(model, maps, test, controls)
    assert sev.n_controls == 120 and sev.n_parcels == round(1.6 * model.residual_params.n_modes)
    assert sev.z[0] > sev.z[1:].max()  # the planted lesion is the most deviant subject
    held_out = sev.z[121:]  # controls not used for the calibration: N(0, 1)
    assert abs(held_out.mean()) < 0.3 and 0.75 < held_out.std() < 1.3
    assert stats.kstest(sev.p_value[121:], "uniform").pvalue > 0.01
    outlier = maps.copy()
    outlier[1] += 50.0 * sd  # a control far off (a failed scan): the robust null is barely moved
    robust = multivariate_severity(model, outlier, test, controls)
    assert abs(robust.z[121:].mean()) < 0.3 and 0.75 < robust.z[121:].std() < 1.3
    raw = multivariate_severity(model, maps, test)
    assert raw.n_controls == 0 and raw.scale == 1.0 and raw.dof == raw.n_parcels
    np.testing.assert_allclose(raw.p_value, stats.chi2.sf(raw.d2, raw.n_parcels))
    np.testing.assert_allclose(raw.d2, sev.d2)
    np.testing.assert_allclose(raw.z, -special.ndtri(raw.p_value), rtol=1e-9)


def testchi2_z_equivalent_keeps_ranking_where_p_underflows():
    x = np.array([150.0, 175.0, 500.0, 2000.0, 3000.0, 5000.0, 20000.0])
    z = chi2_z_equivalent(x, 175.0)
    assert np.all(np.isfinite(z)) and np.all(np.diff(z) > 0)
    assert z[1] == pytest.approx(-special.ndtri(stats.chi2.sf(175.0, 175.0)))


def test_report_table_is_sorted_by_the_multivariate_z(fitted, tmp_path):
    basis, _, test, _, _ = fitted
    n = 8
    rng = np.random.default_rng(2)
    z = rng.normal(size=(n, basis.n_features))
    z[1, :40] = -4.0  # the largest clusters, but not the largest multivariate z
    mz = np.array([0.1, 1.0, -0.5, 6.0, 0.3, 2.5, -1.2, 0.0])
    sev = MultivariateSeverity(stats.chi2.isf(stats.norm.sf(mz), 10), stats.norm.sf(mz), mz, 10, 1.0, 10.0, 0)
    index = generate_report(tmp_path / "rep", z, test.iloc[:n], basis, inline_subjects=0, progress=False,
                            multivariate=sev)
    rows = body_rows(parse(index), "subject-table")
    assert [r[0][0] for r in rows][:3] == ["c003", "c005", "c001"]
    assert [value(r[3]) for r in rows] == pytest.approx(sorted(mz, reverse=True), abs=0.01)
    html = index.read_text()
    assert "Multivariate z" in html and "Multivariate p &lt; 0.05" in html
    page = (tmp_path / "rep" / "subjects" / "c003.html").read_text()
    assert "Multivariate deviation" in page and "z = 6.00" in page
    with pytest.raises(InvalidInputError, match="multivariate"):
        generate_report(tmp_path / "bad", z, test.iloc[:n], basis, progress=False,
                        multivariate=MultivariateSeverity(*(np.ones(3),) * 3, 10, 1.0, 10.0, 0))
