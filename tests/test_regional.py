"""Regional tables: FreeSurfer/CSV readers and a batched model over every region (fit, score, save/load)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.engine.direct import DirectNormativeModel
from spectranorm_neuro.engine.regional import RegionalNormativeModel
from spectranorm_neuro.exceptions import ChecksumError, FileFormatError, InvalidInputError
from spectranorm_neuro.io import align_subjects, read_regional_table


def test_reads_aparcstats2table_asegstats2table_and_plain_tables(tmp_path):
    aparc = tmp_path / "lh.aparc.thickness.txt"
    aparc.write_text("lh.aparc.thickness\tlh_bankssts_thickness\tlh_cuneus_thickness\tlh_MeanThickness_thickness\n"
                     "sub-01\t2.512\t1.934\t2.41\nsub-02\t2.611\t1.877\t2.47\n")
    t = read_regional_table(aparc)
    assert list(t.index) == ["sub-01", "sub-02"] and t.index.name == "participant_id"
    assert list(t.columns) == ["lh_bankssts_thickness", "lh_cuneus_thickness", "lh_MeanThickness_thickness"]
    assert t.loc["sub-02", "lh_cuneus_thickness"] == pytest.approx(1.877)
    aseg = tmp_path / "aseg.txt"  # asegstats2table --delimiter space
    aseg.write_text("Measure:volume Left-Lateral-Ventricle Left-Hippocampus EstimatedTotalIntraCranialVol\n"
                    "subjA 7512.3 4101.0 1.5e6\nsubjB 10233.9 3987.5 1.4e6\n")
    a = read_regional_table(aseg)
    assert list(a.index) == ["subjA", "subjB"] and a.shape == (2, 3)
    assert a.loc["subjB", "Left-Lateral-Ventricle"] == pytest.approx(10233.9)
    csv = tmp_path / "rois.csv"
    csv.write_text("age,Subject_ID,roi1,roi2\n30,s1,1.0,2.0\n40,s2,1.5,2.5\n")
    c = read_regional_table(csv, subject_column="Subject_ID", regions=["roi2", "roi1"])
    assert list(c.columns) == ["roi2", "roi1"] and list(c.index) == ["s1", "s2"]
    plain = tmp_path / "rois.tsv"
    plain.write_text("participant_id\troi1\nsub-1\t0.5\nsub-2\t0.7\n")
    assert read_regional_table(plain).shape == (2, 1)
    with pytest.raises(InvalidInputError, match="subject_column"):
        read_regional_table(csv, subject_column="nope")
    dup = tmp_path / "dup.tsv"
    dup.write_text("participant_id\troi1\nsub-1\t0.5\nsub-1\t0.7\n")
    with pytest.raises(FileFormatError, match="more than once"):
        read_regional_table(dup)
    # covariates are paired by subject id, in the table's order
    cov = pd.DataFrame({"participant_id": ["sub-02", "sub-01"], "age": [40.0, 30.0]})
    _, aligned = align_subjects(t, cov)
    assert list(aligned["age"]) == [30.0, 40.0]


def _cohort(n, seed, n_regions=12):
    rng = np.random.default_rng(seed)
    cov = pd.DataFrame({"age": rng.uniform(10, 80, n), "site": rng.choice(list("ABC"), n)},
                       index=[f"sub-{seed}-{i}" for i in range(n)])
    a = cov["age"].to_numpy()[:, None]
    k = np.arange(n_regions)[None, :]
    mu = 2.5 + 0.3 * np.sin(a / 15 + k) - 0.002 * a
    sd = 0.1 + 0.001 * a
    noise = rng.normal(size=(n, n_regions))
    noise[:, ::3] = np.exp(0.5 * noise[:, ::3]) - np.exp(0.125)  # every third region right-skewed
    table = pd.DataFrame(mu + sd * noise, index=cov.index, columns=[f"roi{j}" for j in range(n_regions)])
    return table, cov


def _build(cov, likelihood="SHASHb"):
    return RegionalNormativeModel.from_dataframe(
        "HBR", cov, numerical_covariates=["age"], nonlinear_covariates=["age"], categorical_covariates=["site"],
        batch_covariates=["site"], influencing_mean=["age", "site"], influencing_variance=["age"],
        likelihood=likelihood)


@pytest.fixture(scope="module")
def fitted():
    table, cov = _cohort(1500, 0)
    return _build(cov).fit(table, cov.sample(frac=1.0, random_state=1))  # rows matched by subject id


def test_regional_model_equals_one_direct_model_per_region(fitted):
    table, cov = _cohort(1500, 0)
    test, tcov = _cohort(300, 1)
    res = fitted.evaluate(test, tcov)
    assert set(res.tables) >= {"z-score", "centiles", "log-likelihood", "mu", "sd", "epsilon", "delta"}
    assert res["z-score"].shape == (300, 12) and list(res["z-score"].columns) == fitted.regions
    one = DirectNormativeModel.from_dataframe(
        "HBR", cov.assign(y=table["roi3"]), "y", numerical_covariates=["age"], nonlinear_covariates=["age"],
        categorical_covariates=["site"], batch_covariates=["site"], influencing_mean=["age", "site"],
        influencing_variance=["age"], likelihood="SHASHb").fit(cov.assign(y=table["roi3"]))
    z_one = one.evaluate(tcov.assign(y=test["roi3"])).predictions["z-score"]
    np.testing.assert_allclose(res["z-score"]["roi3"].to_numpy(), z_one, atol=1e-5)
    # skewed regions are found non-normal, the others adequate
    comp = fitted.likelihood_comparison()
    assert not comp.loc[["roi0", "roi3", "roi6", "roi9"], "normal_adequate"].any()
    assert comp.loc[["roi1", "roi2", "roi4", "roi5"], "normal_adequate"].mean() >= 0.75
    assert (res.metrics.loc[["roi0", "roi3"], "z_std"] - 1).abs().max() < 0.15
    cents = fitted.centiles(tcov.iloc[:5], centiles=(5, 50, 95))
    assert cents.shape == (5, 36) and (cents["roi0"][95] > cents["roi0"][50]).all()
    h = fitted.harmonize(test, tcov, ["site"])
    assert h.shape == test.shape and np.isfinite(h.to_numpy()).all()


def test_save_load_round_trip_and_checksum(fitted, tmp_path):
    test, tcov = _cohort(50, 2)
    fitted.save_model(tmp_path / "m")
    back = RegionalNormativeModel.load_model(tmp_path / "m")
    assert back.regions == fitted.regions and back.spec.likelihood == "SHASHb"
    pd.testing.assert_frame_equal(back.evaluate(test, tcov)["z-score"], fitted.evaluate(test, tcov)["z-score"])
    with open(tmp_path / "m" / "params.npz", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ChecksumError):
        RegionalNormativeModel.load_model(tmp_path / "m")
    fitted.save_model(tmp_path / "m3")
    with pytest.raises(FileFormatError, match="regional"):
        DirectNormativeModel.load_model(tmp_path / "m3")


def test_direct_model_save_load(tmp_path):
    table, cov = _cohort(400, 3, n_regions=1)
    df = cov.assign(y=table["roi0"])
    m = DirectNormativeModel.from_dataframe("HBR", df, "y", numerical_covariates=["age"],
                                            categorical_covariates=["site"], batch_covariates=["site"],
                                            influencing_mean=["age", "site"], influencing_variance=["age"]).fit(df)
    m.save_model(tmp_path / "d")
    back = DirectNormativeModel.load_model(tmp_path / "d")
    np.testing.assert_array_equal(back.predict(df).predictions["std_estimate"],
                                  m.predict(df).predictions["std_estimate"])
    assert back.model_params["inference"] == "map"


@pytest.mark.slow
def test_advi_path_agrees_with_map():
    # DirectNormativeModel.fit(inference=...) goes through the same fit_responses
    table, cov = _cohort(500, 4, n_regions=3)
    _, tcov = _cohort(100, 5, n_regions=3)
    fits = {inf: _build(cov, "Normal").fit(table, cov, inference=inf, random_state=0) for inf in ("map", "advi")}
    p_map, p_advi = fits["map"].predict(tcov), fits["advi"].predict(tcov)
    assert fits["advi"].model_params["inference"] == "advi"
    assert (np.abs(p_map["mu"] - p_advi["mu"]) / p_map["sd"]).to_numpy().max() < 0.1
    assert np.abs(np.log(p_advi["sd"] / p_map["sd"])).to_numpy().max() < 0.1
