"""Cortical surface meshes as FEM operator pairs and mesh graphs.

A surface graph carries both operators a basis can be built from:

* ``stiffness`` and ``mass``: the linear finite-element Laplace–Beltrami pair assembled by lapy
  (``stiffness @ phi = lambda * mass @ phi``; Neumann condition on the boundary of a cut mesh);
* ``adjacency``: the binary mesh-edge graph, for graph Laplacians.

A cortex mask cuts the mesh *before* assembly: only triangles whose three vertices are kept
remain, and ``Structure.index`` holds the kept vertex ids, so masked vertices map back as NaN
(:meth:`spectranorm_neuro.basis.EigenmodeBasis.to_full`).

Both hemispheres
----------------
:func:`fsaverage5_graph` with ``hemi="both"`` gives one graph with structures ``CortexLeft`` then
``CortexRight`` and block-diagonal operators; its basis is made of each hemisphere's modes (zero
on the other hemisphere) merged in ascending eigenvalue order. :func:`hemisphere_graphs` gives
the two graphs separately (``spectranorm_neuro.basis.hemisphere_bases`` solves each).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
from scipy import sparse

from .._util import sha256_array
from .._version import __version__
from ..exceptions import FileFormatError, IncompatibleModelError, InvalidInputError, bad_value
from ._graph import Graph, Structure
from ._meshcheck import as_mesh_arrays, check_mesh_topology, clean_mask

__all__ = [
    "load_surface",
    "mesh_graph",
    "fem_matrices",
    "read_cortex_mask",
    "fsaverage5_cortex_mask",
    "fsaverage5_graph",
    "hemisphere_graphs",
    "merge_graphs",
    "FSAVERAGE5_SURFACES",
]

#: Surfaces available offline for fsaverage5 (``"midthickness"`` is the mean of pial and white).
FSAVERAGE5_SURFACES = ("midthickness", "pial", "white", "inflated", "sphere")
_NILEARN_NAMES = {"pial": "pial", "white": "white_matter", "inflated": "inflated", "sphere": "sphere"}
_HEMI_NAMES = {"left": "CortexLeft", "right": "CortexRight"}


def _check_hemi(hemi, allowed=("left", "right")) -> str:
    if hemi not in allowed:
        raise bad_value("hemi", hemi, "is not a hemisphere name",
                        f"pass one of {', '.join(map(repr, allowed))}")
    return hemi


@functools.lru_cache(maxsize=16)
def _fsaverage5_cached(hemi: str, surface: str) -> tuple[np.ndarray, np.ndarray]:
    from nilearn import datasets

    fsavg = datasets.load_fsaverage("fsaverage5")
    names = ("pial", "white") if surface == "midthickness" else (surface,)
    parts = [fsavg[_NILEARN_NAMES[s]].parts[hemi] for s in names]
    coords = np.mean([np.asarray(p.coordinates, dtype=np.float64) for p in parts], axis=0)
    return coords, np.asarray(parts[0].faces, dtype=np.int64)


def _fsaverage5_arrays(hemi: str, surface: str) -> tuple[np.ndarray, np.ndarray]:
    """fsaverage5 vertices (10242, 3) and faces (20480, 3) from nilearn (cached; copies returned)."""
    if surface not in FSAVERAGE5_SURFACES:
        raise bad_value("surface", surface, "is not an fsaverage5 surface available offline",
                        f"pass one of {', '.join(FSAVERAGE5_SURFACES)}")
    coords, faces = _fsaverage5_cached(hemi, surface)
    return coords.copy(), faces.copy()


def _sniff(path: Path, n_bytes: int = 600) -> bytes:
    """The first ``n_bytes`` of a file, decompressed if it is gzipped (format detection)."""
    with open(path, "rb") as fh:
        head = fh.read(n_bytes)
    if head[:2] == b"\x1f\x8b":
        import gzip

        with gzip.open(path, "rb") as fh:
            head = fh.read(n_bytes)
    return head


def load_surface(source, hemi: str | None = None, surface: str = "midthickness"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Read a triangle mesh.

    Parameters
    ----------
    source : str, path-like, (vertices, faces) tuple or nilearn mesh
        A GIFTI surface (``.surf.gii``, optionally gzipped), a FreeSurfer surface (``lh.white``,
        ``rh.pial`` ...; detected by content), the string ``"fsaverage5"`` (nilearn's offline
        copy), a nilearn ``InMemoryMesh``/``FileMesh``, or a ``(vertices, faces)`` pair.
    hemi : {"left", "right"}, optional
        Hemisphere, required for ``"fsaverage5"``.
    surface : str, optional
        For ``"fsaverage5"`` only: one of :data:`FSAVERAGE5_SURFACES`.

    Returns
    -------
    vertices : numpy.ndarray of float64, shape (n_vertices, 3)
    faces : numpy.ndarray of int64, shape (n_faces, 3)
    """
    if isinstance(source, str) and source == "fsaverage5":
        return _fsaverage5_arrays(_check_hemi(hemi), surface)
    if hasattr(source, "coordinates") and hasattr(source, "faces"):
        return as_mesh_arrays(source.coordinates, source.faces)
    if isinstance(source, tuple) and len(source) == 2:
        return as_mesh_arrays(*source)
    if not isinstance(source, (str, os.PathLike)):
        raise bad_value("source", type(source).__name__, "is not a mesh file, a mesh object or 'fsaverage5'",
                        "pass a GIFTI/FreeSurfer surface path, 'fsaverage5' with hemi, or (vertices, faces)")
    path = Path(source)
    if not path.is_file():
        raise bad_value("source", str(path), "does not exist (or is not a file)",
                        "pass the path of a GIFTI or FreeSurfer surface, or 'fsaverage5' for the "
                        "built-in mesh")
    head = _sniff(path)
    import nibabel as nib

    try:
        if b"<GIFTI" in head or head.lstrip().startswith(b"<?xml"):
            img = nib.load(str(path))
            vertices, faces = img.agg_data(("pointset", "triangle"))
        elif head[:3] == b"\xff\xff\xfe":
            vertices, faces = nib.freesurfer.read_geometry(str(path))
        else:
            raise ValueError("unknown format (neither GIFTI XML nor a FreeSurfer triangle surface)")
    except Exception as exc:
        raise bad_value("source", str(path), f"cannot be read as a surface mesh ({exc})",
                        "pass a GIFTI surface with POINTSET and TRIANGLE arrays or a FreeSurfer surface",
                        FileFormatError) from None
    if vertices is None or faces is None or np.ndim(vertices) != 2:
        raise bad_value("source", str(path), "holds no POINTSET and TRIANGLE arrays",
                        "pass a surface GIFTI (.surf.gii), not a data or label GIFTI", FileFormatError)
    return as_mesh_arrays(vertices, faces)


