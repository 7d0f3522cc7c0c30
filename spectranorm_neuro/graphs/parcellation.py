"""Parcellations: reading atlas labels, region adjacency graphs, and parcel-mean queries.

Labels
------
A parcellation is an integer label per node (vertex or voxel). Label values ``< 0`` always mean
"no label" (FreeSurfer ``.annot`` files give ``-1`` to vertices outside the colour table);
``parcel_graph`` and ``parcel_queries`` also skip the values in ``ignore`` (``0`` by default,
the usual "unknown"/background label). Parcels are numbered by ascending label value.

Queries
-------
``parcel_queries`` returns a sparse (n_parcels, n_features) matrix whose row ``p`` averages a map
over parcel ``p`` (rows sum to 1). Passed to ``EigenmodeBasis.encode_queries`` it lets a
vertex- or voxel-level spectral model answer parcel-level questions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import sparse

from .._util import sha256_array
from .._version import __version__
from ..exceptions import FileFormatError, GraphError, IncompatibleModelError, ShapeMismatchError, bad_value
from ._graph import Graph, Structure
from ._ops import graph_pattern
from .mesh import _sniff

__all__ = ["read_labels", "parcel_graph", "parcel_queries", "node_areas"]


def _as_labels(labels, name: str = "labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise bad_value(name, f"array of shape {arr.shape}", "is not 1-D", "pass one label per node",
                        ShapeMismatchError)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) \
                or not np.all(arr == np.round(arr)):
            raise bad_value(name, f"array of dtype {arr.dtype}", "does not hold integer labels",
                            "pass integer parcel labels (e.g. the values of an atlas image)")
    return arr.astype(np.int64)


def _parcels(labels: np.ndarray, ignore) -> tuple[np.ndarray, np.ndarray]:
    """Parcel values (ascending) and each node's parcel number (-1 = ignored)."""
    skip = np.asarray(tuple(ignore or ()), dtype=np.int64)
    valid = (labels >= 0) & ~np.isin(labels, skip)
    values, inverse = np.unique(labels[valid], return_inverse=True)
    if values.size == 0:
        raise bad_value("labels", f"array of {labels.size} labels",
                        f"has no parcel once labels < 0 and ignore={tuple(skip.tolist())} are skipped",
                        "check the atlas and the ignore argument")
    parcel = np.full(labels.size, -1, dtype=np.int64)
    parcel[valid] = inverse
    return values, parcel


def _is_nifti(head: bytes) -> bool:
    if len(head) < 348:
        return False
    size_le, size_be = int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")
    return 348 in (size_le, size_be) or 540 in (size_le, size_be)


def _map_surface(full_labels: np.ndarray, graph: Graph | None, path: str) -> np.ndarray:
    """Take a per-vertex label array onto a single-surface graph's kept vertices."""
    if graph is None:
        return full_labels
    if len(graph.structures) != 1:
        raise bad_value("graph", [s.name for s in graph.structures],
                        f"has several structures but {path} labels one surface",
                        "read the labels of each hemisphere and pass that hemisphere's graph")
    struct = graph.structures[0]
    if struct.n_total != full_labels.size:
        raise bad_value("path", path, f"labels {full_labels.size} vertices but the mesh has {struct.n_total}",
                        "use the parcellation made for this mesh (same template and resolution)",
                        IncompatibleModelError)
    return full_labels[struct.index]


