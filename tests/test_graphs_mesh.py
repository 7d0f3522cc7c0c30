"""Surface meshes: reading, validation, cortex masks, FEM operators, fsaverage5, LBO closed forms."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from scipy import sparse

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.exceptions import (
    FileFormatError,
    IncompatibleModelError,
    InvalidInputError,
    MeshError,
)
from spectranorm_neuro.graphs import (
    clean_mask,
    fem_matrices,
    fsaverage5_cortex_mask,
    fsaverage5_graph,
    hemisphere_graphs,
    load_surface,
    merge_graphs,
    mesh_graph,
    read_cortex_mask,
)
from spectranorm_neuro.graphs._meshcheck import vertex_fan_defects


def icosphere(level: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere by repeated midpoint subdivision: (vertices (10 * 4**level + 2, 3), faces)."""
    t = (1 + 5 ** 0.5) / 2
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t],
                  [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], float)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                  [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
                  [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(level):
        e = np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        uniq, inv = np.unique(e[:, 0] * len(v) + e[:, 1], return_inverse=True)
        mid = v[uniq // len(v)] + v[uniq % len(v)]
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        m = (len(v) + inv).reshape(-1, 3)
        v = np.vstack([v, mid])
        f = np.concatenate([np.stack([f[:, 0], m[:, 0], m[:, 2]], 1), np.stack([f[:, 1], m[:, 1], m[:, 0]], 1),
                            np.stack([f[:, 2], m[:, 2], m[:, 1]], 1), m])
    return v, f


# ---------------------------------------------------------------- closed forms on the sphere
def test_icosphere_is_a_closed_manifold():
    v, f = icosphere(3)
    assert v.shape == (642, 3) and f.shape == (1280, 3)
    assert np.allclose(np.linalg.norm(v, axis=1), 1)
    free, pinch = vertex_fan_defects(f, len(v))
    assert free.size == 0 and pinch.size == 0
    assert len(v) - 3 * len(f) // 2 + len(f) == 2  # Euler characteristic of the sphere


def test_sphere_lbo_eigenvalues_match_l_l_plus_1_with_multiplicities():
    v, f = icosphere(4)  # 2562 vertices: the sparse shift-invert path
    basis = EigenmodeBasis.from_graph(mesh_graph(v, f, name="Sphere"), 16)
    expected = np.repeat([0.0, 2.0, 6.0, 12.0], [1, 3, 5, 7])
    assert abs(basis.eigenvalues[0]) < 1e-8
    rel = np.abs(basis.eigenvalues[1:] / expected[1:] - 1)
    assert rel.max() < 0.02
    # each degenerate group is tight, and separated from the next
    for lo, hi in [(1, 4), (4, 9), (9, 16)]:
        group = basis.eigenvalues[lo:hi]
        assert np.ptp(group) < 0.01 * group.mean()
    # linear FEM converges at O(h^2): one more subdivision divides the error by about 4
    coarse = EigenmodeBasis.from_graph(mesh_graph(*icosphere(3), name="Sphere"), 16)
    ratio = np.abs(coarse.eigenvalues[1:] - expected[1:]).max() / np.abs(basis.eigenvalues[1:] - expected[1:]).max()
    assert 3.0 < ratio < 5.0


def test_sphere_l1_modes_are_the_coordinate_functions():
    v, f = icosphere(3)
    basis = EigenmodeBasis.from_graph(mesh_graph(v, f, name="Sphere"), 4)
    # x, y, z lie (up to discretisation) in the span of modes 1..3
    coeffs = basis.encode(v.T)
    recon = basis.decode(coeffs)
    assert np.abs(recon - v.T).max() < 0.01
    assert np.abs(coeffs[:, 0]).max() < 1e-8  # orthogonal to the constant mode


def test_fem_matrices_row_sums_and_total_area():
    v, f = icosphere(2)
    a, b = fem_matrices(v, f)
    assert np.abs(np.asarray(a.sum(axis=1))).max() < 1e-12  # constants are in the kernel
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    assert b.sum() == pytest.approx(area, rel=1e-12)
    assert abs(a - a.T).max() < 1e-12 and abs(b - b.T).max() < 1e-15


# ---------------------------------------------------------------- reading surfaces
def _write_gifti(path, v, f):
    img = nib.gifti.GiftiImage(darrays=[
        nib.gifti.GiftiDataArray(v.astype(np.float32), intent="NIFTI_INTENT_POINTSET"),
        nib.gifti.GiftiDataArray(f.astype(np.int32), intent="NIFTI_INTENT_TRIANGLE")])
    nib.save(img, str(path))


def test_load_surface_gifti_freesurfer_gzip_and_tuple(tmp_path, tiny_mesh):
    v, f = icosphere(1)
    _write_gifti(tmp_path / "s.surf.gii", v, f)
    v1, f1 = load_surface(tmp_path / "s.surf.gii")
    assert np.allclose(v1, v, atol=1e-6) and np.array_equal(f1, f) and f1.dtype == np.int64
    with open(tmp_path / "s.surf.gii", "rb") as src, gzip.open(tmp_path / "s.gii.gz", "wb") as dst:
        dst.write(src.read())
    assert np.array_equal(load_surface(tmp_path / "s.gii.gz")[1], f)
    nib.freesurfer.write_geometry(str(tmp_path / "lh.white"), v, f)
    v2, f2 = load_surface(str(tmp_path / "lh.white"))
    assert np.allclose(v2, v, atol=1e-6) and np.array_equal(f2, f)
    v3, f3 = load_surface(tiny_mesh)
    assert v3.dtype == np.float64 and f3.shape == (8, 3)


def test_load_surface_fsaverage5_offline():
    v, f = load_surface("fsaverage5", hemi="right", surface="pial")
    assert v.shape == (10242, 3) and f.shape == (20480, 3)
    white, _ = load_surface("fsaverage5", hemi="right", surface="white")
    mid, _ = load_surface("fsaverage5", hemi="right")
    assert np.allclose(mid, (v + white) / 2)


def test_load_surface_errors_name_the_source_and_fix(tmp_path):
    with pytest.raises(InvalidInputError, match=r"hemi=None.*Fix: pass one of 'left', 'right'"):
        load_surface("fsaverage5")
    with pytest.raises(InvalidInputError, match=r"surface='smooth'.*Fix: pass one of midthickness"):
        load_surface("fsaverage5", hemi="left", surface="smooth")
    with pytest.raises(InvalidInputError, match=r"source=.*nope.gii.*does not exist"):
        load_surface(tmp_path / "nope.gii")
    (tmp_path / "junk.gii").write_bytes(b"hello, not a mesh")
    with pytest.raises(FileFormatError, match=r"junk.gii.*cannot be read as a surface mesh.*Fix"):
        load_surface(tmp_path / "junk.gii")
    data = nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(np.zeros(5, np.float32))])
    nib.save(data, str(tmp_path / "data.func.gii"))
    with pytest.raises(FileFormatError, match=r"data.func.gii.*POINTSET and TRIANGLE.*Fix: pass a surface GIFTI"):
        load_surface(tmp_path / "data.func.gii")


# ---------------------------------------------------------------- validation errors
@pytest.mark.parametrize("faces, message", [
    ([[0, 1, 2], [0, 2, 9]], r"faces=.*indexes vertices outside 0\.\.4.*triangle 1 = \[0, 2, 9\].*Fix"),
    ([[0, 1, 1]], r"degenerate triangle.*Fix: remove these triangles"),
    ([[0, 1, 2], [0, 1, 3], [0, 1, 4]], r"not manifold: 1 edge\(s\) shared by more than two.*\[0, 1\].*Fix: repair"),
    ([[0, 1, 2], [0, 3, 4]], r"not manifold: 1 pinch vertex.*\[0\].*Fix: split or remove"),
    ([[0, 1, 2], [0, 2, 3]], r"1 free vertices that belong to no triangle, first \[4\].*Fix: drop unreferenced"),
])
def test_mesh_errors_say_what_is_wrong_and_the_fix(faces, message):
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0.3], [0, -1, 0.2]], float)
    with pytest.raises(MeshError, match=message):
        mesh_graph(v, np.array(faces))


