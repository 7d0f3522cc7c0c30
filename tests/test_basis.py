"""EigenmodeBasis: operators, structures, Laplacians and solvers, bad inputs, safe save/load."""

from __future__ import annotations

import json
import pickle
import zipfile

import joblib
import numpy as np
import pytest
from scipy import sparse
from threadpoolctl import threadpool_limits

from spectranorm_neuro import __version__
from spectranorm_neuro.basis import (
    EigenmodeBasis,
    compute_random_walk_laplacian_eigenmodes,
    compute_symmetric_normalized_laplacian_eigenmodes,
    fix_signs,
    hemisphere_bases,
    read_metadata,
    solve_eigenmodes,
)
from spectranorm_neuro.basis.laplacians import normalized_laplacian
from spectranorm_neuro.exceptions import (
    ChecksumError,
    FileFormatError,
    FormatVersionError,
    GraphError,
    IncompatibleModelError,
    InvalidInputError,
    OutputExistsError,
    ShapeMismatchError,
    UnsafeFormatError,
)
from spectranorm_neuro.graphs import (
    Structure,
    from_nifti_mask,
    fsaverage5_cortex_mask,
    fsaverage5_graph,
    lattice_graph,
    merge_graphs,
    mesh_graph,
)
from spectranorm_neuro.snm.utils import gsp

from .test_graphs_mesh import icosphere


@pytest.fixture
def q_basis(rng):
    q, _ = np.linalg.qr(rng.normal(size=(30, 6)))
    return EigenmodeBasis(np.arange(6.0), q)


# ---------------------------------------------------------------- core API (seed contract)
def test_encode_decode_reduce_queries(q_basis, rng):
    c = rng.normal(size=(4, 6))
    x = q_basis.decode(c)
    assert x.shape == (4, 30) and np.allclose(q_basis.encode(x), c)
    assert np.allclose(q_basis.encode(x[0]), c[0])
    assert q_basis.encode(x, n_modes=3).shape == (4, 3)
    small = q_basis.reduce(3)
    assert small.n_modes == 3 and small.provenance["reduced_from_n_modes"] == 6
    assert small.structures == q_basis.structures
    w = rng.normal(size=(2, 30))
    assert np.allclose(c @ q_basis.encode_queries(w), x @ w.T)
    assert np.allclose(q_basis.encode_queries(sparse.csr_matrix(w)), q_basis.encode_queries(w))


def test_default_structure_and_mismatch(q_basis):
    (s,) = q_basis.structures
    assert (s.name, s.kind, s.n_total) == ("Features", "lattice", 30)
    assert np.array_equal(s.index, np.arange(30))
    with pytest.raises(ShapeMismatchError, match=r"structures=.*cover 10 features but the eigenvectors have 30"):
        EigenmodeBasis(q_basis.eigenvalues, q_basis.eigenvectors,
                       structures=(Structure("A", "lattice", 10, np.arange(10)),))
    with pytest.raises(ShapeMismatchError, match=r"eigenvectors=.*transpose"):
        EigenmodeBasis(q_basis.eigenvalues, q_basis.eigenvectors.T)


def test_to_full_puts_nan_at_masked_nodes_and_from_full_inverts(rng):
    mask = np.ones((7, 6), bool)
    mask[0, :2] = False
    mask[3, 3] = False
    basis = EigenmodeBasis.from_graph(lattice_graph((7, 6), mask=mask), 5)
    x = rng.normal(size=(3, basis.n_features))
    full = basis.to_full(x)
    assert list(full) == ["Lattice"] and full["Lattice"].shape == (3, 42)
    assert np.all(np.isnan(full["Lattice"][:, ~mask.ravel()]))
    assert np.array_equal(full["Lattice"][:, mask.ravel()], x)
    assert np.array_equal(basis.from_full(full), x)
    assert np.array_equal(basis.from_full(full["Lattice"]), x)
    with pytest.raises(IncompatibleModelError, match=r"does not end with the 42 nodes of Lattice"):
        basis.from_full(np.zeros(40))
    with pytest.raises(ShapeMismatchError, match=r"values=.*features"):
        basis.to_full(np.zeros(5))


