"""The contract every adapter's basis must meet, run on each adapter and Laplacian.

For each case: the operator is symmetric positive semi-definite (and the mass symmetric positive
definite), the first eigenvalue is about zero on a connected graph / closed or Neumann mesh, the
eigen-equation holds, modes are (mass-)orthonormal to 1e-8, encode∘decode is the identity on
band-limited signals, the build is deterministic, and full-set mapping and save/load round-trip.
"""

from __future__ import annotations

import functools

import nibabel as nib
import numpy as np
import pytest
from scipy import linalg, sparse

from spectranorm_neuro.basis import EigenmodeBasis, operator_pair
from spectranorm_neuro.graphs import (
    from_nifti_mask,
    fsaverage5_graph,
    lattice_graph,
    merge_graphs,
    mesh_graph,
    parcel_graph,
    volume_fem_graph,
)

from .test_graphs_mesh import icosphere


def _ball_mask(shape=(9, 8, 7), radius=3.3):
    ijk = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    return np.linalg.norm(ijk - (np.array(shape) - 1) / 2, axis=-1) <= radius


def _parcels():
    v, f = icosphere(3)
    seeds, _ = icosphere(0)
    labels = 1 + np.argmax(v @ seeds.T, axis=1)  # 12 Voronoi parcels around the icosahedron's vertices
    return parcel_graph(labels, mesh_graph(v, f, name="Sphere"))


def _cut_sphere():
    v, f = icosphere(3)
    return mesh_graph(v, f, cortex_mask=v[:, 2] > -0.4, name="CortexLeft")


def _two_spheres():
    v, f = icosphere(2)
    return merge_graphs([mesh_graph(v, f, name="CortexLeft"), mesh_graph(1.5 * v, f, name="CortexRight")])


# name: (graph factory, laplacian, n_modes, number of zero eigenvalues)
CASES = {
    "lattice2d-normalized": (lambda: lattice_graph((9, 8)), "normalized", 12, 1),
    "lattice2d-8conn-combinatorial": (lambda: lattice_graph((9, 8), 8), "combinatorial", 12, 1),
    "lattice2d-random_walk": (lambda: lattice_graph((9, 8)), "random_walk", 12, 1),
    "lattice2d-sparse-solver": (lambda: lattice_graph((40, 30)), "normalized", 30, 1),
    "lattice3d-masked-26conn": (lambda: lattice_graph((9, 8, 7), 26, mask=_ball_mask()), "normalized", 15, 1),
    "nifti-mask": (lambda: from_nifti_mask(nib.Nifti1Image(_ball_mask((14, 13, 12), 5.5).astype(np.uint8),
                                                          np.diag([2.0, 2.0, 2.0, 1.0]))), "combinatorial", 20, 1),
    "nifti-tetrahedral-fem": (lambda: volume_fem_graph(nib.Nifti1Image(
        _ball_mask((14, 13, 12), 5.5).astype(np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))), "lbo", 20, 1),
    "sphere-lbo": (lambda: mesh_graph(*icosphere(4), name="Sphere"), "lbo", 25, 1),
    "sphere-mesh-graph": (lambda: mesh_graph(*icosphere(3), name="Sphere"), "normalized", 15, 1),
    "cut-sphere-lbo": (_cut_sphere, "lbo", 15, 1),
    "two-spheres-lbo": (_two_spheres, "lbo", 15, 2),
    "parcels-combinatorial": (_parcels, "combinatorial", 8, 1),
    "fsaverage5-masked-lbo": (lambda: fsaverage5_graph("right", cortex_mask="auto"), "lbo", 20, 1),
}


@functools.cache
def built(name):
    factory, laplacian, k, n_zero = CASES[name]
    graph = factory()
    return graph, EigenmodeBasis.from_graph(graph, k, laplacian=laplacian), n_zero


@pytest.fixture(params=sorted(CASES))
def case(request):
    return (request.param, *built(request.param))


def _sym_error(mat):
    return abs(mat - mat.T).max() / max(abs(mat).max(), 1e-300)