def test_mesh_two_components_and_zero_area_are_rejected(tiny_mesh):
    v, f = tiny_mesh
    v2 = np.vstack([v, v + 5.0])
    with pytest.raises(MeshError, match=r"2 connected components of sizes \[6, 6\].*Fix: keep the largest"):
        mesh_graph(v2, np.vstack([f, f + 6]))
    flat = v.copy()
    flat[4] = [0.5, 0.5, 0.0]  # triangle (0, 2, 4) becomes collinear
    with pytest.raises(MeshError, match=r"zero-area triangle.*Fix"):
        mesh_graph(flat, f)
    with pytest.raises(InvalidInputError, match=r"vertices=.*shape \(6, 2\).*Fix"):
        mesh_graph(v[:, :2], f)


# ---------------------------------------------------------------- masks
def test_mesh_graph_with_mask_cuts_before_solving():
    v, f = icosphere(3)
    keep = v[:, 2] > -0.5
    g = mesh_graph(v, f, cortex_mask=keep, name="CortexLeft")
    (s,) = g.structures
    assert s.kind == "surface" and s.n_total == len(v) and np.array_equal(s.index, np.flatnonzero(keep))
    assert g.faces.max() == g.n_features - 1
    # every kept face is a full-mesh face whose vertices are all kept
    orig = np.sort(s.index[g.faces], axis=1)
    full = {tuple(r) for r in np.sort(f[keep[f].all(axis=1)], axis=1)}
    assert {tuple(r) for r in orig} == full
    assert np.allclose(g.coords, v[keep])
    assert g.mass.sum() < 4 * np.pi  # part of the sphere
    assert g.provenance["mask_sha256"] is not None