def read_cortex_mask(path_or_array, n_vertices: int) -> np.ndarray:
    """Read a cortex (or any vertex) mask.

    Parameters
    ----------
    path_or_array : array_like or str or path-like
        A boolean (or 0/1) array with one value per vertex; an integer array of vertex ids; a
        FreeSurfer ``.label`` file (the listed vertices are kept); or a GIFTI ``.label.gii`` /
        ``.shape.gii`` / ``.func.gii`` file (non-zero values are kept).
    n_vertices : int
        Number of vertices of the mesh the mask belongs to.

    Returns
    -------
    numpy.ndarray of bool, shape (n_vertices,)

    Raises
    ------
    IncompatibleModelError
        The mask has a different number of vertices than the mesh.
    """
    n_vertices = int(n_vertices)
    source = path_or_array
    if isinstance(path_or_array, (str, os.PathLike)):
        path = Path(path_or_array)
        if not path.is_file():
            raise bad_value("cortex_mask", str(path), "does not exist",
                            "pass a FreeSurfer .label, a .label.gii, or a boolean array")
        import nibabel as nib

        head = _sniff(path)
        try:
            if b"<GIFTI" in head or head.lstrip().startswith(b"<?xml"):
                data = np.asarray(nib.load(str(path)).darrays[0].data).ravel()
                arr = np.isfinite(data) & (data != 0)
            else:
                ids = nib.freesurfer.read_label(str(path))
                arr = np.asarray(ids, dtype=np.int64)
        except Exception as exc:
            raise bad_value("cortex_mask", str(path), f"cannot be read as a label file ({exc})",
                            "pass a FreeSurfer .label or a GIFTI .label.gii", FileFormatError) from None
    else:
        arr = np.asarray(path_or_array)
        source = f"array of shape {arr.shape}"
        if arr.ndim != 1:
            raise bad_value("cortex_mask", source, "is not 1-D", "pass one value per vertex")
        if arr.dtype != bool and arr.size == n_vertices and np.isin(arr, (0, 1)).all():
            arr = arr.astype(bool)
    if arr.dtype == bool:
        if arr.size != n_vertices:
            raise bad_value("cortex_mask", source if isinstance(source, str) else str(source),
                            f"has {arr.size} vertices but the mesh has {n_vertices}",
                            "use the mask made for this mesh (fsaverage5: 10242 vertices per hemisphere)",
                            IncompatibleModelError)
        mask = arr
    else:
        if not np.issubdtype(arr.dtype, np.integer):
            raise bad_value("cortex_mask", str(source), f"has dtype {arr.dtype}",
                            "pass a boolean mask or integer vertex ids")
        if arr.size and (arr.min() < 0 or arr.max() >= n_vertices):
            raise bad_value("cortex_mask", str(source),
                            f"lists vertex ids outside 0..{n_vertices - 1} (max {int(arr.max())})",
                            "use the label made for this mesh", IncompatibleModelError)
        mask = np.zeros(n_vertices, dtype=bool)
        mask[arr] = True
    if not mask.any():
        raise bad_value("cortex_mask", str(source), "is empty (keeps no vertex)",
                        "pass a mask with the cortex vertices set to True")
    return mask