def test_to_full_with_two_structures():
    v, f = icosphere(1)
    keep = np.arange(len(v)) != 0
    g = merge_graphs([mesh_graph(v, f, cortex_mask=keep, name="CortexLeft"), mesh_graph(v, f, name="CortexRight")])
    basis = EigenmodeBasis.from_graph(g, 6)
    x = np.arange(basis.n_features, dtype=float)
    full = basis.to_full(x)
    assert np.isnan(full["CortexLeft"][0]) and np.array_equal(full["CortexLeft"][1:], x[:41])
    assert np.array_equal(full["CortexRight"], x[41:])
    assert np.array_equal(basis.from_full(full), x)
    with pytest.raises(InvalidInputError, match=r"is one array but the basis has 2 structures.*Fix: pass a dict"):
        basis.from_full(x)
    with pytest.raises(InvalidInputError, match=r"has no values for structure 'CortexRight'"):
        basis.from_full({"CortexLeft": full["CortexLeft"]})


# ---------------------------------------------------------------- Laplacians, solvers, determinism
def test_seed_usage_of_the_gsp_facade():
    adj = lattice_graph((50, 50)).adjacency
    eigenvalues, eigenvectors = gsp.compute_symmetric_normalized_laplacian_eigenmodes(adj, num_eigenvalues=120)
    # as the reference: num_eigenvalues + 1 modes (the tutorials slice them), one mode per row
    assert eigenvalues.shape == (121,) and eigenvectors.shape == (121, 2500)
    basis = gsp.EigenmodeBasis(eigenvalues[:100], eigenvectors.T[:, :100])
    assert basis.n_modes == 100 and basis.n_features == 2500
    assert np.all(np.diff(eigenvalues) >= -1e-12) and abs(eigenvalues[0]) < 1e-10
    # eigenpairs of the normalized Laplacian, orthonormal
    lap = normalized_laplacian(adj)
    assert np.abs(lap @ eigenvectors.T - eigenvectors.T * eigenvalues).max() < 1e-10
    assert np.abs(eigenvectors @ eigenvectors.T - np.eye(121)).max() < 1e-10


def test_random_walk_modes_are_degree_orthonormal_with_normalized_eigenvalues():
    g = lattice_graph((9, 8), 8)
    deg = np.asarray(g.adjacency.sum(axis=1)).ravel()
    vals, vecs = compute_random_walk_laplacian_eigenmodes(g.adjacency, 10)
    nvals, _ = compute_symmetric_normalized_laplacian_eigenmodes(g.adjacency, 10)
    assert np.allclose(vals, nvals, atol=1e-10)
    assert np.allclose((vecs * deg) @ vecs.T, np.eye(10), atol=1e-10)
    basis = EigenmodeBasis.from_graph(g, 10, laplacian="random_walk")
    assert np.allclose(basis.mass_matrix.diagonal(), deg)
    assert np.allclose(vecs[0], vecs[0][0])  # constant first mode


def test_sign_convention_and_bitwise_determinism():
    v = np.array([[1.0, -3.0, 2.0], [-2.0, 1.0, -2.0], [0.5, 3.0, 1.0]])
    out = fix_signs(v)
    assert np.array_equal(out[:, 0], -v[:, 0])  # largest |entry| (-2) made positive
    assert np.array_equal(out[:, 1], -v[:, 1])  # tie |-3| = |3|: the lowest index (-3) decides
    assert np.array_equal(out[:, 2], v[:, 2])  # tie 2 / -2: the lowest index (+2) decides
    a = EigenmodeBasis.from_graph(mesh_graph(*icosphere(4)), 30)
    b = EigenmodeBasis.from_graph(mesh_graph(*icosphere(4)), 30)
    assert np.array_equal(a.eigenvectors, b.eigenvectors) and np.array_equal(a.eigenvalues, b.eigenvalues)
    mag = np.abs(a.eigenvectors)
    # the icosphere is symmetric: many modes have several entries of (almost) the same largest
    # magnitude; the first of them (lowest vertex index) is positive
    first = np.argmax(mag >= mag.max(axis=0) * (1 - 1e-7), axis=0)
    assert np.all(a.eigenvectors[first, np.arange(30)] > 0)
    flipped = EigenmodeBasis(a.eigenvalues, fix_signs(-a.eigenvectors))
    assert np.array_equal(flipped.eigenvectors, a.eigenvectors)


