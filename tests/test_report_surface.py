"""Surface reports on fsaverage5 (nilearn package data, offline) and on a user-given mesh.

The planted-deviation tests project the patch centre through the 3-D axes' camera and check that
the coloured pixels of the rendered PNG sit there, in the right view and nowhere else.
"""

from __future__ import annotations

import base64
import io

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from mpl_toolkits.mplot3d import proj3d

from spectranorm_neuro.graphs import Structure
from spectranorm_neuro.report import _inputs as checks
from spectranorm_neuro.report import generate_report
from spectranorm_neuro.report.brainviews import BrainRenderer, ColourScale, fsaverage5_geometry, png_bytes

from .test_report_render import SECTIONS, check_self_contained, parse

N = 10242


def hemispheres(index_left=None, index_right=None):
    return (Structure("CortexLeft", "surface", N, np.arange(N) if index_left is None else index_left),
            Structure("CortexRight", "surface", N, np.arange(N) if index_right is None else index_right))


def patch_around(vertices, centre, radius):
    return np.flatnonzero(np.linalg.norm(vertices - vertices[centre], axis=1) < radius)


def coloured_pixels(png, colour):
    img = mpimg.imread(io.BytesIO(png))[..., :3]
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    if colour == "red":
        mask = (r > 0.4) & (r - g > 0.25) & (r - b > 0.2)
    else:
        mask = (b > 0.35) & (b - r > 0.2) & (b - g > 0.05)
    return np.argwhere(mask)  # (row, col)


def projected_pixel(fig, ax, point):
    """Pixel (row, col) of a 3-D point (nilearn centres the mesh) after the last draw."""
    x, y, _ = proj3d.proj_transform(point[0], point[1], point[2], ax.get_proj())
    px, py = ax.transData.transform((x, y))
    height = fig.bbox.height
    return np.array([height - py, px])


@pytest.mark.slow
def test_planted_patches_appear_where_planted():
    blocks = checks.resolve_blocks(None, hemispheres(), 2 * N)
    renderer = BrainRenderer(blocks, checks.check_surface_meshes(blocks, None))
    left, right = fsaverage5_geometry("left"), fsaverage5_geometry("right")
    lateral_left = int(np.argmin(left.vertices[:, 0]))  # most lateral point of the left hemisphere
    medial_right = int(np.argmin(right.vertices[:, 0]))  # most medial point of the right hemisphere
    z = np.zeros(2 * N)
    z[patch_around(left.vertices, lateral_left, 15.0)] = 6.0
    z[N + patch_around(right.vertices, medial_right, 15.0)] = -6.0
    fig = renderer.surface_figure(z, ColourScale("RdBu_r", -6, 6, "z"), "planted")
    png = png_bytes(fig, dpi=fig.dpi)
    axes = [ax for ax in fig.axes if ax.name == "3d"]
    assert len(axes) == 4  # left lateral, left medial, right lateral, right medial

    def panel_of(pixels):
        return np.searchsorted([ax.get_window_extent().x1 for ax in axes], pixels[:, 1])

    red, blue = coloured_pixels(png, "red"), coloured_pixels(png, "blue")
    assert len(red) > 100 and len(blue) > 100
    red = red[red[:, 1] < axes[-1].get_window_extent().x1]  # ignore the colour bar
    blue = blue[blue[:, 1] < axes[-1].get_window_extent().x1]
    assert np.mean(panel_of(red) == 0) > 0.95  # the positive patch: left lateral view only
    assert np.mean(panel_of(blue) == 3) > 0.95  # the negative patch: right medial view only
    centre_red = projected_pixel(fig, axes[0], left.vertices[lateral_left] - left.vertices.mean(axis=0))
    centre_blue = projected_pixel(fig, axes[3], right.vertices[medial_right] - right.vertices.mean(axis=0))
    assert np.linalg.norm(red.mean(axis=0) - centre_red) < 12
    assert np.linalg.norm(blue.mean(axis=0) - centre_blue) < 12