def test_mask_leaving_free_or_pinch_vertices_is_reported_and_clean_mask_fixes_it():
    v, f = icosphere(2)
    keep = v[:, 2] > 0
    lonely = int(np.flatnonzero(v[:, 2] < -0.99)[0])  # the south pole, alone
    keep[lonely] = True
    with pytest.raises(MeshError, match=r"free vertices after applying cortex_mask.*Fix: clean the mask"):
        mesh_graph(v, f, cortex_mask=keep)
    cleaned = clean_mask(f, keep)
    assert not cleaned[lonely] and cleaned.sum() >= (v[:, 2] > 0).sum() - 5
    g = mesh_graph(v, f, cortex_mask=cleaned)
    assert g.n_features == cleaned.sum()


def test_clean_mask_fills_holes_and_keeps_one_component():
    v, f = icosphere(3)
    keep = v[:, 2] > -0.3
    hole = np.linalg.norm(v - [0, 0, 1], axis=1) < 0.15  # a small hole at the north pole
    island = np.linalg.norm(v - [0, 0, -1], axis=1) < 0.3  # a separate cap at the south pole
    dirty = (keep & ~hole) | island
    cleaned = clean_mask(f, dirty)
    assert cleaned[hole].all() and not cleaned[island].any()
    assert np.array_equal(cleaned, clean_mask(f, cleaned))  # idempotent


def test_read_cortex_mask_formats(tmp_path):
    n = 12
    ids = np.array([0, 3, 4, 7])
    expected = np.zeros(n, bool)
    expected[ids] = True
    assert np.array_equal(read_cortex_mask(expected, n), expected)
    assert np.array_equal(read_cortex_mask(expected.astype(int), n), expected)
    assert np.array_equal(read_cortex_mask(ids, n), expected)
    lines = ["#!ascii label  , from subject  vox2ras=TkReg", str(ids.size)]
    lines += [f"{i} {i * 1.0:.3f} 0.000 0.000 0.000000" for i in ids]
    (tmp_path / "lh.cortex.label").write_text("\n".join(lines) + "\n")
    assert np.array_equal(read_cortex_mask(tmp_path / "lh.cortex.label", n), expected)
    table = nib.gifti.GiftiLabelTable()
    for key, name in [(0, "Medial_Wall"), (1, "Cortex")]:
        lab = nib.gifti.GiftiLabel(key=key)
        lab.label = name
        table.labels.append(lab)
    img = nib.gifti.GiftiImage(labeltable=table, darrays=[
        nib.gifti.GiftiDataArray(expected.astype(np.int32), intent="NIFTI_INTENT_LABEL", datatype="NIFTI_TYPE_INT32")])
    nib.save(img, str(tmp_path / "cortex.label.gii"))
    assert np.array_equal(read_cortex_mask(str(tmp_path / "cortex.label.gii"), n), expected)


