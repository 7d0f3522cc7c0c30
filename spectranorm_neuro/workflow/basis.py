"""The graph and eigenmode basis the ``basis`` command builds, with the medial wall dropped by default.

Surfaces drop the medial wall whenever a cortex mask is known: nilearn's fsaverage5 (its offline
mask, :func:`spectranorm_neuro.graphs.fsaverage5_cortex_mask`) and FreeSurfer subjects
(``<subject>/label/{lh,rh}.cortex.label`` next to ``<subject>/surf/{lh,rh}.<surface>``). Pass
``cortex_mask="none"`` to keep every vertex.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..exceptions import UsageError

__all__ = ["basis_graph", "make_basis", "known_cortex_label"]


def known_cortex_label(surface: str | os.PathLike) -> Path | None:
    """The FreeSurfer cortex label of a surface file, if there is one (``../label/<hemi>.cortex.label``)."""
    path = Path(surface)
    prefix = path.name.split(".")[0]
    if prefix not in ("lh", "rh") or path.parent.name != "surf":
        return None
    label = path.parent.parent / "label" / f"{prefix}.cortex.label"
    return label if label.is_file() else None


def basis_graph(*, mesh: Sequence[str] | None = None, mask: str | os.PathLike | None = None,
                lattice: Sequence[int] | None = None, hemi: str = "both", cortex_mask: str | None = "auto",
                surface: str = "midthickness", connectivity: int | None = None):
    """The graph described by the ``basis`` command's options.

    Parameters
    ----------
    mesh : sequence of str, optional
        ``["fsaverage5"]``, or one surface file per hemisphere (left first with ``hemi="both"``).
    mask : path-like, optional
        NIfTI mask (voxel graph over its non-zero voxels).
    lattice : sequence of int, optional
        Grid shape.
    hemi : {"left", "right", "both"}
    cortex_mask : str or None, optional
        ``"auto"`` (default): the known cortex mask (fsaverage5's, or each FreeSurfer surface's
        ``label/?h.cortex.label``; every vertex when none is known); ``"none"``/None: every vertex;
        else label file(s), comma-separated, left first.
    surface : str, optional
        fsaverage5 surface.
    connectivity : int, optional
        Voxel/lattice neighbourhood.

    Returns
    -------
    Graph
    """
    from ..graphs import from_nifti_mask, fsaverage5_graph, lattice_graph, load_surface, merge_graphs, mesh_graph

    keep_all = cortex_mask in (None, "none")
    if mesh:
        sources = list(mesh)
        if sources == ["fsaverage5"]:
            return fsaverage5_graph(hemi, cortex_mask=None if keep_all else cortex_mask, surface=surface)
        hemis = ["left", "right"] if hemi == "both" else [hemi]
        if len(sources) != len(hemis):
            raise UsageError(f"--hemi {hemi} needs {len(hemis)} surface file(s) after --mesh "
                             f"(left first), got {len(sources)}: {sources}")
        if keep_all:
            masks: list = [None] * len(hemis)
        elif cortex_mask == "auto":
            masks = [known_cortex_label(src) for src in sources]
        else:
            masks = str(cortex_mask).split(",")
            if len(masks) != len(hemis):
                raise UsageError(f"--cortex-mask {cortex_mask!r} needs {len(hemis)} comma-separated label file(s), "
                                 "left first")
        graphs = []
        for src, side, label in zip(sources, hemis, masks):
            v, f = load_surface(src)
            graphs.append(mesh_graph(v, f, cortex_mask=None if label is None else str(label),
                                     name="CortexLeft" if side == "left" else "CortexRight",
                                     provenance={"source": Path(src).name, "hemi": side,
                                                 "cortex_mask": None if label is None else Path(label).name}))
        return graphs[0] if len(graphs) == 1 else merge_graphs(graphs)
    if mask:
        return from_nifti_mask(mask, connectivity=connectivity or 6)
    return lattice_graph(tuple(lattice), connectivity=connectivity)


def make_basis(n_modes: int, laplacian: str = "auto", entities: Mapping[str, str] | None = None, **graph_options):
    """Build the basis of :func:`basis_graph` (``graph_options``) with ``n_modes`` modes in all.

    Parameters
    ----------
    n_modes : int
        Total number of modes (over both hemispheres for a two-hemisphere mesh).
    laplacian : str, optional
    entities : mapping, optional
        BIDS template entities recorded in the basis (``space``, ``den``, ``res``).
    **graph_options
        See :func:`basis_graph`.

    Returns
    -------
    EigenmodeBasis
    """
    from ..basis import EigenmodeBasis
    from ..io import normalize_entities

    basis = EigenmodeBasis.from_graph(basis_graph(**graph_options), n_modes, laplacian)
    ents = {k: v for k, v in (entities or {}).items() if v}
    if ents:
        basis.provenance.update(dict(normalize_entities(ents)))
    return basis
