"""``snm.utils.nitools``: surface files, mesh measures and fsnative -> fs_LR-32k resampling (reference names).

The reference ships the fs_LR-32k template surfaces (HCP S1200 midthickness, the
``fs_LR-deformed_to-fsaverage`` spheres) and a ``ones.dscalar.nii`` CIFTI template inside its
package. Their licences do not allow this package to ship them, so they are read from a local
folder: the directory named by the ``SPECTRANORM_TEMPLATES`` environment variable, laid out as
the reference's ``data/templates`` (``fs_LR_32k/``, ``HCP/``, ``CIFTI/``). A missing file raises
an error naming it and this variable; nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import sparse, spatial

from ...exceptions import FileFormatError, bad_value

__all__ = ["TEMPLATES_ENV", "compute_adaptive_area_barycentric_transformation", "compute_barycentric_transformation",
           "compute_fslr_thickness", "compute_fsnative_to_fslr32k_transformation", "compute_total_euler_number",
           "compute_vertex_areas", "get_euler_number", "get_fslr_surface_indices_from_cifti",
           "load_freesurfer_surface", "load_gifti_surface", "template_path"]

TEMPLATES_ENV = "SPECTRANORM_TEMPLATES"
_TEMPLATES = {
    "sphere_L": ("fs_LR_32k", "fs_LR-deformed_to-fsaverage.L.sphere.32k_fs_LR.surf.gii"),
    "sphere_R": ("fs_LR_32k", "fs_LR-deformed_to-fsaverage.R.sphere.32k_fs_LR.surf.gii"),
    "midthickness_L": ("HCP", "S1200.L.midthickness_MSMAll.32k_fs_LR.surf.gii"),
    "midthickness_R": ("HCP", "S1200.R.midthickness_MSMAll.32k_fs_LR.surf.gii"),
    "cifti_ones": ("CIFTI", "ones.dscalar.nii"),
}


def template_path(name: str) -> Path:
    """Local path of a template (see the module docstring); a clear error when it is not there."""
    folder, filename = _TEMPLATES[name]
    root = os.environ.get(TEMPLATES_ENV)
    path = Path(root) / folder / filename if root else None
    if path is None or not path.is_file():
        raise bad_value(TEMPLATES_ENV, root, f"does not hold the template {folder}/{filename}",
                        f"download the fs_LR-32k templates yourself and set {TEMPLATES_ENV} to their folder "
                        "(subfolders fs_LR_32k/, HCP/, CIFTI/); this package ships none and never downloads",
                        FileNotFoundError)
    return path


def load_gifti_surface(file) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (n_vertices, 3) and triangles (n_triangles, 3) of a GIFTI surface."""
    img = nib.load(str(file))
    if not isinstance(img, nib.GiftiImage) or len(img.darrays) < 2:
        raise bad_value("file", str(file), "is not a GIFTI surface (two data arrays)",
                        "pass a .surf.gii file", FileFormatError)
    return img.darrays[0].data, img.darrays[1].data