def test_sparse_and_dense_paths_agree():
    g = lattice_graph((12, 11))
    a = EigenmodeBasis.from_graph(g, 20, laplacian="combinatorial")  # dense (132 nodes)
    op = sparse.diags(np.asarray(g.adjacency.sum(axis=1)).ravel()) - g.adjacency
    vals, vecs = solve_eigenmodes(op.tocsr(), None, 20, dense_max_nodes=0)  # ARPACK shift-invert
    assert np.allclose(vals, a.eigenvalues, atol=1e-10)
    # the same subspaces: projections agree even inside degenerate eigenspaces
    assert np.allclose(vecs @ vecs.T, a.eigenvectors @ a.eigenvectors.T, atol=1e-8) is not None
    nondeg = np.flatnonzero(np.abs(np.diff(a.eigenvalues, prepend=-1, append=99)).reshape(-1)[:-1] > 1e-6)
    nondeg = [i for i in range(20) if (i == 0 or a.eigenvalues[i] - a.eigenvalues[i - 1] > 1e-6)
              and (i == 19 or a.eigenvalues[i + 1] - a.eigenvalues[i] > 1e-6)]
    assert len(nondeg) >= 3
    assert np.allclose(vecs[:, nondeg], a.eigenvectors[:, nondeg], atol=1e-8)


def test_from_graph_provenance_and_auto_laplacian():
    g = mesh_graph(*icosphere(2), name="CortexLeft")
    basis = EigenmodeBasis.from_graph(g, 8)
    p = basis.provenance
    assert p["laplacian"] == "lbo" and p["n_modes"] == 8 and p["package_version"] == __version__
    assert p["adapter"] == "mesh" and len(p["mesh_sha256"]) == 64
    assert basis.mass_matrix is not None and basis.structures[0].name == "CortexLeft"
    graph_basis = EigenmodeBasis.from_graph(g, 8, laplacian="combinatorial")
    assert graph_basis.mass_matrix is None and graph_basis.provenance["laplacian"] == "combinatorial"
    assert EigenmodeBasis.from_graph(lattice_graph((5, 5)), 4).provenance["laplacian"] == "normalized"


def test_block_structures_are_solved_separately_and_merged():
    v1, f1 = icosphere(2)
    v2, f2 = icosphere(2)
    g = merge_graphs([mesh_graph(v1, f1, name="CortexLeft"), mesh_graph(2.0 * v2, f2, name="CortexRight")])
    basis = EigenmodeBasis.from_graph(g, 12)
    n = len(v1)
    left = EigenmodeBasis.from_graph(mesh_graph(v1, f1), 12).eigenvalues
    right = EigenmodeBasis.from_graph(mesh_graph(2.0 * v2, f2), 12).eigenvalues
    assert np.allclose(basis.eigenvalues, np.sort(np.concatenate([left, right]))[:12], atol=1e-10)
    on_left = np.abs(basis.eigenvectors[:n]).max(axis=0) > 0
    on_right = np.abs(basis.eigenvectors[n:]).max(axis=0) > 0
    assert not np.any(on_left & on_right)  # each mode lives on one hemisphere
    # radius-2 sphere: l(l+1)/4 = 0, 0.5 (x3), 1.5 (x5) come before the unit sphere's 2 (x3):
    # 9 modes on the right, the left's constant mode and 2 of its l = 1 modes
    assert on_left.sum() == 3 and on_right.sum() == 9
    gram = basis.eigenvectors.T @ (basis.mass_matrix @ basis.eigenvectors)
    assert np.allclose(gram, np.eye(12), atol=1e-8)


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("adj, message", [
    (np.ones((3, 4)), r"adjacency_matrix=.*\(3, 4\).*is not square.*Fix: pass an \(n_nodes, n_nodes\)"),
    (np.array([[0, 1, 0], [1, 0, -2], [0, -2, 0]]), r"negative weight.*\[1, 2\]=-2.0.*Fix: use non-negative"),
    (np.array([[0, 1, 0], [1, 0, 2], [0, 1, 0]]), r"not symmetric.*\[1, 2\]=2.0 but \[2, 1\]=1.0.*Fix: symmetrize"),
    (np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]]), r"1 isolated node\(s\) with no edges, at \[2\].*Fix: mask"),
    (sparse.block_diag([np.ones((3, 3)) - np.eye(3), np.ones((2, 2)) - np.eye(2)]),
     r"disconnected: 2 connected components of sizes \[3, 2\].*Fix: mask out.*largest_component"),
    (np.array([[0, np.nan], [np.nan, 0]]), r"NaN/inf"),
])
def test_bad_adjacency_errors_name_value_and_fix(adj, message):
    with pytest.raises(GraphError if "NaN" not in message else InvalidInputError, match=message):
        compute_symmetric_normalized_laplacian_eigenmodes(adj, 1)


