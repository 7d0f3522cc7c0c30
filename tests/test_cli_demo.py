"""The ``demo`` command (reduced size) and the ``report`` command; both slow (they draw brain figures)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.io import parse_bids_name
from spectranorm_neuro.workflow.demo import planted_check

from ._cli_data import FIT_ARGS, leftovers, make_study, run_cli, write_band_annot
from ._validator import bids_errors

pytestmark = pytest.mark.filterwarnings("ignore::spectranorm_neuro.exceptions.ExtrapolationWarning")


def test_planted_check_decision():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 500))
    core = np.zeros_like(z, dtype=bool)
    core[10:, :25] = True
    patients = np.arange(20) >= 10
    assert not planted_check(z, core, patients)["passed"]  # nothing planted
    z[core] -= 2.0
    res = planted_check(z, core, patients)
    assert res["passed"] and res["mean_z_inside"] < -1.5 and abs(res["mean_z_outside"]) < 0.1
    z[patients] -= 1.0  # a global shift is not a focal deviation
    assert not planted_check(z, core, patients)["passed"]


@pytest.mark.slow
def test_demo_small_recovers_the_planted_deviations(tmp_path):
    out = tmp_path / "demo"
    code, stdout, stderr = run_cli(["demo", "--small", "--out", out, "--max-subjects", "2"])
    assert code == 0, stderr
    assert "Planted deviations RECOVERED" in stdout and str(out) in stdout
    check = json.loads((out / "demo_check.json").read_text())
    res = check["planted_deviation_check"]
    assert res["passed"] and res["mean_z_inside"] < -1.0 and abs(res["mean_z_outside"]) < 0.5
    assert 0.8 < res["sd_z_controls"] < 1.25
    for rel in ("basis.npz", "model_bundle/manifest.json", "model_bundle/model_card.json", "report/index.html",
                "data/reference/participants.tsv", "data/clinic/dataset_description.json",
                "derivatives/group/desc-zscoresummary_thickness.tsv"):
        assert (out / rel).is_file(), rel
    zmaps = sorted((out / "derivatives").rglob("*desc-zscore_thickness.shape.gii"))
    assert len(zmaps) == 20
    ents = parse_bids_name(zmaps[0])
    assert (ents["space"], ents["den"], ents["hemi"]) == ("fsaverage", "10k", "L")
    assert nib.nifti1.intent_codes.niistring[nib.load(zmaps[0]).darrays[0].intent] == "NIFTI_INTENT_ZSCORE"
    for dataset in ("data/reference", "data/clinic", "derivatives"):  # 0 errors of the official validator
        assert bids_errors(out / dataset) == [], dataset
    participants = pd.read_csv(out / "data" / "reference" / "participants.tsv", sep="\t")
    assert len(participants) == 150 and set(participants["site"]) == {"A", "B", "C"}
    html = (out / "report" / "index.html").read_text()
    assert "data/reference" in html  # the model card is rendered in the report
    # the demo's bundle works with the other commands
    code, stdout, _ = run_cli(["info", out / "model_bundle"])
    assert code == 0 and "Training: 137 subjects" in stdout
    # a second run into the same folder is refused and leaves it alone
    code, _, stderr = run_cli(["demo", "--small", "--out", out])
    assert code == 1 and "--overwrite" in stderr and leftovers(out) == []


@pytest.mark.slow
def test_report_command(tmp_path):
    study = make_study(tmp_path)
    bundle = tmp_path / "bundle.zip"
    assert run_cli(["fit", tmp_path / "reference", "--basis", tmp_path / "basis.npz", *FIT_ARGS,
                    "--out", bundle, "-q"])[0] == 0
    out = tmp_path / "report"
    write_band_annot(tmp_path / "lh.bands.annot")
    code, stdout, stderr = run_cli(["report", bundle, tmp_path / "clinic", "--out", out, "--group-column", "group",
                                    "--controls", "group=control", "--max-subjects", "2",
                                    "--atlas", tmp_path / "lh.bands.annot"])
    assert code == 0, stderr
    pages = " ".join(p.read_text() for p in out.rglob("*.html"))
    assert "band2" in pages  # --atlas: the report names the atlas regions
    html = (out / "index.html").read_text()
    ids = study.cohorts["clinic"].covariates.index
    assert all(i in html for i in ids)  # every subject in the summary table
    assert "patient" in html and "control" in html
    assert len(list((out / "figures").rglob("*.png"))) > 3
    assert "|z| &gt; 2.0 in clusters of at least 100 mm²" in html and "control subjects (group control)" in html
    # --threshold 0 draws unthresholded maps; a negative threshold is refused before scoring
    code, _, stderr = run_cli(["report", bundle, tmp_path / "clinic", "--out", tmp_path / "unthr", "--threshold", "0",
                               "--max-subjects", "1", "-q"])
    assert code == 0, stderr
    assert "Unthresholded z-scores" in (tmp_path / "unthr" / "index.html").read_text()
    code, _, stderr = run_cli(["report", bundle, tmp_path / "clinic", "--out", tmp_path / "bad", "--threshold", "-1"])
    assert code == 1 and "threshold" in stderr and "Fix:" in stderr and not (tmp_path / "bad").exists()
    # apply --report writes the same report next to the maps
    z = tmp_path / "z"
    code, stdout, stderr = run_cli(["apply", bundle, tmp_path / "clinic", "--out", z, "--report",
                                    "--max-subjects", "1"])
    assert code == 0, stderr
    assert (z / "report" / "index.html").is_file() and "report/index.html" in stdout
    assert bids_errors(z) == []  # the report inside the derivatives is listed in .bidsignore