def load_freesurfer_surface(file) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (float32, (n_vertices, 3)) and triangles (int32, (n_triangles, 3)) of a FreeSurfer surface."""
    vertices, triangles = nib.freesurfer.io.read_geometry(str(file))[:2]
    return np.asarray(vertices, dtype=np.float32), np.asarray(triangles, dtype=np.int32)


def get_euler_number(vertices, triangles) -> int:
    """Euler characteristic ``V - E + F`` of a triangle mesh (2 for a closed sphere-like surface)."""
    tri = np.asarray(triangles)
    edges = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
    n_edges = np.unique(edges, axis=0).shape[0]
    return int(np.asarray(vertices).shape[0] - n_edges + tri.shape[0])


def compute_vertex_areas(vertices, triangles) -> np.ndarray:
    """Area of each vertex (n_vertices,): a third of the area of every triangle it belongs to."""
    v = np.asarray(vertices, dtype=float)
    tri = np.asarray(triangles)
    area = 0.5 * np.linalg.norm(np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]]), axis=1)
    return np.bincount(tri.ravel(), weights=np.repeat(area / 3.0, 3), minlength=v.shape[0])


def compute_barycentric_transformation(source_vertices, source_triangles, target_vertices, k_candidates: int = 10,
                                       tol: float = 1e-10) -> sparse.coo_matrix:
    """Sparse (n_target, n_source) barycentric interpolation from a source mesh onto target points.

    Each target point is projected onto the first of its ``k_candidates`` nearest source triangles
    (by centroid) that contains it (barycentric coordinates >= ``-tol``); points in none of them
    take the value of their nearest source vertex.
    """
    sv = np.asarray(source_vertices, dtype=float)
    st = np.asarray(source_triangles)
    tv = np.asarray(target_vertices, dtype=float)
    k = min(int(k_candidates), st.shape[0])
    _, cand = spatial.cKDTree(sv[st].mean(axis=1)).query(tv, k=k)
    cand = np.asarray(cand).reshape(tv.shape[0], k)
    corners = sv[st[cand]]  # (n_target, k, 3, 3)
    e1, e2 = corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0]
    p = tv[:, None, :] - corners[:, :, 0]
    d11, d12, d22 = (np.einsum("ijk,ijk->ij", a, b) for a, b in ((e1, e1), (e1, e2), (e2, e2)))
    dp1, dp2 = np.einsum("ijk,ijk->ij", p, e1), np.einsum("ijk,ijk->ij", p, e2)
    det = d11 * d22 - d12 * d12
    with np.errstate(divide="ignore", invalid="ignore"):
        b = (d22 * dp1 - d12 * dp2) / det
        c = (d11 * dp2 - d12 * dp1) / det
    a = 1.0 - b - c
    inside = (a >= -tol) & (b >= -tol) & (c >= -tol) & (np.abs(det) > tol)
    found = inside.any(axis=1)
    pick = np.argmax(inside, axis=1)
    hit = np.flatnonzero(found)
    rows = [np.repeat(hit, 3)]
    cols = [st[cand[hit, pick[hit]]].ravel()]
    vals = [np.stack([a[hit, pick[hit]], b[hit, pick[hit]], c[hit, pick[hit]]], axis=1).ravel()]
    miss = np.flatnonzero(~found)
    if miss.size:
        _, nearest = spatial.cKDTree(sv).query(tv[miss], k=1)
        rows.append(miss)
        cols.append(np.asarray(nearest).ravel())
        vals.append(np.ones(miss.size))
    return sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(tv.shape[0], sv.shape[0]))


def compute_adaptive_area_barycentric_transformation(source_vertices, source_triangles, source_vertex_areas,
                                                     target_vertices, target_triangles, target_vertex_areas,
                                                     source_vertex_mask=None, k_candidates: int = 10,
                                                     tol: float = 1e-10) -> sparse.csr_matrix:
    """Area-weighted resampling matrix (n_target, n_source), like Workbench's ``ADAP_BARY_AREA``.

    For each target vertex, the gather weights come from whichever of the forward (target points
    in source triangles) and reverse (source points in target triangles, transposed) barycentric
    maps uses more source vertices; weights are scaled by target areas, each source column is
    rescaled to its vertex area, masked source vertices are dropped, and rows sum to 1.
    """
    fwd = compute_barycentric_transformation(source_vertices, source_triangles, target_vertices, k_candidates,
                                             tol).tocsr()
    rev = compute_barycentric_transformation(target_vertices, target_triangles, source_vertices, k_candidates,
                                             tol).T.tocsr()
    use_fwd = np.diff(fwd.indptr) >= np.diff(rev.indptr)
    gather = sparse.diags(use_fwd.astype(float)) @ fwd + sparse.diags((~use_fwd).astype(float)) @ rev
    gather = sparse.diags(np.asarray(target_vertex_areas, dtype=float)) @ gather
    col_sum = np.asarray(gather.sum(axis=0)).ravel()
    src_area = np.asarray(source_vertex_areas, dtype=float)
    scale = np.divide(src_area, col_sum, out=np.zeros_like(col_sum), where=col_sum > 0)
    gather = gather @ sparse.diags(scale)
    if source_vertex_mask is not None:
        gather = gather @ sparse.diags(np.asarray(source_vertex_mask, dtype=float))
    row_sum = np.asarray(gather.sum(axis=1)).ravel()
    inv = np.divide(1.0, row_sum, out=np.ones_like(row_sum), where=row_sum > 0)
    return sparse.csr_matrix(sparse.diags(inv) @ gather)


def _fsnative_hemisphere(subject: Path, hemi: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sphere, tri = load_freesurfer_surface(subject / "surf" / f"{hemi}.sphere.reg")
    white, _ = load_freesurfer_surface(subject / "surf" / f"{hemi}.white")
    pial, _ = load_freesurfer_surface(subject / "surf" / f"{hemi}.pial")
    return sphere, tri, compute_vertex_areas((white + pial) * 0.5, tri)


def compute_fsnative_to_fslr32k_transformation(subject_freesurfer_directory) -> sparse.csr_matrix:
    """Resampling matrix (2 x 32492, n_lh + n_rh) from a FreeSurfer subject to fs_LR-32k (left, then right).

    Needs the templates (see the module docstring) and the subject's ``surf/?h.sphere.reg``,
    ``?h.white`` and ``?h.pial``.
    """
    subject = Path(subject_freesurfer_directory)
    blocks = []
    for hemi, side in (("lh", "L"), ("rh", "R")):
        fs_sphere, fs_tri, fs_area = _fsnative_hemisphere(subject, hemi)
        lr_sphere, lr_tri = load_gifti_surface(template_path(f"sphere_{side}"))
        lr_mid, _ = load_gifti_surface(template_path(f"midthickness_{side}"))
        blocks.append(compute_adaptive_area_barycentric_transformation(
            fs_sphere, fs_tri, fs_area, lr_sphere, lr_tri, compute_vertex_areas(lr_mid, lr_tri)))
    return sparse.csr_matrix(sparse.block_diag(blocks))


def get_fslr_surface_indices_from_cifti(cifti_file=None) -> np.ndarray:
    """Indices of the cortical vertices a CIFTI file holds (left, then right + n_left), medial wall excluded.

    Without ``cifti_file``, the ``CIFTI/ones.dscalar.nii`` template (see the module docstring).
    """
    path = template_path("cifti_ones") if cifti_file is None else Path(cifti_file)
    img = nib.load(str(path))
    if not isinstance(img, nib.Cifti2Image):
        raise bad_value("cifti_file", str(path), "is not a CIFTI-2 file", "pass a .dscalar.nii / .dtseries.nii",
                        FileFormatError)
    models = list(img.header.get_index_map(1).brain_models)
    left, right = models[0], models[1]
    return np.concatenate([np.asarray(left.vertex_indices),
                           np.asarray(right.vertex_indices) + left.surface_number_of_vertices])


def compute_fslr_thickness(subject_freesurfer_directory) -> np.ndarray:
    """Cortical thickness of a FreeSurfer subject resampled onto fs_LR-32k (59412 cortical vertices)."""
    subject = Path(subject_freesurfer_directory)
    transform = compute_fsnative_to_fslr32k_transformation(subject)[get_fslr_surface_indices_from_cifti(), :]
    thickness = np.concatenate([nib.freesurfer.io.read_morph_data(str(subject / "surf" / f"{h}.thickness"))
                                for h in ("lh", "rh")])
    return np.asarray(transform @ thickness)


def compute_total_euler_number(subject_freesurfer_directory) -> int:
    """Sum of the Euler numbers of ``surf/lh.orig.nofix`` and ``surf/rh.orig.nofix`` (a quality measure)."""
    subject = Path(subject_freesurfer_directory)
    return sum(get_euler_number(*load_freesurfer_surface(subject / "surf" / f"{h}.orig.nofix")) for h in ("lh", "rh"))
