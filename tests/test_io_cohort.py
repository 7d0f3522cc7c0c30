"""Cohorts on disk: a synthetic BIDS derivatives dataset on fsaverage5 (nilearn, offline) is read,
encoded chunk by chunk, and its z-maps are written back as a derivatives tree; every error path.
"""

from __future__ import annotations

import json
import shutil
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro import io
from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.exceptions import (
    FileFormatError,
    IncompatibleModelError,
    InvalidInputError,
    SpectraNormWarning,
)
from spectranorm_neuro.io import cohort as cohort_module

N_VERT = 10242  # fsaverage5
K = 20  # modes per hemisphere in the test basis


@pytest.fixture(scope="module")
def sulcal():
    from nilearn.datasets import load_fsaverage_data

    img = load_fsaverage_data(mesh="fsaverage5", data_type="sulcal")
    return {"L": np.asarray(img.data.parts["left"], float), "R": np.asarray(img.data.parts["right"], float)}


@pytest.fixture(scope="module")
def medial():
    """Stand-in medial wall: vertices masked out of the basis (NaN in the maps)."""
    wall = np.zeros(N_VERT, bool)
    wall[:400] = True
    return wall


@pytest.fixture(scope="module")
def structures(medial):
    return io.surface_structure("L", N_VERT, ~medial), io.surface_structure("R", N_VERT, ~medial)


def block_basis(structures, k=K, seed=0):
    """Random orthonormal modes, k per hemisphere, zero on the other hemisphere (like hemisphere bases)."""
    r = np.random.default_rng(seed)
    blocks = [np.linalg.qr(r.normal(size=(s.n_features, k)))[0] for s in structures]
    evecs = np.zeros((sum(b.shape[0] for b in blocks), k * len(blocks)))
    row = 0
    for i, b in enumerate(blocks):
        evecs[row : row + b.shape[0], i * k : (i + 1) * k] = b
        row += b.shape[0]
    return EigenmodeBasis(np.arange(evecs.shape[1], dtype=float), evecs, structures=tuple(structures))


def make_dataset(root, sulcal, medial, n=10, seed=0, hemi_alias=True, ext=".shape.gii"):
    """participants.tsv/json (rows shuffled) + per-subject GIFTI maps with NaN on the medial wall.

    Returns the truth: (participant ids in participants.tsv order, maps (n, 2 * N_VERT) left then right).
    """
    r = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"sub-{i:02d}" for i in range(1, n + 1)]
    order = r.permutation(n)
    ids = [ids[i] for i in order]
    age = r.uniform(20, 80, n)
    table = pd.DataFrame(
        {"participant_id": ids, "age": age, "sex": r.choice(["F", "M"], n), "site": r.choice(["A", "B"], n)}
    )
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    (root / "participants.json").write_text(
        json.dumps({"sex": {"Levels": {"F": "female", "M": "male"}}, "age": {"Units": "years"}})
    )
    full = {h: io.surface_structure(h, N_VERT) for h in "LR"}
    maps = np.empty((n, 2 * N_VERT))
    for j, pid in enumerate(ids):
        for h_i, h in enumerate("LR"):
            values = sulcal[h] + 0.02 * age[j] + r.normal(scale=0.5, size=N_VERT)
            values[medial] = np.nan
            maps[j, h_i * N_VERT : (h_i + 1) * N_VERT] = values
            label = {"L": "lh", "R": "rh"}[h] if (hemi_alias and j % 2) else h
            name = f"{pid}_hemi-{label}_space-fsaverage5_thickness{ext}"
            io.write_gifti(values, root / pid / "anat" / name, full[h], kind="none")
    return ids, maps


