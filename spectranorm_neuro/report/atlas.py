"""Atlas regions for a report, from parcellations read by :func:`spectranorm_neuro.io.read_labels`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..exceptions import ShapeMismatchError, bad_value
from ..graphs import Structure
from ._inputs import hemisphere_of

__all__ = ["atlas_for_report"]


def atlas_for_report(parts: Sequence[tuple[Any, Mapping[int, str] | None]],
                     structures: Sequence[Structure], ignore: Sequence[int] = (0, -1)
                     ) -> tuple[np.ndarray, dict[int, str]]:
    """Combine per-structure parcellations into the ``atlas_labels`` of :func:`generate_report`.

    Parameters
    ----------
    parts : sequence of (labels, names)
        One entry per structure, in the basis' order, as returned by
        :func:`~spectranorm_neuro.io.read_labels`: ``labels`` of shape (n_features,) (the
        structure's kept nodes, ``read_labels(path, graph)``) or (n_total,) (every node of the
        structure), ``names`` a dict label -> region name (or None).
    structures : sequence of Structure
        The basis' structures (``basis.structures``).
    ignore : sequence of int
        Label values meaning "no region" (FreeSurfer: 0 unknown/medial wall, -1 none).

    Returns
    -------
    labels : numpy.ndarray of int64, shape (n_features,)
        Region code of every feature over all structures, ``-1`` where unlabelled; codes of
        different structures never collide.
    names : dict of int to str
        Code -> region name; with several hemispheres the name is prefixed ``lh.``/``rh.``.
    """
    structures = tuple(structures)
    if len(parts) != len(structures):
        raise bad_value("atlas", f"{len(parts)} parcellation(s)",
                        f"do not match the {len(structures)} structures {[s.name for s in structures]}",
                        "pass one (labels, names) per structure, in the basis' order", ShapeMismatchError)
    codes, names, offset = [], {}, 0
    for (labels, part_names), s in zip(parts, structures):
        arr = np.asarray(labels)
        if arr.ndim != 1 or arr.size not in (s.n_features, s.n_total) or arr.dtype.kind not in "iu":
            raise bad_value("atlas", f"labels of shape {arr.shape} and dtype {arr.dtype} for {s.name}",
                            f"are not integer labels of its {s.n_features} kept or {s.n_total} nodes",
                            "read the atlas with io.read_labels(path, graph) for this structure",
                            ShapeMismatchError)
        arr = arr.astype(np.int64)
        if arr.size == s.n_total and s.n_total != s.n_features:
            arr = arr[np.asarray(s.index)]
        values = [int(v) for v in np.unique(arr) if int(v) not in set(ignore)]
        lookup = {v: offset + k for k, v in enumerate(values)}
        out = np.full(arr.size, -1, dtype=np.int64)
        for v, code in lookup.items():
            out[arr == v] = code
        hemi = hemisphere_of(s.name)
        prefix = "" if len(structures) == 1 else (f"{hemi[0]}h." if hemi else f"{s.name}.")
        for v, code in lookup.items():
            names[code] = prefix + str((part_names or {}).get(v, v))
        codes.append(out)
        offset += len(values)
    return np.concatenate(codes), names