def _read_cifti(img, graph: Graph | None, path: str) -> tuple[np.ndarray, dict[int, str]]:
    from nibabel.cifti2 import cifti2_axes

    label_axis, bm = img.header.get_axis(0), img.header.get_axis(1)
    if not isinstance(label_axis, cifti2_axes.LabelAxis):
        raise bad_value("path", path, "is a CIFTI file but not a dlabel (no label table)",
                        "pass a .dlabel.nii file", FileFormatError)
    values = _as_labels(np.asarray(img.dataobj)[0], "path")
    names = {int(k): str(v[0]) for k, v in label_axis.label[0].items()}
    if graph is None:
        return values, names
    out = []
    for struct in graph.structures:
        if struct.kind == "volume":
            if bm.volume_shape is None or tuple(bm.volume_shape) != tuple(struct.shape):
                raise bad_value("path", path, f"has volume shape {bm.volume_shape}, the graph {struct.shape}",
                                "use a dlabel in the same volume space as the mask", IncompatibleModelError)
            vol = np.zeros(struct.n_total, dtype=np.int64)
            sel = bm.volume_mask
            vol[np.ravel_multi_index(bm.voxel[sel].T, struct.shape)] = values[sel]
            out.append(vol[struct.index])
            continue
        cifti_name = cifti2_axes.BrainModelAxis.to_cifti_brain_structure_name(struct.name)
        found = [(sl, sub) for nm, sl, sub in bm.iter_structures() if nm == cifti_name]
        if not found:
            present = [nm for nm, _, _ in bm.iter_structures()]
            raise bad_value("path", path, f"has no {cifti_name} (it holds {present})",
                            "pass a dlabel that covers the graph's structures", IncompatibleModelError)
        sl, sub = found[0]
        n_vertex = int(sub.nvertices[cifti_name])
        if n_vertex != struct.n_total:
            raise bad_value("path", path, f"{cifti_name} has {n_vertex} vertices but the mesh has "
                            f"{struct.n_total}", "use a dlabel made for this mesh", IncompatibleModelError)
        full = np.zeros(n_vertex, dtype=np.int64)
        full[sub.vertex] = values[sl]
        out.append(full[struct.index])
    return np.concatenate(out), names