def kept(maps, structures):
    """Truth restricted to the basis' features (float32 as stored)."""
    left, right = structures
    return np.concatenate([maps[:, left.index], maps[:, N_VERT + right.index]], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------------- end to end
def test_bids_cohort_read_encode_and_write_zmaps_back(tmp_path, sulcal, medial, structures):
    ids, maps = make_dataset(tmp_path / "ds", sulcal, medial, n=9)
    basis = block_basis(structures)
    cohort = io.read_bids_cohort(tmp_path / "ds", "thickness", basis=basis, space="fsaverage", den="10k")
    assert cohort.subjects == ids  # participants.tsv row order, not sorted
    assert list(cohort.covariates.index) == ids and cohort.covariates.index.name == "participant_id"
    assert isinstance(cohort.covariates["sex"].dtype, pd.CategoricalDtype)
    assert list(cohort.covariates["sex"].cat.categories) == ["F", "M"]
    assert cohort.covariates["age"].dtype == np.float64
    assert list(cohort.files.columns) == ["CortexLeft", "CortexRight"]
    assert all("hemi-" in p for p in cohort.files["CortexRight"])
    truth = kept(maps, structures)
    np.testing.assert_allclose(cohort.read(), truth)
    np.testing.assert_allclose(cohort.read([ids[3], ids[0]]), truth[[3, 0]])
    coeffs = io.encode_cohort(cohort, basis, chunk_size=4, progress=False)
    np.testing.assert_allclose(coeffs, truth @ basis.eigenvectors, rtol=1e-10, atol=1e-9)
    # chunking and n_modes do not change the answer
    np.testing.assert_allclose(io.encode_cohort(cohort, basis, chunk_size=1, progress=False), coeffs)
    np.testing.assert_allclose(io.encode_cohort(cohort, basis, n_modes=5, progress=False), coeffs[:, :5])

    # z-maps (a stand-in for the engine's predictions) back into a derivatives tree
    z = (truth - truth.mean(0)) / truth.std(0)
    out = tmp_path / "derivatives" / "spectranorm"
    writer = io.DerivativesWriter(out, source_datasets=[str(tmp_path / "ds")])
    paths = writer.write_cohort(
        z, cohort.subjects, "zscore", "thickness", basis.structures, space="fsaverage5"
    )
    summary = writer.write_summary(z, cohort.subjects, "thickness")
    assert len(paths) == 2 * len(ids)
    for path in paths:
        ents = io.parse_bids_name(path)
        assert path.parent.parent.name == f"sub-{ents['sub']}" and path.parent.name == "anat"
        assert {k: ents[k] for k in ("space", "den", "desc", "suffix", "extension")} == {
            "space": "fsaverage",
            "den": "10k",
            "desc": "zscore",
            "suffix": "thickness",
            "extension": ".shape.gii",
        }
        assert (
            io.build_bids_name(
                {k: v for k, v in ents.items() if k not in ("suffix", "extension")},
                ents["suffix"],
                ents["extension"],
            )
            == path.name
        )
        gii = nib.load(str(path))
        assert nib.nifti1.intent_codes.niistring[gii.darrays[0].intent] == "NIFTI_INTENT_ZSCORE"
        assert np.isnan(gii.darrays[0].data[medial]).all()
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "spectranorm_neuro"
    # the derivatives tree is itself a readable cohort with the same values
    again = io.read_bids_cohort(
        out, "thickness", basis=basis, desc="zscore", participants=tmp_path / "ds" / "participants.tsv"
    )
    assert again.subjects == ids
    np.testing.assert_allclose(again.read(), z.astype(np.float32), rtol=1e-6)
    table = pd.read_csv(summary, sep="\t", index_col="participant_id")
    np.testing.assert_allclose(table.loc[ids, "mean_abs_z"], np.abs(z).mean(1), rtol=1e-5)
    np.testing.assert_array_equal(table.loc[ids, "n_abs_z_gt_2"], (np.abs(z) > 2).sum(1))


def test_encode_cohort_streams_in_chunks_and_shows_progress(
    tmp_path, sulcal, medial, structures, monkeypatch, capsys
):
    make_dataset(tmp_path / "ds", sulcal, medial, n=7)
    basis = block_basis(structures)
    cohort = io.read_bids_cohort(tmp_path / "ds", "thickness", basis=basis)
    sizes = []
    real = cohort_module._read_rows

    def spy(rows, *args):
        sizes.append(len(rows))
        return real(rows, *args)

    monkeypatch.setattr(cohort_module, "_read_rows", spy)
    io.encode_cohort(cohort, basis, chunk_size=3, progress=True)
    assert sizes == [3, 3, 1]  # never more than one chunk of maps in memory
    err = capsys.readouterr().err
    assert "encoding maps" in err and "7/7" in err


@pytest.mark.slow
def test_encode_cohort_parallel_loky_equals_serial(tmp_path, sulcal, medial, structures):
    make_dataset(tmp_path / "ds", sulcal, medial, n=6)
    basis = block_basis(structures)
    cohort = io.read_bids_cohort(tmp_path / "ds", "thickness", basis=basis)
    serial = io.encode_cohort(cohort, basis, chunk_size=2, progress=False)
    parallel = io.encode_cohort(cohort, basis, chunk_size=2, n_jobs=2, progress=False)
    np.testing.assert_array_equal(parallel, serial)


@pytest.mark.dask
@pytest.mark.slow
def test_encode_cohort_runs_on_a_dask_backend_unchanged(tmp_path, sulcal, medial, structures):
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    make_dataset(tmp_path / "ds", sulcal, medial, n=5)
    basis = block_basis(structures)
    cohort = io.read_bids_cohort(tmp_path / "ds", "thickness", basis=basis)
    serial = io.encode_cohort(cohort, basis, chunk_size=2, progress=False)
    # tcp on loopback: the default in-process setup looks up its address through 8.8.8.8
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            protocol="tcp://",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster),
        parallel_config(backend="dask"),
    ):
        on_dask = io.encode_cohort(cohort, basis, chunk_size=2, n_jobs=2, progress=False)
    np.testing.assert_array_equal(on_dask, serial)