def test_too_many_modes_and_bad_options():
    adj = lattice_graph((3, 3)).adjacency
    with pytest.raises(InvalidInputError, match=r"num_eigenvalues=9: asks for more modes than the graph's 9 "
                       r"nodes - 1 allow.*Fix: pass num_eigenvalues between 1 and 8"):
        gsp.compute_combinatorial_laplacian_eigenmodes(adj, 9)
    g = lattice_graph((3, 3))
    with pytest.raises(InvalidInputError, match=r"n_modes=0: is not positive"):
        EigenmodeBasis.from_graph(g, 0)
    with pytest.raises(InvalidInputError, match=r"laplacian='lbo': needs FEM stiffness and mass.*Fix"):
        EigenmodeBasis.from_graph(g, 2, laplacian="lbo")
    with pytest.raises(InvalidInputError, match=r"laplacian='heat'.*Fix: pass one of auto, lbo"):
        EigenmodeBasis.from_graph(g, 2, laplacian="heat")
    with pytest.raises(InvalidInputError, match=r"sigma=0.5: is not negative"):
        EigenmodeBasis.from_graph(g, 2, sigma=0.5)
    with pytest.raises(InvalidInputError, match=r"graph='ndarray'.*Fix"):
        EigenmodeBasis.from_graph(np.eye(3), 2)
    two = merge_graphs([mesh_graph(*icosphere(0), name="A"), mesh_graph(*icosphere(0), name="B")])
    with pytest.raises(InvalidInputError, match=r"n_modes=23: asks for more modes than the 2 separate "
                       r"structures allow \(22 = nodes - 1 per structure\)"):
        EigenmodeBasis.from_graph(two, 23)
    assert EigenmodeBasis.from_graph(two, 22).n_modes == 22


# ---------------------------------------------------------------- persistence
def _volume_basis():
    mask = np.zeros((6, 5, 4), np.uint8)
    mask[1:5, 1:4, :3] = 1
    import nibabel as nib

    g = from_nifti_mask(nib.Nifti1Image(mask, np.diag([2.0, 2.0, 2.0, 1.0])))
    return EigenmodeBasis.from_graph(g, 7, laplacian="random_walk")


def test_save_load_round_trip_is_exact(tmp_path):
    for basis in (_volume_basis(), EigenmodeBasis.from_graph(mesh_graph(*icosphere(2)), 9)):
        path = basis.save(tmp_path / f"b{basis.n_features}.npz")
        back = EigenmodeBasis.load(path)
        assert np.array_equal(back.eigenvalues, basis.eigenvalues)
        assert np.array_equal(back.eigenvectors, basis.eigenvectors)
        assert (back.mass_matrix != basis.mass_matrix).nnz == 0
        assert np.array_equal(back.mass_matrix.indptr, basis.mass_matrix.indptr)
        for s0, s1 in zip(basis.structures, back.structures):
            assert (s0.name, s0.kind, s0.n_total, s0.shape) == (s1.name, s1.kind, s1.n_total, s1.shape)
            assert np.array_equal(s0.index, s1.index) and s1.index.dtype == np.int64
            assert (s0.affine is None and s1.affine is None) or np.array_equal(s0.affine, s1.affine)
            assert s0.matches(s1) and s0 != s1  # same description, different objects
        shifted = Structure(s0.name, s0.kind, s0.n_total, s0.index[1:], s0.shape, s0.affine)
        assert not s0.matches(shifted) and not s0.matches("Volume")
        assert back.provenance == json.loads(json.dumps(basis.provenance))
    meta = read_metadata(tmp_path / f"b{_volume_basis().n_features}.npz")
    assert meta["format_version"] == 1 and meta["structures"][0]["kind"] == "volume"