def test_read_cortex_mask_errors(tmp_path):
    with pytest.raises(IncompatibleModelError,
                       match=r"cortex_mask=.*has 10240 vertices but the mesh has 10242.*Fix: use the mask made"):
        read_cortex_mask(np.ones(10240, bool), 10242)
    with pytest.raises(InvalidInputError, match=r"cortex_mask=.*is empty.*Fix"):
        read_cortex_mask(np.zeros(10, bool), 10)
    with pytest.raises(IncompatibleModelError, match=r"vertex ids outside 0\.\.9.*Fix"):
        read_cortex_mask(np.array([1, 12]), 10)
    with pytest.raises(InvalidInputError, match=r"cortex_mask=.*missing.label.*does not exist"):
        read_cortex_mask(tmp_path / "missing.label", 10)


# ---------------------------------------------------------------- fsaverage5
def test_fsaverage5_cortex_mask_is_clean_and_plausible():
    for hemi in ("left", "right"):
        mask = fsaverage5_cortex_mask(hemi)
        assert mask.shape == (10242,) and 0.9 < mask.mean() < 0.97
        _, f = load_surface("fsaverage5", hemi=hemi)
        assert np.array_equal(clean_mask(f, mask), mask)
        g = mesh_graph(load_surface("fsaverage5", hemi=hemi)[0], f, cortex_mask=mask)
        assert g.n_features == mask.sum()


def test_fsaverage5_graph_both_is_block_diagonal():
    g = fsaverage5_graph("both", cortex_mask="auto", surface="white")
    assert [s.name for s in g.structures] == ["CortexLeft", "CortexRight"]
    n_left = g.structures[0].n_features
    for mat in (g.stiffness, g.mass, g.adjacency):
        coo = mat.tocoo()
        assert not np.any((coo.row < n_left) != (coo.col < n_left))
    assert g.faces.max() == g.n_features - 1
    assert np.all(g.faces[: (g.faces < n_left).all(axis=1).sum()] < n_left)
    separate = hemisphere_graphs(cortex_mask="auto", surface="white")
    assert separate["right"].n_features == g.n_features - n_left
    left_only = fsaverage5_graph("left", cortex_mask={"left": "auto", "right": None}, surface="white")
    assert left_only.n_features == n_left


def test_fsaverage5_mask_arguments_are_checked():
    with pytest.raises(IncompatibleModelError, match=r"cortex_mask=.*\(20484\).*Fix"):
        fsaverage5_graph("both", cortex_mask=np.ones(10242, bool))
    with pytest.raises(InvalidInputError, match=r"hemi='both hemispheres'.*Fix"):
        fsaverage5_graph("both hemispheres")
    with pytest.raises(InvalidInputError, match=r"has no entry for hemisphere 'right'"):
        fsaverage5_graph("right", cortex_mask={"left": None})


def test_merge_graphs_refuses_duplicate_structures(tiny_mesh):
    g = mesh_graph(*tiny_mesh)
    with pytest.raises(InvalidInputError, match=r"graphs=\['CortexLeft', 'CortexLeft'\].*repeat"):
        merge_graphs([g, g])
    both = merge_graphs([g, mesh_graph(*tiny_mesh, name="CortexRight")])
    assert sparse.issparse(both.stiffness) and both.n_features == 12


# ---------------------------------------------------------------- more bad inputs
@pytest.mark.parametrize("vertices, faces, error, message", [
    (np.array([["a", "b", "c"]] * 4), [[0, 1, 2]], MeshError, r"vertices=.*dtype.*is not numeric.*Fix"),
    (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [np.nan, 0, 0]]), [[0, 1, 2]], MeshError,
     r"1 vertices with NaN/inf coordinates, first \[3\].*Fix"),
    (np.eye(3), [[0, 1, 2, 0]], InvalidInputError, r"faces=.*\(1, 4\).*triangles.*Fix: pass triangles"),
    (np.eye(3), [[0.0, 1.5, 2.0]], MeshError, r"faces=.*float64.*integer vertex indices.*Fix"),
])
def test_mesh_array_errors(vertices, faces, error, message):
    with pytest.raises(error, match=message):
        mesh_graph(vertices, np.array(faces))


