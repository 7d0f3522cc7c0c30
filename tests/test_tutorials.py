"""Run every tutorial end to end at reduced size (SPECTRANORM_TUTORIAL_FAST=1) and check its outputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.io import parse_bids_name

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("[0-9][0-9]_*.py"))


def run_tutorial(path: Path, cwd: Path) -> str:
    env = dict(os.environ, SPECTRANORM_TUTORIAL_FAST="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_spectral_model_tutorial(tmp_path):
    out = run_tutorial(next(p for p in TUTORIALS if p.name.startswith("02_")), tmp_path)
    assert len(list(tmp_path.glob("*.png"))) == 10
    assert (tmp_path / "tmp_directory" / "manifest.json").exists()
    assert (tmp_path / "eigenmode_basis.joblib").read_bytes()[:2] == b"PK"  # a zip (npz), not a pickle
    msll = float(re.search(r"median test MSLL: (\S+)", out).group(1))
    z_rmse = float(re.search(r"RMSE of z-scores against the true z: (\S+)", out).group(1))
    assert msll < -0.4
    assert z_rmse < 0.25  # 600 training subjects in the fast run; 0.09 at full size


def test_eigenmode_bases_tutorial(tmp_path):
    out = run_tutorial(next(p for p in TUTORIALS if p.name.startswith("01_")), tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} == {"01_first_modes.png", "02_reconstructions.png"}
    assert (tmp_path / "lattice_basis.npz").read_bytes()[:2] == b"PK"
    err = {(m.group(1).strip(), int(m.group(2))): float(m.group(3))
           for m in re.finditer(r"^(.{12}) +(\d+) modes: relative error +(\S+)%", out, re.M)}
    assert len(err) == 6
    for name in ("wide blob", "narrow blob", "square"):
        assert err[(name, 100)] < err[(name, 20)]  # more modes, smaller error
    assert err[("wide blob", 20)] < 5 < err[("narrow blob", 20)]  # smooth maps need few modes


def _intent(darray) -> str:
    return nib.nifti1.intent_codes.niistring[darray.intent]


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the output"
    return float(match.group(1))


@pytest.mark.slow
def test_cortical_surface_tutorial(tmp_path):
    out = run_tutorial(next(p for p in TUTORIALS if p.name.startswith("03_")), tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} == {"01_lbo_modes.png", "02_patient_zmaps.png"}
    # fast run: 15 controls + 15 patients, 20 k-means parcels per hemisphere
    ids = [f"sub-clic{i:04d}" for i in range(1, 16)] + [f"sub-clip{i:04d}" for i in range(1, 16)]
    for level in ("vertex", "parcel"):
        for hemi in "LR":
            img = nib.load(tmp_path / f"zmap_{level}_hemi-{hemi}.func.gii")
            assert [d.meta["Name"] for d in img.darrays] == ids
            assert {_intent(d) for d in img.darrays} == {"NIFTI_INTENT_ZSCORE"}
            data = np.stack([d.data for d in img.darrays])
            assert data.shape == (30, 10242)
            cortex = ~np.isnan(data[0])
            assert 0.9 < cortex.mean() < 0.97  # the medial wall is NaN
            assert np.isnan(data[:, ~cortex]).all() and np.isfinite(data[:, cortex]).all()
            if level == "parcel":  # painted parcels: one value per parcel
                assert all(len(np.unique(row[cortex])) == 20 for row in data)
    table = pd.read_csv(tmp_path / "zmap_parcels.tsv", sep="\t", index_col=0)
    assert table.shape == (30, 40) and list(table.index) == ids
    html = (tmp_path / "report" / "index.html").read_text()
    assert all(i in html for i in ids)
    # calibration of held-out controls, agreement with the true z, planted lesions found
    assert abs(_number(r"held-out controls: mean z (\S+),", out)) < 0.1
    assert 0.85 < _number(r"sd z (\S+),", out) < 1.15
    assert _number(r"against the true z: (\S+)", out) < 0.3  # 0.22 fast, 0.13 at full size
    assert _number(r"mean vertex z inside (\S+),", out) < -1.2  # -1.7 fast, -2.7 at full size
    assert abs(_number(r"mean vertex z inside \S+, elsewhere (\S+)", out)) < 0.3
    assert _number(r"lesioned parcel mean z (\S+),", out) < -1.0  # -1.3 fast, -2.2 at full size
    assert 0.8 < _number(r"controls mean \S+ sd (\S+)", out) < 1.2


@pytest.mark.slow
def test_shared_model_tutorial(tmp_path):
    from spectranorm_neuro.workflow import load_bundle

    out = run_tutorial(next(p for p in TUTORIALS if p.name.startswith("04_")), tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} == {"01_adaptation.png"}
    assert "refused: site=['D']" in out  # an unseen site is refused with an explanation
    shared, adapted = load_bundle(tmp_path / "shared_model.zip"), load_bundle(tmp_path / "shared_model_siteD.zip")
    assert shared.card["adaptations"] == [] and shared.card["training"]["n_subjects"] == 200
    assert adapted.card["adaptations"][0]["levels"] == {"site": ["D"]}
    assert adapted.card["adaptations"][0]["n_subjects"] == 30
    assert adapted.model.model_params["adapted_levels"] == {"site": ["D"]}
    # BIDS derivatives: 20 held-out controls + 10 patients, two hemispheres, z-scores and centiles
    deriv = tmp_path / "derivatives"
    assert json.loads((deriv / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    zmaps = sorted(deriv.glob("sub-*/anat/*_desc-zscore_thickness.shape.gii"))
    centiles = sorted(deriv.glob("sub-*/anat/*_desc-centile_thickness.shape.gii"))
    assert len(zmaps) == len(centiles) == 60
    ents = parse_bids_name(zmaps[0])
    assert (ents["sub"], ents["hemi"], ents["space"], ents["den"]) == ("newc0001", "L", "fsaverage", "10k")
    assert _intent(nib.load(zmaps[0]).darrays[0]) == "NIFTI_INTENT_ZSCORE"
    cent = nib.load(centiles[0]).darrays[0].data
    assert np.nanmin(cent) >= 0 and np.nanmax(cent) <= 100
    summary = pd.read_csv(deriv / "group" / "desc-zscoresummary_thickness.tsv", sep="\t")
    assert len(summary) == 30
    # adaptation removes the new scanner's bias (+0.08 mm, about +0.5 sd)
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)), float(m.group(4)))
            for m in re.finditer(r"^(with(?:out)? adaptation) *: held-out controls mean z (\S+), .*"
                                 r"RMSE vs true z (\S+); patients' lesion cores mean z (\S+)$", out, re.M)}
    (bias0, rmse0, lesion0), (bias1, rmse1, lesion1) = rows["without adaptation"], rows["with adaptation"]
    assert bias0 > 0.3 and abs(bias1) < 0.15
    assert rmse1 < 0.6 * rmse0
    assert lesion1 < lesion0 - 0.3  # the bias partly masked the lesions


UPSTREAM = Path(__file__).resolve().parents[1] / "data" / "upstream"


def _printed(text: str) -> dict[str, float]:
    """``label: number`` lines of a tutorial's output."""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^([A-Za-z][^:\n]*): (-?\d+\.\d+)$", text, re.M)}