def test_structures_inferred_left_then_right_without_a_basis(tmp_path, sulcal, medial):
    _, maps = make_dataset(tmp_path / "ds", sulcal, np.zeros(N_VERT, bool), n=3)
    cohort = io.read_bids_cohort(tmp_path / "ds", "thickness", hemis=("rh", "lh"))
    assert [s.name for s in cohort.structures] == ["CortexLeft", "CortexRight"]
    assert cohort.n_features == 2 * N_VERT
    np.testing.assert_allclose(cohort.read(), maps.astype(np.float32))
    left_only = io.read_bids_cohort(tmp_path / "ds", "thickness", hemis=["L"])
    assert [s.name for s in left_only.structures] == ["CortexLeft"]
    np.testing.assert_allclose(left_only.read(), maps[:, :N_VERT].astype(np.float32))


def test_subset_and_iter_chunks(tmp_path, sulcal, medial, structures):
    ids, maps = make_dataset(tmp_path / "ds", sulcal, medial, n=5)
    cohort = io.read_bids_cohort(tmp_path / "ds", "thickness", structures=structures)
    chunks = list(cohort.iter_chunks(2))
    assert [c[0] for c in chunks] == [ids[0:2], ids[2:4], ids[4:5]]
    np.testing.assert_allclose(np.concatenate([c[1] for c in chunks]), kept(maps, structures))
    sub = cohort.subset([ids[4], ids[1]])
    assert sub.subjects == [ids[4], ids[1]] and list(sub.covariates.index) == [ids[4], ids[1]]
    with pytest.raises(InvalidInputError, match=r"chunk_size=0.*Fix"):
        next(cohort.iter_chunks(0))