def test_float_faces_with_integer_values_are_accepted():
    v, f = icosphere(1)
    assert np.array_equal(mesh_graph(v, f.astype(float)).faces, mesh_graph(v, f).faces)


def test_more_mask_and_source_errors(tmp_path):
    v, f = icosphere(1)
    with pytest.raises(InvalidInputError, match=r"source='int'.*Fix: pass a GIFTI/FreeSurfer surface path"):
        load_surface(42)
    with pytest.raises(InvalidInputError, match=r"cortex_mask=.*is not 1-D.*Fix"):
        mesh_graph(v, f, cortex_mask=np.ones((6, 7), bool))
    with pytest.raises(InvalidInputError, match=r"cortex_mask=.*has dtype float64.*Fix"):
        mesh_graph(v, f, cortex_mask=np.full(len(v), 0.5))
    one_vertex = np.zeros(len(v), bool)
    one_vertex[:2] = True
    with pytest.raises(InvalidInputError, match=r"cortex_mask=.*keeps no whole triangle.*Fix"):
        mesh_graph(v, f, cortex_mask=one_vertex)
    (tmp_path / "broken.label").write_text("#!ascii label\n2\nfoo 1 2 3 0\nbar 1 2 3 0\n")
    with pytest.raises(FileFormatError, match=r"cortex_mask=.*broken.label.*cannot be read as a label file.*Fix"):
        read_cortex_mask(tmp_path / "broken.label", len(v))
    g = mesh_graph(v, f)
    g2 = mesh_graph(v, f, name="CortexRight")
    g2.stiffness = g2.mass = None
    with pytest.raises(InvalidInputError, match=r"graphs='stiffness': is present in some graphs only.*Fix"):
        merge_graphs([g, g2])


def test_nilearn_mesh_objects_and_both_hemisphere_array_masks():
    from nilearn.surface import InMemoryMesh

    v, f = icosphere(1)
    v2, f2 = load_surface(InMemoryMesh(coordinates=v, faces=f))
    assert np.allclose(v2, v) and np.array_equal(f2, f)
    mask = np.concatenate([fsaverage5_cortex_mask("left"), np.ones(10242, bool)])
    graphs = hemisphere_graphs(cortex_mask=mask, surface="white")
    assert graphs["left"].n_features == mask[:10242].sum() and graphs["right"].n_features == 10242


def test_largest_component_keeps_faces_of_a_mesh_graph():
    from spectranorm_neuro.graphs import largest_component, subgraph_by_components

    v, f = icosphere(2)
    small_v, small_f = icosphere(0)
    g = merge_graphs([mesh_graph(v, f), mesh_graph(small_v + 3.0, small_f, name="CortexRight")])
    big = largest_component(g)
    assert [s.name for s in big.structures] == ["CortexLeft"] and big.n_features == len(v)
    assert np.array_equal(big.faces, f) and (big.stiffness != g.stiffness[: len(v), : len(v)]).nnz == 0
    small = subgraph_by_components(g, [1])
    assert small.n_features == 12 and small.faces.max() == 11
    with pytest.raises(InvalidInputError, match=r"components=\[2\]: are not in 0\.\.1.*Fix"):
        subgraph_by_components(g, [2])
    g.adjacency = None
    assert largest_component(g).n_features == len(v)  # the stiffness pattern defines components
    g.stiffness = None
    with pytest.raises(InvalidInputError, match=r"has neither an adjacency nor a stiffness matrix.*Fix"):
        largest_component(g)


def test_fsaverage5_drops_the_medial_wall_by_default():
    from spectranorm_neuro.graphs.mesh import fsaverage5_cortex_mask

    default = fsaverage5_graph("left")
    keep_all = fsaverage5_graph("left", cortex_mask=None)
    cortex = np.asarray(fsaverage5_cortex_mask("left"), bool)
    assert keep_all.structures[0].n_features == 10242
    assert default.structures[0].n_features == int(cortex.sum()) < 10242
    np.testing.assert_array_equal(default.structures[0].index, np.flatnonzero(cortex))
