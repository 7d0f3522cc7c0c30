"""``snm.utils.gsp``: the reference's graph functions and EigenmodeBasis methods, against closed forms."""

import numpy as np
import pytest
from scipy import sparse

from spectranorm_neuro.basis import normalized_laplacian
from spectranorm_neuro.exceptions import GraphError
from spectranorm_neuro.graphs import lattice_graph
from spectranorm_neuro.snm.utils import gsp


@pytest.fixture(scope="module")
def adj():
    return lattice_graph((12, 10)).adjacency


def test_normalizations_and_transition_matrix(adj):
    dense = adj.toarray()
    deg = dense.sum(axis=1)
    assert isinstance(gsp.make_csr_matrix(dense), sparse.csr_matrix)
    np.testing.assert_allclose(gsp.perform_symmetric_normalization(adj).toarray(),
                               dense / np.sqrt(np.outer(deg, deg)))
    t = gsp.convert_adjacency_to_transition_matrix(dense).toarray()
    np.testing.assert_allclose(t.sum(axis=1), 1.0)
    np.testing.assert_allclose(t, dense / deg[:, None])
    with pytest.raises(ValueError, match="isolated"):
        gsp.convert_adjacency_to_transition_matrix(np.zeros((3, 3)))


def test_random_walk_returns_three_values_and_degree_orthonormal_modes(adj):
    vals, vecs, degrees = gsp.compute_random_walk_laplacian_eigenmodes(adj, 8)
    assert vals.shape == (9,) and vecs.shape == (9, 120) and degrees.shape == (120,)
    np.testing.assert_allclose(degrees, np.asarray(adj.sum(axis=1)).ravel())
    np.testing.assert_allclose((vecs * degrees) @ vecs.T, np.eye(9), atol=1e-9)
    nvals, _ = gsp.compute_symmetric_normalized_laplacian_eigenmodes(adj, 8)
    np.testing.assert_allclose(vals, nvals, atol=1e-10)
    basis = gsp.EigenmodeBasis(vals, vecs.T, sparse.diags(degrees))
    x = vecs[3] * 2.0 - vecs[5]
    np.testing.assert_allclose(basis.encode(x[None])[0], [0, 0, 0, 2, 0, -1, 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(basis.inverted_eigenvectors() @ basis.eigenvectors, np.eye(9), atol=1e-9)


@pytest.mark.parametrize("path", ["amg", "ilu"])
def test_amg_lobpcg_solver_matches_eigsh(adj, path, monkeypatch):
    from scipy.sparse.linalg import eigsh

    calls = []
    if path == "amg":  # pyamg's smoothed aggregation, as the reference (the optional `amg` extra)
        pyamg = pytest.importorskip("pyamg")
        real = pyamg.smoothed_aggregation_solver
        monkeypatch.setattr(pyamg, "smoothed_aggregation_solver", lambda a: calls.append(a.shape) or real(a))
    else:  # without pyamg: the incomplete-LU preconditioner
        monkeypatch.setattr(gsp, "_load_pyamg", lambda: None)
    vals, vecs, degrees = gsp.compute_symmetric_normalized_laplacian_eigenmodes_amg_lobpcg(adj, 5, amg_cycles=2)
    assert calls == ([(120, 120)] if path == "amg" else [])
    np.testing.assert_allclose(degrees, np.asarray(adj.sum(axis=1)).ravel())
    lap = normalized_laplacian(adj)
    ref = np.sort(eigsh(lap.tocsc(), k=6, sigma=-1e-3, which="LM")[0])
    np.testing.assert_allclose(vals, ref, atol=1e-7)
    assert np.abs(lap @ vecs.T - vecs.T * vals).max() < 1e-5
    np.testing.assert_allclose(vecs @ vecs.T, np.eye(6), atol=1e-6)
    with pytest.raises(ValueError, match="amg_cycles"):
        gsp.compute_symmetric_normalized_laplacian_eigenmodes_amg_lobpcg(adj, 5, amg_cycles=0)


def test_non_symmetric_adjacency_is_symmetrized_as_the_reference_and_bad_shapes_are_named():
    a = lattice_graph((5, 5)).adjacency.toarray()
    b = a.copy()
    b[0, 1] = 3.0  # the reference averages A and A.T
    v1, _ = gsp.compute_symmetric_normalized_laplacian_eigenmodes(b, 3)
    c = (b + b.T) / 2
    v2, _ = gsp.compute_symmetric_normalized_laplacian_eigenmodes(c, 3)
    np.testing.assert_allclose(v1, v2)
    with pytest.raises(GraphError, match="not square"):
        gsp.compute_symmetric_normalized_laplacian_eigenmodes(np.ones((3, 4)), 1)


def test_basis_reduce_in_place_by_default_decode_keyword(tmp_path, adj):
    vals, vecs = gsp.compute_symmetric_normalized_laplacian_eigenmodes(adj, 10)
    basis = gsp.EigenmodeBasis(vals, vecs.T)
    copy = basis.reduce(5, inplace=False)
    assert (copy.n_modes, basis.n_modes) == (5, 11)
    same = basis.reduce(7)
    assert same is basis and basis.n_modes == 7
    coeffs = np.arange(14.0).reshape(2, 7)
    np.testing.assert_allclose(basis.decode(encoded_signals=coeffs, n_modes=3), coeffs[:, :3] @ vecs[:3])
    path = tmp_path / "basis.joblib"
    basis.save(filepath=path, compress=3)
    assert path.read_bytes()[:2] == b"PK"  # this package's npz format, never a pickle
    loaded = gsp.EigenmodeBasis.load(filepath=path, mmap_mode=None)
    np.testing.assert_array_equal(loaded.eigenvectors, basis.eigenvectors)
    assert isinstance(gsp.EigenmodeBasis.load(path, mmap_mode="r").eigenvectors, np.memmap)
