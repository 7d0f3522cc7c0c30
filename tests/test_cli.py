"""The command line end to end: basis -> fit -> info -> apply -> adapt -> apply again, harmonize, sys-info.

Every command runs through ``main([...])``; outputs are checked against the Python API on the same
data (exact equality of the float32 values written), against BIDS naming and GIFTI intents, and
against the known truth of the synthetic process (planted patches, site counts, covariate ranges).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spectranorm_neuro import io
from spectranorm_neuro.cli import main
from spectranorm_neuro.io import encode_cohort, parse_bids_name, read_bids_cohort, vertex_queries
from spectranorm_neuro.workflow import load_bundle

from . import _cli_data
from ._cli_data import FIT_ARGS, N_MODES, run_cli, write_band_annot
from ._validator import bids_errors

study = _cli_data.study  # the shared module-scoped fixture

pytestmark = pytest.mark.filterwarnings("ignore::spectranorm_neuro.exceptions.ExtrapolationWarning")


@pytest.fixture(scope="module")
def bundle_dir(study):
    out = study.root / "bundle"
    code, stdout, stderr = run_cli(["fit", study.root / "reference", "--basis", study.root / "basis.npz",
                                    *FIT_ARGS, "--holdout", "0.2", "--out", out])
    assert code == 0, stderr
    assert "held out" in stdout
    return out


def _python_scores(bundle_path, cohort_root, predict_without=()):
    """z, centile, mu, sd of a cohort through the Python API (exact per-vertex scores of the maps)."""
    bundle = load_bundle(bundle_path)
    model = bundle.model
    cohort = read_bids_cohort(cohort_root, "thickness", basis=model.eigenmode_basis)
    cov = cohort.covariates.astype({c: str for c in ("sex", "site", "group")})
    C = encode_cohort(cohort, model.eigenmode_basis, progress=False)
    assert model.residual_params is not None  # `fit` fits the residual part by default
    pred = model.evaluate_maps(cohort.maps(), cov, predict_without=list(predict_without)).predictions
    return cohort, pred, model, C, cov


def _read_maps(out, subjects, desc, structure):
    arrays, intents = [], set()
    for sub in subjects:
        path = out / sub / "anat" / f"{sub}_hemi-L_space-fsaverage_den-10k_desc-{desc}_thickness.shape.gii"
        img = nib.load(path)
        intents.add(nib.nifti1.intent_codes.niistring[img.darrays[0].intent])
        assert dict(img.meta)["AnatomicalStructurePrimary"] == "CortexLeft"
        arrays.append(np.asarray(img.darrays[0].data))
    full = np.stack(arrays)
    assert np.isnan(np.delete(full, structure.index, axis=1)).all()  # medial wall left empty
    return full[:, structure.index], intents


def test_help_of_every_command():
    for cmd in ("demo", "basis", "fit", "apply", "adapt", "harmonize", "report", "info", "sys-info"):
        code, out, _ = run_cli([cmd, "--help"])
        assert code == 0 and f"spectranorm-neuro {cmd}" in out
    assert run_cli(["--version"])[0] == 0
    code, _, err = run_cli([])
    assert code == 2 and "command is required" in err
    code, _, err = run_cli(["fit"])
    assert code == 2 and "required" in err


def test_basis_command_matches_python_api(study, tmp_path):
    out = tmp_path / "b.npz"
    code, stdout, stderr = run_cli(["basis", "--mesh", "fsaverage5", "--hemi", "left", "--cortex-mask", "auto",
                                    "--n-modes", N_MODES, "--out", out])
    assert code == 0, stderr
    assert "space-fsaverage_den-10k" in stdout
    from spectranorm_neuro.basis import EigenmodeBasis

    got = EigenmodeBasis.load(out)
    np.testing.assert_array_equal(got.eigenvalues, study.basis.eigenvalues)
    np.testing.assert_array_equal(got.eigenvectors, study.basis.eigenvectors)
    assert [s.name for s in got.structures] == ["CortexLeft"]
    lattice = tmp_path / "lat.npz"
    code, _, stderr = run_cli(["basis", "--lattice", 6, 5, "--n-modes", 4, "--space", "MNI152NLin2009cAsym",
                               "--out", lattice])
    assert code == 0, stderr
    lat = EigenmodeBasis.load(lattice)
    assert lat.n_features == 30 and lat.provenance["space"] == "MNI152NLin2009cAsym"
    # eigenvalues of the normalized Laplacian of a 6 x 5 path-product grid are known: the first is 0
    assert abs(lat.eigenvalues[0]) < 1e-10


def test_info_prints_the_model_card(study, bundle_dir):
    code, stdout, stderr = run_cli(["info", bundle_dir])
    assert code == 0, stderr
    assert "SHA-256 verified" in stdout and "space-fsaverage_den-10k" in stdout
    code, stdout, _ = run_cli(["info", bundle_dir, "--json"])
    card = json.loads(stdout)
    ref = study.cohorts["reference"].covariates
    train = card["training"]
    held = card["metrics"]["held_out"]
    assert train["n_subjects"] + held["n_subjects"] == len(ref) == 90
    sizes = ref["site"].value_counts()
    assert set(train["sites"]["site"]) == {"A", "B", "C"}
    for site, n in train["sites"]["site"].items():  # floor(0.2 * N) held out of every site
        assert n == sizes[site] - int(np.floor(0.2 * sizes[site]))
    age = train["covariates"]["age"]
    assert ref["age"].min() <= age["min"] < age["max"] <= ref["age"].max()
    assert train["covariates"]["sex"]["categories"] == ["F", "M"]
    assert card["basis"]["space"] == {"space": "fsaverage", "den": "10k"}
    assert card["basis"]["n_modes"] == N_MODES and card["basis"]["structures"][0]["n_total"] == 10242
    assert card["basis"]["provenance"]["laplacian"] == "lbo"
    assert card["fitting"]["seed"] == 0 and card["fitting"]["batch_covariates"] == ["site"]
    assert 0.8 < held["z_sd"] < 1.2 and abs(held["z_mean"]) < 0.2  # calibrated on held-out controls
    assert card["measure"] == "thickness" and card["package_version"]


def test_apply_writes_bids_maps_equal_to_python_api(study, bundle_dir, tmp_path):
    out = tmp_path / "zmaps"
    code, stdout, stderr = run_cli(["apply", bundle_dir, study.root / "clinic", "--out", out,
                                    "--maps", "zscore", "centile", "mu", "sd"])
    assert code == 0, stderr
    assert "summary table" in stdout
    cohort, pred, model, _, _ = _python_scores(bundle_dir, study.root / "clinic")
    structure = model.eigenmode_basis.structures[0]
    expected = (("zscore", "z-score", "NIFTI_INTENT_ZSCORE"), ("centile", "centiles", "NIFTI_INTENT_NONE"),
                ("mu", "mu_estimate", "NIFTI_INTENT_ESTIMATE"), ("sd", "std_estimate", "NIFTI_INTENT_ESTIMATE"))
    for desc, key, intent in expected:
        got, intents = _read_maps(out, cohort.subjects, desc, structure)
        assert intents == {intent}
        np.testing.assert_allclose(got, pred[key].astype(np.float32), rtol=1e-6, atol=1e-6)
    for path in out.rglob("*.shape.gii"):
        ents = parse_bids_name(path)
        assert (ents["hemi"], ents["space"], ents["den"], ents["suffix"]) == ("L", "fsaverage", "10k", "thickness")
        assert ents["desc"] in ("zscore", "centile", "mu", "sd")
    z = pred["z-score"]
    np.testing.assert_allclose(pred["centiles"], 100 * stats.norm.cdf(z), rtol=1e-10)
    # the planted patches show up in the patients' z-maps
    clinic = study.cohorts["clinic"]
    patients = clinic.covariates["group"].to_numpy() == "patient"
    assert z[patients][clinic.core[patients]].mean() < -1.0
    assert abs(z[~patients].mean()) < 0.5
    summary = pd.read_csv(out / "group" / "desc-zscoresummary_thickness.tsv", sep="\t", index_col=0)
    assert list(summary.index) == cohort.subjects
    np.testing.assert_allclose(summary["mean_abs_z"], np.abs(z).mean(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(summary["n_abs_z_gt_2"], (np.abs(z) > 2).sum(axis=1))
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert json.loads(next(out.rglob("*_desc-zscore_thickness.json")).read_text())["Model"]["Command"].endswith("apply")


def test_apply_projected_and_smoothed_maps_say_which_z(study, bundle_dir, tmp_path):
    cohort, exact, model, C, cov = _python_scores(bundle_dir, study.root / "clinic")
    structure = model.eigenmode_basis.structures[0]
    out = tmp_path / "proj"
    code, _, stderr = run_cli(["apply", bundle_dir, study.root / "clinic", "--out", out, "--z", "projected"])
    assert code == 0, stderr
    got, _ = _read_maps(out, cohort.subjects, "zscore", structure)
    Q = vertex_queries(model.eigenmode_basis).encoded  # the seed API on coefficients: the low-pass z
    projected = model.evaluate(Q, C, cov).predictions["z-score"]
    np.testing.assert_allclose(got, projected.astype(np.float32), rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(projected - exact["z-score"])) > 0.1
    path = next(out.rglob("*desc-zscore_thickness.shape.gii"))
    assert dict(nib.load(path).meta)["SpectraNormZ"] == "projected"
    assert json.loads(next(out.rglob("*_desc-zscore_thickness.json")).read_text())["ZScore"] == "projected"
    smooth = tmp_path / "smooth"
    code, _, stderr = run_cli(["apply", bundle_dir, study.root / "clinic", "--out", smooth, "--fwhm", "10"])
    assert code == 0, stderr
    meta = dict(nib.load(next(smooth.rglob("*desc-zscore_thickness.shape.gii"))).meta)
    assert meta["SpectraNormZ"] == "smoothed" and meta["SpectraNormFWHMmm"] == "10"
    got, _ = _read_maps(smooth, cohort.subjects, "zscore", structure)
    W = io.kernel_queries(model.eigenmode_basis, {"L": "fsaverage5"}, fwhm=10.0)
    expected = model.evaluate_maps(cohort.maps(), cov, queries=W).predictions["z-score"]
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-5, atol=1e-5)
    # smoothing: neighbouring z values agree more than in the exact vertex maps
    assert np.std(np.diff(got, axis=1)) < np.std(np.diff(exact["z-score"], axis=1))


def test_apply_from_table_and_zip_bundle_gives_the_same_maps(study, bundle_dir, tmp_path):
    zipped = tmp_path / "bundle.zip"
    code, _, stderr = run_cli(["fit", study.root / "reference", "--basis", study.root / "basis.npz", *FIT_ARGS,
                               "--holdout", "0.2", "--out", zipped])
    assert code == 0, stderr
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(["apply", bundle_dir, study.root / "clinic", "--out", a, "-q"])[0] == 0
    code, stdout, stderr = run_cli(["apply", zipped, study.root / "clinic.tsv", "--out", b, "-q"])
    assert code == 0, stderr
    assert stdout == ""  # --quiet
    files = sorted(p.relative_to(a) for p in a.rglob("*.gii"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.gii")) and len(files) == 24
    for rel in files:  # same seed, same data: identical maps from a folder or a .zip, BIDS or table
        np.testing.assert_array_equal(nib.load(a / rel).darrays[0].data, nib.load(b / rel).darrays[0].data)


def test_unseen_site_population_then_adapt(study, bundle_dir, tmp_path):
    # without --population or adaptation: refused (tested in test_cli_errors); with it: population norms
    pop = tmp_path / "pop"
    code, _, stderr = run_cli(["apply", bundle_dir, study.root / "newsite_test", "--out", pop, "--population"])
    assert code == 0, stderr
    cohort, pred, model, _, _ = _python_scores(bundle_dir, study.root / "newsite_test", predict_without=["site"])
    got, _ = _read_maps(pop, cohort.subjects, "zscore", model.eigenmode_basis.structures[0])
    np.testing.assert_allclose(got, pred["z-score"].astype(np.float32), rtol=1e-6, atol=1e-6)

    adapted = tmp_path / "adapted"
    code, stdout, stderr = run_cli(["adapt", bundle_dir, study.root / "newsite", "--out", adapted])
    assert code == 0, stderr
    assert "site: D" in stdout
    card = json.loads(run_cli(["info", adapted, "--json"])[1])
    assert card["adaptations"] == [{"levels": {"site": ["D"]}, "n_subjects": 16,
                                    "source": "newsite"}]  # no local path
    again = tmp_path / "again"
    code, _, stderr = run_cli(["apply", adapted, study.root / "newsite_test", "--out", again])
    assert code == 0, stderr
    assert "warning" not in stderr
    # Python API: adapt the original model on the same controls, then score
    ref_model = load_bundle(bundle_dir).model
    controls = read_bids_cohort(study.root / "newsite", "thickness", basis=ref_model.eigenmode_basis)
    ref_model = ref_model.adapt_fit(encode_cohort(controls, ref_model.eigenmode_basis, progress=False),
                                    controls.covariates.astype({c: str for c in ("sex", "site", "group")}),
                                    maps=controls.maps())
    test = read_bids_cohort(study.root / "newsite_test", "thickness", basis=ref_model.eigenmode_basis)
    z = ref_model.evaluate_maps(test.maps(), test.covariates.astype({c: str for c in ("sex", "site", "group")})
                                ).predictions["z-score"]
    got, _ = _read_maps(again, test.subjects, "zscore", ref_model.eigenmode_basis.structures[0])
    np.testing.assert_allclose(got, z.astype(np.float32), rtol=1e-5, atol=1e-5)
    # adapted site-D norms fit site-D controls better than population norms (site D has a 1.1x sd and an offset)
    assert abs(np.mean(z)) < 0.5


def test_harmonize_matches_python_api(study, bundle_dir, tmp_path):
    out = tmp_path / "harm"
    code, _, stderr = run_cli(["harmonize", bundle_dir, study.root / "clinic", "--out", out])
    assert code == 0, stderr
    cohort, _, model, _, cov = _python_scores(bundle_dir, study.root / "clinic")
    maps = cohort.read()
    expected = model.harmonize_maps(maps, cov, ["site"])
    got, intents = _read_maps(out, cohort.subjects, "harmonized", model.eigenmode_basis.structures[0])
    assert intents == {"NIFTI_INTENT_ESTIMATE"}
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6, atol=1e-6)
    # what harmonizing removed is the known site offset (relative to the average site), per site
    site = cov["site"].to_numpy()
    removed = maps - expected
    offsets = study.process.site_offset
    mean_offset = np.mean([offsets[s] for s in "ABC"], axis=0)
    for s in "ABC":
        r = np.corrcoef(removed[site == s].mean(axis=0), offsets[s] - mean_offset)[0, 1]
        assert r > 0.5, (s, r)  # independent 20-mode fields: r ~ N(0, 0.22)


def test_harmonize_named_covariates_in_parallel_matches_python_api(study, bundle_dir, tmp_path):
    # --covariates beyond the batch covariate, harmonized and written block by block by two workers
    out = tmp_path / "harm2"
    code, _, stderr = run_cli(["harmonize", bundle_dir, study.root / "clinic", "--covariates", "site", "sex",
                               "--n-jobs", "2", "--out", out])
    assert code == 0, stderr
    cohort, _, model, _, cov = _python_scores(bundle_dir, study.root / "clinic")
    maps = cohort.read()
    expected = model.harmonize_maps(maps, cov, ["site", "sex"])
    got, _ = _read_maps(out, cohort.subjects, "harmonized", model.eigenmode_basis.structures[0])
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6, atol=1e-6)
    # removing sex as well changes the maps: it is not the site-only harmonization
    site_only = model.harmonize_maps(maps, cov, ["site"])
    assert np.max(np.abs(expected - site_only)) > 1e-3


def test_sys_info_and_seeded_reproducibility(study, tmp_path):
    code, stdout, _ = run_cli(["sys-info"])
    assert code == 0 and "numpy" in stdout and "spectranorm_neuro" in stdout
    info = json.loads(run_cli(["sys-info", "--json"])[1])
    assert info["dependencies"]["numpy"] == np.__version__
    # same seed + same inputs -> identical model arrays and card
    outs = []
    for name in ("r1", "r2"):
        out = tmp_path / name
        assert main(["fit", str(study.root / "reference"), "--basis", str(study.root / "basis.npz"), *FIT_ARGS,
                     "--holdout", "0.2", "--seed", "3", "--out", str(out), "-q"]) == 0
        outs.append(out)
    a, b = (np.load(o / "model" / "params.npz") for o in outs)
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    assert (outs[0] / "model_card.json").read_text() == (outs[1] / "model_card.json").read_text()


def test_apply_and_harmonize_outputs_pass_the_bids_validator(study, bundle_dir, tmp_path):
    # every dataset the commands read (written by the demo's writer) or write: 0 validator errors
    for name in ("reference", "clinic"):
        assert bids_errors(study.root / name) == [], name
    apply_out, harm_out = tmp_path / "z", tmp_path / "harm"
    assert run_cli(["apply", bundle_dir, study.root / "clinic", "--out", apply_out, "-q"])[0] == 0
    assert run_cli(["harmonize", bundle_dir, study.root / "clinic", "--out", harm_out, "-q"])[0] == 0
    for out in (apply_out, harm_out):
        assert bids_errors(out) == [], out
        assert not list(out.glob("spectranorm_*.json"))  # provenance is in the description and the sidecars
        desc = json.loads((out / "dataset_description.json").read_text())
        # the source, relative to the output: no local absolute path
        assert desc["SourceDatasets"] == [{"URL": Path(os.path.relpath(study.root / "clinic", out)).as_posix()}]
    side = json.loads(next(apply_out.rglob("*_desc-centile_thickness.json")).read_text())
    assert side["Units"] == "percentile (0-100)" and side["Model"]["NModes"] == N_MODES
    assert side["Model"]["Bundle"] == "bundle" and len(side["Model"]["ModelCardSHA256"]) == 64
    harm_side = json.loads(next(harm_out.rglob("*_desc-harmonized_thickness.json")).read_text())
    assert harm_side["Model"]["HarmonizedWithout"] == ["site"]
    # harmonize carries the covariates along, so its output is a cohort the other commands read as it is
    participants = pd.read_csv(harm_out / "participants.tsv", sep="\t", index_col=0)
    expected = study.cohorts["clinic"].covariates
    assert list(participants.index) == list(expected.index)
    np.testing.assert_allclose(participants["age"], expected["age"])
    assert json.loads((harm_out / "participants.json").read_text())["age"]["Units"] == "years"
    code, _, stderr = run_cli(["fit", harm_out, "--basis", study.root / "basis.npz", "--measure", "thickness",
                               "--numerical", "age", "--out", tmp_path / "refit", "-q"])  # no --participants needed
    assert code == 0, stderr


def test_adapt_accepts_a_site_participants_json_does_not_declare(study, bundle_dir, tmp_path):
    import shutil

    data = tmp_path / "newsite"
    shutil.copytree(study.root / "newsite", data)
    side = json.loads((data / "participants.json").read_text())
    side["site"]["Levels"] = {"A": "A", "B": "B", "C": "C"}  # the reference sites only, as a user would copy it
    (data / "participants.json").write_text(json.dumps(side))
    code, stdout, stderr = run_cli(["adapt", bundle_dir, data, "--out", tmp_path / "adapted"])
    assert code == 0, stderr
    assert "site: D" in stdout
    assert "['D'], not among its declared Levels" in stderr and '"D": "D"' in stderr  # the exact edit


def test_outputs_are_readable_like_any_user_file_and_cards_hold_no_local_paths(study, bundle_dir, tmp_path):
    from .test_permissions import assert_user_modes

    assert_user_modes(bundle_dir)  # fit's bundle folder: not drwx------
    out = tmp_path / "adapted"
    assert run_cli(["adapt", bundle_dir, study.root / "newsite", "--out", out, "-q"])[0] == 0
    assert_user_modes(out)
    assert run_cli(["apply", bundle_dir, study.root / "clinic", "--out", tmp_path / "z", "-q"])[0] == 0
    assert_user_modes(tmp_path / "z")
    for folder in (bundle_dir, out):
        text = (folder / "model_card.json").read_text()
        assert str(study.root) not in text and str(tmp_path) not in text, folder
        assert "/" not in json.loads(text)["training"]["source"]


def test_apply_atlas_writes_parcel_tables_and_maps_equal_to_the_python_api(study, bundle_dir, tmp_path):
    from spectranorm_neuro.io import atlas_queries

    labels, names = write_band_annot(tmp_path / "lh.bands.annot")
    out = tmp_path / "z"
    code, stdout, stderr = run_cli(["apply", bundle_dir, study.root / "clinic", "--out", out,
                                    "--atlas", tmp_path / "lh.bands.annot"])
    assert code == 0, stderr
    assert "3 parcels of bands" in stdout
    cohort, _, model, _, cov = _python_scores(bundle_dir, study.root / "clinic")
    q = atlas_queries(model.eigenmode_basis, tmp_path / "lh.bands.annot")
    # parcel means of the maps themselves, scored with the spectral and residual parts (exact z)
    expected = model.evaluate_maps(cohort.maps(), cov, queries=q).predictions
    table = pd.read_csv(out / "group" / "atlas-bands_desc-zscore_thickness.tsv", sep="\t", index_col=0)
    assert list(table.index) == cohort.subjects and list(table.columns) == names[1:]
    np.testing.assert_allclose(table.to_numpy(), expected["z-score"], rtol=1e-8, atol=1e-9)
    centiles = pd.read_csv(out / "group" / "atlas-bands_desc-centile_thickness.tsv", sep="\t", index_col=0)
    np.testing.assert_allclose(centiles.to_numpy(), expected["centiles"], rtol=1e-8, atol=1e-9)
    # the parcel maps: every kept vertex holds its parcel's z-score, the medial wall stays empty
    structure = model.eigenmode_basis.structures[0]
    sub = cohort.subjects[0]
    img = nib.load(next(out.rglob(f"{sub}_hemi-L_space-fsaverage_den-10k_atlas-bands_desc-zscore_thickness.shape.gii")))
    values = np.asarray(img.darrays[0].data)
    kept = np.asarray(structure.index)
    inside = kept[labels[kept] > 0]
    np.testing.assert_allclose(values[inside], expected["z-score"][0][labels[inside] - 1].astype(np.float32),
                               rtol=1e-6)
    assert np.isnan(np.delete(values, inside)).all() and inside.size < kept.size  # medial wall, "unknown": empty
    side = json.loads(next(out.rglob(f"{sub}_*_atlas-bands_desc-zscore_thickness.json")).read_text())
    assert side["Atlas"] == {"Name": "bands", "Files": ["lh.bands.annot"], "NParcels": 3}
    assert bids_errors(out) == []
    # a wrong atlas names --atlas and the file
    (tmp_path / "bad.annot").write_text("not an atlas")
    code, _, stderr = run_cli(["apply", bundle_dir, study.root / "clinic", "--out", tmp_path / "z2",
                               "--atlas", tmp_path / "bad.annot"])
    assert code == 1 and "--atlas=" in stderr and "bad.annot" in stderr


def test_local_z_declared_at_fit_is_written_and_said(study, bundle_dir, tmp_path):
    out = tmp_path / "nolocal"
    code, _, stderr = run_cli(["apply", bundle_dir, study.root / "clinic", "--out", out, "--z", "local"])
    assert code != 0 and "--z" in stderr and "--local-modes" in stderr and not out.exists()
    code, _, stderr = run_cli(["fit", study.root / "reference", "--basis", study.root / "basis.npz", *FIT_ARGS,
                               "--local-modes", str(N_MODES), "--out", tmp_path / "b"])
    assert code != 0 and "--local-modes" in stderr and not (tmp_path / "b").exists()
    # what `fit --local-modes 6` records (the residual fit itself is tested in test_engine_residual)
    from spectranorm_neuro.engine.maps import calibrate_maps, local_key

    declared = load_bundle(bundle_dir)
    cohort, _, model, _, cov = _python_scores(bundle_dir, study.root / "reference")
    declared.model.model_params["residual"]["local_modes"] = 6
    key = local_key("vertex", 6)
    declared.model.residual_params.calibration[key] = calibrate_maps(model, cohort.maps(), cov, local_modes=6)[key]
    bundle = tmp_path / "local_bundle"
    declared.save(bundle)
    out = tmp_path / "local"
    code, _, stderr = run_cli(["apply", bundle, study.root / "clinic", "--out", out, "--z", "local", "-q"])
    assert code == 0, stderr
    cohort, _, model, _, cov = _python_scores(bundle, study.root / "clinic")
    assert model.model_params["residual"]["local_modes"] == 6
    got, _ = _read_maps(out, cohort.subjects, "zscore", model.eigenmode_basis.structures[0])
    expected = model.evaluate_maps(cohort.maps(), cov, score="local").predictions["z-score"]
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-5, atol=1e-5)
    meta = dict(nib.load(next(out.rglob("*desc-zscore_thickness.shape.gii"))).meta)
    assert meta["SpectraNormZ"] == "local" and meta["SpectraNormLocalModes"] == "6"
    sidecar = json.loads(next(out.rglob("*_desc-zscore_thickness.json")).read_text())
    assert sidecar["ZScore"] == "local" and sidecar["LocalZCoarseModes"] == 6
    code, _, stderr = run_cli(["apply", bundle, study.root / "clinic", "--out", tmp_path / "h", "--z", "local",
                               "--maps", "zscore", "harmonized"])
    assert code != 0 and "harmonized" in stderr