# ---------------------------------------------------------------------------------------------- other layouts
def test_table_cohort_csv_matches_bids_cohort(tmp_path, sulcal, medial, structures):
    ids, maps = make_dataset(tmp_path / "ds", sulcal, medial, n=4, hemi_alias=False)
    rows = []
    for pid in ids:
        stem = f"{pid}/anat/{pid}_hemi-%s_space-fsaverage5_thickness.shape.gii"
        rows.append(
            {
                "participant_id": pid.removeprefix("sub-"),
                "age": 30,
                "lh": stem % "L",
                "rh": stem % "R",
                "group": "control",
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "ds" / "cohort.csv", index=False)
    cohort = io.read_table_cohort(tmp_path / "ds" / "cohort.csv", structures=structures)
    assert cohort.subjects == ids
    assert list(cohort.covariates.columns) == ["age", "group"]
    np.testing.assert_allclose(cohort.read(), kept(maps, structures))
    # TSV with explicit columns and a base_dir
    frame = pd.DataFrame(rows).rename(columns={"lh": "left_map", "rh": "right_map"})
    frame.to_csv(tmp_path / "list.tsv", sep="\t", index=False)
    again = io.read_table_cohort(
        tmp_path / "list.tsv",
        structures=structures,
        base_dir=tmp_path / "ds",
        file_columns={"L": "left_map", "R": "right_map"},
    )
    np.testing.assert_allclose(again.read(), cohort.read())


def test_freesurfer_subjects_folder(tmp_path, sulcal):
    r = np.random.default_rng(3)
    root = tmp_path / "subjects"
    truth = {}
    for sub in ("01", "02"):
        surf = root / sub / "surf"
        surf.mkdir(parents=True)
        for h, prefix in (("L", "lh"), ("R", "rh")):
            truth[(sub, h)] = sulcal[h] + r.normal(size=N_VERT)
            nib.freesurfer.write_morph_data(
                str(surf / f"{prefix}.thickness"), truth[(sub, h)].astype(np.float32)
            )
    (root / "fsaverage" / "surf").mkdir(parents=True)  # template subjects are not participants
    nib.freesurfer.write_morph_data(
        str(root / "fsaverage" / "surf" / "lh.thickness"), np.zeros(N_VERT, np.float32)
    )
    pd.DataFrame({"participant_id": ["sub-02", "sub-01"], "age": [40, 50]}).to_csv(
        root / "participants.tsv", sep="\t", index=False
    )
    cohort = io.read_bids_cohort(root, "thickness")
    assert cohort.subjects == ["sub-02", "sub-01"]
    assert cohort.files.loc["sub-01", "CortexLeft"].endswith("01/surf/lh.thickness")
    np.testing.assert_allclose(
        cohort.read("sub-01"),
        np.concatenate([truth[("01", "L")], truth[("01", "R")]])[None].astype(np.float32),
    )


def test_cifti_cohort_structures_from_file(tmp_path, structures):
    r = np.random.default_rng(4)
    root = tmp_path / "ds"
    truth = r.normal(size=(3, sum(s.n_features for s in structures)))
    ids = ["sub-a", "sub-b", "sub-c"]
    for pid, row in zip(ids, truth):
        io.write_dscalar(
            row, root / pid / "anat" / f"{pid}_space-fsaverage5_thickness.dscalar.nii", structures
        )
    root.joinpath("participants.tsv").write_text("participant_id\tage\nsub-c\t3\nsub-a\t1\nsub-b\t2\n")
    cohort = io.read_bids_cohort(root, "thickness")
    assert [s.name for s in cohort.structures] == ["CortexLeft", "CortexRight"]
    np.testing.assert_array_equal(cohort.structures[0].index, structures[0].index)
    assert cohort.files.loc["sub-a", "CortexLeft"] == cohort.files.loc["sub-a", "CortexRight"]
    np.testing.assert_allclose(cohort.read(), truth[[2, 0, 1]].astype(np.float32))
    basis = block_basis(structures)
    np.testing.assert_allclose(
        io.encode_cohort(cohort, basis, progress=False),
        truth[[2, 0, 1]].astype(np.float32) @ basis.eigenvectors,
        atol=1e-9,
    )


def nifti_dataset(root, n=3, seed=5):
    r = np.random.default_rng(seed)
    mask = np.zeros((6, 7, 8), bool)
    mask[1:5, 2:6, 1:7] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10, -20, -30]
    root.mkdir(parents=True)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(root / "mask.nii.gz"))
    ids = [f"sub-{i}" for i in range(1, n + 1)]
    vols = r.normal(size=(n, *mask.shape))
    vols[:, ~mask] = np.nan
    for pid, vol in zip(ids, vols):
        path = root / pid / "anat" / f"{pid}_space-MNI152NLin2009aSym_res-2_GMV.nii.gz"
        path.parent.mkdir(parents=True)
        nib.save(nib.Nifti1Image(vol, affine), str(path))
    root.joinpath("participants.tsv").write_text("participant_id\n" + "\n".join(ids) + "\n")
    return ids, vols[:, mask], affine, mask


def test_nifti_cohort_through_a_mask(tmp_path):
    _, truth, _, _ = nifti_dataset(tmp_path / "ds")
    vol = io.volume_structure(tmp_path / "ds" / "mask.nii.gz")
    cohort = io.read_bids_cohort(tmp_path / "ds", "GMV", structures=(vol,), space="MNI152NLin2009aSym")
    np.testing.assert_allclose(cohort.read(), truth)
    with pytest.raises(InvalidInputError, match=r"cannot be inferred for NIfTI maps.*Fix: pass structures="):
        io.read_bids_cohort(tmp_path / "ds", "GMV")