def _evaluations(label: str, text: str) -> dict[str, float]:
    """The ``evaluations`` dict printed after ``label: `` (values shown as ``array(x)``), in its order."""
    match = re.search(rf"^{re.escape(label)}: \{{(.*)\}}$", text, re.M)
    assert match, f"{label!r} not in the output"
    return {k: float(v) for k, v in re.findall(r"'([^']+)': (?:array\()?(-?[\d.]+(?:e[+-]?\d+)?)", match.group(1))}


# The notebook's own stored outputs (univariate_model.ipynb at 13295f5, cells 18/19 and 23), 5000 subjects.
# MAE ... Explained Variance are bitwise those of the recorded 0.1.4 run; its MSLL values (-0.79697968,
# -0.80074661) come from an earlier censoring rule of the reference (by log-likelihood value instead of |z|):
# 0.1.4, and this package, give -0.7877 and -0.7928 on the same predictions.
NOTEBOOK_TRAIN = {"MAE": 0.39788493, "MSE": 0.26895753, "RMSE": 0.51861116, "MAPE": 10.17445066,
                  "R-squared": 0.77135881, "Explained Variance": 0.77135901}
NOTEBOOK_TEST = {"MAE": 0.3962901, "MSE": 0.26426399, "RMSE": 0.51406614, "MAPE": 9.63360171,
                 "R-squared": 0.77598759, "Explained Variance": 0.77599224}
