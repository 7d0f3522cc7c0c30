"""Queries from images and meshes: identity, Gaussian/geodesic kernels, atlases; encoded, in blocks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from spectranorm_neuro import io
from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.exceptions import IncompatibleModelError, InvalidInputError


def grid_mesh(nx=9, ny=7, spacing=1.0):
    """A flat triangulated grid in the z=0 plane: (vertices (nx*ny, 3), faces)."""
    x, y = np.meshgrid(np.arange(nx) * spacing, np.arange(ny) * spacing, indexing="ij")
    vertices = np.c_[x.ravel(), y.ravel(), np.zeros(x.size)]
    idx = np.arange(nx * ny).reshape(nx, ny)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.c_[a, b, c], np.c_[a, c, d]])
    return vertices, faces


def make_basis(structures, k=12, seed=0):
    n = sum(s.n_features for s in structures)
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, k)))[0]
    return EigenmodeBasis(np.arange(k, dtype=float), q, structures=tuple(structures))


@pytest.fixture
def two_grids():
    v, f = grid_mesh()
    n = len(v)
    mask_l = np.ones(n, bool)
    mask_l[[0, 1, 9]] = False  # a small "medial wall"
    structs = (io.surface_structure("L", n, mask_l), io.surface_structure("R", n))
    return (v, f), structs, make_basis(structs)


# ---------------------------------------------------------------------------------------------- identity
def test_vertex_queries_are_rows_of_the_eigenvectors(two_grids):
    _, (left, right), basis = two_grids
    qs = io.vertex_queries(basis)
    assert qs.n_queries == basis.n_features and qs.kind == "vertex"
    np.testing.assert_allclose(qs.encoded, basis.eigenvectors.T)
    assert qs.names[0] == "CortexLeft:2" and qs.names[-1] == f"CortexRight:{right.n_total - 1}"
    # mesh vertex ids of the right hemisphere map past the left block
    qr = io.vertex_queries(basis, vertices=[0, 5], structure="rh", n_modes=4)
    np.testing.assert_array_equal(qr.features, [left.n_features, left.n_features + 5])
    np.testing.assert_allclose(qr.encoded, basis.eigenvectors[qr.features, :4].T)
    ql = io.vertex_queries(basis, vertices=[2, 10], structure="CortexLeft")
    np.testing.assert_array_equal(ql.features, [0, 7])  # vertices 0, 1, 9 are masked
    with pytest.raises(IncompatibleModelError, match=r"vertices=\[1\].*outside the mask of CortexLeft.*Fix"):
        io.vertex_queries(basis, vertices=[2, 1], structure="L")
    with pytest.raises(InvalidInputError, match=r"vertices=.*outside CortexLeft's 63 nodes.*Fix"):
        io.vertex_queries(basis, vertices=[70], structure="L")
    with pytest.raises(InvalidInputError, match=r"structure='Cerebellum'.*Fix: pass a structure name"):
        io.vertex_queries(basis, vertices=[1], structure="Cerebellum")
    with pytest.raises(InvalidInputError, match=r"fall outside the basis' 123 features.*Fix"):
        io.vertex_queries(basis, vertices=[123])


def test_blocks_stream_the_same_encoding(two_grids):
    _, _, basis = two_grids
    whole = io.vertex_queries(basis)
    lazy = io.vertex_queries(basis, block_size=10)
    assert lazy._encoded is None  # nothing encoded until asked
    blocks = list(lazy.iter_blocks())
    assert [b[1].shape for b in blocks[:2]] == [(12, 10), (12, 10)] and blocks[-1][1].shape == (12, 3)
    np.testing.assert_allclose(np.concatenate([b for _, b in blocks], axis=1), whole.encoded)
    np.testing.assert_allclose(lazy.encoded, whole.encoded)
    with pytest.raises(InvalidInputError, match=r"block_size=0.*Fix"):
        io.vertex_queries(basis, block_size=0)


def test_to_features_scatters_query_values(two_grids):
    _, (left, _right), basis = two_grids
    qs = io.vertex_queries(basis, vertices=[3, 4], structure="R")
    out = qs.to_features(np.array([[1.0, 2.0]]))
    assert out.shape == (1, basis.n_features)
    assert out[0, left.n_features + 3] == 1.0 and out[0, left.n_features + 4] == 2.0
    assert np.isnan(out).sum() == basis.n_features - 2
    with pytest.raises(InvalidInputError, match=r"one column per query \(2\)"):
        qs.to_features(np.ones(3))


def test_voxel_queries_ijk_and_world(tmp_path):
    mask = np.zeros((4, 5, 6), bool)
    mask[1:3, 1:4, 2:5] = True
    affine = np.array([[2.0, 0, 0, -4], [0, 2.0, 0, -6], [0, 0, 3.0, 1], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(tmp_path / "m.nii.gz"))
    vol = io.volume_structure(tmp_path / "m.nii.gz")
    basis = make_basis((vol,))
    qs = io.voxel_queries(basis, [[1, 1, 2], [2, 3, 4]])
    np.testing.assert_array_equal(qs.features, [0, vol.n_features - 1])
    world = (affine @ np.array([[2, 3, 4, 1.0]]).T).T[:, :3] + 0.4  # rounds to the same voxel
    np.testing.assert_array_equal(
        io.voxel_queries(basis, world, space="world").features, [vol.n_features - 1]
    )
    np.testing.assert_allclose(io.voxel_queries(basis).encoded, basis.eigenvectors.T)
    with pytest.raises(IncompatibleModelError, match=r"voxels=\[0\].*outside the mask of Volume.*Fix"):
        io.voxel_queries(basis, [[0, 0, 0]])
    with pytest.raises(InvalidInputError, match=r"lie outside the \(4, 5, 6\) grid.*Fix.*space="):
        io.voxel_queries(basis, [[9, 0, 0]])


# ---------------------------------------------------------------------------------------------- kernels
def test_gaussian_kernel_weights_closed_form(two_grids):
    mesh, (left, _right), basis = two_grids
    v, _ = mesh
    fwhm = 2.0
    sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
    centre_vertex = 31  # an interior vertex of the right grid (all kept)
    qs = io.kernel_queries(
        basis, {"L": mesh, "R": mesh}, centers=[left.n_features + centre_vertex], fwhm=fwhm
    )
    w = qs.weights.toarray()[0]
    d = np.linalg.norm(v - v[centre_vertex], axis=1)
    expected = np.where(d <= 3 * sigma, np.exp(-0.5 * (d / sigma) ** 2), 0.0)
    expected /= expected.sum()
    np.testing.assert_allclose(w[left.n_features :], expected, atol=1e-12)
    assert np.all(w[: left.n_features] == 0)  # kernels never cross hemispheres
    assert w.sum() == pytest.approx(1.0)


def test_kernel_skips_masked_vertices_and_renormalises(two_grids):
    mesh, (left, _), basis = two_grids
    qs = io.kernel_queries(basis, {"L": mesh, "R": mesh}, centers=[0], fwhm=3.0)  # feature 0 = vertex 2
    w = qs.weights.toarray()[0]
    assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)
    full = io.to_full(w[: left.n_features], left)
    assert np.isnan(full[[0, 1, 9]]).all()  # masked vertices are no features, so carry no weight


def test_geodesic_equals_euclidean_along_a_flat_grid_line(two_grids):
    mesh, (left, _right), basis = two_grids
    v, _ = mesh
    centre = left.n_features + 31
    eu = io.kernel_queries(basis, {"L": mesh, "R": mesh}, centers=[centre], fwhm=2.0).weights.toarray()[0]
    geo = io.kernel_queries(basis, {"L": mesh, "R": mesh}, centers=[centre], fwhm=2.0, distance="geodesic")
    geo = geo.weights.toarray()[0]
    right_w_eu, right_w_geo = eu[left.n_features :], geo[left.n_features :]
    # along the grid axes through the centre, edge paths are straight: same unnormalised weights
    same_line = np.flatnonzero((v[:, 0] == v[31, 0]) | (v[:, 1] == v[31, 1]))
    on_line = same_line[right_w_eu[same_line] > 0]
    assert on_line.size >= 5
    ratio = right_w_geo[on_line] / right_w_eu[on_line]
    np.testing.assert_allclose(ratio, ratio[0])
    # off the axes paths zig-zag, so geodesic distances are longer and the kernel narrower
    assert np.count_nonzero(right_w_geo) < np.count_nonzero(right_w_eu)


def test_kernel_query_value_on_a_map_in_the_basis_span(two_grids):
    mesh, _, basis = two_grids
    c = np.random.default_rng(1).normal(size=basis.n_modes)
    x = basis.eigenvectors @ c  # a map the basis represents exactly
    for distance in ("euclidean", "geodesic"):
        qs = io.kernel_queries(basis, {"L": mesh, "R": mesh}, fwhm=2.5, distance=distance, block_size=17)
        np.testing.assert_allclose(qs.encoded.T @ c, qs.weights @ x, atol=1e-12)
        assert qs.n_queries == basis.n_features


def test_kernel_queries_on_fsaverage5_offline():
    from nilearn.datasets import load_fsaverage

    n = 10242
    wall = np.zeros(n, bool)
    wall[:300] = True
    structs = (io.surface_structure("L", n, ~wall), io.surface_structure("R", n, ~wall))
    basis = make_basis(structs, k=8)
    centers = np.array([0, 5000, structs[0].n_features + 123])
    qs = io.kernel_queries(basis, {"L": "fsaverage5", "R": "fsaverage5"}, centers=centers, fwhm=8.0)
    w = qs.weights
    np.testing.assert_allclose(np.asarray(w.sum(axis=1)).ravel(), 1.0)
    pial = load_fsaverage("fsaverage5")["pial"].parts["left"].coordinates
    assert w.shape == (3, basis.n_features) and w[2, : structs[0].n_features].nnz == 0
    # the kernel mass is centred near its vertex (midthickness coordinates, so within a few mm of pial)
    coords = pial[structs[0].index]
    centroid = np.asarray(w[0, : structs[0].n_features] @ coords).ravel()
    assert np.linalg.norm(centroid - coords[0]) < 4.0


def test_kernel_errors(two_grids):
    mesh, _, basis = two_grids
    with pytest.raises(InvalidInputError, match=r"distance='manhattan'.*Fix"):
        io.kernel_queries(basis, mesh, distance="manhattan")
    with pytest.raises(InvalidInputError, match=r"centers='\[\]'.*Fix: pass at least one"):
        io.kernel_queries(basis, {"L": mesh, "R": mesh}, centers=[])
    with pytest.raises(InvalidInputError, match=r"fwhm=-1.*Fix"):
        io.kernel_queries(basis, mesh, fwhm=-1)
    with pytest.raises(InvalidInputError, match=r"one mesh for 2 surface structures.*Fix: pass a dict"):
        io.kernel_queries(basis, mesh)
    with pytest.raises(InvalidInputError, match=r"gives no mesh for CortexRight.*Fix"):
        io.kernel_queries(basis, {"L": mesh})
    small = grid_mesh(5, 5)
    with pytest.raises(
        IncompatibleModelError, match=r"mesh with 25 vertices.*CortexLeft \(63 vertices\).*Fix"
    ):
        io.kernel_queries(basis, {"L": small, "R": mesh})


# ---------------------------------------------------------------------------------------------- atlases
def test_atlas_queries_from_label_array_give_parcel_means(two_grids):
    _, (left, right), basis = two_grids
    labels = np.r_[np.repeat([0, 3, 5], [10, 20, left.n_features - 30]), np.full(right.n_features, 3)]
    qs = io.atlas_queries(basis, labels)
    assert qs.kind == "parcel" and list(qs.labels) == [3, 5] and qs.names == ["3", "5"]
    x = np.random.default_rng(2).normal(size=basis.n_features)
    np.testing.assert_allclose(qs.weights @ x, [x[labels == 3].mean(), x[labels == 5].mean()])
    painted = qs.to_features(qs.weights @ x)
    assert np.isnan(painted[:10]).all()
    np.testing.assert_allclose(painted[labels == 5], x[labels == 5].mean())


def test_atlas_queries_per_hemisphere_annots_stay_distinct(tmp_path, two_grids):
    _, (left, right), basis = two_grids
    n = left.n_total
    ctab = np.array([[0, 0, 0, 0, 0], [255, 0, 0, 0, 0], [0, 255, 0, 0, 0]], dtype=np.int32)
    names = [b"unknown", b"precentral", b"insula"]
    lab_l = np.where(np.arange(n) < 30, 1, 2).astype(np.int32)
    lab_r = np.where(np.arange(n) % 2 == 0, 1, 2).astype(np.int32)
    nib.freesurfer.write_annot(str(tmp_path / "lh.aparc.annot"), lab_l, ctab, names, fill_ctab=True)
    nib.freesurfer.write_annot(str(tmp_path / "rh.aparc.annot"), lab_r, ctab, names, fill_ctab=True)
    qs = io.atlas_queries(basis, {"L": tmp_path / "lh.aparc.annot", "R": tmp_path / "rh.aparc.annot"})
    assert qs.names == ["L_precentral", "L_insula", "R_precentral", "R_insula"]
    assert list(qs.labels) == [1, 2, 1, 2]
    w = qs.weights
    np.testing.assert_allclose(np.asarray(w.sum(axis=1)).ravel(), 1.0)
    assert w[:2, left.n_features :].nnz == 0 and w[2:, : left.n_features].nnz == 0
    x = np.random.default_rng(3).normal(size=basis.n_features)
    xl, xr = x[: left.n_features], x[left.n_features :]
    ll, lr = lab_l[left.index], lab_r[right.index]
    np.testing.assert_allclose(
        w @ x, [xl[ll == 1].mean(), xl[ll == 2].mean(), xr[lr == 1].mean(), xr[lr == 2].mean()]
    )
    np.testing.assert_allclose(qs.encoded, basis.encode_queries(w))


def test_atlas_queries_from_a_nifti_atlas(tmp_path):
    mask = np.zeros((5, 5, 5), bool)
    mask[1:4, 1:4, 1:4] = True
    atlas = np.zeros(mask.shape, np.int16)
    atlas[1:4, 1:4, 1:2] = 7
    atlas[1:4, 1:4, 2:4] = 9
    atlas[2, 2, 3] = 0  # background inside the mask
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), str(tmp_path / "mask.nii.gz"))
    nib.save(nib.Nifti1Image(atlas, np.eye(4)), str(tmp_path / "atlas.nii.gz"))
    vol = io.volume_structure(tmp_path / "mask.nii.gz")
    basis = make_basis((vol,), k=6)
    qs = io.atlas_queries(basis, tmp_path / "atlas.nii.gz")
    assert list(qs.labels) == [7, 9]
    in_mask = atlas[mask]
    np.testing.assert_array_equal(qs.weights.getnnz(axis=1), [(in_mask == 7).sum(), (in_mask == 9).sum()])
    z = np.array([[0.5, -1.0], [2.0, 0.1]])  # predictions for the parcel queries, (n_subjects, n_parcels)
    back = io.read_parcel_table(io.write_parcel_table(z, tmp_path / "p.tsv", qs.names, index=["1", "2"]))
    assert list(back.columns) == ["7", "9"] and list(back.index) == ["1", "2"]
    np.testing.assert_allclose(back.to_numpy(), z)