# ---------------------------------------------------------------------------------------------- errors
def test_error_participants_without_maps_and_maps_without_participants(tmp_path, sulcal, medial, structures):
    ids, _ = make_dataset(tmp_path / "ds", sulcal, medial, n=5)
    root = tmp_path / "ds"
    gone = ids[2]
    for f in (root / gone / "anat").glob("*hemi-*R*"):
        f.unlink()  # only the right hemisphere is missing
    shutil.copytree(root / ids[0], root / "sub-99")
    for f in (root / "sub-99" / "anat").iterdir():
        f.rename(f.with_name(f.name.replace(ids[0], "sub-99")))
    with pytest.raises(InvalidInputError) as info:
        io.read_bids_cohort(root, "thickness", structures=structures)
    msg = str(info.value)
    assert msg.startswith(
        f"participants='participants.tsv': 1 participant(s) have no map: {gone} (no CortexRight map)"
    )
    assert "1 subject(s) have maps but are not in the participants table: sub-99" in msg
    assert "Fix: add the missing maps/participants, or pass missing='drop' (command line: --missing drop)" in msg
    with pytest.warns(SpectraNormWarning, match="left out 1 participant"):
        cohort = io.read_bids_cohort(root, "thickness", structures=structures, missing="drop")
    assert cohort.subjects == [i for i in ids if i != gone]


def test_error_missing_participants_file_names_it(tmp_path, sulcal, medial):
    make_dataset(tmp_path / "ds", sulcal, medial, n=2)
    with pytest.raises(InvalidInputError,
                       match=r"measure='thicknes': matches no map in .*ds; the maps there are of \['thickness'\]"):
        io.read_bids_cohort(tmp_path / "ds", "thicknes")
    (tmp_path / "ds" / "participants.tsv").unlink()
    with pytest.raises(
        FileFormatError,
        match=r"participants='participants\.tsv': does not exist.*ds/participants"
        r"\.tsv.*Fix: pass participants=",
    ):
        io.read_bids_cohort(tmp_path / "ds", "thickness")


def test_error_duplicate_subjects(tmp_path, sulcal, medial, structures):
    ids, _ = make_dataset(tmp_path / "ds", sulcal, medial, n=3, hemi_alias=False)
    root = tmp_path / "ds"
    src = next((root / ids[1] / "anat").glob("*hemi-L*"))
    shutil.copy(src, src.with_name(src.name.replace("_thickness", "_desc-smoothed_thickness")))
    with pytest.raises(
        InvalidInputError,
        match=rf"several matching maps per subject \({ids[1]} L: .*desc-smoothed"
        r".*Fix: narrow the selection with session=, space=, den=, desc=",
    ):
        io.read_bids_cohort(root, "thickness", structures=structures)
    with pytest.warns(SpectraNormWarning, match="left out 2 participant"):
        cohort = io.read_bids_cohort(
            root, "thickness", structures=structures[:1], desc="smoothed", hemis=["L"], missing="drop"
        )
    assert cohort.subjects == [ids[1]]
    assert "desc-smoothed" in cohort.files.iloc[0, 0]
    plain = io.read_bids_cohort(root, "thickness", structures=structures, desc="")  # files without desc-
    assert plain.subjects == ids and not any("desc-" in p for p in plain.files.to_numpy().ravel())
    # the same participant twice in participants.tsv
    text = (root / "participants.tsv").read_text().splitlines()
    (root / "participants.tsv").write_text("\n".join([*text, text[1]]) + "\n")
    with pytest.raises(
        InvalidInputError,
        match=rf"participant_id=\['{ids[0]}'\].*more than once in .*participants"
        r"\.tsv.*Fix: keep one row per participant",
    ):
        io.read_bids_cohort(root, "thickness", structures=structures)


def test_error_duplicate_rows_in_table(tmp_path):
    (tmp_path / "a.func.gii").write_text("x")
    pd.DataFrame({"participant_id": ["1", "sub-1"], "file": ["a.func.gii"] * 2}).to_csv(tmp_path / "t.csv")
    with pytest.raises(InvalidInputError, match=r"\['sub-1'\].*more than once in .*t\.csv.*Fix"):
        io.read_table_cohort(tmp_path / "t.csv")


