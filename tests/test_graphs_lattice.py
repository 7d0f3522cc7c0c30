"""Lattices and voxel masks: node order, edges, closed-form spectra, NIfTI masks, errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from spectranorm_neuro.basis import EigenmodeBasis, combinatorial_laplacian, compute_combinatorial_laplacian_eigenmodes
from spectranorm_neuro.exceptions import GraphError, InvalidInputError, MeshError, ShapeMismatchError
from spectranorm_neuro.graphs import (
    from_nifti_mask,
    largest_component,
    lattice_graph,
    mask_fem_graph,
    volume_fem_graph,
)
from spectranorm_neuro.graphs.lattice import lattice_offsets


def path_eigenvalues(n: int) -> np.ndarray:
    """Combinatorial Laplacian spectrum of the path graph P_n: 2 - 2 cos(pi j / n)."""
    return 2 - 2 * np.cos(np.pi * np.arange(n) / n)


def test_node_order_is_c_order_like_the_tutorial():
    n = 50
    g = lattice_graph((n, n))
    adj = g.adjacency
    assert g.n_features == n * n and adj.nnz == 2 * 2 * n * (n - 1)
    i, j = 17, 31
    node = i * n + j  # the tutorial's node_index
    assert sorted(adj[node].indices.tolist()) == sorted([(i - 1) * n + j, (i + 1) * n + j, node - 1, node + 1])
    assert np.array_equal(g.structures[0].index, np.arange(n * n))
    assert g.structures[0].kind == "lattice" and g.structures[0].name == "Lattice"
    assert g.structures[0].shape == (n, n)
    assert np.array_equal(g.coords[node], [i, j, 0])


def test_matches_hand_built_grid(tiny_lattice):
    adj, shape = tiny_lattice
    assert (lattice_graph(shape).adjacency != adj).nnz == 0


@pytest.mark.parametrize("shape, conn, n_edges", [
    ((5, 4), 4, 5 * 3 + 4 * 4),
    ((5, 4), 8, 5 * 3 + 4 * 4 + 2 * 4 * 3),
    ((4, 3, 2), 6, 3 * 3 * 2 + 4 * 2 * 2 + 4 * 3 * 1),
    ((4, 3, 2), 18, None),
    ((4, 3, 2), 26, None),
])
def test_edge_counts(shape, conn, n_edges):
    g = lattice_graph(shape, conn)
    if n_edges is None:  # brute force: pairs of cells at the right Chebyshev/L1 distance
        ijk = np.stack(np.unravel_index(np.arange(np.prod(shape)), shape), 1)
        d = np.abs(ijk[:, None] - ijk[None])
        near = (d.max(-1) == 1) & ((d.sum(-1) <= 2) if conn == 18 else True)
        n_edges = int(near.sum()) // 2
    assert g.adjacency.nnz == 2 * n_edges
    assert len(lattice_offsets(len(shape), conn)) == conn // 2
    assert np.all(g.adjacency.data == 1.0)


def test_path_graph_spectrum_closed_form():
    n = 30
    vals, vecs = compute_combinatorial_laplacian_eigenmodes(lattice_graph((1, n)).adjacency, n - 1)
    assert np.allclose(vals, path_eigenvalues(n)[: n - 1], atol=1e-10)
    # eigenvectors are cos(pi j (x + 1/2) / n) up to sign
    x = np.arange(n)
    for j in (1, 2, 5):
        ref = np.cos(np.pi * j * (x + 0.5) / n)
        ref /= np.linalg.norm(ref)
        assert abs(abs(vecs[j] @ ref) - 1) < 1e-8


@pytest.mark.parametrize("shape", [(12, 7), (40, 30), (6, 5, 4)])
def test_grid_spectrum_is_sums_of_path_spectra(shape):
    sums = np.zeros(1)
    for n in shape:
        sums = (sums[:, None] + path_eigenvalues(n)[None, :]).ravel()
    expected = np.sort(sums)
    k = 60
    basis = EigenmodeBasis.from_graph(lattice_graph(shape), k, laplacian="combinatorial")
    assert np.allclose(basis.eigenvalues, expected[:k], atol=1e-9)


def test_inverse_square_weighting_gives_finite_difference_spectrum():
    h = 0.5
    g = lattice_graph((1, 20), spacing=(h, h), weighting="inverse_square")
    assert np.allclose(g.adjacency.data, 1 / h**2)
    lap = combinatorial_laplacian(g.adjacency)
    assert np.allclose(np.linalg.eigvalsh(lap.toarray()), path_eigenvalues(20) / h**2, atol=1e-9)
    assert np.allclose(g.coords[:3, 1], [0.0, 0.5, 1.0])


def test_mask_keeps_c_order_and_drops_edges():
    mask = np.zeros((6, 5), bool)
    mask[1:5, 1:4] = True
    mask[2, 2] = False
    g = lattice_graph((6, 5), mask=mask)
    assert np.array_equal(g.structures[0].index, np.flatnonzero(mask.ravel()))
    assert g.structures[0].n_total == 30
    # 4 x 3 block with one hole: 17 edges in the full block minus the 4 edges of the removed cell
    assert g.adjacency.nnz == 2 * (4 * 2 + 3 * 3 - 4)
    assert np.array_equal(g.coords[:, :2], np.argwhere(mask))


def test_largest_component_of_a_split_mask():
    mask = np.zeros((6, 6), bool)
    mask[:3, :3] = True
    mask[5, 4:] = True
    with pytest.raises(GraphError, match=r"2 connected components of sizes \[9, 2\].*largest_component"):
        EigenmodeBasis.from_graph(lattice_graph((6, 6), mask=mask), 3)
    g = largest_component(lattice_graph((6, 6), mask=mask))
    assert g.n_features == 9 and np.array_equal(g.structures[0].index, np.flatnonzero(mask.ravel())[:9])
    assert g.provenance["steps"][-1]["sizes"] == [9]
    assert EigenmodeBasis.from_graph(g, 3).n_modes == 3


def test_lattice_errors_name_argument_and_fix():
    with pytest.raises(InvalidInputError,
                       match=r"connectivity=6: is not valid for a 2-D grid.*Fix: pass one of \[4, 8\]"):
        lattice_graph((5, 5), 6)
    with pytest.raises(InvalidInputError, match=r"shape=\(5,\): has 1 dimension.*Fix"):
        lattice_graph((5,))
    with pytest.raises(ShapeMismatchError, match=r"mask=.*\(4, 4\).*does not match the grid shape \(5, 5\).*Fix"):
        lattice_graph((5, 5), mask=np.ones((4, 4), bool))
    with pytest.raises(InvalidInputError, match=r"mask=.*selects no cell.*Fix"):
        lattice_graph((5, 5), mask=np.zeros((5, 5), bool))
    with pytest.raises(InvalidInputError, match=r"spacing=.*Fix"):
        lattice_graph((5, 5), spacing=(1.0, -1.0))
    with pytest.raises(InvalidInputError, match=r"weighting='cosine'.*Fix"):
        lattice_graph((5, 5), weighting="cosine")


# ---------------------------------------------------------------- NIfTI masks
def _ball_image(shape=(9, 8, 7), radius=3.2):
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    centre = (np.array(shape) - 1) / 2
    mask = np.linalg.norm(ijk - centre, axis=-1) <= radius
    affine = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0, -126], [0, 0, 2.5, -72], [0, 0, 0, 1]])
    return mask, nib.Nifti1Image(mask.astype(np.uint8), affine)


def test_from_nifti_mask_order_coords_and_structure(tmp_path):
    mask, img = _ball_image()
    path = tmp_path / "mask.nii.gz"
    img.to_filename(path)
    g = from_nifti_mask(path)
    (s,) = g.structures
    assert s.kind == "volume" and s.name == "Volume" and s.shape == mask.shape
    assert np.array_equal(s.index, np.flatnonzero(mask.ravel(order="C")))
    assert np.array_equal(s.affine, img.affine)
    ijk = np.argwhere(mask)  # C order, same as the index
    assert np.allclose(g.coords, nib.affines.apply_affine(img.affine, ijk))
    # the documented inverse: a feature vector written back into the grid
    x = np.arange(g.n_features, dtype=float)
    vol = np.zeros(mask.size)
    vol[s.index] = x
    assert np.array_equal(vol.reshape(mask.shape)[mask], x)
    assert g.provenance["source"] == str(path) and g.provenance["mask_sha256"]
    same = from_nifti_mask(img)
    assert (same.adjacency != g.adjacency).nnz == 0
    nnz = [from_nifti_mask(img, connectivity=c).adjacency.nnz for c in (6, 18, 26)]
    assert nnz[0] == g.adjacency.nnz < nnz[1] < nnz[2]


def test_from_nifti_mask_errors(tmp_path):
    _, img = _ball_image()
    with pytest.raises(InvalidInputError, match=r"img_or_path=.*empty mask.*Fix"):
        from_nifti_mask(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)))
    with pytest.raises(ShapeMismatchError, match=r"not a 3-D mask.*Fix"):
        from_nifti_mask(nib.Nifti1Image(np.ones((4, 4, 4, 2), np.uint8), np.eye(4)))
    with pytest.raises(InvalidInputError, match=r"connectivity=4: is not valid for a 3-D grid"):
        from_nifti_mask(img, connectivity=4)
    with pytest.raises(InvalidInputError, match=r"img_or_path=.*nothing.nii.*does not exist"):
        from_nifti_mask(tmp_path / "nothing.nii")
    with pytest.raises(InvalidInputError, match=r"img_or_path='list'.*Fix"):
        from_nifti_mask([1, 2])


# ---------------------------------------------------------------- tetrahedral FEM of a voxel mask
def test_kuhn_tetrahedra_tile_the_cube():
    from spectranorm_neuro.graphs.volume_fem import _CORNERS, kuhn_tetrahedra

    tets = kuhn_tetrahedra()
    p = _CORNERS[tets].astype(float)  # (6, 4, 3)
    vol = np.abs(np.linalg.det(p[:, 1:] - p[:, :1])) / 6
    assert np.allclose(vol, 1 / 6) and vol.sum() == pytest.approx(1.0)


def test_box_fem_spectrum_matches_neumann_closed_form():
    shape, h = (17, 13, 9), 2.0
    g = mask_fem_graph(np.ones(shape, bool), np.diag([h, h, h, 1.0]))
    lengths = (np.array(shape) - 1) * h
    assert g.mass.sum() == pytest.approx(np.prod(lengths))
    assert g.n_features == np.prod(shape) and g.provenance["dropped_voxels"] == 0
    basis = EigenmodeBasis.from_graph(g, 6)
    p = np.stack(np.meshgrid(*[np.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    exact = np.sort(((np.pi * p / lengths) ** 2).sum(axis=1))[:6]  # (pi p / L)^2 sums
    assert abs(basis.eigenvalues[0]) < 1e-12
    error = np.abs(basis.eigenvalues[1:] / exact[1:] - 1)
    assert error.max() < 0.02
    # linear elements: halving the voxel size divides the error by about 4
    coarse = EigenmodeBasis.from_graph(mask_fem_graph(np.ones((9, 7, 5), bool), np.diag([4.0, 4.0, 4.0, 1.0])), 6)
    ratio = np.abs(coarse.eigenvalues[1:] / exact[1:] - 1) / error
    assert np.all((ratio > 3.0) & (ratio < 5.0))


def test_volume_fem_graph_from_nifti_drops_thin_voxels(tmp_path):
    mask, img = _ball_image((10, 9, 8), 3.5)
    mask = mask.copy()
    mask[0, 0, 0] = True  # an isolated voxel: corner of no full cube
    nib.Nifti1Image(mask.astype(np.uint8), img.affine).to_filename(tmp_path / "m.nii.gz")
    g = volume_fem_graph(tmp_path / "m.nii.gz")
    (s,) = g.structures
    assert s.kind == "volume" and 0 not in s.index and g.provenance["dropped_voxels"] >= 1
    assert set(s.index) <= set(np.flatnonzero(mask.ravel()))
    assert np.allclose(g.coords, nib.affines.apply_affine(img.affine, np.argwhere(np.isin(
        np.arange(mask.size).reshape(mask.shape), s.index))))
    with pytest.raises(MeshError, match=r"mask=.*no 2 x 2 x 2 block.*Fix: use from_nifti_mask"):
        mask_fem_graph(np.eye(4, dtype=bool)[:, :, None].repeat(2, axis=2))
    two = np.zeros((7, 3, 3), bool)
    two[:3], two[4:] = True, True
    with pytest.raises(MeshError, match=r"2 separate tetrahedral pieces of sizes \[27, 27\].*Fix"):
        mask_fem_graph(two)


@pytest.mark.parametrize("kwargs, message", [
    ({"shape": "ab"}, r"shape='ab': is not a tuple of integers.*Fix"),
    ({"shape": (1, 1)}, r"shape=\(1, 1\): has fewer than 2 cells.*Fix"),
    ({"shape": (3, 3), "mask": np.array([["a"] * 3] * 3)}, r"mask=.*dtype.*is not boolean.*Fix"),
])
def test_more_lattice_errors(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        lattice_graph(**kwargs)


def test_numeric_masks_and_singleton_4d_images(tmp_path):
    mask = np.zeros((4, 4))
    mask[1:3, :] = 2.5
    mask[0, 0] = np.nan
    assert np.array_equal(lattice_graph((4, 4), mask=mask).structures[0].index, np.arange(4, 12))
    vol = np.zeros((5, 5, 5, 1), np.uint8)
    vol[1:4, 1:4, 1:4] = 1
    img = nib.Nifti1Image(vol, np.eye(4))
    assert from_nifti_mask(img).n_features == 27 and volume_fem_graph(img).n_features == 27
    (tmp_path / "broken.nii").write_bytes(b"\x00" * 10)
    with pytest.raises(InvalidInputError, match=r"img_or_path=.*broken.nii.*cannot be read as a NIfTI image.*Fix"):
        from_nifti_mask(tmp_path / "broken.nii")


def test_volume_fem_errors():
    with pytest.raises(ShapeMismatchError, match=r"mask=.*is not 3-D.*Fix"):
        mask_fem_graph(np.ones((4, 4), bool))
    with pytest.raises(ShapeMismatchError, match=r"img_or_path=.*not a 3-D mask.*Fix"):
        volume_fem_graph(nib.Nifti1Image(np.ones((3, 3, 3, 2), np.uint8), np.eye(4)))
    with pytest.raises(InvalidInputError, match=r"img_or_path=.*empty mask.*Fix"):
        volume_fem_graph(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)))
