"""Regional models on the command line: fit / info / apply / adapt / harmonize on tables of regional measures.

Known truth: ``datasets.regional_cohort`` draws Normal, log-normal and sinh-arcsinh (skewed,
heavy-tailed) regions whose every value's true z-score is known; the tables are written as a
FreeSurfer ``asegstats2table`` file (space separated, ``Measure:volume`` header) with a BIDS
``participants.tsv``, or as one CSV holding the covariates too.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spectranorm_neuro.datasets import regional_cohort
from spectranorm_neuro.workflow import ModelBundle, apply_bundle, fit_regional_bundle, load_regional_cohort

from ._cli_data import leftovers, run_cli
from ._validator import bids_errors

MODEL = ["--numerical", "age", "--nonlinear", "age", "--categorical", "sex", "site", "--batch", "site"]


def _write_fs(root, name, cov, table):
    """An asegstats2table-style file (ids without ``sub-``) and its participants.tsv."""
    fs = table.copy()
    fs.index = [i.removeprefix("sub-") for i in fs.index]
    fs.index.name = "Measure:volume"
    fs.to_csv(root / f"{name}.txt", sep=" ", float_format="%.8g")
    cov.to_csv(root / f"{name}_participants.tsv", sep="\t", float_format="%.10g")
    return root / f"{name}.txt", root / f"{name}_participants.tsv"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("regional")
    files = {}
    for name, n, seed, sites in (("train", 1500, 0, "ABC"), ("test", 1000, 1, "ABC"), ("newsite", 20, 2, "D"),
                                 ("newsite_test", 400, 3, "D")):
        cov, table, true_z = regional_cohort(n, seed, sites=tuple(sites))
        files[name] = (*_write_fs(root, name, cov, table), true_z)
    code, out, err = run_cli(["fit", files["train"][0], "--participants", files["train"][1], *MODEL,
                              "--holdout", "0.1", "--out", root / "bundle"])
    assert code == 0, err
    return root, files, out


def _z(path):
    return pd.read_csv(path, sep="\t", index_col="participant_id")


def test_fit_records_the_likelihood_of_every_region_and_the_card_says_it(study):
    root, _files, out = study
    assert "Likelihood per region: Normal in 2, SHASHb in 4" in out
    bundle = ModelBundle.load(root / "bundle")
    assert bundle.kind == "regional" and bundle.basis is None
    assert json.loads((root / "bundle" / "manifest.json").read_text())["kind"] == "regional"
    used = {r: v["used"] for r, v in bundle.card["regions"]["likelihood"].items()}
    assert used == {"normal0": "Normal", "lognormal1": "SHASHb", "shash2": "SHASHb", "normal3": "Normal",
                    "lognormal4": "SHASHb", "shash5": "SHASHb"}
    shash = bundle.card["regions"]["likelihood"]["shash2"]  # truth: skew to the right, heavy tails
    assert shash["epsilon"] > 0.2 and shash["delta"] < 0.95
    assert bundle.card["measure"] == "volume"  # from the Measure:volume header
    assert bundle.card["fitting"]["spline_kwargs"]["smoothing"] == "eb"  # the command line's default
    held = bundle.card["metrics"]["held_out"]
    assert 140 <= held["n_subjects"] <= 150 and abs(held["z_mean"]) < 0.1 and 0.9 < held["z_sd"] < 1.1
    code, text, _ = run_cli(["info", root / "bundle"])
    assert code == 0 and "Regions: 6 (normal0" in text and "SHASHb (skewed or heavy-tailed" in text


def test_apply_recovers_the_true_z_of_skewed_and_heavy_tailed_regions(study):
    root, files, _ = study
    code, _out, err = run_cli(["apply", root / "bundle", files["test"][0], "--participants", files["test"][1],
                              "--out", root / "scores", "--maps", "zscore", "centile", "mu", "sd"])
    assert code == 0, err
    z = _z(root / "scores" / "group" / "desc-zscore_volume.tsv")
    true_z = files["test"][2]
    assert list(z.index) == list(true_z.index) and list(z.columns) == list(true_z.columns)
    rmse = np.sqrt(((z - true_z) ** 2).mean())
    assert (rmse < 0.2).all(), rmse
    for region in ("lognormal1", "lognormal4", "shash2", "shash5"):
        assert abs(stats.skew(z[region])) < 0.35, region
        assert 0.03 < np.mean(np.abs(z[region]) > 1.96) < 0.07, region
    centile = _z(root / "scores" / "group" / "desc-centile_volume.tsv")
    np.testing.assert_allclose(centile.to_numpy(), 100 * stats.norm.cdf(z.to_numpy()), atol=1e-6)
    side = json.loads((root / "scores" / "group" / "desc-zscore_volume.json").read_text())
    assert side["Units"] == "standard deviations" and side["Model"]["Likelihood"] == "SHASHb"
    assert side["Model"]["NRegions"] == 6 and "shash2" in side
    summary = _z(root / "scores" / "group" / "desc-zscoresummary_volume.tsv")
    assert (summary["n_features"] == 6).all()
    assert (root / "scores" / ".spectranorm_output.json").is_file() and not leftovers(root / "scores")


def test_the_normal_likelihood_leaves_the_log_normal_skew_that_shashb_removes(study, tmp_path):
    _root, files, _ = study
    code, _, err = run_cli(["fit", files["train"][0], "--participants", files["train"][1], *MODEL,
                            "--likelihood", "Normal", "--out", tmp_path / "normal"])
    assert code == 0, err
    code, _, err = run_cli(["apply", tmp_path / "normal", files["test"][0], "--participants", files["test"][1],
                            "--out", tmp_path / "scores"])
    assert code == 0, err
    z = _z(tmp_path / "scores" / "group" / "desc-zscore_volume.tsv")
    assert stats.skew(z["lognormal1"]) > 0.8  # the Gaussian-only model's z stays skewed


def test_python_workflow_writes_the_same_bytes_as_the_command_line(study, tmp_path):
    root, files, _ = study
    cohort = load_regional_cohort(files["train"][0], participants=files["train"][1])
    fit_regional_bundle(cohort, tmp_path / "bundle", numerical=["age"], nonlinear=["age"],
                        categorical=["sex", "site"], batch=["site"], holdout=0.1)
    for name in ("model/params.npz", "model/spec.json", "model_card.json"):
        assert (tmp_path / "bundle" / name).read_bytes() == (root / "bundle" / name).read_bytes(), name
    bundle = ModelBundle.load(tmp_path / "bundle")
    test = load_regional_cohort(files["test"][0], participants=files["test"][1], bundle=bundle)
    apply_bundle(bundle, test, tmp_path / "scores")
    code, _, err = run_cli(["apply", root / "bundle", files["test"][0], "--participants", files["test"][1],
                            "--out", tmp_path / "cli_scores"])
    assert code == 0, err
    for name in ("desc-zscore_volume.tsv", "desc-centile_volume.tsv"):
        python = (tmp_path / "scores" / "group" / name).read_bytes()
        assert python == (tmp_path / "cli_scores" / "group" / name).read_bytes()


def test_adapt_calibrates_a_site_with_twice_the_spread_from_20_controls(study):
    root, files, _ = study
    code, out, err = run_cli(["adapt", root / "bundle", files["newsite"][0], "--participants", files["newsite"][1],
                              "--out", root / "adapted"])
    assert code == 0, err
    assert "Adapted to site: D from 20 subjects" in out
    card = ModelBundle.load(root / "adapted").card
    assert card["adaptations"][0]["report"]["site"]["D"]["n_controls"] == 20
    code, _, err = run_cli(["apply", root / "adapted", files["newsite_test"][0], "--participants",
                            files["newsite_test"][1], "--out", root / "newsite_scores"])
    assert code == 0, err
    z = _z(root / "newsite_scores" / "group" / "desc-zscore_volume.tsv")
    # the target: z sd within 0.9-1.1 and mean within +-0.1 (D has twice the spread and the
    # largest shift of all sites; a prior shrinking to the training sites' average left mean +0.18)
    assert 0.9 < float(np.median(z.std())) < 1.1
    assert abs(float(np.median(z.mean()))) < 0.1
    code, _, err = run_cli(["apply", root / "bundle", files["newsite_test"][0], "--participants",
                            files["newsite_test"][1], "--out", root / "unadapted"])
    assert code == 1 and "never saw" in err and "spectranorm-neuro adapt" in err


def test_harmonize_removes_site_shifts_and_its_output_can_be_fitted(study):
    root, files, _ = study
    code, _, err = run_cli(["harmonize", root / "bundle", files["test"][0], "--participants", files["test"][1],
                            "--out", root / "harmonized"])
    assert code == 0, err
    table = root / "harmonized" / "group" / "desc-harmonized_volume.tsv"
    assert bids_errors(root / "harmonized") == []
    values = _z(table)
    before = pd.read_csv(files["test"][0], sep=" ", index_col=0)["normal0"]
    cov = pd.read_csv(files["test"][1], sep="\t", index_col="participant_id")
    gap_before = before.groupby(cov["site"].to_numpy()).mean().agg(np.ptp)
    gap_after = values["normal0"].groupby(cov["site"].to_numpy()).mean().agg(np.ptp)
    assert gap_after < 0.3 * gap_before
    code, _, err = run_cli(["fit", table, "--participants", root / "harmonized" / "group" / "participants.tsv",
                            "--numerical", "age", "--categorical", "sex", "--smoothing", "none",
                            "--likelihood", "Normal", "--out", root / "refit"])
    assert code == 0, err


def test_covariates_in_the_same_csv_and_subject_column_named(tmp_path):
    cov, table, _ = regional_cohort(300, 5, n_regions=3)
    frame = pd.concat([cov, table], axis=1).reset_index().rename(columns={"participant_id": "ID"})
    frame.insert(1, "group", "control")  # a text column: a covariate, never a region
    frame.to_csv(tmp_path / "rois.csv", index=False)
    code, out, err = run_cli(["fit", tmp_path / "rois.csv", "--subject-column", "ID", *MODEL,
                              "--out", tmp_path / "bundle", "--select", "group=control"])
    assert code == 0, err
    assert "Read 300 subjects x 3 regions" in out
    assert ModelBundle.load(tmp_path / "bundle").model.regions == ["normal0", "lognormal1", "shash2"]
    code, _, err = run_cli(["apply", tmp_path / "bundle", tmp_path / "rois.csv", "--subject-column", "ID",
                            "--out", tmp_path / "scores"])
    assert code == 0, err
    assert _z(tmp_path / "scores" / "group" / "desc-zscore_value.tsv").shape == (300, 3)


def test_regional_errors_name_the_option_and_the_fix(study, tmp_path):
    root, files, _ = study
    # covariates neither in the table nor given
    code, _, err = run_cli(["apply", root / "bundle", files["test"][0], "--out", tmp_path / "a"])
    assert code == 1 and "--participants" in err and "Fix:" in err
    # regional options with a basis, map options with a regional bundle: usage errors
    code, _, err = run_cli(["fit", files["train"][0], "--basis", tmp_path / "basis.npz", *MODEL,
                            "--likelihood", "Normal", "--out", tmp_path / "b"])
    assert code == 2 and "--likelihood" in err
    code, _, err = run_cli(["apply", root / "bundle", files["test"][0], "--participants", files["test"][1],
                            "--fwhm", "10", "--out", tmp_path / "c"])
    assert code == 2 and "--fwhm" in err
    code, _, err = run_cli(["fit", files["train"][0], "--participants", files["train"][1], *MODEL,
                            "--fwhm", "10", "--out", tmp_path / "d"])
    assert code == 2 and "--fwhm" in err
    # a table without a region of the bundle
    cut = pd.read_csv(files["test"][0], sep=" ", index_col=0).drop(columns=["shash2"])
    cut.to_csv(tmp_path / "cut.tsv", sep="\t")
    code, _, err = run_cli(["apply", root / "bundle", tmp_path / "cut.tsv", "--participants", files["test"][1],
                            "--out", tmp_path / "e"])
    assert code == 1 and "shash2" in err and "Fix:" in err
    # a missing value
    gap = pd.read_csv(files["test"][0], sep=" ", index_col=0)
    gap.iloc[3, 1] = np.nan
    gap.to_csv(tmp_path / "gap.tsv", sep="\t", na_rep="n/a")
    code, _, err = run_cli(["apply", root / "bundle", tmp_path / "gap.tsv", "--participants", files["test"][1],
                            "--out", tmp_path / "f"])
    assert code == 1 and "missing" in err and "lognormal1" in err
    code, _, err = run_cli(["report", root / "bundle", files["test"][0], "--participants", files["test"][1],
                            "--atlas", files["test"][0], "--out", tmp_path / "g"])
    assert code == 2 and "--atlas" in err and "apply" in err
    assert not any((tmp_path / name).exists() for name in "abcdefg")


def test_report_and_apply_report_on_a_regional_bundle(study, tmp_path):
    root, files, _ = study
    values = pd.read_csv(files["test"][0], sep=" ", index_col=0).iloc[:200]
    cov = pd.read_csv(files["test"][1], sep="\t", index_col="participant_id").iloc[:200]
    cov["group"] = ["patient" if i < 5 else "control" for i in range(200)]
    values.iloc[:5, 0] -= 6 * (0.09 + 0.0006 * cov["age"].to_numpy()[:5])  # normal0: 6 true sds below
    values.to_csv(tmp_path / "clinic.tsv", sep="\t")
    cov.to_csv(tmp_path / "clinic_participants.tsv", sep="\t")
    code, _, err = run_cli(["report", root / "bundle", tmp_path / "clinic.tsv", "--participants",
                              tmp_path / "clinic_participants.tsv", "--out", tmp_path / "report",
                              "--group-column", "group", "--controls", "group=control"])
    assert code == 0, err
    html = (tmp_path / "report" / "index.html").read_text()
    assert 'data-region="shash2"' in html and "195 control subjects" in html
    rows = html.split('id="subject-table"')[1].split("<tr data-subject=")[1:6]
    assert all(">patient<" in row and "normal0 (-" in row for row in rows)  # the 5 patients come first
    assert (tmp_path / "report" / "figures" / "calibration.png").is_file()
    code, _, err = run_cli(["apply", root / "bundle", tmp_path / "clinic.tsv", "--participants",
                            tmp_path / "clinic_participants.tsv", "--out", tmp_path / "scores", "--report",
                            "--group-column", "group", "--controls", "group=control"])
    assert code == 0, err
    assert 'data-region="shash2"' in (tmp_path / "scores" / "report" / "index.html").read_text()


def test_apply_with_the_atlas_of_the_table_writes_parcel_maps(tmp_path):
    import nibabel as nib

    from ._cli_data import write_band_annot

    lh, _ = write_band_annot(tmp_path / "lh.bands.annot")
    rh, _ = write_band_annot(tmp_path / "rh.bands.annot")
    cov, table, _ = regional_cohort(300, 6, n_regions=3)
    table.columns = ["lh_band1_thickness", "rh_band2_thickness", "lh_elsewhere_thickness"]  # aparcstats2table-like
    table.rename_axis("lh.bands.thickness").to_csv(tmp_path / "thickness.tsv", sep="\t")
    cov.to_csv(tmp_path / "participants.tsv", sep="\t")
    code, _, err = run_cli(["fit", tmp_path / "thickness.tsv", "--participants", tmp_path / "participants.tsv",
                            *MODEL, "--out", tmp_path / "bundle"])
    assert code == 0, err
    code, out, err = run_cli(["apply", tmp_path / "bundle", tmp_path / "thickness.tsv", "--participants",
                              tmp_path / "participants.tsv", "--out", tmp_path / "scores", "--atlas",
                              tmp_path / "lh.bands.annot", tmp_path / "rh.bands.annot"])
    assert code == 0, err
    z = _z(tmp_path / "scores" / "group" / "desc-zscore_thickness.tsv")
    subject = z.index[7]
    left = tmp_path / "scores" / subject / "anat" / f"{subject}_hemi-L_atlas-bands_desc-zscore_thickness.shape.gii"
    right = left.with_name(left.name.replace("hemi-L", "hemi-R"))
    lv = nib.load(left).darrays[0].data
    rv = nib.load(right).darrays[0].data
    assert lv.shape == (10242,) and rv.shape == (10242,)
    np.testing.assert_allclose(lv[lh == 1], z.loc[subject, "lh_band1_thickness"], rtol=1e-6)
    np.testing.assert_allclose(rv[rh == 2], z.loc[subject, "rh_band2_thickness"], rtol=1e-6)
    assert np.isnan(lv[lh == 2]).all() and np.isnan(rv[rh == 1]).all() and np.isnan(lv[lh == 0]).all()
    side = json.loads(left.with_name(left.name.replace(".shape.gii", ".json")).read_text())
    assert side["ParcelRegions"]["L_band1"] == "lh_band1_thickness" and side["ParcelRegions"]["R_band1"] is None
    assert "RegionalTable" in side and side["Atlas"]["Name"] == "bands"
    assert "parcels of bands" in out
    assert bids_errors(tmp_path / "scores") == []
    code, _, err = run_cli(["apply", tmp_path / "bundle", tmp_path / "thickness.tsv", "--participants",
                            tmp_path / "participants.tsv", "--out", tmp_path / "none", "--atlas",
                            tmp_path / "lh.bands.annot", "--atlas-name", "x"])
    assert code == 0, err  # one hemisphere: band1 of the left still matches
    table.columns = ["a", "b", "c"]
    table.to_csv(tmp_path / "other.tsv", sep="\t")
    code, _, err = run_cli(["fit", tmp_path / "other.tsv", "--participants", tmp_path / "participants.tsv",
                            *MODEL, "--out", tmp_path / "other"])
    assert code == 0, err
    code, _, err = run_cli(["apply", tmp_path / "other", tmp_path / "other.tsv", "--participants",
                            tmp_path / "participants.tsv", "--out", tmp_path / "bad", "--atlas",
                            tmp_path / "lh.bands.annot", tmp_path / "rh.bands.annot"])
    assert code == 1 and "--atlas" in err and "no parcel named as a region" in err
    assert not (tmp_path / "bad").exists()