def test_operator_is_symmetric_psd_and_mass_positive_definite(case):
    _, graph, basis, _ = case
    _, op, mass = operator_pair(graph, basis.provenance["laplacian"])
    assert _sym_error(op) < 1e-12
    # the solver returns the smallest eigenvalues, so the first one bounds the spectrum from below
    assert basis.eigenvalues[0] > -1e-10 * max(1.0, basis.eigenvalues[-1])
    if op.shape[0] <= 1000:
        lam = linalg.eigvalsh(op.toarray(), None if mass is None else mass.toarray())
        assert lam.min() > -1e-10 * lam.max()
        assert np.allclose(lam[: basis.n_modes], basis.eigenvalues, atol=1e-9 * lam.max())
    if mass is not None:
        assert _sym_error(mass) < 1e-12 and np.all(mass.diagonal() > 0)


def test_first_eigenvalues_are_zero_on_connected_pieces(case):
    _, _, basis, n_zero = case
    scale = max(1.0, basis.eigenvalues[-1])
    assert np.all(np.abs(basis.eigenvalues[:n_zero]) < 1e-9 * scale)
    assert basis.eigenvalues[n_zero] > 1e-6 * scale
    assert np.all(np.diff(basis.eigenvalues) >= -1e-12 * scale)


def test_eigen_equation_and_mass_orthonormality(case):
    _, graph, basis, _ = case
    _, op, mass = operator_pair(graph, basis.provenance["laplacian"])
    V = basis.eigenvectors
    MV = V if mass is None else mass @ V
    resid = op @ V - MV * basis.eigenvalues
    assert np.abs(resid).max() < 1e-8 * max(1.0, basis.eigenvalues[-1]) * max(1.0, np.abs(MV).max())
    assert np.abs(V.T @ MV - np.eye(basis.n_modes)).max() < 1e-8
    if mass is not None:
        assert basis.mass_matrix is not None and (basis.mass_matrix != mass).nnz == 0


def test_encode_decode_identity_on_band_limited_signals(case, rng):
    _, _, basis, _ = case
    coeffs = rng.normal(size=(5, basis.n_modes))
    maps = basis.decode(coeffs)
    assert np.allclose(basis.encode(maps), coeffs, atol=1e-8)
    assert np.allclose(basis.decode(basis.encode(maps)), maps, atol=1e-8)
    # a signal outside the band loses exactly its out-of-band part
    noise = rng.normal(size=basis.n_features)
    resid = noise - basis.decode(basis.encode(noise))
    assert np.allclose(basis.encode(resid), 0, atol=1e-8)


def test_build_is_deterministic_and_structures_round_trip(case, rng):
    name, graph, basis, _ = case
    factory, laplacian, k, _ = CASES[name]
    again = EigenmodeBasis.from_graph(factory(), k, laplacian=laplacian)
    assert np.array_equal(again.eigenvectors, basis.eigenvectors)
    assert np.array_equal(again.eigenvalues, basis.eigenvalues)
    assert basis.structures == graph.structures
    x = rng.normal(size=(2, basis.n_features))
    full = basis.to_full(x)
    assert set(full) == {s.name for s in graph.structures}
    assert sum(int(np.isfinite(v[0]).sum()) for v in full.values()) == basis.n_features
    assert np.array_equal(basis.from_full(full), x)


def test_save_load_round_trip(case, tmp_path):
    _, _, basis, _ = case
    path = basis.save(tmp_path / "basis.bin")
    for mmap in (False, True):
        back = EigenmodeBasis.load(path, mmap=mmap)
        assert np.array_equal(back.eigenvectors, basis.eigenvectors)
        assert np.array_equal(back.eigenvalues, basis.eigenvalues)
        assert (back.mass_matrix is None) == (basis.mass_matrix is None)
        if back.mass_matrix is not None:
            assert sparse.issparse(back.mass_matrix) and (back.mass_matrix != basis.mass_matrix).nnz == 0
        assert [(s.name, s.n_total) for s in back.structures] == [(s.name, s.n_total) for s in basis.structures]
        assert back.provenance["laplacian"] == basis.provenance["laplacian"]