def test_error_wrong_hemisphere(tmp_path, sulcal, medial, structures):
    ids, _ = make_dataset(tmp_path / "ds", sulcal, medial, n=3, hemi_alias=False)
    root = tmp_path / "ds"
    # a hemi-L file whose content is a right hemisphere (metadata says CortexRight)
    target = next((root / ids[0] / "anat").glob("*hemi-L*"))
    io.write_gifti(np.zeros(N_VERT), target, io.surface_structure("R", N_VERT), kind="none", overwrite=True)
    with pytest.raises(
        IncompatibleModelError,
        match=rf"{target.name}.*hemi-R map according to its metadata.*"
        r"given for CortexLeft.*Fix: list the hemi-L file",
    ):
        io.read_bids_cohort(root, "thickness", structures=structures)
    # a table listing left maps in the right column
    rows = [
        {
            "participant_id": pid,
            "lh": str(next((root / pid / "anat").glob("*hemi-R*"))),
            "rh": str(next((root / pid / "anat").glob("*hemi-L*"))),
        }
        for pid in ids[1:]
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "swapped.csv", index=False)
    with pytest.raises(
        IncompatibleModelError,
        match=r"swapped\.csv.*wrong hemisphere:.*hemi-R.*in column 'lh'.*"
        r"Fix: swap the left/right paths",
    ):
        io.read_table_cohort(tmp_path / "swapped.csv", structures=structures)


def test_error_vertex_count_differs_from_basis(tmp_path, sulcal, medial):
    make_dataset(tmp_path / "ds", sulcal, medial, n=2, hemi_alias=False)
    fsaverage4 = (io.surface_structure("L", 2562), io.surface_structure("R", 2562))
    with pytest.raises(
        IncompatibleModelError,
        match=r"_hemi-L_space-fsaverage5_thickness\.shape\.gii.*10242 "
        r"vertices but the basis mesh for CortexLeft has 2562.*"
        r"Fix: resample",
    ):
        io.read_bids_cohort(tmp_path / "ds", "thickness", structures=fsaverage4)
    # and a cohort read with one basis cannot be encoded with another
    cohort = io.read_bids_cohort(
        tmp_path / "ds",
        "thickness",
        structures=(io.surface_structure("L", N_VERT, ~medial), io.surface_structure("R", N_VERT, ~medial)),
    )
    with pytest.raises(
        IncompatibleModelError,
        match=r"has 5124 features but the cohort's maps have 19684.*"
        r"Fix: build the cohort with basis=basis",
    ):
        io.encode_cohort(cohort, block_basis(fsaverage4), progress=False)
    other_mask = ~medial.copy()
    other_mask[[0, 500]] = [True, False]  # same number of features, another mask
    other = block_basis(
        (io.surface_structure("L", N_VERT, other_mask), io.surface_structure("R", N_VERT, ~medial))
    )
    with pytest.raises(
        IncompatibleModelError,
        match=r"other structures/masks than the cohort.*"
        r"Fix: build the cohort with basis=basis",
    ):
        io.encode_cohort(cohort, other, progress=False)


def test_error_nan_inside_the_mask_names_the_subject_file(tmp_path, sulcal, medial, structures):
    ids, _ = make_dataset(tmp_path / "ds", sulcal, medial, n=4, hemi_alias=False)
    root = tmp_path / "ds"
    bad = next((root / ids[2] / "anat").glob("*hemi-R*"))
    data = io.read_gifti(bad).data[0]
    data[1000:1003] = np.nan  # kept vertices
    io.write_gifti(data, bad, io.surface_structure("R", N_VERT), kind="none", overwrite=True)
    basis = block_basis(structures)
    cohort = io.read_bids_cohort(root, "thickness", basis=basis)  # the first subject is fine
    with pytest.raises(
        FileFormatError,
        match=rf"{bad.name}.*NaN/inf at 3 vertex\(es\) that the basis keeps in "
        r"CortexRight.*Fix: impute or exclude this map",
    ):
        io.encode_cohort(cohort, basis, chunk_size=2, progress=False)
    # without the medial wall in the mask, the wall's NaNs are an error too
    full = (io.surface_structure("L", N_VERT), io.surface_structure("R", N_VERT))
    with pytest.raises(FileFormatError, match=r"NaN/inf at 400 vertex.*Fix: .*cortex mask"):
        io.read_bids_cohort(root, "thickness", structures=full)


def test_error_nifti_grid_differs_from_mask(tmp_path):
    ids, _, affine, _ = nifti_dataset(tmp_path / "ds")
    vol = io.volume_structure(tmp_path / "ds" / "mask.nii.gz")
    shifted = tmp_path / "ds" / ids[1] / "anat" / f"{ids[1]}_space-MNI152NLin2009aSym_res-2_GMV.nii.gz"
    img = nib.load(str(shifted))
    moved = affine.copy()
    moved[0, 3] += 2.0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), moved), str(shifted))
    cohort = io.read_bids_cohort(tmp_path / "ds", "GMV", structures=(vol,))
    with pytest.raises(
        IncompatibleModelError, match=rf"{shifted.name}.*affine.*Fix: resample the map onto the mask"
    ):
        cohort.read()
    small = tmp_path / "ds" / ids[0] / "anat" / f"{ids[0]}_space-MNI152NLin2009aSym_res-2_GMV.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 7, 9)), affine), str(small))
    with pytest.raises(
        IncompatibleModelError, match=rf"{small.name}.*grid shape \(6, 7, 9\).*\(6, 7, 8\).*Fix"
    ):
        io.read_bids_cohort(tmp_path / "ds", "GMV", structures=(vol,))


