"""Every dataset the package writes passes the official BIDS validator (bids-validator-deno, 0 errors).

The writer's outputs (surface GIFTI, volume NIfTI, CIFTI, JSON sidecars, the group summary,
``participants.tsv``, ``README.md``, ``.bidsignore``) are checked here on small synthetic data; the
command-line outputs in ``test_cli.py`` (apply, harmonize, their input datasets) and
``test_cli_demo.py`` (the demo's inputs and derivatives).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro import io

from ._validator import bids_errors


@pytest.fixture
def surfaces():
    rng = np.random.default_rng(3)
    return io.surface_structure("L", 200, rng.random(200) > 0.1), io.surface_structure("R", 200, rng.random(200) > 0.1)


def _volume(tmp_path):
    mask = np.zeros((4, 5, 6), bool)
    mask[1:3, 1:4, 1:5] = True
    nib.save(nib.Nifti1Image(mask.astype(np.int16), np.diag([2.0, 2.0, 2.0, 1.0])), str(tmp_path / "mask.nii.gz"))
    return io.volume_structure(tmp_path / "mask.nii.gz")


def test_writer_outputs_pass_the_validator_and_a_stray_file_does_not(tmp_path, surfaces):
    rng = np.random.default_rng(0)
    root = tmp_path / "deriv"
    model = {"Model": {"Bundle": "bundle", "NModes": 20}}
    writer = io.DerivativesWriter(root, source_datasets=["../raw"], metadata=model)
    subjects = ["sub-01", "sub-02", "sub-03"]
    z = rng.normal(size=(3, sum(s.n_features for s in surfaces)))
    maps = writer.write_cohort(z, subjects, "zscore", "thickness", surfaces, space="fsaverage5")
    writer.write_cohort(100 * rng.random(z.shape), subjects, "centile", "alff", surfaces, space="fsaverage5")
    writer.write_subject(z[0], "01", "mu", "thickness", surfaces, space="fsLR", den="32k", cifti=True)
    vol = _volume(tmp_path)
    writer.write_subject(rng.normal(size=vol.n_features), "02", "zscore", "GMV", (vol,), space="MNI152NLin2009cAsym",
                         res="2", template=tmp_path / "mask.nii.gz")
    writer.write_summary(z, subjects, "thickness")
    io.write_participants(root, pd.DataFrame({"age": [30.5, 41.0, 52.0], "site": ["A", "B", "A"]},
                                             index=pd.Index(subjects, name="participant_id")),
                          {"age": {"Description": "Age at scan", "Units": "years"}})
    assert bids_errors(root) == []
    # what was written: .shape.gii for an anatomical measure, .func.gii otherwise; a sidecar per map
    assert maps[0].name == "sub-01_hemi-L_space-fsaverage_den-10k_desc-zscore_thickness.shape.gii"
    assert len(list(root.rglob("*_desc-centile_alff.func.gii"))) == 6
    side = json.loads(maps[0].with_name(maps[0].name.replace(".shape.gii", ".json")).read_text())
    assert side["Units"].startswith("z") and side["Model"] == model["Model"] and side["MapType"] == "zscore"
    centile = json.loads(next(root.rglob("sub-01_hemi-R_*_desc-centile_alff.json")).read_text())
    assert centile["Units"] == "percentile (0-100)" and "alff" in centile["Description"]
    assert len(list(root.rglob("*.json"))) == 6 + 6 + 1 + 1 + 3  # maps, summary, participants, description
    desc = json.loads((root / "dataset_description.json").read_text())
    gen = desc["GeneratedBy"][0]
    assert gen["Version"] == io.bids.__version__ and gen["CodeURL"].startswith("https://")
    assert desc["SourceDatasets"] == [{"URL": "../raw"}]
    assert "zscore" in (root / "README.md").read_text()
    parts = json.loads((root / "participants.json").read_text())
    assert parts["site"]["Levels"] == {"A": "A", "B": "B"} and parts["age"]["Units"] == "years"
    assert pd.read_csv(root / "participants.tsv", sep="\t")["participant_id"].tolist() == subjects
    # the check can fail: a provenance file at the root (as older versions wrote) is an error
    (root / "spectranorm_apply.json").write_text("{}\n")
    assert any(e.startswith(("SIDECAR_WITHOUT_DATAFILE", "NOT_INCLUDED")) for e in bids_errors(root))


def test_bidsignore_lists_only_what_the_schema_lacks(tmp_path, surfaces):
    root = tmp_path / "d"
    io.DerivativesWriter(root)
    lines = [x for x in (root / ".bidsignore").read_text().splitlines() if x and not x.startswith("#")]
    assert lines == list(io.BIDSIGNORE_PATTERNS)
    assert all(x.endswith((".gii", ".nii")) or x.startswith(("*_desc-", "/")) for x in lines)
    # participants.tsv and the description are not ignored: a broken participants.json is an error
    io.write_participants(root, pd.DataFrame({"age": [1.0]}, index=pd.Index(["sub-01"], name="participant_id")))
    (root / "participants.json").write_text(json.dumps({"age": {"Description": "x", "Levels": 3}}))
    assert bids_errors(root)


def test_surface_extension_follows_smriprep():
    assert io.surface_extension("thickness") == ".shape.gii"
    assert io.surface_extension("sulc") == ".shape.gii"
    assert io.surface_extension("alff") == ".func.gii"