def read_labels(path, graph: Graph | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """Read a parcellation: one integer label per node.

    Parameters
    ----------
    path : str or path-like
        FreeSurfer ``.annot``; GIFTI ``.label.gii``; CIFTI ``.dlabel.nii``; or an atlas NIfTI
        (integer values, 0 = background). The format is detected from the content (NIfTI and
        CIFTI through nibabel, which also needs the ``.nii``/``.nii.gz`` extension).
    graph : Graph, optional
        Map the labels onto this graph's nodes: a surface graph (kept vertices of a one-structure
        mesh graph); a volume graph from :func:`~spectranorm_neuro.graphs.from_nifti_mask` (same
        grid); for CIFTI, any graph whose structure names match the file's brain structures.
        Graph nodes the file does not cover get label 0.

    Returns
    -------
    labels : numpy.ndarray of int64, shape (n_nodes,)
        Without ``graph``: one per vertex (surface files), per grayordinate (CIFTI), or per
        non-zero voxel in C order (NIfTI: the node order of ``from_nifti_mask(atlas)``).
        ``.annot`` labels are colour-table indices, ``-1`` where a vertex has none.
    names : dict of int to str
        Label value -> parcel name (the value itself, as text, for NIfTI atlases).
    """
    path = Path(path)
    if not path.is_file():
        raise bad_value("path", str(path), "does not exist", "pass the path of an atlas/label file")
    import nibabel as nib

    head = _sniff(path)
    where = str(path)
    if b"<GIFTI" in head or head.lstrip().startswith(b"<?xml"):
        try:
            img = nib.load(where)
            data = _as_labels(np.asarray(img.darrays[0].data).ravel(), "path")
            names = {int(k): str(v) for k, v in img.labeltable.get_labels_as_dict().items()}
        except (IndexError, ValueError, AttributeError) as exc:
            raise bad_value("path", where, f"is not a GIFTI label file ({exc})",
                            "pass a .label.gii with one integer label per vertex", FileFormatError) from None
        return _map_surface(data, graph, where), names
    if _is_nifti(head):
        img = nib.load(where)
        if isinstance(img, nib.Cifti2Image):
            return _read_cifti(img, graph, where)
        data = np.asarray(img.dataobj)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise bad_value("path", where, f"has shape {data.shape}, not a 3-D atlas",
                            "pass a 3-D label image", ShapeMismatchError)
        flat = _as_labels(data.ravel(order="C"), "path")
        if graph is None:
            labels = flat[flat != 0]
        else:
            struct = graph.structures[0]
            if len(graph.structures) != 1 or struct.shape is None or tuple(struct.shape) != data.shape:
                raise bad_value("path", where, f"has grid shape {data.shape} but the graph's grid is "
                                f"{struct.shape}",
                                "resample the atlas to the mask's grid (nearest neighbour)",
                                IncompatibleModelError)
            if struct.affine is not None and not np.allclose(struct.affine, img.affine, atol=1e-3):
                raise bad_value("path", where, "has a different affine from the mask graph",
                                "resample the atlas to the mask's space (nearest neighbour)",
                                IncompatibleModelError)
            labels = flat[struct.index]
        return labels, {int(v): str(int(v)) for v in np.unique(labels) if v != 0}
    try:
        data, _, names_raw = nib.freesurfer.read_annot(where)
    except Exception as exc:
        raise bad_value("path", where, "is not a FreeSurfer annot, GIFTI label, CIFTI dlabel or NIfTI "
                        f"atlas ({type(exc).__name__}: {exc})", "pass a supported label file",
                        FileFormatError) from None
    names = {i: (n.decode() if isinstance(n, bytes) else str(n)) for i, n in enumerate(names_raw)}
    return _map_surface(_as_labels(data, "path"), graph, where), names


def node_areas(graph: Graph) -> np.ndarray:
    """Area (or volume) represented by each node: the row sums of the FEM mass matrix.

    Parameters
    ----------
    graph : Graph

    Returns
    -------
    numpy.ndarray, shape (n_features,)
        Lumped mass (a third of the adjacent triangles' area for meshes); ones for graphs
        without a mass matrix.
    """
    if graph.mass is None:
        return np.ones(graph.n_features)
    return np.asarray(graph.mass.sum(axis=1)).ravel()


def parcel_graph(labels, graph: Graph, ignore=(0,), weight: str = "count") -> Graph:
    """Region adjacency graph of a parcellation.

    Parameters
    ----------
    labels : array_like of int, shape (n_features,)
        Label of each node of ``graph`` (see :func:`read_labels`).
    graph : Graph
        The vertex/voxel graph the labels live on (its adjacency, else its stiffness pattern,
        defines which nodes touch).
    ignore : sequence of int, optional
        Label values that are not parcels (negative labels are always skipped).
    weight : {"count", "length"}, optional
        Edge weight between two parcels: the number of graph edges joining them, or the summed
        Euclidean length of those edges (needs ``graph.coords``; a proxy for the shared
        boundary length on a regular mesh).

    Returns
    -------
    Graph
        ``adjacency`` (n_parcels, n_parcels); ``coords`` the parcel centroids (if the graph has
        coords); one ``Structure(name="Parcels", kind="parcels", n_total=n_parcels,
        index=arange(n_parcels))``; ``provenance["parcel_labels"]`` the label value of each node.
    """
    lab = _as_labels(labels)
    if lab.size != graph.n_features:
        raise bad_value("labels", f"array of {lab.size} labels",
                        f"does not match the {graph.n_features} nodes of the graph",
                        "pass one label per graph node (read_labels(path, graph=graph) maps a file onto it)",
                        IncompatibleModelError)
    if weight not in ("count", "length"):
        raise bad_value("weight", weight, "is not a known weighting", 'pass "count" or "length"')
    values, parcel = _parcels(lab, ignore)
    pat = sparse.triu(graph_pattern(graph), k=1).tocoo()
    pi, pj = parcel[pat.row], parcel[pat.col]
    ok = (pi >= 0) & (pj >= 0) & (pi != pj)
    if weight == "length":
        if graph.coords is None:
            raise bad_value("weight", weight, "needs node coordinates but graph.coords is None",
                            'use weight="count"')
        w = np.linalg.norm(graph.coords[pat.row[ok]] - graph.coords[pat.col[ok]], axis=1)
    else:
        w = np.ones(int(ok.sum()))
    n_p = values.size
    adj = sparse.coo_matrix((np.concatenate([w, w]), (np.concatenate([pi[ok], pj[ok]]),
                                                        np.concatenate([pj[ok], pi[ok]]))),
                            shape=(n_p, n_p)).tocsr()
    adj.sort_indices()
    coords = None
    if graph.coords is not None:
        member = parcel >= 0
        counts = np.bincount(parcel[member], minlength=n_p)
        coords = np.stack([np.bincount(parcel[member], weights=graph.coords[member, d], minlength=n_p)
                           for d in range(graph.coords.shape[1])], axis=1) / counts[:, None]
    lonely = np.flatnonzero(np.asarray(adj.sum(axis=1)).ravel() == 0)
    if lonely.size and n_p > 1:
        shown = [int(v) for v in values[lonely[:8]]]
        raise bad_value("labels", f"{n_p} parcels", f"include {lonely.size} parcel(s) touching no other "
                        f"parcel (labels {shown})", "add them to ignore or merge them with a neighbour",
                        GraphError)
    prov = {"adapter": "parcellation", "package_version": __version__, "weight": weight,
            "ignore": [int(i) for i in (ignore or ())], "labels_sha256": sha256_array(lab),
            "parcel_labels": values.tolist(), "source_graph": graph.provenance}
    structure = Structure(name="Parcels", kind="parcels", n_total=int(n_p), index=np.arange(n_p))
    return Graph(structures=(structure,), adjacency=adj, coords=coords, provenance=prov)


def parcel_queries(labels, ignore=(0,), node_weights=None) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Parcel-mean queries: one row of membership weights per parcel.

    Parameters
    ----------
    labels : array_like of int, shape (n_features,)
        Label of each feature (node) of the basis the queries will be encoded in.
    ignore : sequence of int, optional
        Label values that are not parcels (negative labels are always skipped).
    node_weights : array_like, shape (n_features,), optional
        Positive weight of each node, e.g. :func:`node_areas` for area-weighted means.
        Uniform by default.

    Returns
    -------
    queries : scipy.sparse.csr_matrix, shape (n_parcels, n_features)
        Row ``p`` holds ``w_i / sum(w over parcel p)`` on the nodes of parcel ``p``, so
        ``queries @ x`` are the parcel means of a map ``x``.
    values : numpy.ndarray of int64, shape (n_parcels,)
        The label value of each row, ascending.

    Examples
    --------
    >>> q, values = parcel_queries([0, 1, 1, 2, 2, 2])
    >>> values.tolist(), (q @ [9.0, 1.0, 3.0, 6.0, 6.0, 9.0]).tolist()
    ([1, 2], [2.0, 7.0])
    """
    lab = _as_labels(labels)
    values, parcel = _parcels(lab, ignore)
    if node_weights is None:
        w = np.ones(lab.size)
    else:
        w = np.asarray(node_weights, dtype=np.float64)
        if w.shape != lab.shape:
            raise bad_value("node_weights", f"array of shape {w.shape}",
                            f"does not match the {lab.size} labels", "pass one weight per node",
                            ShapeMismatchError)
        if not np.all(np.isfinite(w)) or np.any(w[parcel >= 0] <= 0):
            raise bad_value("node_weights", f"array of shape {w.shape}",
                            "holds non-finite or non-positive weights inside parcels",
                            "pass positive finite weights, e.g. node_areas(graph)")
    member = np.flatnonzero(parcel >= 0)
    rows = parcel[member]
    totals = np.bincount(rows, weights=w[member], minlength=values.size)
    data = w[member] / totals[rows]
    q = sparse.csr_matrix((data, (rows, member)), shape=(values.size, lab.size))
    q.sort_indices()
    return q, values

