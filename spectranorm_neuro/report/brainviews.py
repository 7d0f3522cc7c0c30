"""Brain-map figures: surface montages, orthogonal volume slices, lattice images, parcel bars.

Surfaces are drawn with nilearn's matplotlib surface plotting (lateral and medial views of each
hemisphere, sulcal depth as background), volumes with nilearn's ``plot_stat_map``, lattices with
``imshow``. Figures are :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas; no
pyplot state is touched.

Speed: for a closed mesh (every edge shared by two triangles, as fsaverage5 inflated) the
triangles facing away from the camera are hidden behind the others, so each view draws only the
front-facing half. The 3-D projection and depth sorting are done once per renderer: matplotlib
draws the views' triangles in colours that encode their numbers, and every montage after that is
a colour lookup per pixel on one kept figure per colour scale (pixel for pixel the picture
matplotlib's 3-D axes draw, about six times faster per map).
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..graphs import load_surface
from ._inputs import Block, hemisphere_of

__all__ = [
    "ColourScale",
    "Panel",
    "SurfaceGeometry",
    "BrainRenderer",
    "VIEW_ANGLES",
    "png_bytes",
    "fsaverage5_geometry",
    "NOT_MODELLED",
    "surface_face_colours",
]

# (elevation, azimuth) of matplotlib's 3-D camera, as nilearn uses them.
VIEW_ANGLES = {
    ("left", "lateral"): (0.0, 180.0),
    ("left", "medial"): (0.0, 0.0),
    ("right", "lateral"): (0.0, 0.0),
    ("right", "medial"): (0.0, 180.0),
}
SURFACE_ZOOM = 1.55
_VIEW_WIDTH = 2.5  # inches per view of a surface montage
DPI = 80
# Colour of surface nodes that were not modelled (medial wall): flat mid grey. The anatomy under a
# thresholded map is shaded lighter (grey levels 0.65-0.95), so the two never look alike, and every
# modelled node, zero included, gets a colour of the colour map.
NOT_MODELLED = (0.55, 0.55, 0.55, 1.0)
# Volumes (nilearn): values whose magnitude is below this are not coloured; masked voxels are 0,
# modelled voxels at exactly 0 are nudged to twice this value so they keep their colour.
_HIDE_BELOW = 1e-12
# Opacity of the data colour over the anatomy (sulcal depth) on surfaces.
_DATA_ALPHA = 0.85
# MNI152 brain bounding box (mm); volumes covering most of it get the MNI152 template as background.
_MNI_BOX = np.array([[-78.0, -112.0, -70.0], [78.0, 76.0, 86.0]])


@dataclass(frozen=True)
class ColourScale:
    """How values map to colours.

    Parameters
    ----------
    cmap : str
        Matplotlib colormap name.
    vmin, vmax : float
        Colour limits (``vmin = -vmax`` for symmetric scales).
    label : str
        Colour-bar label.
    """

    cmap: str
    vmin: float
    vmax: float
    label: str

    @property
    def symmetric(self) -> bool:
        """True when the scale is centred on zero."""
        return bool(np.isclose(self.vmin, -self.vmax))


@dataclass(frozen=True)
class Panel:
    """One rendered figure of a brain map.

    Parameters
    ----------
    key : str
        Short identifier used in file names (``surface``, ``volume-Volume`` ...).
    png : bytes
        The PNG image.
    caption : str
        Text shown under the image.
    """

    key: str
    png: bytes
    caption: str


@dataclass
class SurfaceGeometry:
    """A hemisphere mesh prepared for plotting.

    Parameters
    ----------
    name : str
        Structure name.
    hemi : {"left", "right"}
        Hemisphere, which decides what "lateral" and "medial" mean.
    vertices : numpy.ndarray, shape (n_vertices, 3)
    faces : numpy.ndarray of int, shape (n_faces, 3)
    background : numpy.ndarray, shape (n_vertices,), optional
        Background map (sulcal depth) as grey levels in [0, 1] (0 white, 1 black).
    area_vertices : numpy.ndarray, shape (n_vertices, 3), optional
        Coordinates on which areas are measured (fsaverage5: midthickness); default ``vertices``.
    """

    name: str
    hemi: str
    vertices: np.ndarray
    faces: np.ndarray
    background: np.ndarray | None = None
    area_vertices: np.ndarray | None = None
    _visible: dict = field(default_factory=dict, repr=False)

    @functools.cached_property
    def closed(self) -> bool:
        """True when every edge is shared by exactly two triangles."""
        edges = np.sort(self.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        _, counts = np.unique(edges, axis=0, return_counts=True)
        return bool(np.all(counts == 2))

    def visible_faces(self, view: str) -> np.ndarray:
        """Triangles that can be seen in ``view`` ("lateral"/"medial"), shape (n_visible, 3).

        All triangles for open meshes; for closed meshes, those whose outward normal points
        towards the camera (with a small margin so silhouettes stay whole).
        """
        if view in self._visible:
            return self._visible[view]
        faces = self.faces
        if self.closed:
            v = self.vertices
            normals = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
            centred = v[faces].mean(axis=1) - v.mean(axis=0)
            if np.sum(normals * centred) < 0:  # inward orientation: flip
                normals = -normals
            elev, azim = np.deg2rad(VIEW_ANGLES[(self.hemi, view)])
            eye = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
            lengths = np.linalg.norm(normals, axis=1)
            faces = faces[normals @ eye > -0.2 * lengths]
        self._visible[view] = faces
        return faces


def _background_levels(values: np.ndarray) -> np.ndarray:
    """Rescale a background map (sulcal depth) to darkness in [0.05, 0.35] (grey levels 0.95 to 0.65)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    unit = np.zeros_like(values) if hi <= lo else (values - lo) / (hi - lo)
    return 0.05 + 0.3 * unit


