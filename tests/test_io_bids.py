"""BIDS names (parse, aliases, build), the derivatives writer and the cohort summary."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spectranorm_neuro import io
from spectranorm_neuro.exceptions import FileFormatError, InvalidInputError, OutputExistsError

label = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=8
)


def test_parse_issue_examples():
    ents = io.parse_bids_name("sub-01_ses-1_hemi-L_space-fsaverage_den-10k_desc-zscore_thickness.func.gii")
    assert ents == {
        "sub": "01",
        "ses": "1",
        "hemi": "L",
        "space": "fsaverage",
        "den": "10k",
        "desc": "zscore",
        "suffix": "thickness",
        "extension": ".func.gii",
    }
    ents = io.parse_bids_name(
        "/data/sub-01/anat/sub-01_space-MNI152NLin2009aSym_res-2_desc-zscore_GMV.nii.gz"
    )
    assert ents == {
        "sub": "01",
        "space": "MNI152NLin2009aSym",
        "res": "2",
        "desc": "zscore",
        "suffix": "GMV",
        "extension": ".nii.gz",
    }


@pytest.mark.parametrize(
    "alias,space,den",
    [
        ("fsaverage5", "fsaverage", "10k"),
        ("fsaverage6", "fsaverage", "41k"),
        ("fsaverage4", "fsaverage", "3k"),
        ("fsLR", "fsLR", None),
    ],
)
@pytest.mark.parametrize("hemi_alias,hemi", [("lh", "L"), ("rh", "R"), ("L", "L"), ("right", "R")])
def test_aliases_normalise(alias, space, den, hemi_alias, hemi):
    ents = io.parse_bids_name(f"sub-7_hemi-{hemi_alias}_space-{alias}_thickness.shape.gii")
    assert ents["space"] == space and ents.get("den") == den and ents["hemi"] == hemi
    raw = io.parse_bids_name(f"sub-7_hemi-{hemi_alias}_space-{alias}_thickness.shape.gii", normalize=False)
    assert raw["space"] == alias and raw["hemi"] == hemi_alias


def test_alias_conflicting_density_is_an_error():
    with pytest.raises(InvalidInputError, match=r"den='41k'.*contradicts space-fsaverage5.*Fix"):
        io.parse_bids_name("sub-1_space-fsaverage5_den-41k_thickness.shape.gii")


def test_build_orders_entities_and_normalises():
    name = io.build_bids_name(
        {"desc": "zscore", "den": None, "space": "fsaverage5", "hemi": "lh", "sub": "sub-01", "ses": "1"},
        "thickness",
        "func.gii",
    )
    assert name == "sub-01_ses-1_hemi-L_space-fsaverage_den-10k_desc-zscore_thickness.func.gii"
    with pytest.raises(InvalidInputError, match=r"\['colour'\].*not BIDS entities.*Fix"):
        io.build_bids_name({"sub": "1", "colour": "red"}, "thickness", ".func.gii")
    with pytest.raises(InvalidInputError, match=r"sub='0_1'.*not a BIDS label.*Fix: remove"):
        io.build_bids_name({"sub": "0_1"}, "thickness", ".func.gii")
    with pytest.raises(InvalidInputError, match=r"suffix='thick-ness'.*Fix"):
        io.build_bids_name({"sub": "1"}, "thick-ness", ".func.gii")


@settings(max_examples=60, deadline=None)
@given(
    sub=label,
    ses=st.none() | label,
    hemi=st.sampled_from(["L", "R", None]),
    space=st.none() | label,
    desc=st.none() | st.sampled_from(io.DESC_VOCABULARY),
    suffix=label,
    ext=st.sampled_from([".func.gii", ".shape.gii", ".dscalar.nii", ".nii.gz", ".tsv"]),
)
def test_build_then_parse_returns_the_same_entities(sub, ses, hemi, space, desc, suffix, ext):
    ents = {"sub": sub, "ses": ses, "hemi": hemi, "space": space, "desc": desc}
    parsed = io.parse_bids_name(io.build_bids_name(ents, suffix, ext))
    want = io.normalize_entities({k: v for k, v in ents.items() if v is not None})
    assert parsed == {**want, "suffix": suffix, "extension": ext}


@pytest.mark.parametrize(
    "bad",
    [
        "thickness.func.gii",
        "sub-01_hemi_thickness.func.gii",
        "sub-01_sub-02_thickness.func.gii",
        "sub-01_hemi-L.func.gii",
        "lh.thickness",
    ],
)
def test_parse_rejects_non_bids_names(bad):
    with pytest.raises(FileFormatError, match=r"path=.*Fix"):
        io.parse_bids_name(bad)


# ---------------------------------------------------------------------------------------------- writer
@pytest.fixture
def layout(rng):
    left = io.surface_structure("L", 300, rng.random(300) > 0.1)
    right = io.surface_structure("R", 300, rng.random(300) > 0.1)
    return left, right


def test_derivatives_writer_surfaces_tree(tmp_path, layout, rng):
    left, right = layout
    n = left.n_features + right.n_features
    z = rng.normal(size=(3, n))
    writer = io.DerivativesWriter(tmp_path / "deriv", source_datasets=["https://openneuro.org/ds000001"])
    paths = writer.write_cohort(
        z,
        ["sub-01", "02", "sub-03"],
        "zscore",
        "thickness",
        (left, right),
        sessions=["1", "1", "2"],
        space="fsaverage5",
    )
    rel = sorted(str(p.relative_to(tmp_path / "deriv")) for p in paths)
    assert rel[:2] == [
        "sub-01/ses-1/anat/sub-01_ses-1_hemi-L_space-fsaverage_den-10k_desc-zscore_thickness.shape.gii",
        "sub-01/ses-1/anat/sub-01_ses-1_hemi-R_space-fsaverage_den-10k_desc-zscore_thickness.shape.gii",
    ]
    assert len(paths) == 6
    for path in paths:
        ents = io.parse_bids_name(path)
        assert (ents["space"], ents["den"], ents["desc"], ents["suffix"]) == (
            "fsaverage",
            "10k",
            "zscore",
            "thickness",
        )
        img = nib.load(str(path))
        assert nib.nifti1.intent_codes.niistring[img.darrays[0].intent] == "NIFTI_INTENT_ZSCORE"
        assert img.meta["AnatomicalStructurePrimary"] == {"L": "CortexLeft", "R": "CortexRight"}[ents["hemi"]]
    back = np.concatenate([io.read_map(paths[4], left), io.read_map(paths[5], right)], axis=1)[0]
    np.testing.assert_allclose(back, z[2].astype(np.float32))
    desc = json.loads((tmp_path / "deriv" / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "spectranorm_neuro"
    assert desc["SourceDatasets"] == [{"URL": "https://openneuro.org/ds000001"}]
    # a second writer adds to the same tree (e.g. centiles) without rewriting the description
    stamp = (tmp_path / "deriv" / "dataset_description.json").stat().st_mtime_ns
    more = io.DerivativesWriter(tmp_path / "deriv").write_subject(
        z[0], "01", "centile", "thickness", (left, right), space="fsaverage5"
    )
    assert io.parse_bids_name(more[0])["desc"] == "centile"
    assert (tmp_path / "deriv" / "dataset_description.json").stat().st_mtime_ns == stamp
    with pytest.raises(OutputExistsError, match="Fix: choose another output path or pass overwrite=True"):
        writer.write_subject(
            z[0], "01", "zscore", "thickness", (left, right), session="1", space="fsaverage5"
        )


def test_derivatives_writer_volume_and_cifti(tmp_path, layout, rng):
    mask = np.zeros((5, 6, 7), bool)
    mask[1:4, 2:5, 1:6] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-90, -126, -72]
    nib.save(nib.Nifti1Image(mask.astype(np.int16), affine), str(tmp_path / "mask.nii.gz"))
    vol = io.volume_structure(tmp_path / "mask.nii.gz")
    writer = io.DerivativesWriter(tmp_path / "d")
    values = rng.normal(size=vol.n_features)
    (path,) = writer.write_subject(
        values,
        "01",
        "zscore",
        "GMV",
        (vol,),
        space="MNI152NLin2009aSym",
        res="2",
        template=tmp_path / "mask.nii.gz",
    )
    assert path.name == "sub-01_space-MNI152NLin2009aSym_res-2_desc-zscore_GMV.nii.gz"
    img = nib.load(str(path))
    np.testing.assert_allclose(img.affine, affine)
    np.testing.assert_allclose(img.get_fdata()[mask], values.astype(np.float32))
    assert np.isnan(img.get_fdata()[~mask]).all()
    left, right = layout
    (cpath,) = writer.write_subject(
        rng.normal(size=left.n_features + right.n_features),
        "01",
        "mu",
        "thickness",
        (left, right),
        space="fsLR",
        den="32k",
        cifti=True,
    )
    assert cpath.name == "sub-01_space-fsLR_den-32k_desc-mu_thickness.dscalar.nii"
    assert io.parse_bids_name(cpath)["extension"] == ".dscalar.nii"


def test_derivatives_writer_errors(tmp_path, layout, rng):
    left, right = layout
    foreign = tmp_path / "raw"
    foreign.mkdir()
    (foreign / "dataset_description.json").write_text(json.dumps({"Name": "raw", "BIDSVersion": "1.9.0"}))
    with pytest.raises(OutputExistsError, match=r"root='raw'.*not written by spectranorm_neuro.*Fix"):
        io.DerivativesWriter(foreign)
    writer = io.DerivativesWriter(tmp_path / "d")
    z = rng.normal(size=(2, left.n_features + right.n_features))
    with pytest.raises(InvalidInputError, match=r"desc='tscore'.*Fix: use one of zscore, centile"):
        writer.write_subject(z[0], "01", "tscore", "thickness", (left, right))
    with pytest.raises(
        InvalidInputError, match=r"subjects=\['sub-01'\].*more than once.*Fix: pass sessions="
    ):
        writer.write_cohort(z, ["01", "sub-01"], "zscore", "thickness", (left, right))
    with pytest.raises(InvalidInputError, match="one row per subject"):
        writer.write_cohort(z, ["01"], "zscore", "thickness", (left, right))


# ---------------------------------------------------------------------------------------------- summary
def test_cohort_summary_known_values(tmp_path):
    z = np.array([[0.0, 3.0, -2.5, 1.0, np.nan], [1.0, -1.0, 1.0, -1.0, 5.0]])
    labels = np.array([1, 1, 2, 2, 0])  # feature 4 is background
    table = io.cohort_summary(z, ["01", "sub-02"], labels=labels)
    assert list(table.index) == ["sub-01", "sub-02"]
    np.testing.assert_allclose(table["mean_abs_z"], [6.5 / 4, 9.0 / 5])
    np.testing.assert_array_equal(table["n_abs_z_gt_2"], [2, 1])
    np.testing.assert_array_equal(table["n_features"], [4, 5])
    np.testing.assert_allclose(table["max_abs_z"], [3.0, 5.0])
    np.testing.assert_allclose(table["mean_abs_z_1"], [1.5, 1.0])
    np.testing.assert_allclose(table["mean_abs_z_2"], [1.75, 1.0])
    np.testing.assert_array_equal(table["n_abs_z_gt_2_1"], [1, 0])
    assert "mean_abs_z_0" not in table.columns
    writer = io.DerivativesWriter(tmp_path / "d")
    path = writer.write_summary(z, ["01", "02"], "thickness", labels=labels)
    assert path.relative_to(tmp_path / "d").as_posix() == "group/desc-zscoresummary_thickness.tsv"
    assert io.parse_bids_name(path) == {"desc": "zscoresummary", "suffix": "thickness", "extension": ".tsv"}
    back = pd.read_csv(path, sep="\t", na_values="n/a", index_col="participant_id")
    np.testing.assert_allclose(back["mean_abs_z"], table["mean_abs_z"], rtol=1e-5)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert set(sidecar) == {"participant_id", *table.columns}