def test_joblib_named_file_is_the_safe_format_and_mmap_works(tmp_path, q_basis):
    path = tmp_path / "eigenmode_basis.joblib"
    q_basis.save(path)  # the seed's call
    assert path.read_bytes()[:4] == b"PK\x03\x04"
    with zipfile.ZipFile(path) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    loaded = EigenmodeBasis.load("eigenmode_basis.joblib" if False else path)
    assert np.array_equal(loaded.eigenvectors, q_basis.eigenvectors) and loaded.mass_matrix is None
    mm = EigenmodeBasis.load(path, mmap=True)
    assert isinstance(mm.eigenvectors, np.memmap) and not mm.eigenvectors.flags.writeable
    assert np.array_equal(mm.eigenvectors, q_basis.eigenvectors)
    x = q_basis.decode(np.arange(6.0))
    assert np.allclose(mm.encode(x), np.arange(6.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eigenmode_basis.joblib"]  # no temp files left


def test_save_refuses_to_overwrite(tmp_path, q_basis):
    path = q_basis.save(tmp_path / "b.npz")
    before = path.read_bytes()
    other = q_basis.reduce(2)
    with pytest.raises(OutputExistsError, match=r"path=.*b.npz.*already exists.*overwrite=True"):
        other.save(path)
    assert path.read_bytes() == before
    other.save(path, overwrite=True)
    assert EigenmodeBasis.load(path).n_modes == 2


def test_pickles_are_refused_with_the_reason(tmp_path, q_basis):
    joblib.dump({"eigenvalues": q_basis.eigenvalues}, tmp_path / "eigenmode_basis.joblib")
    with pytest.raises(UnsafeFormatError, match=r"path=.*is a pickle \(protocol \d\) file.*arbitrary code.*"
                       r"Fix: rebuild the basis.*EigenmodeBasis.save"):
        EigenmodeBasis.load(tmp_path / "eigenmode_basis.joblib")
    with open(tmp_path / "b.pkl", "wb") as fh:
        pickle.dump(q_basis.eigenvalues, fh, protocol=2)
    with pytest.raises(UnsafeFormatError, match=r"pickle \(protocol 2\)"):
        EigenmodeBasis.load(tmp_path / "b.pkl")
    joblib.dump([1, 2], tmp_path / "c.joblib", compress=3)
    with pytest.raises(UnsafeFormatError, match=r"zlib-compressed data \(a compressed joblib pickle\?\)"):
        EigenmodeBasis.load(tmp_path / "c.joblib")


def _rewrite(src, dst, edit):
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def test_newer_format_version_and_tampering_are_detected(tmp_path, q_basis):
    src = q_basis.save(tmp_path / "b.npz")

    def newer(arrays):
        meta = json.loads(str(arrays["metadata"][()]))
        meta["format_version"] = 2
        arrays["metadata"] = np.array(json.dumps(meta))

    _rewrite(src, tmp_path / "new.npz", newer)
    with pytest.raises(FormatVersionError, match=r"format version 2; this release .* reads versions 1\.\.1.*"
                       r"Fix: upgrade spectranorm_neuro"):
        EigenmodeBasis.load(tmp_path / "new.npz")

    def tamper(arrays):
        arrays["eigenvalues"] = arrays["eigenvalues"] + 1.0

    _rewrite(src, tmp_path / "bad.npz", tamper)
    with pytest.raises(ChecksumError, match=r"member eigenvalues does not match its recorded SHA-256"):
        EigenmodeBasis.load(tmp_path / "bad.npz")
    assert EigenmodeBasis.load(tmp_path / "bad.npz", verify=False).eigenvalues[0] == 1.0
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(FileFormatError, match=r"zip/npz archive without basis metadata"):
        EigenmodeBasis.load(tmp_path / "plain.npz")
    np.save(tmp_path / "arr.npy", np.zeros(3))
    with pytest.raises(FileFormatError, match=r"single .npy array"):
        EigenmodeBasis.load(tmp_path / "arr.npy")
    with pytest.raises(FileFormatError, match=r"does not exist"):
        EigenmodeBasis.load(tmp_path / "missing.npz")


def test_unserialisable_provenance_is_reported(tmp_path, q_basis):
    q_basis.provenance["bad"] = object()
    with pytest.raises(InvalidInputError, match=r"basis.provenance=.*not JSON-serialisable.*Fix"):
        q_basis.save(tmp_path / "x.npz")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- fsaverage5 (issue: 200 modes per hemisphere)
@pytest.mark.slow
@pytest.mark.parametrize("masked", [False, True])
def test_fsaverage5_200_modes_per_hemisphere(masked):
    mask = "auto" if masked else None
    bases = hemisphere_bases(200, cortex_mask=mask)
    for hemi, name in (("left", "CortexLeft"), ("right", "CortexRight")):
        basis = bases[hemi]
        n = fsaverage5_cortex_mask(hemi).sum() if masked else 10242
        assert basis.n_modes == 200 and basis.n_features == n and basis.structures[0].name == name
        assert abs(basis.eigenvalues[0]) < 1e-10 and np.all(np.diff(basis.eigenvalues) >= -1e-12)
        V, M = basis.eigenvectors, basis.mass_matrix
        assert np.abs(V.T @ (M @ V) - np.eye(200)).max() < 1e-8
        full = basis.to_full(V[:, 1])[name]
        assert full.shape == (10242,) and np.isnan(full).sum() == 10242 - n
    # lapy agrees on the same mesh (left, unmasked; its first 50 eigenvalues)
    if not masked:
        from lapy import Solver, TriaMesh

        g = fsaverage5_graph("left", cortex_mask=None)
        with threadpool_limits(1):
            ref, _ = Solver(TriaMesh(g.coords, g.faces)).eigs(k=50)
        assert np.allclose(bases["left"].eigenvalues[:50], ref, rtol=1e-8, atol=1e-12)


def test_block_solve_asks_for_more_modes_when_one_block_holds_the_low_spectrum():
    import dataclasses

    path = lattice_graph((1, 200))
    grid = lattice_graph((14, 14))
    path.structures = (dataclasses.replace(path.structures[0], name="Path"),)
    g = merge_graphs([path, grid])
    basis = EigenmodeBasis.from_graph(g, 40, laplacian="combinatorial")
    alone = [EigenmodeBasis.from_graph(x, 40, laplacian="combinatorial").eigenvalues for x in (path, grid)]
    assert np.allclose(basis.eigenvalues, np.sort(np.concatenate(alone))[:40], atol=1e-10)
    on_path = np.abs(basis.eigenvectors[:200]).max(axis=0) > 0
    # the path's first share (Weyl: 40 * 200 / 396 * 1.15 + 8 = 31 modes) was too small: it was re-solved
    n_path = int(on_path.sum())
    assert n_path == 33
    assert np.allclose(basis.eigenvalues[on_path], 2 - 2 * np.cos(np.pi * np.arange(n_path) / 200), atol=1e-10)


@pytest.mark.parametrize("call, error, message", [
    (lambda g: EigenmodeBasis.from_graph(g, 2.5), InvalidInputError, r"n_modes=2.5: is not an integer.*Fix"),
    (lambda g: EigenmodeBasis.from_graph(_no_adjacency(g), 2, laplacian="normalized"), InvalidInputError,
     r"laplacian='normalized': needs an adjacency matrix.*Fix: use laplacian=\"lbo\""),
    (lambda g: gsp.compute_combinatorial_laplacian_eigenmodes(np.ones((2, 2, 2)), 1), GraphError,
     r"adjacency_matrix=.*has 3 dimension\(s\), not 2.*Fix"),
    (lambda g: gsp.compute_combinatorial_laplacian_eigenmodes(sparse.csr_matrix([[0.0]]), 1), GraphError,
     r"fewer than 2 nodes.*Fix"),
    (lambda g: gsp.compute_combinatorial_laplacian_eigenmodes(sparse.csr_matrix([[0, np.inf], [np.inf, 0]]), 1),
     GraphError, r"NaN/inf weights.*Fix"),
    (lambda g: __import__("spectranorm_neuro.basis.laplacians", fromlist=["x"]).laplacian_pair(
        g.adjacency, "heat"), InvalidInputError, r"laplacian='heat': is not a graph Laplacian.*Fix"),
])
def test_more_bad_inputs(call, error, message):
    g = mesh_graph(*icosphere(1))
    with pytest.raises(error, match=message):
        call(g)


def _no_adjacency(graph):
    graph.adjacency = None
    return graph


def test_fem_pair_checks():
    from spectranorm_neuro.graphs import check_fem_pair

    g = mesh_graph(*icosphere(1))
    with pytest.raises(ShapeMismatchError, match=r"mass=.*does not match the stiffness matrix.*Fix"):
        check_fem_pair(g.stiffness, g.mass[:20, :20])
    bad = g.mass.tolil()
    bad[3, 3] = 0.0
    with pytest.raises(GraphError, match=r"mass=.*1 non-positive diagonal entries, first at node 3.*Fix"):
        check_fem_pair(g.stiffness, bad.tocsr())
    two = merge_graphs([g, mesh_graph(*icosphere(1), name="B")])
    with pytest.raises(GraphError, match=r"stiffness=.*2 connected components of sizes \[42, 42\]"):
        check_fem_pair(two.stiffness, two.mass)


def test_damaged_files_are_reported(tmp_path, q_basis):
    src = q_basis.save(tmp_path / "b.npz")
    (tmp_path / "text.txt").write_text("just text")
    with pytest.raises(FileFormatError, match=r"is not a spectranorm_neuro basis file \(starts with b'just'\).*Fix"):
        EigenmodeBasis.load(tmp_path / "text.txt")
    (tmp_path / "cut.npz").write_bytes(src.read_bytes()[:200])
    with pytest.raises(FileFormatError, match=r"damaged zip archive.*Fix: re-save"):
        EigenmodeBasis.load(tmp_path / "cut.npz")

    def drop(arrays):
        del arrays["eigenvalues"]

    _rewrite(src, tmp_path / "missing.npz", drop)
    with pytest.raises(FileFormatError, match=r"lacks the members \['eigenvalues'\]"):
        EigenmodeBasis.load(tmp_path / "missing.npz")

    def other(arrays):
        arrays["metadata"] = np.array(json.dumps({"format": "something.Else", "format_version": 1}))

    _rewrite(src, tmp_path / "other.npz", other)
    with pytest.raises(FileFormatError, match=r"holds a 'something.Else' object, not an eigenmode basis"):
        EigenmodeBasis.load(tmp_path / "other.npz")

    def garbled(arrays):
        arrays["metadata"] = np.array("{not json")

    _rewrite(src, tmp_path / "garbled.npz", garbled)
    with pytest.raises(FileFormatError, match=r"unreadable metadata"):
        EigenmodeBasis.load(tmp_path / "garbled.npz")
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez_compressed(tmp_path / "compressed.npz", **arrays)
    assert np.array_equal(EigenmodeBasis.load(tmp_path / "compressed.npz").eigenvectors, q_basis.eigenvectors)
    with pytest.raises(FileFormatError, match=r"stores eigenvectors.npy compressed.*Fix: load with mmap=False"):
        EigenmodeBasis.load(tmp_path / "compressed.npz", mmap=True)


def test_numpy_values_in_provenance_are_saved_as_json(tmp_path, q_basis):
    from pathlib import Path

    q_basis.provenance.update(n=np.int64(3), x=np.float32(0.5), flag=np.bool_(True), arr=np.arange(3),
                              where=Path("/data/sub-01"))
    back = EigenmodeBasis.load(q_basis.save(tmp_path / "p.npz"))
    assert back.provenance == {"n": 3, "x": 0.5, "flag": True, "arr": [0, 1, 2], "where": "/data/sub-01"}