@functools.lru_cache(maxsize=2)
def fsaverage5_geometry(hemi: str) -> SurfaceGeometry:
    """The fsaverage5 inflated hemisphere with sulcal depth, from nilearn's package data (offline).

    Parameters
    ----------
    hemi : {"left", "right"}

    Returns
    -------
    SurfaceGeometry
    """
    from nilearn import datasets

    meshes = datasets.load_fsaverage("fsaverage5")
    mesh = meshes["inflated"].parts[hemi]
    sulcal = datasets.load_fsaverage_data(mesh="fsaverage5", data_type="sulcal").data.parts[hemi]
    return SurfaceGeometry(name=f"fsaverage5-{hemi}", hemi=hemi,
                           vertices=np.asarray(mesh.coordinates, dtype=np.float64),
                           faces=np.asarray(mesh.faces, dtype=np.int64),
                           background=_background_levels(np.asarray(sulcal, dtype=np.float64)),
                           area_vertices=load_surface("fsaverage5", hemi, "midthickness")[0])


def surface_face_colours(values: np.ndarray, faces: np.ndarray, background: np.ndarray | None,
                         scale: ColourScale, shown: np.ndarray | None = None) -> np.ndarray:
    """RGBA colour of every triangle of a surface map.

    A triangle with at least one modelled vertex (finite value) is coloured with the mean of its
    modelled vertices' values (zero included); a triangle with none is drawn in ``NOT_MODELLED``.
    With ``shown`` (thresholded maps), triangles with fewer than two shown vertices show the
    anatomy (sulcal depth) instead, and coloured ones average their shown vertices.

    Parameters
    ----------
    values : numpy.ndarray, shape (n_vertices,)
        The map, NaN at vertices that were not modelled.
    faces : numpy.ndarray of int, shape (n_faces, 3)
    background : numpy.ndarray, shape (n_vertices,), optional
        Darkness of the anatomy (0 white, 1 black).
    scale : ColourScale
    shown : numpy.ndarray of bool, shape (n_vertices,), optional
        Vertices to colour (suprathreshold clusters); default every modelled vertex.

    Returns
    -------
    numpy.ndarray, shape (n_faces, 4)
    """
    import matplotlib

    values = np.asarray(values, dtype=np.float64)
    modelled = np.isfinite(values)
    take = modelled if shown is None else (modelled & np.asarray(shown, dtype=bool))
    counts = take[faces].sum(axis=1)
    sums = np.where(take, values, 0.0)[faces].sum(axis=1)
    darkness = 0.2 if background is None else np.asarray(background, dtype=np.float64)[faces].mean(axis=1)
    grey = np.broadcast_to(1.0 - np.asarray(darkness, dtype=np.float64), (len(faces),))
    colours = np.column_stack([grey, grey, grey, np.ones(len(faces))])
    data = counts >= (1 if shown is None else 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums[data] / counts[data]
    mapped = matplotlib.colormaps[scale.cmap](Normalize(scale.vmin, scale.vmax, clip=True)(mean))
    colours[data, :3] = _DATA_ALPHA * mapped[:, :3] + (1 - _DATA_ALPHA) * colours[data, :3]
    colours[modelled[faces].sum(axis=1) == 0] = NOT_MODELLED
    return colours


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """Render a figure with the Agg canvas and return PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def _colourbar(fig: Figure, rect: Sequence[float], scale: ColourScale) -> None:
    cax = fig.add_axes(rect)
    bar = fig.colorbar(ScalarMappable(Normalize(scale.vmin, scale.vmax), scale.cmap), cax=cax)
    bar.set_label(scale.label, fontsize=9)
    cax.tick_params(labelsize=8)


class BrainRenderer:
    """Draw maps over the features of a report's blocks.

    Parameters
    ----------
    blocks : sequence of Block
        The structures and their feature slices.
    mesh_specs : dict
        ``{surface name: ("fsaverage5",) or (vertices, faces, background or None)}`` as returned
        by :func:`~spectranorm_neuro.report._inputs.check_surface_meshes`.
    dpi : int
        Resolution of the PNGs.
    """

    def __init__(self, blocks: Sequence[Block], mesh_specs: Mapping[str, tuple], dpi: int = DPI):
        self.blocks = tuple(blocks)
        self.dpi = dpi
        self.surfaces: list[tuple[Block, SurfaceGeometry]] = []
        for block in self.blocks:
            if block.kind != "surface":
                continue
            spec = mesh_specs[block.name]
            hemi = hemisphere_of(block.name) or "left"
            if isinstance(spec[0], str) and spec[0] == "fsaverage5":
                geometry = fsaverage5_geometry(hemi)
            else:
                vertices, faces, background = spec
                geometry = SurfaceGeometry(block.name, hemi, vertices, faces,
                                           None if background is None else _background_levels(background))
            self.surfaces.append((block, geometry))
        self._volume_bg: dict[str, object] = {}
        self._raster: tuple[np.ndarray, list] | None = None
        self._templates: dict[tuple[int, ColourScale], Figure] = {}

    def __getstate__(self) -> dict:
        """Pickled for worker processes without the kept figures (each worker builds its own)."""
        state = dict(self.__dict__)
        state["_templates"] = {}
        return state

    # ------------------------------------------------------------------ public
    def render(self, values: np.ndarray, scale: ColourScale, title: str,
               shown: np.ndarray | None = None) -> list[Panel]:
        """Draw one map.

        Parameters
        ----------
        values : numpy.ndarray, shape (n_features,)
            The map over all features (every block).
        scale : ColourScale
            Colour mapping.
        title : str
            Figure title.
        shown : numpy.ndarray of bool, shape (n_features,), optional
            Thresholded map: only these features are coloured (surfaces show the anatomy
            elsewhere, volumes the template, lattices and parcels the value 0). Default: all.

        Returns
        -------
        list of Panel
            One surface montage (all surfaces together), then one panel per volume, lattice and
            parcel block.
        """
        panels = []
        if self.surfaces:
            panels.append(Panel("surface", self._surface_montage(values, scale, title, shown),
                                "Surface: lateral and medial views"))
        if shown is not None:
            values = np.where(shown, values, 0.0)
        for block in self.blocks:
            if block.kind == "volume":
                png = self._volume_slices(block, values, scale, title, shown is not None)
                panels.append(Panel(f"volume-{block.name}", png, f"{block.name}: orthogonal slices"))
            elif block.kind == "lattice" and len(block.structure.shape or ()) == 2:
                png = self._lattice(block, values, scale, title)
                panels.append(Panel(f"lattice-{block.name}", png, f"{block.name}: lattice"))
            elif block.kind in ("lattice", "parcels"):
                png = self._profile(block, values, scale, title)
                panels.append(Panel(f"{block.kind}-{block.name}", png, f"{block.name}: {block.kind}"))
        return panels

    def surface_figure(self, values: np.ndarray, scale: ColourScale, title: str,
                       shown: np.ndarray | None = None) -> Figure:
        """The surface montage as a new Figure (2 views per surface, then a colour bar).

        Colours come from :func:`surface_face_colours`: every modelled vertex is coloured,
        ``NOT_MODELLED`` grey marks only what was not modelled. The views are one image placed
        pixel for pixel (``figimage``): render the figure at its own ``dpi`` (the renderer's). Its
        hidden 3-D axes (one per view) hold the camera of each view.
        """
        fig = self._montage_template(scale)
        self._paint(fig, values, scale, title, shown)
        return fig

    # ------------------------------------------------------------------ surfaces
    def _views(self) -> list[tuple[Block, SurfaceGeometry, str]]:
        return [(block, geom, view) for block, geom in self.surfaces for view in ("lateral", "medial")]

    def _figsize(self) -> tuple[float, float]:
        return (_VIEW_WIDTH * len(self._views()) + 1.1, 2.45)

    def _view_axes(self, fig: Figure, i: int, geom: SurfaceGeometry, view: str, zlim=None):
        """The 3-D axes of view ``i`` with the camera of ``(geom.hemi, view)``."""
        total = self._figsize()[0]
        ax = fig.add_axes((i * _VIEW_WIDTH / total, 0.0, _VIEW_WIDTH / total, 0.9), projection="3d")
        coords = geom.vertices - geom.vertices.mean(axis=0)
        limits = (coords.min(), coords.max())
        ax.set_xlim(*limits)
        ax.set_ylim(*limits)
        if zlim is not None:
            ax.set_zlim(*zlim)
        ax.view_init(*VIEW_ANGLES[(geom.hemi, view)])
        ax.set_axis_off()
        ax.set_box_aspect(None, zoom=SURFACE_ZOOM)
        return ax, coords

    def _face_image(self) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Which visible triangle covers each pixel of the montage, computed once per renderer.

        Every view's front-facing triangles are drawn once by matplotlib's 3-D axes (depth-sorted
        as for a coloured map) in colours that encode their number; the Agg image read back is
        the map from pixels to triangles that every montage then reuses, so a map costs one
        colour lookup per pixel instead of projecting and sorting the mesh again.

        Returns
        -------
        index : numpy.ndarray of int, shape (height, width)
            Position of the triangle in the views' visible triangles laid end to end, -1 for none.
        zlims : list of (float, float)
            The z limits matplotlib chose for each view (the hidden axes of the montages reuse them).
        """
        if self._raster is not None:
            return self._raster
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        fig = Figure(figsize=self._figsize(), dpi=self.dpi)
        offset, zlims = 0, []
        for i, (_, geom, view) in enumerate(self._views()):
            ax, coords = self._view_axes(fig, i, geom, view)
            faces = geom.visible_faces(view)
            code = offset + 1 + np.arange(len(faces))  # 0 (white background) is no triangle
            rgb = np.column_stack([(code >> 16) & 255, (code >> 8) & 255, code & 255]) / 255.0
            colours = np.column_stack([rgb, np.ones(len(faces))])
            collection = ax.plot_trisurf(coords[:, 0], coords[:, 1], coords[:, 2], triangles=faces,
                                         linewidth=0.1, antialiased=False, color="white")
            collection.set_facecolors(colours)
            collection.set_edgecolors(colours)
            zlims.append(ax.get_zlim())
            offset += len(faces)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(np.int64)
        code = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
        index = np.where((code >= 1) & (code <= offset), code - 1, -1).astype(np.int32)
        self._raster = (index, zlims)
        return self._raster

    def _montage_template(self, scale: ColourScale) -> Figure:
        """A montage figure without a map: hidden view axes, view labels, colour bar, empty image."""
        _, zlims = self._face_image()
        total = self._figsize()[0]
        fig = Figure(figsize=self._figsize(), dpi=self.dpi)
        for i, (_, geom, view) in enumerate(self._views()):
            ax, _ = self._view_axes(fig, i, geom, view, zlims[i])
            ax.apply_aspect()
            ax.set_visible(False)
            fig.text((i + 0.5) * _VIEW_WIDTH / total, 0.018, f"{geom.hemi} {view}", ha="center", va="bottom",
                     fontsize=8, color="0.35")
        _colourbar(fig, (1 - 0.85 / total, 0.12, 0.12 / total, 0.68), scale)
        index = self._raster[0]
        fig.figimage(np.full((*index.shape, 4), 255, dtype=np.uint8), xo=0, yo=0, origin="upper", zorder=-1)
        return fig

    def _paint(self, fig: Figure, values: np.ndarray, scale: ColourScale, title: str,
               shown: np.ndarray | None) -> None:
        """Colour the montage ``fig`` (from :meth:`_montage_template` with ``scale``) with one map."""
        index, _ = self._face_image()
        colours = []
        for block, geom, view in self._views():
            full_shown = None if shown is None else block.to_full(shown.astype(np.float64)) == 1.0
            colours.append(surface_face_colours(block.to_full(values), geom.visible_faces(view), geom.background,
                                                scale, full_shown))
        colours.append(np.ones((1, 4)))  # index -1 (no triangle): white
        table = np.round(255 * np.concatenate(colours)).astype(np.uint8)
        fig.images[0].set_data(table[index])
        fig.suptitle(title, fontsize=10, y=0.985)  # replaces the figure's title

    # ------------------------------------------------------------------ kinds
    def _surface_montage(self, values: np.ndarray, scale: ColourScale, title: str,
                         shown: np.ndarray | None) -> bytes:
        """PNG of the montage, drawn on one figure per colour scale (and thread) that is kept and repainted."""
        key = (threading.get_ident(), scale)  # a thread backend must not repaint another thread's figure
        if key not in self._templates:
            self._templates[key] = self._montage_template(scale)
        fig = self._templates[key]
        self._paint(fig, values, scale, title, shown)
        return png_bytes(fig, self.dpi)

    def volume_background(self, block: Block):
        """Background image of a volume block: MNI152 template if the grid covers it, else the mask."""
        import nibabel as nib

        if block.name not in self._volume_bg:
            s = block.structure
            shape = np.asarray(s.shape)
            corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                                for k in (0, shape[2] - 1)], dtype=np.float64)
            world = corners @ np.asarray(s.affine)[:3, :3].T + np.asarray(s.affine)[:3, 3]
            lo = np.maximum(world.min(axis=0), _MNI_BOX[0])
            hi = np.minimum(world.max(axis=0), _MNI_BOX[1])
            overlap = np.prod(np.clip(hi - lo, 0, None)) / np.prod(_MNI_BOX[1] - _MNI_BOX[0])
            if overlap >= 0.5:
                from nilearn import datasets

                self._volume_bg[block.name] = datasets.load_mni152_template(resolution=2)
            else:
                mask = np.zeros(s.n_total, dtype=np.float32)
                mask[s.index] = 1.0
                self._volume_bg[block.name] = nib.Nifti1Image(mask.reshape(s.shape), np.asarray(s.affine))
        return self._volume_bg[block.name]

    def _volume_slices(self, block: Block, values: np.ndarray, scale: ColourScale, title: str,
                       thresholded: bool = False) -> bytes:
        import nibabel as nib
        from nilearn import plotting

        s = block.structure
        full = np.nan_to_num(block.to_full(values), nan=0.0)
        if not thresholded:  # modelled voxels at 0 keep their colour; only unmodelled ones are hidden
            kept = full[s.index]
            full[s.index] = np.where(np.abs(kept) < _HIDE_BELOW, 2 * _HIDE_BELOW, kept)
        peak = int(np.argmax(np.abs(full))) if np.any(full) else int(s.index[len(s.index) // 2])
        ijk = np.array(np.unravel_index(peak, s.shape), dtype=np.float64)
        affine = np.asarray(s.affine, dtype=np.float64)
        cut = tuple(float(c) for c in affine[:3, :3] @ ijk + affine[:3, 3])
        img = nib.Nifti1Image(full.reshape(s.shape).astype(np.float32), affine)
        fig = Figure(figsize=(7.5, 2.6))
        plotting.plot_stat_map(
            img, bg_img=self.volume_background(block), cut_coords=cut, display_mode="ortho",
            figure=fig, colorbar=True, cmap=scale.cmap, vmin=scale.vmin, vmax=scale.vmax,
            symmetric_cbar=scale.symmetric, threshold=_HIDE_BELOW, draw_cross=False,
            black_bg=False, title=title, annotate=True)
        return png_bytes(fig, self.dpi)

    def _lattice(self, block: Block, values: np.ndarray, scale: ColourScale, title: str) -> bytes:
        import matplotlib

        grid = block.to_full(values).reshape(block.structure.shape)
        fig = Figure(figsize=(4.2, 3.4))
        ax = fig.add_axes((0.06, 0.06, 0.68, 0.82))
        cmap = matplotlib.colormaps[scale.cmap].with_extremes(bad="0.85")
        ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=scale.vmin, vmax=scale.vmax,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=10)
        _colourbar(fig, (0.8, 0.12, 0.04, 0.7), scale)
        return png_bytes(fig, self.dpi)

    def _profile(self, block: Block, values: np.ndarray, scale: ColourScale, title: str) -> bytes:
        """Values against node index: bars for up to 400 nodes (parcels), a line for more."""
        import matplotlib

        data = np.asarray(values[block.start:block.stop], dtype=np.float64)
        index = np.asarray(block.structure.index)
        fig = Figure(figsize=(7.5, 2.6))
        ax = fig.add_axes((0.08, 0.18, 0.78, 0.7))
        if data.size <= 400:
            colours = matplotlib.colormaps[scale.cmap](Normalize(scale.vmin, scale.vmax)(data))
            ax.bar(index, data, color=colours, width=1.0)
        else:
            ax.plot(index, data, color="#2b5d9b", lw=0.6)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_xlim(-0.5, block.structure.n_total - 0.5)
        ax.set_xlabel("parcel" if block.kind == "parcels" else "node", fontsize=9)
        ax.set_ylabel(scale.label, fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        _colourbar(fig, (0.9, 0.18, 0.02, 0.7), scale)
        return png_bytes(fig, self.dpi)
