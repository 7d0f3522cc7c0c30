"""Building an :class:`EigenmodeBasis` from a graph: operator choice, block solve, provenance."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._version import __version__
from ..exceptions import InvalidInputError, bad_value
from ..graphs._checks import check_connected, check_fem_pair
from ..graphs._graph import Graph
from ..graphs._ops import structure_offsets
from ..graphs.mesh import hemisphere_graphs
from .laplacians import LAPLACIANS, laplacian_pair
from .solvers import DEFAULT_SIGMA, DENSE_MAX_NODES, check_k, solve_eigenmodes

__all__ = ["basis_from_graph", "operator_pair", "hemisphere_bases"]


def operator_pair(graph: Graph, laplacian: str = "auto"
                  ) -> tuple[str, sparse.csr_matrix, sparse.csr_matrix | None]:
    """Resolve ``laplacian`` for a graph and return its (operator, mass) pair.

    Parameters
    ----------
    graph : Graph
    laplacian : {"auto", "lbo", "combinatorial", "normalized", "random_walk"}

    Returns
    -------
    laplacian : str
        The resolved name.
    operator : scipy.sparse.csr_matrix, shape (n_features, n_features)
    mass : scipy.sparse.csr_matrix or None
    """
    if not isinstance(graph, Graph):
        raise bad_value("graph", type(graph).__name__, "is not a spectranorm_neuro.graphs.Graph",
                        "build it with an adapter (lattice_graph, fsaverage5_graph, mesh_graph ...)")
    has_fem = graph.stiffness is not None and graph.mass is not None
    if laplacian == "auto":
        laplacian = "lbo" if has_fem else "normalized"
    if laplacian not in LAPLACIANS:
        raise bad_value("laplacian", laplacian, "is not a known Laplacian",
                        f"pass one of auto, {', '.join(LAPLACIANS)}")
    if laplacian == "lbo":
        if not has_fem:
            raise bad_value("laplacian", laplacian, "needs FEM stiffness and mass but the graph has none",
                            'use a mesh adapter (mesh_graph, fsaverage5_graph) or a graph Laplacian, e.g. '
                            '"normalized"', InvalidInputError)
        a, b = check_fem_pair(graph.stiffness, graph.mass, connected=False)
        return laplacian, a, b
    if graph.adjacency is None:
        raise bad_value("laplacian", laplacian, "needs an adjacency matrix but the graph has none",
                        'use laplacian="lbo"', InvalidInputError)
    op, mass = laplacian_pair(graph.adjacency, laplacian, "graph.adjacency", connected=False)
    return laplacian, op, mass


def _blocks(graph: Graph, op: sparse.csr_matrix) -> list[tuple[str, np.ndarray]]:
    """Feature blocks to solve separately: one per structure when no edge joins structures."""
    n = op.shape[0]
    if len(graph.structures) > 1:
        offsets = structure_offsets(graph.structures)
        block = np.repeat(np.arange(len(graph.structures)), np.diff(offsets))
        coo = op.tocoo()
        if not np.any(block[coo.row] != block[coo.col]):
            return [(f"graph ({s.name})", np.arange(offsets[i], offsets[i + 1]))
                    for i, s in enumerate(graph.structures)]
    return [("graph", np.arange(n))]


def _solve_blocks(op, mass, blocks, k, sigma, n_threads):
    """Solve each block for just enough modes that the merged ``k`` smallest are exact.

    Each block first gets its share of ``k`` by Weyl's law (proportional to its area, or its
    node count without a mass matrix) plus a margin. A block whose largest computed eigenvalue
    does not exceed the merged ``k``-th eigenvalue may hide more modes below it and is solved
    again with twice as many.
    """
    subs = []
    for name, idx in blocks:
        sub_op = op[idx][:, idx]
        sub_mass = None if mass is None else mass[idx][:, idx]
        check_connected(sub_op, name)
        subs.append((sub_op, sub_mass, idx.size))
    size = np.array([s[2] if s[1] is None else s[1].sum() for s in subs], dtype=np.float64)
    cap = np.array([s[2] - 1 for s in subs])
    want = np.minimum(cap, np.ceil(k * size / size.sum() * 1.15).astype(np.int64) + 8)
    done = np.zeros(len(subs), dtype=np.int64)
    vals, vecs = [None] * len(subs), [None] * len(subs)
    while True:
        for b, (sub_op, sub_mass, _) in enumerate(subs):
            if want[b] != done[b]:
                vals[b], vecs[b] = solve_eigenmodes(sub_op, sub_mass, int(want[b]), sigma=sigma,
                                                    n_threads=n_threads)
                done[b] = want[b]
        merged = np.sort(np.concatenate(vals))
        short = done < cap
        if merged.size >= k:
            short &= np.array([v[-1] <= merged[k - 1] for v in vals])
        if not short.any():
            return vals, vecs
        want[short] = np.minimum(cap[short], 2 * done[short])


def basis_from_graph(cls, graph: Graph, n_modes: int, laplacian: str = "auto", *,
                     sigma: float | None = None, n_threads: int | None = 1):
    """Implementation of :meth:`EigenmodeBasis.from_graph` (see there)."""
    laplacian, op, mass = operator_pair(graph, laplacian)
    n = op.shape[0]
    k = check_k(n_modes, n)
    blocks = _blocks(graph, op)
    room = sum(idx.size - 1 for _, idx in blocks)
    if k > room:
        raise bad_value("n_modes", k, f"asks for more modes than the {len(blocks)} separate structures "
                        f"allow ({room} = nodes - 1 per structure)", f"pass n_modes <= {room}")
    if len(blocks) == 1:
        check_connected(op, "graph")
        evals, evecs = solve_eigenmodes(op, mass, k, sigma=sigma, n_threads=n_threads)
    else:
        vals, vecs = _solve_blocks(op, mass, blocks, k, sigma, n_threads)
        all_vals = np.concatenate(vals)
        owner = np.repeat(np.arange(len(blocks)), [v.size for v in vals])
        column = np.concatenate([np.arange(v.size) for v in vals])
        pick = np.lexsort((owner, all_vals))[:k]
        evals = all_vals[pick]
        evecs = np.zeros((n, k))
        for b, (_, idx) in enumerate(blocks):  # a handful of structures
            sel = np.flatnonzero(owner[pick] == b)
            evecs[np.ix_(idx, sel)] = vecs[b][:, column[pick[sel]]]
    prov = dict(graph.provenance)
    prov.update({
        "laplacian": laplacian, "n_modes": int(k), "package_version": __version__,
        "solver": f"scipy.linalg.eigh if n <= {DENSE_MAX_NODES} or 3 k >= n, else "
                  "scipy.sparse.linalg.eigsh shift-invert (splu)",
        "sigma": DEFAULT_SIGMA if sigma is None else float(sigma),
        "blocks": [name for name, _ in blocks],
    })
    return cls(evals, evecs, mass, prov, graph.structures)


def hemisphere_bases(n_modes: int, cortex_mask="auto", surface: str = "midthickness", laplacian: str = "auto",
                     *, n_threads: int | None = 1) -> dict:
    """Separate eigenmode bases of the two fsaverage5 hemispheres.

    Parameters
    ----------
    n_modes : int
        Modes per hemisphere.
    cortex_mask, surface : see :func:`spectranorm_neuro.graphs.fsaverage5_graph` (default: medial wall dropped)
    laplacian : str, optional
        See :meth:`EigenmodeBasis.from_graph`.
    n_threads : int or None, optional

    Returns
    -------
    dict
        ``{"left": EigenmodeBasis, "right": EigenmodeBasis}`` (structures ``CortexLeft`` and
        ``CortexRight``).
    """
    from ._core import EigenmodeBasis

    graphs = hemisphere_graphs(cortex_mask=cortex_mask, surface=surface)
    return {hemi: EigenmodeBasis.from_graph(graph, n_modes, laplacian, n_threads=n_threads)
            for hemi, graph in graphs.items()}