@pytest.mark.slow
def test_fsaverage5_report_with_masked_medial_wall(tmp_path):
    rng = np.random.default_rng(8)
    keep_left = np.sort(rng.choice(N, N - 600, replace=False))
    keep_right = np.sort(rng.choice(N, N - 400, replace=False))
    structures = hemispheres(keep_left, keep_right)
    n_features = keep_left.size + keep_right.size
    z = rng.normal(size=(3, n_features))
    left = fsaverage5_geometry("left")
    patch = np.isin(keep_left, patch_around(left.vertices, int(np.argmin(left.vertices[:, 0])), 20.0))
    z[1, :keep_left.size][patch] += 5.0
    atlas = np.where(np.arange(n_features) < keep_left.size, "left-", "right-").astype(object) \
        + (np.arange(n_features) % 3).astype(str)
    atlas[:keep_left.size][patch] = "planted"
    subjects = pd.DataFrame({"age": [30.0, 50.0, 70.0]}, index=["a", "b", "c"])
    index = generate_report(tmp_path / "rep", z, subjects, None, structures=structures, atlas_labels=atlas,
                            progress=False)
    p = parse(index)
    for section in SECTIONS:
        assert section in p.ids
    check_self_contained(p, index.parent, index.parent)
    keys = {img["data-figure"] for img in p.images}
    assert {"group-all-mean-z-surface", "group-all-frac-extreme-surface", "subjects/b-zmap-surface"} <= keys
    top = [r for r in p.tables["subject-b-parcels"] if r and r[0][1].get("scope") == "row"]
    assert top[0][0][0] == "planted"
    assert float(top[0][2][1]["data-value"]) == pytest.approx(np.abs(z[1, :keep_left.size][patch]).mean())
    structures_rows = {r[0][0]: r for r in p.tables["structures"] if r and r[0][1].get("scope") == "row"}
    assert structures_rows["CortexLeft"][2][0] == f"{keep_left.size:,}"
    png = base64.b64decode(next(i["src"] for i in p.images if i["data-figure"] == "subjects/b-zmap-surface")
                           .split(",", 1)[1])
    assert len(coloured_pixels(png, "red")) > 100


def octasphere(levels=3):
    """A closed, outward-oriented sphere: the octahedron subdivided ``levels`` times."""
    v = [np.array(p, float) for p in [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]]
    f = [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    for _ in range(levels):
        cache, new = {}, []

        def mid(a, b, cache=cache):
            key = (min(a, b), max(a, b))
            if key not in cache:
                point = v[a] + v[b]
                v.append(point / np.linalg.norm(point))
                cache[key] = len(v) - 1
            return cache[key]

        for a, b, c in f:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        f = new
    return 50 * np.array(v), np.array(f)


def test_user_mesh_with_background(tmp_path):
    vertices, faces = octasphere()
    n = len(vertices)
    structures = (Structure("CortexLeft", "surface", n, np.arange(n)),)
    z = np.zeros((2, n))
    z[0, vertices[:, 0] < -40] = 5.0  # the lateral cap of a left "hemisphere"
    background = vertices[:, 2]
    index = generate_report(tmp_path / "rep", z, None, None, structures=structures,
                            meshes={"CortexLeft": (vertices, faces, background)}, progress=False)
    png = (index.parent / "figures" / "subjects" / "sub-001-zmap-surface.png").read_bytes()
    width = mpimg.imread(io.BytesIO(png)).shape[1]
    red = coloured_pixels(png, "red")
    red = red[red[:, 1] < 0.8 * width]  # not the colour bar
    assert len(red) > 50
    assert np.mean(red[:, 1] < 0.45 * width) > 0.95  # first of the two views (lateral)
    pattern = r"meshes=\[\]: has no mesh for surface 'CortexLeft' \(258 vertices\)"
    with pytest.raises(ValueError, match=pattern):
        generate_report(tmp_path / "other", z, None, None, structures=structures, progress=False)


def test_kept_montage_draws_each_map_as_a_new_figure_would():
    """Montages are repainted on a kept figure (one 3-D draw per renderer): the PNGs equal fresh figures'."""
    vertices, faces = octasphere()
    n = len(vertices)
    structures = (Structure("CortexLeft", "surface", n, np.arange(n)),)
    blocks = checks.resolve_blocks(None, structures, n)
    renderer = BrainRenderer(blocks, {"CortexLeft": (vertices, faces, vertices[:, 2])})
    scale = ColourScale("RdBu_r", -3, 3, "z")
    maps = [np.where(vertices[:, 0] < -40, 3.0, 0.0), vertices[:, 1] / 25, -vertices[:, 2] / 25]
    shown = np.abs(maps[1]) > 1
    drawn = [renderer.render(m, scale, f"map {i}", shown if i == 1 else None)[0].png for i, m in enumerate(maps)]
    fresh = [png_bytes(renderer.surface_figure(m, scale, f"map {i}", shown if i == 1 else None), renderer.dpi)
             for i, m in enumerate(maps)]
    pixels = [mpimg.imread(io.BytesIO(p)) for p in drawn + fresh]
    for i in range(3):
        np.testing.assert_array_equal(pixels[i], pixels[3 + i])
    assert not np.array_equal(pixels[0], pixels[1])  # the maps differ, so the kept figure was repainted
    # the colours are the map's: the first map's cap is red on the lateral (first) view only
    width = pixels[0].shape[1]
    red = coloured_pixels(drawn[0], "red")
    red = red[red[:, 1] < 0.8 * width]  # not the colour bar
    assert len(red) > 50 and np.mean(red[:, 1] < 0.45 * width) > 0.95