def test_error_table_missing_cells_and_files(tmp_path, structures):
    pd.DataFrame(
        {
            "participant_id": ["01", "02"],
            "lh": ["a_hemi-L.func.gii", None],
            "rh": ["nowhere/b.func.gii", "c.func.gii"],
        }
    ).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "a_hemi-L.func.gii").write_text("x")
    (tmp_path / "c.func.gii").write_text("x")
    with pytest.raises(FileFormatError) as info:
        io.read_table_cohort(tmp_path / "t.csv", structures=structures)
    msg = str(info.value)
    assert "t.csv" in msg and "1 participant(s) have no map: sub-02 (lh)" in msg
    assert "1 listed map(s) do not exist:" in msg and "nowhere/b.func.gii" in msg
    assert "Fix: fix the paths" in msg
    with pytest.raises(
        InvalidInputError, match=r"file_columns=None.*could not be guessed.*Fix: name the path"
    ):
        io.read_table_cohort(pd.DataFrame({"participant_id": ["1"], "x": ["y"]}), structures=structures)


def test_error_unknown_participant_column_and_default_layout_basis(tmp_path, sulcal, medial):
    make_dataset(tmp_path / "ds", sulcal, medial, n=2)
    with pytest.raises(InvalidInputError, match=r"participant_column='subject'.*Fix: pass one of"):
        io.read_table_cohort(
            pd.DataFrame({"participant_id": ["1"], "file": ["x"]}), participant_column="subject"
        )
    plain = EigenmodeBasis(
        np.arange(3.0), np.linalg.qr(np.random.default_rng(0).normal(size=(2 * N_VERT, 3)))[0]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidInputError, match=r"structures=None.*Fix: pass structures="):
            io.read_bids_cohort(tmp_path / "ds", "thickness", basis=plain)


def test_multi_map_files_need_map_index(tmp_path):
    left = io.surface_structure("L", 50)
    r = np.random.default_rng(6)
    stacks = r.normal(size=(2, 3, 50))
    for i, stack in enumerate(stacks):
        io.write_gifti(stack, tmp_path / f"s{i}_hemi-L_mu.func.gii", left, kind="mu")
    table = pd.DataFrame({"participant_id": ["a", "b"], "file": [f"s{i}_hemi-L_mu.func.gii" for i in range(2)]})
    with pytest.raises(InvalidInputError, match=r"s0_hemi-L_mu\.func\.gii.*holds 3 maps.*Fix: pass map_index="):
        io.read_table_cohort(table, structures=(left,), base_dir=tmp_path)
    cohort = io.read_table_cohort(table, structures=(left,), base_dir=tmp_path, map_index=1)
    assert list(cohort.files.columns) == ["CortexLeft"]
    np.testing.assert_allclose(cohort.read(), stacks[:, 1].astype(np.float32))


def test_participants_value_outside_declared_levels_is_a_further_level(tmp_path):
    # e.g. a new site to adapt a model to: kept (not turned into a missing value), with the exact edit
    from spectranorm_neuro.io.cohort import _typed_covariates

    frame = pd.DataFrame({"site": ["A", "B", "D"]}, index=["sub-1", "sub-2", "sub-3"])
    sidecar = {"site": {"Levels": {"A": "scanner A", "B": "scanner B"}}}
    with pytest.warns(SpectraNormWarning, match=r"participants\.json: column 'site' holds \['D'\].*add \"D\": \"D\""):
        got = _typed_covariates(frame, sidecar, tmp_path / "participants.tsv")
    assert list(got["site"]) == ["A", "B", "D"] and list(got["site"].cat.categories) == ["A", "B", "D"]
    ok = _typed_covariates(frame.iloc[:2], sidecar, tmp_path / "participants.tsv")
    assert list(ok["site"]) == ["A", "B"] and list(ok["site"].cat.categories) == ["A", "B"]
