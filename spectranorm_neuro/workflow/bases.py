"""The eigenmode basis of a template: a surface mesh (or fsaverage5), a NIfTI mask or a lattice.

Surfaces drop the medial wall by default wherever a cortex mask is known: nilearn's fsaverage5
(its offline mask) and FreeSurfer subjects (``<subject>/label/{lh,rh}.cortex.label`` next to
``<subject>/surf/{lh,rh}.<surface>``); ``cortex_mask="none"`` keeps every vertex. Provenance
records file names, never local paths.

:func:`make_basis` is what ``spectranorm-neuro basis`` computes; :func:`save_basis_file` writes it
(refusing to replace anything but an earlier basis file unless asked).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

from ..basis import EigenmodeBasis
from ..exceptions import OutputExistsError, SpectraNormError, UsageError, bad_value
from ..io import normalize_entities
from .output import os_errors

__all__ = ["make_graph", "make_basis", "check_basis_target", "save_basis_file", "known_cortex_label"]


def known_cortex_label(surface: str | os.PathLike) -> Path | None:
    """The FreeSurfer cortex label of a surface file, if there is one (``../label/<hemi>.cortex.label``)."""
    path = Path(surface)
    prefix = path.name.split(".")[0]
    if prefix not in ("lh", "rh") or path.parent.name != "surf":
        return None
    label = path.parent.parent / "label" / f"{prefix}.cortex.label"
    return label if label.is_file() else None


def _mesh_graph(sources: list, hemi: str, cortex_mask: str | Sequence[str] | None, surface: str):
    from ..graphs import fsaverage5_graph, load_surface, merge_graphs, mesh_graph

    keep_all = cortex_mask in (None, "none")
    if sources == ["fsaverage5"]:
        return fsaverage5_graph(hemi, cortex_mask=None if keep_all else cortex_mask, surface=surface)
    hemis = ["left", "right"] if hemi == "both" else [hemi]
    if len(sources) != len(hemis):
        raise UsageError(f"--hemi {hemi} needs {len(hemis)} surface file(s) after --mesh (left first), got "
                         f"{len(sources)}: {sources}")
    if keep_all:
        masks: list = [None] * len(hemis)
    elif cortex_mask == "auto":  # the medial wall is dropped where a cortex mask is known
        masks = [known_cortex_label(src) for src in sources]
    else:
        masks = cortex_mask.split(",") if isinstance(cortex_mask, str) else list(cortex_mask)
        if len(masks) != len(hemis):
            raise UsageError(f"--cortex-mask {cortex_mask!r} needs {len(hemis)} comma-separated label file(s), "
                             "left first")
    graphs = []
    for src, side, mask in zip(sources, hemis, masks):
        v, f = load_surface(src)
        graphs.append(mesh_graph(v, f, cortex_mask=None if mask is None else str(mask),
                                 name="CortexLeft" if side == "left" else "CortexRight",
                                 provenance={"source": Path(src).name, "hemi": side,
                                             "cortex_mask": None if mask is None else Path(mask).name}))
    return graphs[0] if len(graphs) == 1 else merge_graphs(graphs)


def make_graph(mesh: Sequence[str | os.PathLike] | None = None, mask: str | os.PathLike | None = None,
               lattice: Sequence[int] | None = None, *, hemi: str = "both",
               cortex_mask: str | Sequence[str] | None = "auto", surface: str = "midthickness",
               connectivity: int | None = None):
    """The graph of a template: exactly one of ``mesh``, ``mask`` or ``lattice``.

    Parameters
    ----------
    mesh : sequence of path-like, optional
        ``["fsaverage5"]`` (offline), or GIFTI/FreeSurfer surface file(s), left first.
    mask : path-like, optional
        NIfTI mask: a voxel graph over its non-zero voxels.
    lattice : sequence of int, optional
        Grid shape (2 or 3 sizes).
    hemi : {"left", "right", "both"}, optional
    cortex_mask : str or sequence of str, optional
        ``"auto"`` (default): the medial wall is dropped where a cortex mask is known (fsaverage5's;
        a FreeSurfer surface's ``<subject>/label/?h.cortex.label``, see :func:`known_cortex_label`);
        ``"none"``/None: every vertex; or label file(s), left first.
    surface : str, optional
        fsaverage5 surface.
    connectivity : int, optional
        Voxel/lattice neighbourhood.

    Returns
    -------
    Graph
    """
    from ..graphs import from_nifti_mask, lattice_graph

    given = [name for name, value in (("--mesh", mesh), ("--mask", mask), ("--lattice", lattice)) if value]
    if len(given) != 1:
        raise UsageError(f"name exactly one template with --mesh, --mask or --lattice (got {given or 'none'})")
    if mesh:
        return _mesh_graph([str(m) for m in mesh], hemi, cortex_mask, surface)
    if mask:
        return from_nifti_mask(mask, connectivity=connectivity or 6)
    return lattice_graph(tuple(lattice), connectivity=connectivity)


def make_basis(n_modes: int, mesh=None, mask=None, lattice=None, *, laplacian: str = "auto",
               space: str | None = None, den: str | None = None, res: str | None = None, **graph_options
               ) -> EigenmodeBasis:
    """Compute the eigenmode basis of a template (what ``spectranorm-neuro basis`` does).

    Parameters
    ----------
    n_modes : int
        Modes in all (over both hemispheres of a two-hemisphere mesh).
    mesh, mask, lattice, **graph_options :
        The template, see :func:`make_graph`.
    laplacian : str, optional
        ``"auto"`` (Laplace-Beltrami for meshes, normalized graph Laplacian otherwise) or an operator name.
    space, den, res : str, optional
        BIDS template entities recorded in the basis' provenance.

    Returns
    -------
    EigenmodeBasis
    """
    graph = make_graph(mesh, mask, lattice, **graph_options)
    basis = EigenmodeBasis.from_graph(graph, n_modes, laplacian)
    ents = {k: v for k, v in (("space", space), ("den", den), ("res", res)) if v}
    if ents:
        basis.provenance.update(normalize_entities(ents))
    return basis


def check_basis_target(path: str | os.PathLike, overwrite: bool, argument: str = "--out") -> Path:
    """Check where a basis file will be written, before computing it.

    An existing file is replaced only with ``overwrite``, and only if it is a basis file.

    Returns
    -------
    pathlib.Path
    """
    from ..basis import read_metadata

    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise bad_value(argument, str(path), "already exists", "choose another output path or pass --overwrite",
                            OutputExistsError)
        try:
            read_metadata(path)
        except (SpectraNormError, ValueError, KeyError, OSError, zipfile.BadZipFile):
            raise bad_value(argument, str(path), "is not a basis file written by spectranorm_neuro, so it is not "
                            "replaced even with --overwrite", "choose another output path", OutputExistsError) from None
    return path


def save_basis_file(basis: EigenmodeBasis, path: str | os.PathLike, overwrite: bool = False,
                    argument: str = "--out") -> Path:
    """Write a basis file atomically (see :func:`check_basis_target`); OS errors name ``argument``.

    Returns
    -------
    pathlib.Path
    """
    path = check_basis_target(path, overwrite, argument)
    with os_errors(path, argument):
        return basis.save(path, overwrite=overwrite)
