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


@pytest.mark.slow
def test_univariate_model_tutorial(tmp_path):
    out = run_tutorial(next(p for p in TUTORIALS if p.name.startswith("05_")), tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} == {"05_01_data.png", "05_02_model_fit.png",
                                                        "05_03_harmonized_test_data.png"}
    ours = _printed(out)
    # the same script run on the reference itself (data/upstream/reference_tutorials.py, fast mode)
    ref_text = (UPSTREAM / "reference_05_univariate_model.txt").read_text()
    ref = _printed(ref_text)
    assert out.splitlines()[:6] == ref_text.splitlines()[:6]  # the reference's data cell: identical data
    for part in ("train", "test"):
        for key in ("MAE", "RMSE", "R-squared", "Explained Variance"):
            assert abs(ours[f"{part} {key}"] - ref[f"{part} {key}"]) < 0.005, (part, key)
        assert abs(ours[f"{part} MSLL"] - ref[f"{part} MSLL"]) < 0.02  # MSLL censored as the reference's
    # against the known process: at least as close to the truth as the reference (0.147, 0.053 there)
    assert ours["RMSE of z-scores against the true z"] <= ref["RMSE of z-scores against the true z"] + 0.01
    chart_sd = "RMSE of the chart sd against the true within-site sd"
    assert ours[chart_sd] <= ref[chart_sd] + 0.002 and ours[chart_sd] < 0.04
    band = "fraction of harmonized test data inside the 95% band"
    assert 0.92 < ours[band] < 0.98 and abs(ours[band] - ref[band]) < 0.02
    new_z = _number(r"new site G after adapt_fit: mean z (\S+),", out)
    assert abs(new_z) < 0.3  # 0.77 on the reference (its prior pins the new site's offset near 0)
    assert (tmp_path / "univariate_model" / "saved_model" / "manifest.json").exists()


@pytest.mark.slow
def test_digit_eigenmode_bases_tutorial(tmp_path):
    out = run_tutorial(next(p for p in TUTORIALS if p.name.startswith("06_")), tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} == {"06_01_lattice.png", "06_02_modes.png", "06_03_digits.png"}
    assert (tmp_path / "eigenmode_basis.joblib").read_bytes()[:2] == b"PK"  # the safe npz format
    assert "loaded basis identical: True" in out
    # the same script run on the reference itself (data/upstream/reference_tutorials.py)
    ref = (UPSTREAM / "reference_06_digit_eigenmode_bases.txt").read_text()

    def numbers(text):
        values = re.search(r"first eigenvalues: \[([^\]]*)\]", text).group(1).split()
        errors = re.findall(r"^digit (\d) +(\d+) modes: relative reconstruction error (\S+)%$", text, re.M)
        return np.array(values, dtype=float), {(d, k): float(e) for d, k, e in errors}

    (vals, errors), (ref_vals, ref_errors) = numbers(out), numbers(ref)
    np.testing.assert_allclose(vals, ref_vals, atol=2e-6)
    assert len(errors) == 20 and set(errors) == set(ref_errors)
    for key, err in errors.items():  # 20 and 100 modes reconstruct each digit exactly as on the reference
        assert abs(err - ref_errors[key]) < 0.02, key
        assert errors[(key[0], "100")] < errors[(key[0], "20")]


def test_every_tutorial_is_tested():
    tested = {"01_", "02_", "03_", "04_", "05_", "06_"}  # add each new tutorial's prefix together with its test above
    names = {p.name[:3] for p in TUTORIALS}
    assert "02_" in names and names <= tested, names
