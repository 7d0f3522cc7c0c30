"""Optional interactive pages per subject: nilearn ``view_surf`` (surfaces) and ``view_img`` (volumes).

These pages embed their JavaScript (nilearn inlines it), so they open offline; they are separate
from the main report, which has no script at all. nilearn's link to a remote favicon is removed.
"""

from __future__ import annotations

import re

import numpy as np

from .brainviews import BrainRenderer, ColourScale

__all__ = ["interactive_pages"]

_FAVICON = re.compile(r"<link[^>]*rel=\"icon\"[^>]*>", re.IGNORECASE | re.DOTALL)


def _strip_remote(html: str) -> str:
    return _FAVICON.sub("", html)


def interactive_pages(renderer: BrainRenderer, values: np.ndarray, scale: ColourScale,
                      title: str) -> list[tuple[str, str]]:
    """Standalone interactive HTML views of one map.

    Parameters
    ----------
    renderer : BrainRenderer
        Holds the blocks and surface geometries.
    values : numpy.ndarray, shape (n_features,)
        The map over all features.
    scale : ColourScale
        Colour mapping (``vmax`` is used, symmetric).
    title : str
        Page title prefix.

    Returns
    -------
    list of (str, str)
        ``(structure name, HTML document)`` for every surface and volume structure.
    """
    import nibabel as nib
    from nilearn import plotting

    pages = []
    for block, geom in renderer.surfaces:
        full = np.nan_to_num(block.to_full(values), nan=0.0)
        view = plotting.view_surf((geom.vertices.copy(), geom.faces), full, bg_map=geom.background,
                                  hemi=geom.hemi, threshold=None, cmap=scale.cmap, vmax=scale.vmax,
                                  symmetric_cmap=scale.symmetric, bg_on_data=geom.background is not None,
                                  title=f"{title} — {block.name}", title_fontsize=14)
        pages.append((block.name, _strip_remote(view.get_standalone())))
    for block in renderer.blocks:
        if block.kind != "volume":
            continue
        s = block.structure
        full = np.nan_to_num(block.to_full(values), nan=0.0).reshape(s.shape).astype(np.float32)
        img = nib.Nifti1Image(full, np.asarray(s.affine, dtype=np.float64))
        view = plotting.view_img(img, bg_img=renderer.volume_background(block), threshold=1e-12,
                                 cmap=scale.cmap, vmax=scale.vmax, symmetric_cmap=scale.symmetric,
                                 title=f"{title} — {block.name}", black_bg=False)
        pages.append((block.name, _strip_remote(view.get_standalone())))
    return pages
