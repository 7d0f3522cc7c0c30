"""Operations on :class:`~spectranorm_neuro.graphs.Graph`: node subsets and connected components."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import sparse

from ..exceptions import GraphError, bad_value
from ._checks import component_sizes
from ._graph import Graph, Structure

__all__ = ["structure_offsets", "subgraph_by_components", "largest_component", "graph_pattern"]


def structure_offsets(structures: tuple[Structure, ...]) -> np.ndarray:
    """Start of each structure's block in the feature axis.

    Returns
    -------
    numpy.ndarray of int, shape (n_structures + 1,)
        ``offsets[s]:offsets[s + 1]`` are the features of structure ``s``.
    """
    return np.concatenate([[0], np.cumsum([s.n_features for s in structures])]).astype(np.int64)


def graph_pattern(graph: Graph) -> sparse.csr_matrix:
    """The graph's connectivity pattern: its adjacency, else its stiffness matrix.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_features, n_features)
    """
    if graph.adjacency is not None:
        return sparse.csr_matrix(graph.adjacency)
    if graph.stiffness is not None:
        return sparse.csr_matrix(graph.stiffness)
    raise bad_value("graph", graph, "has neither an adjacency nor a stiffness matrix",
                    "build the graph with one of the spectranorm_neuro.graphs adapters", GraphError)


def _restrict(graph: Graph, keep: np.ndarray, note: dict) -> Graph:
    """Restrict ``graph`` to the features ``keep`` (bool, (n_features,)).

    Only valid when no edge or finite element joins a kept and a dropped node (whole connected
    components), so that the operators' sub-blocks are exact.
    """
    offsets = structure_offsets(graph.structures)
    structures = []
    for s, struct in enumerate(graph.structures):
        part = keep[offsets[s]:offsets[s + 1]]
        if part.any():
            structures.append(dataclasses.replace(struct, index=np.asarray(struct.index)[part]))
    new_id = np.full(keep.size, -1, dtype=np.int64)
    new_id[keep] = np.arange(int(keep.sum()))

    def sub(mat):
        return None if mat is None else sparse.csr_matrix(mat)[keep][:, keep].tocsr()

    faces = None
    if graph.faces is not None:
        faces = graph.faces[keep[graph.faces].all(axis=1)]
        faces = new_id[faces]
    prov = dict(graph.provenance)
    prov.setdefault("steps", [])
    prov["steps"] = [*prov["steps"], note]
    return Graph(structures=tuple(structures), adjacency=sub(graph.adjacency),
                 stiffness=sub(graph.stiffness), mass=sub(graph.mass),
                 coords=None if graph.coords is None else graph.coords[keep],
                 faces=faces, provenance=prov)


def subgraph_by_components(graph: Graph, components) -> Graph:
    """Keep the given connected components of a graph (numbered by decreasing size).

    Parameters
    ----------
    graph : Graph
    components : sequence of int
        Component numbers as in :func:`~spectranorm_neuro.graphs._checks.component_sizes`
        (0 = largest).

    Returns
    -------
    Graph
        The graph restricted to those components; structures left empty are dropped; faces are
        re-indexed; the provenance records the step.
    """
    n_comp, labels, sizes = component_sizes(graph_pattern(graph))
    components = np.unique(np.asarray(components, dtype=np.int64))
    if components.size == 0 or components.min() < 0 or components.max() >= n_comp:
        raise bad_value("components", components.tolist(), f"are not in 0..{n_comp - 1}",
                        f"pass component numbers between 0 and {n_comp - 1}")
    keep = np.isin(labels, components)
    note = {"step": "keep_components", "components": components.tolist(),
            "sizes": sizes[components].tolist(), "n_components_before": n_comp}
    return _restrict(graph, keep, note)


def largest_component(graph: Graph) -> Graph:
    """Keep only the largest connected component of a graph.

    The fix suggested by the "graph is disconnected" error: voxel masks and parcellations often
    hold a few stray islands.

    Parameters
    ----------
    graph : Graph

    Returns
    -------
    Graph
        The restricted graph (the same object's data if it was already connected).

    Examples
    --------
    >>> import numpy as np
    >>> from spectranorm_neuro.graphs import lattice_graph
    >>> mask = np.zeros((5, 5), bool); mask[:2, :2] = True; mask[4, 4] = True
    >>> largest_component(lattice_graph((5, 5), mask=mask)).n_features
    4
    """
    return subgraph_by_components(graph, [0])