def fem_matrices(vertices, faces) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Linear FEM stiffness and mass matrices of the Laplace–Beltrami operator (lapy).

    Parameters
    ----------
    vertices : array_like, shape (n_vertices, 3)
    faces : array_like of int, shape (n_faces, 3)

    Returns
    -------
    stiffness, mass : scipy.sparse.csr_matrix, shape (n_vertices, n_vertices)
        Symmetric positive semi-definite cotangent stiffness and consistent mass matrix.
    """
    from lapy import Solver, TriaMesh

    solver = Solver(TriaMesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64)))
    a = sparse.csr_matrix(solver.stiffness, dtype=np.float64)
    b = sparse.csr_matrix(solver.mass, dtype=np.float64)
    a.sort_indices()
    b.sort_indices()
    return a, b


def mesh_graph(vertices, faces, cortex_mask=None, name: str = "CortexLeft",
               provenance: dict | None = None) -> Graph:
    """FEM operators and mesh graph of a (masked) triangle mesh.

    Parameters
    ----------
    vertices : array_like, shape (n_vertices, 3)
    faces : array_like of int, shape (n_faces, 3)
    cortex_mask : array_like or path, optional
        Vertices to keep (see :func:`read_cortex_mask`); the mesh is cut to the triangles whose
        three vertices are kept. All vertices by default.
    name : str, optional
        Structure name (``"CortexLeft"``, ``"CortexRight"`` ...).
    provenance : dict, optional
        Extra provenance entries (e.g. the source file).

    Returns
    -------
    Graph
        ``stiffness``, ``mass`` and binary ``adjacency`` (n_kept, n_kept) CSR; ``coords``
        (n_kept, 3); ``faces`` re-indexed over the kept vertices; one
        ``Structure(name, "surface", n_total=n_vertices, index=kept vertex ids)``.

    Raises
    ------
    MeshError
        Free vertices, non-manifold edges or vertices, several components, faces out of range.
    """
    v, f = as_mesh_arrays(vertices, faces)
    n = v.shape[0]
    if cortex_mask is None:
        keep = np.ones(n, dtype=bool)
        check_mesh_topology(f, n)
    else:
        keep = read_cortex_mask(cortex_mask, n)
    index = np.flatnonzero(keep)
    new_id = np.full(n, -1, dtype=np.int64)
    new_id[index] = np.arange(index.size)
    kept_faces = new_id[f[keep[f].all(axis=1)]]
    if kept_faces.shape[0] == 0:
        raise bad_value("cortex_mask", f"mask keeping {index.size} vertices",
                        "keeps no whole triangle", "keep connected patches of vertices")
    context = "after applying cortex_mask" if cortex_mask is not None else ""
    adjacency = check_mesh_topology(kept_faces, index.size, context)
    vk = v[index]
    stiffness, mass = fem_matrices(vk, kept_faces)
    prov = {
        "adapter": "mesh", "package_version": __version__, "name": name,
        "mesh_sha256": sha256_array(v, f),
        "mask_sha256": None if cortex_mask is None else sha256_array(keep),
        "n_vertices": int(n), "n_kept": int(index.size), **(provenance or {}),
    }
    structure = Structure(name=name, kind="surface", n_total=int(n), index=index)
    return Graph(structures=(structure,), adjacency=adjacency, stiffness=stiffness, mass=mass,
                 coords=vk, faces=kept_faces, provenance=prov)


def fsaverage5_cortex_mask(hemi: str = "left", threshold: float = 1.0) -> np.ndarray:
    """An approximate fsaverage5 cortex mask (medial wall removed), computed offline.

    nilearn ships no cortex label for fsaverage5, but the medial wall is where its group-average
    cortical thickness is about zero. Vertices with thickness above ``threshold`` (mm) are kept,
    then the mask is cleaned (:func:`~spectranorm_neuro.graphs.clean_mask`: holes filled, one
    component, no free or pinch vertices). With the default threshold it keeps about 94% of
    the vertices (the FreeSurfer ``cortex.label`` keeps about 91%).

    Parameters
    ----------
    hemi : {"left", "right"}
    threshold : float, optional
        Thickness (mm) above which a vertex counts as cortex.

    Returns
    -------
    numpy.ndarray of bool, shape (10242,)
    """
    _check_hemi(hemi)
    return _cortex_mask_cached(hemi, float(threshold)).copy()


@functools.lru_cache(maxsize=8)
def _cortex_mask_cached(hemi: str, threshold: float) -> np.ndarray:
    from nilearn.datasets import load_fsaverage_data

    img = load_fsaverage_data(mesh="fsaverage5", data_type="thickness")
    thickness = np.asarray(img.data.parts[hemi], dtype=np.float64)
    _, faces = _fsaverage5_arrays(hemi, "white")
    return clean_mask(faces, np.nan_to_num(thickness) > threshold)


def _resolve_mask(cortex_mask, hemi: str):
    if cortex_mask is None:
        return None
    if isinstance(cortex_mask, str) and cortex_mask == "auto":
        return fsaverage5_cortex_mask(hemi)
    if isinstance(cortex_mask, dict):
        if hemi not in cortex_mask:
            raise bad_value("cortex_mask", sorted(cortex_mask), f"has no entry for hemisphere {hemi!r}",
                            'pass a dict with keys "left" and "right"')
        return _resolve_mask(cortex_mask[hemi], hemi)
    return cortex_mask


def fsaverage5_graph(hemi: str = "left", cortex_mask="auto", surface: str = "midthickness") -> Graph:
    """Graph of nilearn's offline fsaverage5 surface (10242 vertices per hemisphere).

    Parameters
    ----------
    hemi : {"left", "right", "both"}
        One hemisphere, or both as one graph (structures ``CortexLeft`` then ``CortexRight``,
        block-diagonal operators).
    cortex_mask : None, "auto", array_like, path or dict, optional
        ``"auto"`` (default) drops the medial wall (:func:`fsaverage5_cortex_mask`); ``None`` keeps
        every vertex; an array or
        file is read by :func:`read_cortex_mask`. For ``"both"`` pass a dict
        ``{"left": ..., "right": ...}``, ``"auto"``, or a boolean array of 20484 values (left
        then right).
    surface : str, optional
        One of :data:`FSAVERAGE5_SURFACES`.

    Returns
    -------
    Graph
    """
    _check_hemi(hemi, ("left", "right", "both"))
    if hemi == "both":
        left, right = hemisphere_graphs(cortex_mask=cortex_mask, surface=surface).values()
        return merge_graphs((left, right))
    mask = _resolve_mask(cortex_mask, hemi)
    v, f = _fsaverage5_arrays(hemi, surface)
    return mesh_graph(v, f, cortex_mask=mask, name=_HEMI_NAMES[hemi],
                      provenance={"adapter": "fsaverage5", "hemi": hemi, "surface": surface,
                                  "cortex_mask": "auto" if isinstance(cortex_mask, str) else
                                  (None if mask is None else "given")})


def hemisphere_graphs(cortex_mask="auto", surface: str = "midthickness") -> dict[str, Graph]:
    """The two fsaverage5 hemispheres as separate graphs.

    Parameters
    ----------
    cortex_mask : see :func:`fsaverage5_graph` (default ``"auto"``: medial wall dropped)
    surface : str, optional

    Returns
    -------
    dict
        ``{"left": Graph, "right": Graph}``.
    """
    if cortex_mask is not None and not isinstance(cortex_mask, (str, dict)):
        arr = np.asarray(cortex_mask)
        if arr.ndim != 1 or arr.size != 2 * 10242:
            raise bad_value("cortex_mask", f"array of shape {arr.shape}",
                            "is not one value per vertex of both hemispheres (20484)",
                            'pass a dict {"left": mask, "right": mask} or a (20484,) array, left first',
                            IncompatibleModelError)
        cortex_mask = {"left": arr[:10242], "right": arr[10242:]}
    return {h: fsaverage5_graph(h, cortex_mask=cortex_mask, surface=surface) for h in ("left", "right")}


def merge_graphs(graphs) -> Graph:
    """Concatenate graphs into one with block-diagonal operators (e.g. two hemispheres).

    Parameters
    ----------
    graphs : sequence of Graph
        Each with distinct structure names; all with the same operators present.

    Returns
    -------
    Graph
        Structures concatenated in order; adjacency/stiffness/mass block-diagonal; coords
        stacked; faces offset into the merged feature numbering.
    """
    graphs = list(graphs)
    names = [s.name for g in graphs for s in g.structures]
    if len(set(names)) != len(names):
        raise bad_value("graphs", names, "repeat a structure name", "merge graphs of different structures")

    def block(attr):
        mats = [getattr(g, attr) for g in graphs]
        if all(m is None for m in mats):
            return None
        if any(m is None for m in mats):
            raise bad_value("graphs", attr, "is present in some graphs only",
                            "merge graphs built by the same adapter", InvalidInputError)
        return sparse.block_diag(mats, format="csr")

    offsets = np.cumsum([0] + [g.n_features for g in graphs])
    faces = None
    if all(g.faces is not None for g in graphs):
        faces = np.concatenate([g.faces + off for g, off in zip(graphs, offsets)])
    coords = None
    if all(g.coords is not None for g in graphs):
        coords = np.concatenate([g.coords for g in graphs])
    prov = {"adapter": "merged", "package_version": __version__, "parts": [g.provenance for g in graphs]}
    return Graph(structures=tuple(s for g in graphs for s in g.structures), adjacency=block("adjacency"),
                 stiffness=block("stiffness"), mass=block("mass"), coords=coords, faces=faces,
                 provenance=prov)
