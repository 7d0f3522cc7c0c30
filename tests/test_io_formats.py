"""Round trips through GIFTI, NIfTI, CIFTI-2, FreeSurfer and TSV with nibabel; read_map checks."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from spectranorm_neuro import io
from spectranorm_neuro.exceptions import (
    FileFormatError,
    IncompatibleModelError,
    InvalidInputError,
    OutputExistsError,
    ShapeMismatchError,
)
from spectranorm_neuro.graphs import Structure

N_VERT = 642  # an icosphere-sized hemisphere keeps these tests fast


@pytest.fixture
def hemis(rng):
    """Left hemisphere with a random 'medial wall' mask, right hemisphere fully kept."""
    mask = rng.random(N_VERT) > 0.15
    return io.surface_structure("L", N_VERT, mask), io.surface_structure("R", N_VERT)


@pytest.fixture
def volume(tmp_path):
    """A 7x8x9 mask with an oblique affine, saved to disk; returns (structure, mask path, mask array)."""
    r = np.random.default_rng(1)
    mask = r.random((7, 8, 9)) > 0.4
    affine = np.array([[2.0, 0.1, 0, -10], [0, 2.0, 0, -20], [0, 0, 2.5, -5], [0, 0, 0, 1]])
    img = nib.Nifti1Image(mask.astype(np.uint8), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = b"test mask"
    path = tmp_path / "mask.nii.gz"
    nib.save(img, str(path))
    return io.volume_structure(path), path, mask


# ---------------------------------------------------------------------------------------------- GIFTI
@pytest.mark.parametrize(
    "kind,intent",
    [
        ("zscore", "NIFTI_INTENT_ZSCORE"),
        ("centile", "NIFTI_INTENT_NONE"),
        ("harmonized", "NIFTI_INTENT_ESTIMATE"),
        ("mu", "NIFTI_INTENT_ESTIMATE"),
        ("sd", "NIFTI_INTENT_ESTIMATE"),
        ("recon", "NIFTI_INTENT_ESTIMATE"),
        ("pval", "NIFTI_INTENT_PVAL"),
    ],
)
def test_gifti_round_trip_values_intent_metadata_nan(tmp_path, hemis, rng, kind, intent):
    left, _ = hemis
    values = rng.normal(size=(3, left.n_features))
    path = io.write_gifti(values, tmp_path / f"{kind}.func.gii", left, kind=kind)
    img = nib.load(str(path))  # plain nibabel, as any other tool would
    assert img.meta["AnatomicalStructurePrimary"] == "CortexLeft"
    assert len(img.darrays) == 3
    for i, darray in enumerate(img.darrays):
        assert nib.nifti1.intent_codes.niistring[darray.intent] == intent
        assert darray.data.dtype == np.float32
        assert darray.meta["Name"] == f"{kind}_{i}"
        full = darray.data
        assert full.shape == (N_VERT,)
        masked = np.setdiff1d(np.arange(N_VERT), left.index)
        assert np.isnan(full[masked]).all() and masked.size > 0
        np.testing.assert_array_equal(full[left.index], values[i].astype(np.float32))
    content = io.read_gifti(path)
    assert content.hemi == "L" and content.intents == (intent,) * 3
    np.testing.assert_allclose(io.read_map(path, left, allow_nan=False), values.astype(np.float32))


def test_gifti_read_nilearn_and_workbench_style_metadata(tmp_path, rng):
    data = rng.normal(size=N_VERT).astype(np.float32)
    darray = nib.gifti.GiftiDataArray(data, meta={"AnatomicalStructurePrimary": "CortexRight"})
    path = tmp_path / "wb.shape.gii"
    nib.save(nib.gifti.GiftiImage(darrays=[darray]), str(path))
    content = io.read_gifti(path)
    assert content.hemi == "R" and content.names == ("",)
    np.testing.assert_array_equal(content.data[0], data)


def test_gifti_refuses_surface_files_and_bad_structures(tmp_path, hemis, volume):
    coords = nib.gifti.GiftiDataArray(np.zeros((3, 3), np.float32), intent="NIFTI_INTENT_POINTSET")
    faces = nib.gifti.GiftiDataArray(np.array([[0, 1, 2]], np.int32), intent="NIFTI_INTENT_TRIANGLE")
    path = tmp_path / "lh.surf.gii"
    nib.save(nib.gifti.GiftiImage(darrays=[coords, faces]), str(path))
    with pytest.raises(FileFormatError, match=r"surf\.gii.*surface.*Fix: pass the metric file"):
        io.read_gifti(path)
    with pytest.raises(InvalidInputError, match="Fix: pass the CortexLeft or CortexRight Structure"):
        io.write_gifti(np.zeros(volume[0].n_features), tmp_path / "v.func.gii", volume[0])
    with pytest.raises(InvalidInputError, match=r"kind='tscore'.*Fix: pass one of"):
        io.write_gifti(np.zeros(hemis[1].n_features), tmp_path / "t.func.gii", hemis[1], kind="tscore")


def test_writes_never_overwrite_unless_asked_and_are_atomic(tmp_path, hemis, rng):
    _, right = hemis
    path = tmp_path / "z.func.gii"
    io.write_gifti(np.ones(right.n_features), path, right)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match=r"z\.func\.gii.*Fix:.*overwrite=True"):
        io.write_gifti(np.zeros(right.n_features), path, right)
    assert path.read_bytes() == before
    # a failing write (wrong length) leaves neither the target nor a temporary file behind
    with pytest.raises(ShapeMismatchError, match="Fix: pass values over the basis' features"):
        io.write_gifti(np.zeros(right.n_features + 1), path, right, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.func.gii"]
    io.write_gifti(np.zeros(right.n_features), path, right, overwrite=True)
    assert np.all(io.read_gifti(path).data == 0)


# ---------------------------------------------------------------------------------------------- FreeSurfer
def test_freesurfer_curv_and_mgh_round_trip(tmp_path, hemis, rng):
    left, right = hemis
    full = rng.normal(size=N_VERT)
    path = io.write_morph(full, tmp_path / "lh.thickness")
    content = io.read_morph(path)
    assert content.hemi == "L"
    np.testing.assert_array_equal(content.data[0], full.astype(np.float32))
    np.testing.assert_array_equal(nib.freesurfer.read_morph_data(str(path)), full.astype(np.float32))
    np.testing.assert_allclose(io.read_map(path, left)[0], full.astype(np.float32)[left.index])
    mgh = tmp_path / "rh.thickness.fsaverage.mgh"
    nib.save(nib.MGHImage(full.astype(np.float32)[:, None, None], np.eye(4)), str(mgh))
    assert io.read_morph(mgh).hemi == "R"
    np.testing.assert_allclose(io.read_map(mgh, right)[0], full.astype(np.float32))
    with pytest.raises(IncompatibleModelError, match=r"lh\.thickness.*hemi-L.*file name.*CortexRight.*Fix"):
        io.read_map(path, right)


def test_write_map_to_curv_holds_nan_on_masked_vertices(tmp_path, hemis, rng):
    left, _ = hemis
    vals = rng.normal(size=left.n_features)
    (path,) = io.write_map(vals, left, tmp_path / "lh.zscore")
    back = nib.freesurfer.read_morph_data(str(path))
    assert np.isnan(back).sum() == N_VERT - left.n_features
    np.testing.assert_array_equal(back[left.index], vals.astype(np.float32))


# ---------------------------------------------------------------------------------------------- NIfTI
def test_nifti_round_trip_affine_header_nan_and_intent(tmp_path, volume, rng):
    structure, mask_path, mask = volume
    assert structure.index.tolist() == np.flatnonzero(mask.ravel(order="C")).tolist()
    values = rng.normal(size=structure.n_features)
    path = io.write_nifti(values, tmp_path / "z.nii.gz", structure, kind="zscore", template=mask_path)
    img = nib.load(str(path))
    mask_img = nib.load(str(mask_path))
    np.testing.assert_allclose(img.affine, mask_img.affine)
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert img.header["descrip"].tobytes().startswith(b"test mask")
    assert img.header.get_intent()[0] == "z score"
    data = img.get_fdata()
    assert np.isnan(data[~mask]).all()
    np.testing.assert_allclose(data[mask], values.astype(np.float32))  # boolean indexing is C order
    np.testing.assert_allclose(io.read_nifti(path, structure)[0], values.astype(np.float32))
    # several maps make a 4-D file; map_index picks one
    stack = rng.normal(size=(3, structure.n_features))
    path4 = io.write_nifti(stack, tmp_path / "mu.nii.gz", structure, kind="mu")
    assert nib.load(str(path4)).shape == (*mask.shape, 3)
    assert nib.load(str(path4)).header.get_intent()[0] == "estimate"
    np.testing.assert_allclose(io.read_nifti(path4, structure), stack.astype(np.float32))
    np.testing.assert_allclose(io.read_map(path4, structure, map_index=2)[0], stack[2].astype(np.float32))


def test_nifti_read_errors_name_file_and_fix(tmp_path, volume, rng):
    structure, _, mask = volume
    good = rng.normal(size=mask.shape)
    shifted = tmp_path / "shifted.nii.gz"
    nib.save(
        nib.Nifti1Image(good, structure.affine + np.array([[0, 0, 0, 1.0]] + [[0] * 4] * 3)), str(shifted)
    )
    with pytest.raises(IncompatibleModelError, match=r"shifted\.nii\.gz.*affine.*Fix: resample"):
        io.read_map(shifted, structure)
    cropped = tmp_path / "cropped.nii.gz"
    nib.save(nib.Nifti1Image(good[:-1], structure.affine), str(cropped))
    with pytest.raises(
        IncompatibleModelError, match=r"cropped\.nii\.gz.*grid shape \(6, 8, 9\).*Fix: resample"
    ):
        io.read_map(cropped, structure)
    holes = good.copy()
    holes[np.unravel_index(structure.index[:4], mask.shape)] = np.nan
    holes[~mask] = np.nan  # NaN outside the mask is fine
    nan_path = tmp_path / "holes.nii.gz"
    nib.save(nib.Nifti1Image(holes, structure.affine), str(nan_path))
    with pytest.raises(FileFormatError, match=r"holes\.nii\.gz.*NaN/inf in 4 voxel.*Fix: impute"):
        io.read_map(nan_path, structure)
    outside_only = good.copy()
    outside_only[~mask] = np.nan
    ok = tmp_path / "ok.nii.gz"
    nib.save(nib.Nifti1Image(outside_only, structure.affine), str(ok))
    np.testing.assert_allclose(io.read_map(ok, structure)[0], good[mask])


# ---------------------------------------------------------------------------------------------- CIFTI
def test_cifti_dscalar_round_trip_omits_masked_vertices(tmp_path, hemis, volume, rng):
    left, right = hemis
    vol = volume[0]
    structs = (left, right, vol)
    n = sum(s.n_features for s in structs)
    values = rng.normal(size=(2, n))
    path = io.write_dscalar(values, tmp_path / "z.dscalar.nii", structs, names=["a", "b"])
    img = nib.load(str(path))
    assert isinstance(img, nib.Cifti2Image)
    assert img.nifti_header.get_intent()[0] == "ConnDenseScalar"
    axis = img.header.get_axis(1)
    assert len(axis) == n  # masked vertices are not in the brain model
    models = {name: bm for name, _, bm in axis.iter_structures()}
    np.testing.assert_array_equal(models["CIFTI_STRUCTURE_CORTEX_LEFT"].vertex, left.index)
    assert models["CIFTI_STRUCTURE_CORTEX_LEFT"].nvertices["CIFTI_STRUCTURE_CORTEX_LEFT"] == N_VERT
    np.testing.assert_allclose(axis.affine, vol.affine)
    assert list(img.header.get_axis(0).name) == ["a", "b"]
    np.testing.assert_allclose(np.asarray(img.dataobj), values.astype(np.float32))
    content = io.read_dscalar(path)  # structures inferred from the file
    assert [s.name for s in content.structures] == ["CortexLeft", "CortexRight", "Volume"]
    assert content.structures[2].shape == vol.shape
    np.testing.assert_array_equal(content.structures[0].index, left.index)
    np.testing.assert_allclose(content.data, values.astype(np.float32))
    # reading onto other structures reorders columns
    np.testing.assert_allclose(
        io.read_map(path, (right, left)),
        np.concatenate(
            [values[:, left.n_features : left.n_features + right.n_features], values[:, : left.n_features]],
            axis=1,
        ).astype(np.float32),
    )


def test_cifti_read_errors(tmp_path, hemis, rng):
    left, right = hemis
    path = io.write_dscalar(rng.normal(size=left.n_features), tmp_path / "l.dscalar.nii", (left,))
    with pytest.raises(IncompatibleModelError, match=r"l\.dscalar\.nii.*no brain model for CortexRight.*Fix"):
        io.read_map(path, (left, right))
    full_left = io.surface_structure("L", N_VERT)
    with pytest.raises(IncompatibleModelError, match=r"omits \d+ of the nodes.*Fix"):
        io.read_map(path, full_left)
    bigger = io.surface_structure("L", 2 * N_VERT)
    with pytest.raises(
        IncompatibleModelError, match=rf"{N_VERT} vertices but the basis mesh has {2 * N_VERT}"
    ):
        io.read_map(path, bigger)


# ---------------------------------------------------------------------------------------------- read_map
def test_read_map_surface_errors_name_file_and_fix(tmp_path, hemis, rng):
    left, right = hemis
    small = tmp_path / "sub-01_hemi-L_thickness.shape.gii"
    io.write_gifti(rng.normal(size=100), small, io.surface_structure("L", 100))
    with pytest.raises(
        IncompatibleModelError,
        match=r"sub-01_hemi-L_thickness\.shape\.gii.*100 vertices.*"
        rf"{N_VERT}.*Fix: resample",
    ):
        io.read_map(small, left)
    # hemisphere named by the file although the metadata says nothing
    anon = tmp_path / "sub-01_hemi-R_thickness.shape.gii"
    nib.save(
        nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.zeros(N_VERT, np.float32))]), str(anon)
    )
    with pytest.raises(IncompatibleModelError, match=r"hemi-R map according to its file name.*CortexLeft"):
        io.read_map(anon, left)
    holes = np.zeros(N_VERT, np.float32)
    holes[left.index[:3]] = np.nan
    holes[np.setdiff1d(np.arange(N_VERT), left.index)] = np.nan  # masked vertices may be NaN
    nan_path = tmp_path / "lh.nan"
    nib.freesurfer.write_morph_data(str(nan_path), holes)
    with pytest.raises(FileFormatError, match=r"lh\.nan.*NaN/inf at 3 vertex.*CortexLeft.*Fix: impute"):
        io.read_map(nan_path, left)
    assert np.isnan(io.read_map(nan_path, left, allow_nan=True)).sum() == 3
    with pytest.raises(FileFormatError, match=r"missing\.func\.gii.*does not exist"):
        io.read_map(tmp_path / "missing.func.gii", left)
    with pytest.raises(FileFormatError, match=r"map\.txt.*Fix: use \.func\.gii"):
        (tmp_path / "map.txt").write_text("1")
        io.read_map(tmp_path / "map.txt", left)
    with pytest.raises(InvalidInputError, match="one structure but 2 were requested"):
        io.read_map(anon, (left, right))


def test_write_map_dispatch_by_structure(tmp_path, hemis, volume, rng):
    left, right = hemis
    vol, mask_path, _ = volume
    structs = (left, right, vol)
    vals = rng.normal(size=sum(s.n_features for s in structs))
    paths = io.write_map(
        vals,
        structs,
        {
            "L": tmp_path / "l.func.gii",
            "CortexRight": tmp_path / "r.func.gii",
            "Volume": tmp_path / "v.nii.gz",
        },
        kind="centile",
        template=mask_path,
    )
    assert [p.name for p in paths] == ["l.func.gii", "r.func.gii", "v.nii.gz"]
    back = np.concatenate([io.read_map(p, s)[0] for p, s in zip(paths, structs)])
    np.testing.assert_allclose(back, vals.astype(np.float32))
    assert io.read_gifti(paths[1]).intents == ("NIFTI_INTENT_NONE",)
    with pytest.raises(InvalidInputError, match=r"gives no output for \['Volume'\].*Fix: add one path"):
        io.write_map(vals, structs, {"L": tmp_path / "a.func.gii", "R": tmp_path / "b.func.gii"})
    with pytest.raises(InvalidInputError, match=r"one file for 3 structures.*Fix: pass a \.dscalar\.nii"):
        io.write_map(vals, structs, tmp_path / "all.func.gii")
    (cifti,) = io.write_map(vals, structs, tmp_path / "all.dscalar.nii")
    np.testing.assert_allclose(io.read_map(cifti, structs)[0], vals.astype(np.float32))


def test_split_and_to_full(hemis, rng):
    left, right = hemis
    vals = rng.normal(size=(2, left.n_features + right.n_features))
    parts = io.split_features(vals, (left, right))
    assert list(parts) == ["CortexLeft", "CortexRight"]
    full = io.to_full(parts["CortexLeft"], left)
    assert full.shape == (2, N_VERT)
    np.testing.assert_array_equal(full[:, left.index], vals[:, : left.n_features])
    assert np.isnan(full).sum() == 2 * (N_VERT - left.n_features)


# ---------------------------------------------------------------------------------------------- TSV
def test_parcel_table_round_trip(tmp_path, rng):
    values = rng.normal(size=(4, 3))
    values[1, 2] = np.nan
    path = io.write_parcel_table(
        values,
        tmp_path / "parcels.tsv",
        ["L_precentral", "R_insula", "7"],
        index=["sub-01", "sub-02", "sub-03", "sub-04"],
    )
    text = path.read_text().splitlines()
    assert text[0] == "participant_id\tL_precentral\tR_insula\t7"
    assert text[2].split("\t")[3] == "n/a"
    frame = io.read_parcel_table(path)
    assert list(frame.index) == ["sub-01", "sub-02", "sub-03", "sub-04"]
    np.testing.assert_allclose(frame.to_numpy(), values, rtol=1e-9)
    with pytest.raises(OutputExistsError):
        io.write_parcel_table(values, path, ["a", "b", "c"])
    with pytest.raises(ShapeMismatchError, match="has 3 features but the structures hold 2"):
        io.write_parcel_table(values, tmp_path / "x.tsv", ["a", "b"])


def test_dataset_description_json(tmp_path):
    path = io.write_dataset_description(tmp_path, source_datasets=["doi:10.1/abc", "https://x.org/ds"])
    desc = json.loads(path.read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "spectranorm_neuro"
    from spectranorm_neuro import __version__

    assert desc["GeneratedBy"][0]["Version"] == __version__
    assert desc["SourceDatasets"] == [{"DOI": "doi:10.1/abc"}, {"URL": "https://x.org/ds"}]
    assert {"Name", "BIDSVersion"} <= set(desc)


def test_structure_helpers_errors():
    with pytest.raises(InvalidInputError, match=r"hemi='middle'.*Fix: pass 'L' or 'R'"):
        io.surface_structure("middle", 10)
    with pytest.raises(ShapeMismatchError, match=r"mask=.*\(5,\).*Fix"):
        io.surface_structure("L", 10, np.ones(5, bool))
    s = Structure("CortexLeft", "surface", 4, np.arange(4))
    with pytest.raises(InvalidInputError, match="holds the same structure name twice"):
        io.resolve_structures(structures=(s, s))
    with pytest.raises(InvalidInputError, match="Fix: pass structures="):
        io.resolve_structures()


def test_meshes_labels_and_annots_through_io(tmp_path, tiny_mesh):
    """Surfaces, FreeSurfer .label and .annot are read by the graphs layer, reachable from io."""
    vertices, faces = tiny_mesh
    nib.freesurfer.write_geometry(str(tmp_path / "lh.white"), vertices, faces)
    v, f = io.load_surface(tmp_path / "lh.white")
    np.testing.assert_allclose(v, vertices, atol=1e-5)
    np.testing.assert_array_equal(f, faces)
    label = tmp_path / "lh.cortex.label"
    label.write_text("#!ascii label\n3\n0 1.0 0.0 0.0 0.0\n2 0.0 1.0 0.0 0.0\n5 0.0 0.0 -1.0 0.0\n")
    np.testing.assert_array_equal(io.read_cortex_mask(label, 6), [True, False, True, False, False, True])
    ctab = np.array([[25, 5, 25, 0, 0], [200, 10, 10, 0, 0]], dtype=np.int32)
    nib.freesurfer.write_annot(
        str(tmp_path / "lh.a.annot"),
        np.array([0, 1, 1, 0, 1, 1], np.int32),
        ctab,
        [b"unknown", b"motor"],
        fill_ctab=True,
    )
    labels, names = io.read_labels(tmp_path / "lh.a.annot")
    np.testing.assert_array_equal(labels, [0, 1, 1, 0, 1, 1])
    assert names[1] == "motor"


def test_unreadable_gifti_files_are_named(tmp_path):
    (tmp_path / "empty.func.gii").write_text('<?xml version="1.0"?><nothing/>')
    with pytest.raises(FileFormatError, match=r"empty\.func\.gii.*no GIFTI document.*Fix"):
        io.read_gifti(tmp_path / "empty.func.gii")
    (tmp_path / "junk.func.gii").write_bytes(b"\x00\x01junk")
    with pytest.raises(FileFormatError, match=r"junk\.func\.gii.*cannot be read as GIFTI.*Fix"):
        io.read_gifti(tmp_path / "junk.func.gii")
    with pytest.raises(FileFormatError, match=r"gone\.func\.gii.*does not exist"):
        io.read_gifti(tmp_path / "gone.func.gii")
