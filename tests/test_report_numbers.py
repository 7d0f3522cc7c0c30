"""Report numbers: calibration, extreme counts, parcel and group means, centile charts.

Every number is checked against an independent computation in the test (loops, scipy.stats) or
against a closed form (N(0, 1) coverage of a known distribution).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.report.calibration import (
    HIST_EDGES,
    calibration_summary,
    group_maps,
    parcel_stats,
    subject_stats,
)
from spectranorm_neuro.report.centiles import centile_charts, summary_queries

LEVELS = (0.025, 0.25, 0.5, 0.75, 0.975)


class LinearModel:
    """Test double with the SpectralNormativeModel predict/harmonize contract.

    Mode ``k`` of a subject has mean ``b0_k + b1_k * age / 50 + b2_k * male + b3_k * [site == "B"]``
    and sd ``s_k`` (independent modes), so a query ``q`` has mean ``X @ beta @ q`` and sd
    ``sqrt(sum_k s_k**2 q_k**2)``. ``predict_without=["site"]`` drops the site term; ``harmonize``
    keeps each value's z-score but removes the site term.
    """

    def __init__(self, basis, seed=1):
        self.eigenmode_basis = basis
        self.numerical_covariates = ["age"]
        self.categorical_covariates = ["sex"]
        self.batch_covariates = ["site"]
        rng = np.random.default_rng(seed)
        self.beta = rng.normal(size=(4, basis.n_modes))
        self.sd = 0.5 + rng.uniform(size=basis.n_modes)
        self.calls = []

    def design(self, cov, without=()):
        site = np.zeros(len(cov)) if "site" in without else cov["site"].astype(str).eq("B").to_numpy(float)
        return np.column_stack([np.ones(len(cov)), cov["age"].to_numpy(float) / 50,
                                cov["sex"].astype(str).eq("M").to_numpy(float), site])

    def query_sd(self, q):
        return np.sqrt((self.sd[:, None] ** 2 * q**2).sum(axis=0))

    def predict(self, encoded_query, test_covariates, predict_without=(), n_modes=None):
        self.calls.append(("predict", list(predict_without), list(test_covariates.columns)))
        q = np.asarray(encoded_query)
        mu = self.design(test_covariates, predict_without) @ self.beta @ q
        sd = np.broadcast_to(self.query_sd(q), mu.shape)
        return SimpleNamespace(predictions={"mu_estimate": mu, "std_estimate": sd})

    def harmonize(self, encoded_query, covariates_dataframe, spectral_coeff_data, covariates_to_harmonize):
        self.calls.append(("harmonize", list(covariates_to_harmonize)))
        q = np.asarray(encoded_query)
        full = self.design(covariates_dataframe) @ self.beta @ q
        without = self.design(covariates_dataframe, covariates_to_harmonize) @ self.beta @ q
        return spectral_coeff_data @ q - full + without  # same sd with and without site


def random_basis(n_features=60, n_modes=6, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n_features, n_modes)))
    return EigenmodeBasis(np.arange(n_modes, dtype=float), q)


# ---------------------------------------------------------------------- calibration
def test_calibration_matches_independent_computation(rng):
    z = rng.normal(0.1, 1.2, size=(9, 37))
    sites = np.array(list("ABCABCAAB"))
    cal = calibration_summary(z, sites, LEVELS)

    flat = z.ravel()
    assert cal.n_subjects == 9 and cal.n_values == 9 * 37
    assert cal.mean == pytest.approx(np.mean(flat), abs=1e-12)
    assert cal.sd == pytest.approx(np.std(flat, ddof=1), abs=1e-12)
    assert cal.frac_extreme == pytest.approx(np.mean(np.abs(flat) > 2))
    assert cal.expected_extreme == pytest.approx(2 * stats.norm.sf(2))
    for p, thr, observed in zip(LEVELS, cal.thresholds, cal.coverage):
        assert thr == pytest.approx(stats.norm.ppf(p))
        assert observed == pytest.approx(sum(v < stats.norm.ppf(p) for v in flat) / flat.size)
    for a, b, dens, expected in zip(HIST_EDGES[:-1], HIST_EDGES[1:], cal.hist_density, cal.normal_density):
        inside = (flat >= a) & ((flat < b) if b < HIST_EDGES[-1] else (flat <= b))
        assert dens == pytest.approx(inside.sum() / (flat.size * (b - a)))
        assert expected == pytest.approx((stats.norm.cdf(b) - stats.norm.cdf(a)) / (b - a))
    ordered = np.sort(flat)
    # the QQ plot reaches the observed extremes: first/last points are min/max z at the plotting
    # positions 0.5/n and 1 - 0.5/n, evenly spaced in normal quantile between them
    assert cal.qq_sample[0] == ordered[0] and cal.qq_sample[-1] == ordered[-1]
    assert cal.qq_theoretical[0] == pytest.approx(stats.norm.ppf(0.5 / flat.size))
    np.testing.assert_allclose(np.diff(cal.qq_theoretical), np.diff(cal.qq_theoretical)[0])
    positions = cal.qq_probs * flat.size - 0.5
    lo = np.floor(positions).astype(int)
    manual = ordered[lo] + (positions - lo) * (ordered[np.minimum(lo + 1, flat.size - 1)] - ordered[lo])
    np.testing.assert_allclose(cal.qq_sample, manual)
    np.testing.assert_allclose(cal.qq_theoretical, stats.norm.ppf(cal.qq_probs))

    table = cal.sites.set_index("site")
    assert list(table.index) == ["A", "B", "C"]
    for site in "ABC":
        values = z[sites == site].ravel()
        assert table.loc[site, "n_subjects"] == np.sum(sites == site)
        assert table.loc[site, "mean"] == pytest.approx(values.mean(), abs=1e-12)
        assert table.loc[site, "sd"] == pytest.approx(values.std(ddof=1), abs=1e-12)


def test_calibration_of_known_distributions():
    rng = np.random.default_rng(3)
    calibrated = calibration_summary(rng.normal(size=(200, 500)), centiles=LEVELS)
    np.testing.assert_allclose(calibrated.coverage, LEVELS, atol=0.004)
    assert calibrated.mean == pytest.approx(0, abs=0.01) and calibrated.sd == pytest.approx(1, abs=0.01)
    np.testing.assert_allclose(calibrated.hist_density[10:30], calibrated.normal_density[10:30], atol=0.02)

    shifted = calibration_summary(rng.normal(0.5, 2.0, size=(200, 500)), centiles=LEVELS)
    expected = stats.norm.cdf((stats.norm.ppf(LEVELS) - 0.5) / 2.0)
    np.testing.assert_allclose(shifted.coverage, expected, atol=0.004)
    assert shifted.frac_extreme == pytest.approx(stats.norm.sf(1.5 / 2) + stats.norm.cdf(-2.5 / 2), abs=0.005)


def test_calibration_single_site_and_shapes():
    z = np.arange(12.0).reshape(3, 4)
    cal = calibration_summary(z, ["x", "x", "x"])
    assert cal.sites.loc[0, "sd"] == pytest.approx(np.std(np.arange(12.0), ddof=1))
    with pytest.raises(ValueError, match=r"sites=.*one site per subject.*Fix:"):
        calibration_summary(z, ["x", "y"])


# ---------------------------------------------------------------------- subjects, parcels, groups
def test_subject_stats_per_block(rng):
    z = rng.normal(0, 2, size=(4, 30))
    starts = [0, 12, 25]
    st = subject_stats(z, starts)
    edges = [0, 12, 25, 30]
    for b in range(3):
        block = z[:, edges[b]:edges[b + 1]]
        assert st.n_features[b] == edges[b + 1] - edges[b]
        for i in range(4):
            assert st.n_extreme[i, b] == sum(abs(v) > 2 for v in block[i])
            assert st.n_positive[i, b] == sum(v > 2 for v in block[i])
            assert st.n_negative[i, b] == sum(v < -2 for v in block[i])
            assert st.n_severe[i, b] == sum(abs(v) > 3 for v in block[i])
            assert st.max_abs[i, b] == pytest.approx(max(abs(v) for v in block[i]))
            assert st.mean[i, b] == pytest.approx(sum(block[i]) / len(block[i]))


def test_parcel_stats_rank_parcels(rng):
    z = rng.normal(size=(3, 40))
    codes = np.repeat([0, 1, 2, 3, -1], 8)
    z[1, 16:24] += 5  # parcel 2 of subject 1 is the most deviant
    ps = parcel_stats(z, codes, ["a", "b", "c", "d"], n_top=2)
    for p in range(4):
        members = codes == p
        np.testing.assert_allclose(ps.mean[:, p], z[:, members].mean(axis=1))
        np.testing.assert_allclose(ps.mean_abs[:, p], np.abs(z[:, members]).mean(axis=1))
    assert ps.top.shape == (3, 2)
    assert ps.top[1, 0] == 2
    for i in range(3):
        assert list(ps.top[i]) == list(np.argsort(-ps.mean_abs[i], kind="stable")[:2])
    np.testing.assert_array_equal(ps.sizes, [8, 8, 8, 8])


def test_group_maps(rng):
    z = rng.normal(size=(6, 10))
    labels = np.array(["a", "b", "a", "a", "b", "c"], dtype=object)
    mean, frac, sizes = group_maps(z, labels, ["a", "b"])
    np.testing.assert_array_equal(sizes, [3, 2])
    for g, name in enumerate("ab"):
        sel = labels == name
        np.testing.assert_allclose(mean[g], z[sel].mean(axis=0))
        np.testing.assert_allclose(frac[g], (np.abs(z[sel]) > 2).mean(axis=0))


# ---------------------------------------------------------------------- centile charts
@pytest.fixture
def cohort():
    rng = np.random.default_rng(5)
    n = 40
    subjects = pd.DataFrame({"age": rng.uniform(20, 80, n), "sex": rng.choice(["F", "M"], n, p=[0.3, 0.7]),
                             "site": rng.choice(["A", "B"], n)},
                            index=[f"s{i:02d}" for i in range(n)])
    basis = random_basis()
    model = LinearModel(basis)
    coefficients = rng.normal(size=(n, basis.n_modes))
    return subjects, basis, model, coefficients


def test_summary_queries_are_regional_means(cohort):
    _, basis, model, _ = cohort
    names, kinds, enc = summary_queries(model, basis.n_features)
    assert names == ["Whole-map mean"] and kinds == ["whole"]
    uniform = np.full(basis.n_features, 1 / basis.n_features)
    np.testing.assert_allclose(enc[:, 0], basis.eigenvectors.T @ uniform)
    blocks = [SimpleNamespace(name="CortexLeft", kind="surface", start=0, stop=25),
              SimpleNamespace(name="CortexRight", kind="surface", start=25, stop=60)]
    codes = np.repeat([0, -1, 2], 20)
    names, kinds, enc = summary_queries(model, basis.n_features, blocks, (codes, ["a", "b", "c"]))
    assert names == ["Whole-cortex mean", "Left hemisphere mean", "Right hemisphere mean", "a", "c"]
    assert kinds == ["whole", "structure", "structure", "region", "region"]
    weights = np.zeros((5, 60))
    weights[0] = 1 / 60
    weights[1, :25], weights[2, 25:] = 1 / 25, 1 / 35
    weights[3, :20], weights[4, 40:] = 1 / 20, 1 / 20
    np.testing.assert_allclose(enc, basis.eigenvectors.T @ weights.T)


def test_centile_charts_match_the_model(cohort):
    subjects, basis, model, coefficients = cohort
    ch = centile_charts(model, subjects, basis.n_features, coefficients, LEVELS, n_grid=25)
    ages = subjects["age"].to_numpy()
    assert ch.covariate == "age"
    np.testing.assert_allclose(ch.grid, np.linspace(ages.min(), ages.max(), 25))
    assert ch.reference == {"sex": "M"}  # most frequent level; the batch covariate is not a reference

    enc = (basis.eigenvectors.T @ np.full(basis.n_features, 1 / basis.n_features))[:, None]
    # independent: the normative curve at reference covariates (male, no site effect)
    mu = (model.beta[0] + np.outer(ch.grid / 50, model.beta[1]) + model.beta[2]) @ enc
    sd = np.sqrt((model.sd[:, None] ** 2 * enc**2).sum(axis=0))
    np.testing.assert_allclose(ch.mean, mu)
    np.testing.assert_allclose(ch.std, np.broadcast_to(sd, mu.shape))
    for c, p in enumerate(LEVELS):
        np.testing.assert_allclose(ch.curves[c], mu + sd * stats.norm.ppf(p))
    # one profile per sex, curves at that sex (what each subject's chart draws)
    assert sorted(p["sex"] for p in ch.profiles) == ["F", "M"]
    for p, profile in enumerate(ch.profiles):
        male = float(profile["sex"] == "M")
        np.testing.assert_allclose(ch.profile_mean[p], (model.beta[0] + np.outer(ch.grid / 50, model.beta[1])
                                                        + male * model.beta[2]) @ enc)
        assert all(ch.profiles[ch.subject_profile[i]]["sex"] == subjects["sex"].iloc[i] for i in range(len(subjects)))

    site_b = subjects["site"].eq("B").to_numpy(float)
    male = subjects["sex"].eq("M").to_numpy(float)
    harmonized = coefficients @ enc - np.outer(site_b, model.beta[3] @ enc)
    np.testing.assert_allclose(ch.subject_y, harmonized)
    np.testing.assert_allclose(ch.subject_x, ages)
    own_mu = (model.beta[0] + np.outer(ages / 50, model.beta[1]) + np.outer(male, model.beta[2])) @ enc
    z = (harmonized - own_mu) / sd
    np.testing.assert_allclose(ch.subject_centile, stats.norm.cdf(z))
    # cohort chart points: standardized to the reference (male) at the subject's own age
    ref_mu = (model.beta[0] + np.outer(ages / 50, model.beta[1]) + model.beta[2]) @ enc
    np.testing.assert_allclose(ch.reference_y, ref_mu + sd * z)
    assert ("harmonize", ["site"]) in model.calls
    assert all(call[1] == ["site"] for call in model.calls if call[0] == "predict")


def test_centile_charts_without_coefficients_or_numerical_covariates(cohort):
    subjects, basis, model, _ = cohort
    ch = centile_charts(model, subjects, basis.n_features, None, LEVELS)
    assert ch.subject_y is None and ch.subject_centile is None and ch.curves.shape == (5, 60, 1)
    model.numerical_covariates = []
    assert centile_charts(model, subjects, basis.n_features, None, LEVELS) is None


def test_centile_charts_errors_name_the_problem(cohort):
    subjects, basis, model, _ = cohort
    with pytest.raises(ValueError, match=r"subjects=.*lacks the model covariate\(s\) \['sex'\].*Fix:"):
        centile_charts(model, subjects.drop(columns="sex"), basis.n_features)
    with pytest.raises(ValueError, match=r"model=.*does not match the 61 features.*Fix: pass the model"):
        centile_charts(model, subjects, basis.n_features + 1)
    del model.eigenmode_basis
    with pytest.raises(ValueError, match=r"model=.*no eigenmode_basis.*Fix:"):
        centile_charts(model, subjects, basis.n_features)


def test_missing_sites_form_their_own_row():
    z = np.arange(8.0).reshape(4, 2)
    cal = calibration_summary(z, np.array(["A", None, "A", np.nan], dtype=object))
    table = cal.sites.set_index("site")
    assert list(table.index) == ["(missing)", "A"]
    assert table.loc["(missing)", "mean"] == pytest.approx(np.mean([2, 3, 6, 7]))
    assert table.loc["A", "n_subjects"] == 2
