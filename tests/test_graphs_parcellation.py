"""Parcellations: label files, region adjacency graphs, parcel-mean queries through a basis."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.cifti2 import cifti2_axes

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.exceptions import (
    FileFormatError,
    GraphError,
    IncompatibleModelError,
    InvalidInputError,
    ShapeMismatchError,
)
from spectranorm_neuro.graphs import (
    from_nifti_mask,
    lattice_graph,
    merge_graphs,
    mesh_graph,
    node_areas,
    parcel_graph,
    parcel_queries,
    read_labels,
)

from .test_graphs_mesh import icosphere


def quadrant_labels(n=10):
    """Labels 1..4 for the four n/2 x n/2 quadrants of an n x n grid, in C order."""
    i, j = np.divmod(np.arange(n * n), n)
    return 1 + (i >= n // 2) * 2 + (j >= n // 2)


# ---------------------------------------------------------------- queries
def test_parcel_queries_are_parcel_means(rng):
    labels = np.array([0, 3, 3, 1, 1, 1, -1, 3, 7])
    x = rng.normal(size=(4, labels.size))
    q, values = parcel_queries(labels)
    assert values.tolist() == [1, 3, 7]
    assert q.shape == (3, labels.size) and q.format == "csr"
    assert np.allclose(np.asarray(q.sum(axis=1)).ravel(), 1.0)
    expected = np.stack([x[:, labels == v].mean(axis=1) for v in values], axis=1)
    assert np.allclose(x @ q.T.toarray(), expected)
    q2, values2 = parcel_queries(labels, ignore=(0, 7))
    assert values2.tolist() == [1, 3] and q2.shape[0] == 2


def test_parcel_queries_area_weighted(rng):
    labels = np.array([1, 1, 2, 2, 2])
    w = np.array([1.0, 3.0, 2.0, 2.0, 4.0])
    x = rng.normal(size=5)
    q, _ = parcel_queries(labels, node_weights=w)
    assert np.allclose(q @ x, [(x[0] + 3 * x[1]) / 4, (2 * x[2] + 2 * x[3] + 4 * x[4]) / 8])


def test_parcel_queries_through_a_vertex_basis_answer_parcel_questions(rng):
    g = lattice_graph((16, 16))
    basis = EigenmodeBasis.from_graph(g, 40)
    labels = quadrant_labels(16)
    q, _ = parcel_queries(labels)
    coeffs = rng.normal(size=(3, 40))
    maps = basis.decode(coeffs)  # band-limited maps
    direct = maps @ q.T.toarray()
    spectral = coeffs @ basis.encode_queries(q)  # (3, 40) @ (40, 4)
    assert np.allclose(direct, spectral, atol=1e-12)


def test_parcel_queries_errors():
    with pytest.raises(InvalidInputError, match=r"labels=.*has no parcel.*Fix: check the atlas"):
        parcel_queries([0, 0, -1])
    with pytest.raises(ShapeMismatchError, match=r"node_weights=.*does not match the 3 labels"):
        parcel_queries([1, 1, 2], node_weights=[1.0, 2.0])
    with pytest.raises(InvalidInputError, match=r"node_weights=.*non-positive.*Fix"):
        parcel_queries([1, 1, 2], node_weights=[1.0, 0.0, 2.0])
    with pytest.raises(InvalidInputError, match=r"labels=.*integer.*Fix"):
        parcel_queries([1.5, 1.0])


# ---------------------------------------------------------------- region adjacency
def test_parcel_graph_counts_boundary_edges():
    n = 10
    g = lattice_graph((n, n))
    pg = parcel_graph(quadrant_labels(n), g)
    a = pg.adjacency.toarray()
    # quadrants 1 2 / 3 4: horizontal neighbours share 5 edges, diagonal ones none (4-connectivity)
    expected = np.array([[0, 5, 5, 0], [5, 0, 0, 5], [5, 0, 0, 5], [0, 5, 5, 0]])
    assert np.array_equal(a, expected)
    (s,) = pg.structures
    assert s.kind == "parcels" and s.n_total == 4 and np.array_equal(s.index, np.arange(4))
    assert pg.provenance["parcel_labels"] == [1, 2, 3, 4]
    assert np.allclose(pg.coords[0], [2.0, 2.0, 0.0])
    a8 = parcel_graph(quadrant_labels(n), lattice_graph((n, n), 8)).adjacency.toarray()
    assert a8[0, 3] == 1 and a8[0, 1] == 5 + 2 * 4  # one diagonal edge at the centre


def test_parcel_graph_length_weights_and_basis():
    v, f = icosphere(3)
    labels = 1 + (v[:, 0] > 0) + 2 * (v[:, 2] > 0.3)
    g = mesh_graph(v, f, name="Sphere")
    pg = parcel_graph(labels, g, weight="length")
    count = parcel_graph(labels, g).adjacency
    assert (pg.adjacency > 0).toarray().tolist() == (count > 0).toarray().tolist()
    mean_edge = pg.adjacency.data / count.data
    assert np.all((mean_edge > 0.05) & (mean_edge < 0.2))
    basis = EigenmodeBasis.from_graph(pg, 3, laplacian="combinatorial")
    assert basis.n_features == 4 and abs(basis.eigenvalues[0]) < 1e-10


def test_parcel_graph_errors():
    g = lattice_graph((6, 6))
    with pytest.raises(IncompatibleModelError, match=r"labels=.*does not match the 36 nodes.*Fix"):
        parcel_graph(np.ones(30, int), g)
    labels = np.ones(36, int)
    labels[0] = 2
    labels[35] = 3
    labels[1] = 0
    labels[6] = 0  # parcel 2 is cut off by background
    with pytest.raises(GraphError, match=r"1 parcel\(s\) touching no other parcel \(labels \[2\]\).*Fix"):
        parcel_graph(labels, g)
    with pytest.raises(InvalidInputError, match=r"weight='area'.*Fix"):
        parcel_graph(np.ones(36, int), g, weight="area")


def test_node_areas_sum_to_surface_area():
    v, f = icosphere(3)
    areas = node_areas(mesh_graph(v, f))
    assert areas.sum() == pytest.approx(4 * np.pi, rel=0.01)
    assert np.all(node_areas(lattice_graph((3, 3))) == 1)


# ---------------------------------------------------------------- label files
def test_read_annot_and_label_gifti(tmp_path):
    n = 12
    labels = np.array([0, 1, 1, 2, 2, 2, 1, 0, 2, 1, 1, 2])
    ctab = np.array([[25, 5, 25, 0, 0], [230, 155, 215, 0, 0], [0, 0, 255, 0, 0]])
    names = [b"unknown", b"precentral", b"insula"]
    nib.freesurfer.write_annot(str(tmp_path / "lh.aparc.annot"), labels, ctab, names, fill_ctab=True)
    lab, nm = read_labels(tmp_path / "lh.aparc.annot")
    assert np.array_equal(lab, labels) and nm == {0: "unknown", 1: "precentral", 2: "insula"}

    table = nib.gifti.GiftiLabelTable()
    for key, name in nm.items():
        gl = nib.gifti.GiftiLabel(key=key)
        gl.label = name
        table.labels.append(gl)
    img = nib.gifti.GiftiImage(labeltable=table, darrays=[nib.gifti.GiftiDataArray(
        labels.astype(np.int32), intent="NIFTI_INTENT_LABEL", datatype="NIFTI_TYPE_INT32")])
    nib.save(img, str(tmp_path / "lh.aparc.label.gii"))
    lab2, nm2 = read_labels(tmp_path / "lh.aparc.label.gii")
    assert np.array_equal(lab2, labels) and nm2 == nm
    assert n == lab2.size


def test_read_labels_through_a_masked_mesh_graph(tmp_path):
    v, f = icosphere(2)
    labels = 1 + (v[:, 0] > 0).astype(int)
    ctab = np.array([[0, 0, 0, 0, 0], [255, 0, 0, 0, 0], [0, 255, 0, 0, 0]])
    nib.freesurfer.write_annot(str(tmp_path / "x.annot"), labels, ctab, [b"u", b"a", b"b"])
    keep = v[:, 2] > -0.2
    g = mesh_graph(v, f, cortex_mask=keep)
    lab, _ = read_labels(tmp_path / "x.annot", graph=g)
    assert np.array_equal(lab, labels[keep])
    small = mesh_graph(*icosphere(1))
    with pytest.raises(IncompatibleModelError, match=r"labels 162 vertices but the mesh has 42.*Fix: use the "
                       r"parcellation made for this mesh"):
        read_labels(tmp_path / "x.annot", graph=small)


def test_read_cifti_dlabel_onto_two_hemisphere_graph(tmp_path):
    v, f = icosphere(1)  # 42 vertices per "hemisphere"
    n = len(v)
    left_labels = 1 + (v[:, 0] > 0)
    right_labels = 3 + (v[:, 1] > 0)
    keep_l = np.arange(n) != 5  # the dlabel skips vertex 5 (a "medial wall") on the left
    label_axis = cifti2_axes.LabelAxis(["parc"], [{0: ("???", (0, 0, 0, 0)), 1: ("L1", (1, 0, 0, 1)),
                                                   2: ("L2", (0, 1, 0, 1)), 3: ("R1", (0, 0, 1, 1)),
                                                   4: ("R2", (1, 1, 0, 1))}])
    bm = (cifti2_axes.BrainModelAxis.from_surface(np.flatnonzero(keep_l), n, name="CortexLeft")
          + cifti2_axes.BrainModelAxis.from_surface(np.arange(n), n, name="CortexRight"))
    data = np.concatenate([left_labels[keep_l], right_labels]).astype(np.float32)[None]
    nib.Cifti2Image(data, header=(label_axis, bm)).to_filename(tmp_path / "atlas.dlabel.nii")
    lab, names = read_labels(tmp_path / "atlas.dlabel.nii")
    assert np.array_equal(lab, data[0].astype(int)) and names[3] == "R1"
    g = merge_graphs([mesh_graph(v, f, name="CortexLeft"), mesh_graph(v, f, name="CortexRight")])
    lab_g, _ = read_labels(tmp_path / "atlas.dlabel.nii", graph=g)
    expected = np.concatenate([np.where(keep_l, left_labels, 0), right_labels])
    assert np.array_equal(lab_g, expected)
    q, values = parcel_queries(lab_g)
    assert values.tolist() == [1, 2, 3, 4] and q.shape == (4, 2 * n)


def test_read_nifti_atlas_with_and_without_mask_graph(tmp_path):
    shape = (6, 5, 4)
    rng = np.random.default_rng(3)
    atlas = rng.integers(0, 4, size=shape).astype(np.int16)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.Nifti1Image(atlas, affine).to_filename(tmp_path / "atlas.nii.gz")
    lab, names = read_labels(tmp_path / "atlas.nii.gz")
    assert np.array_equal(lab, atlas.ravel()[atlas.ravel() != 0])
    assert names == {1: "1", 2: "2", 3: "3"}
    mask = np.zeros(shape, np.uint8)
    mask[1:5, 1:4, 1:3] = 1
    g = from_nifti_mask(nib.Nifti1Image(mask, affine))
    lab_g, _ = read_labels(tmp_path / "atlas.nii.gz", graph=g)
    assert np.array_equal(lab_g, atlas[mask.astype(bool)])
    other = from_nifti_mask(nib.Nifti1Image(np.ones((6, 5, 3), np.uint8), affine))
    with pytest.raises(IncompatibleModelError, match=r"grid shape \(6, 5, 4\).*\(6, 5, 3\).*Fix: resample"):
        read_labels(tmp_path / "atlas.nii.gz", graph=other)
    moved = from_nifti_mask(nib.Nifti1Image(mask, np.diag([3.0, 3.0, 3.0, 1.0])))
    with pytest.raises(IncompatibleModelError, match=r"different affine.*Fix: resample"):
        read_labels(tmp_path / "atlas.nii.gz", graph=moved)


def test_read_labels_bad_files(tmp_path):
    (tmp_path / "x.annot").write_bytes(b"\x00\x01")
    with pytest.raises(FileFormatError, match=r"path=.*x.annot.*is not a FreeSurfer annot.*Fix"):
        read_labels(tmp_path / "x.annot")
    with pytest.raises(InvalidInputError, match=r"path=.*none.annot.*does not exist"):
        read_labels(tmp_path / "none.annot")


def test_read_cifti_dlabel_volume_and_errors(tmp_path):
    shape = (5, 4, 3)
    mask = np.zeros(shape, bool)
    mask[1:4, 1:3, :2] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    labels = 1 + (np.argwhere(mask)[:, 0] > 1)
    label_axis = cifti2_axes.LabelAxis(["parc"], [{0: ("???", (0, 0, 0, 0)), 1: ("A", (1, 0, 0, 1)),
                                                   2: ("B", (0, 1, 0, 1))}])
    bm = cifti2_axes.BrainModelAxis.from_mask(mask, name="thalamus_left", affine=affine)
    nib.Cifti2Image(labels[None].astype(np.float32), header=(label_axis, bm)).to_filename(tmp_path / "v.dlabel.nii")
    big = np.zeros(shape, np.uint8)
    big[:4, :3, :2] = 1  # the graph covers more voxels than the dlabel: those get 0
    g = from_nifti_mask(nib.Nifti1Image(big, affine))
    lab, _ = read_labels(tmp_path / "v.dlabel.nii", graph=g)
    full = np.zeros(mask.size, int)
    full[np.flatnonzero(mask.ravel())] = labels
    assert np.array_equal(lab, full[g.structures[0].index])
    other = from_nifti_mask(nib.Nifti1Image(np.ones((5, 4, 2), np.uint8), affine))
    with pytest.raises(IncompatibleModelError, match=r"volume shape \(5, 4, 3\), the graph \(5, 4, 2\).*Fix"):
        read_labels(tmp_path / "v.dlabel.nii", graph=other)
    surf = mesh_graph(*icosphere(1))
    with pytest.raises(IncompatibleModelError, match=r"has no CIFTI_STRUCTURE_CORTEX_LEFT.*Fix"):
        read_labels(tmp_path / "v.dlabel.nii", graph=surf)
    bm_s = cifti2_axes.BrainModelAxis.from_surface(np.arange(42), 42, name="CortexLeft")
    nib.Cifti2Image(np.ones((1, 42), np.float32), header=(label_axis, bm_s)).to_filename(tmp_path / "s.dlabel.nii")
    with pytest.raises(IncompatibleModelError, match=r"CIFTI_STRUCTURE_CORTEX_LEFT has 42 vertices but the mesh "
                       r"has 162.*Fix"):
        read_labels(tmp_path / "s.dlabel.nii", graph=mesh_graph(*icosphere(2)))
    scalar = cifti2_axes.ScalarAxis(["x"])
    nib.Cifti2Image(np.ones((1, 42), np.float32), header=(scalar, bm_s)).to_filename(tmp_path / "s.dscalar.nii")
    with pytest.raises(FileFormatError, match=r"is a CIFTI file but not a dlabel.*Fix"):
        read_labels(tmp_path / "s.dscalar.nii")


def test_more_label_errors(tmp_path):
    with pytest.raises(ShapeMismatchError, match=r"labels=.*is not 1-D.*Fix"):
        parcel_queries(np.ones((2, 3), int))
    v, f = icosphere(1)
    nib.freesurfer.write_annot(str(tmp_path / "a.annot"), np.ones(42, int), np.zeros((2, 5), int), [b"u", b"a"])
    both = merge_graphs([mesh_graph(v, f), mesh_graph(v, f, name="CortexRight")])
    with pytest.raises(InvalidInputError, match=r"graph=\['CortexLeft', 'CortexRight'\].*Fix: read the labels of "
                       r"each hemisphere"):
        read_labels(tmp_path / "a.annot", graph=both)
    bad = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.full(5, 0.5, np.float32))])
    nib.save(bad, str(tmp_path / "bad.label.gii"))
    with pytest.raises(FileFormatError, match=r"is not a GIFTI label file.*Fix"):
        read_labels(tmp_path / "bad.label.gii")
    nib.Nifti1Image(np.ones((3, 3, 3, 2), np.int16), np.eye(4)).to_filename(tmp_path / "4d.nii.gz")
    with pytest.raises(ShapeMismatchError, match=r"not a 3-D atlas.*Fix"):
        read_labels(tmp_path / "4d.nii.gz")
    nib.Nifti1Image(np.ones((3, 3, 3, 1), np.int16), np.eye(4)).to_filename(tmp_path / "4d1.nii.gz")
    assert read_labels(tmp_path / "4d1.nii.gz")[0].size == 27
    g = lattice_graph((4, 4))
    g.coords = None
    with pytest.raises(InvalidInputError, match=r"weight='length': needs node coordinates.*Fix"):
        parcel_graph(quadrant_labels(4), g, weight="length")