# ours vs the reference, absolute: the mean fits agree closely (this package: MAP/Laplace; the
# reference: ADVI); MAPE is in percent; the censored MSLL depends on the fitted sd in the tails
TOLERANCE = {"MAE": 0.002, "MSE": 0.002, "RMSE": 0.002, "MAPE": 0.05, "R-squared": 0.002,
             "Explained Variance": 0.002, "MSLL": 0.01}


@pytest.mark.slow
def test_univariate_model_tutorial(tmp_path):
    out = run_tutorial(next(p for p in TUTORIALS if p.name.startswith("05_")), tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} == {"05_01_data.png", "05_02_model_fit.png",
                                                        "05_03_fit_vs_ground_truth.png",
                                                        "05_04_harmonized_test_data.png"}
    # the same script run on the reference itself (data/upstream/reference_tutorials.py): 5000 subjects, as the notebook
    ref_text = (UPSTREAM / "reference_05_univariate_model.txt").read_text()
    assert out.splitlines()[:7] == ref_text.splitlines()[:7]  # identical data (cell 6) and model repr (cell 10)
    train = _evaluations("train evaluations (predict + evaluate_predictions)", out)
    assert train == _evaluations("train evaluations (evaluate)", out)  # cells 18 and 19: the same numbers
    for label, notebook in (("train evaluations (evaluate)", NOTEBOOK_TRAIN), ("test evaluations", NOTEBOOK_TEST)):
        ours, ref = _evaluations(label, out), _evaluations(label, ref_text)
        assert list(ours) == list(ref) == [*notebook, "MSLL"]  # the reference's seven metrics, nothing else
        for key, value in ref.items():
            assert abs(ours[key] - value) < TOLERANCE[key], (label, key, ours[key], value)
        for key, value in notebook.items():
            assert ref[key] == pytest.approx(value, abs=1e-8)  # the recording is the notebook's run
    # the added section: against the known generating process, at least as close as the reference
    ours, ref = _printed(out), _printed(ref_text)
    chart_sd = "RMSE of the chart sd against the true within-site sd"  # 0.0160 on the reference
    assert ours[chart_sd] <= ref[chart_sd] + 0.002
    z_rmse = "RMSE of z-scores against the true z"  # 0.0681 on the reference
    assert ours[z_rmse] <= ref[z_rmse] + 0.01
    band = "fraction of harmonized test data inside the 95% band"  # 0.9506 on the reference
    assert abs(ours[band] - 0.95) < 0.01 and abs(ours[band] - ref[band]) < 0.005


@pytest.mark.slow
def test_digit_eigenmode_bases_tutorial(tmp_path):
    out = run_tutorial(next(p for p in TUTORIALS if p.name.startswith("06_")), tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} == {"06_01_lattice.png", "06_02_first_modes.png",
                                                        "06_03_last_modes.png", "06_04_digits.png"}
    assert (tmp_path / "eigenmode_basis.joblib").read_bytes()[:2] == b"PK"  # the safe npz format
    assert "loaded basis identical: True" in out
    # the same script run on the reference itself (data/upstream/reference_tutorials.py)
    ref = (UPSTREAM / "reference_06_digit_eigenmode_bases.txt").read_text()
    for text in (out, ref):  # cell 4's display, as the notebook shows it
        assert "EigenmodeBasis(n_modes=100, n_features=2500)" in text.splitlines()

    def numbers(text):
        values = [float(v) for label in ("first eigenvalues", "eigenvalues 20 and 21", "eigenvalues 100 and 101")
                  for v in re.search(rf"^{label}: (.*)$", text, re.M).group(1).split()]
        errors = re.findall(r"^digit (\d) +(\d+) modes: relative reconstruction error (\S+)%$", text, re.M)
        return np.array(values), {(d, k): float(e) for d, k, e in errors}

    (vals, errors), (ref_vals, ref_errors) = numbers(out), numbers(ref)
    assert vals.shape == (12,)
    np.testing.assert_allclose(vals, ref_vals, atol=2e-6)  # printed to 6 decimals
    assert len(errors) == 20 and set(errors) == set(ref_errors)
    for key, err in errors.items():  # the 20- and 100-mode subspaces are unique (no eigenvalue tie at the cut)
        assert abs(err - ref_errors[key]) < 0.011, key  # printed to 0.01 %
        assert errors[(key[0], "100")] < errors[(key[0], "20")]


def test_every_tutorial_is_tested():
    tested = {"01_", "02_", "03_", "04_", "05_", "06_"}  # add each new tutorial's prefix together with its test above
    names = {p.name[:3] for p in TUTORIALS}
    assert "02_" in names and names <= tested, names
