"""Issue 18: what a deviation report shows agrees with its tables.

* a subject's star on its centile chart sits at the centile printed in its table, recomputed from
  the curves actually drawn (within 1 centile point), for women as for men;
* every modelled vertex is coloured, zero included; only unmodelled vertices get ``NOT_MODELLED``;
* the calibration counts only the control subjects, and pages say each subject's group;
* thresholded maps keep clusters by their area on the mesh; atlas regions name them;
* the model card is readable (no reprs, hashes shortened); the QQ plot reaches the extremes.
"""

from __future__ import annotations

import io

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.graphs import Structure
from spectranorm_neuro.report import generate_report
from spectranorm_neuro.report._inputs import resolve_blocks
from spectranorm_neuro.report.brainviews import (
    NOT_MODELLED,
    BrainRenderer,
    ColourScale,
    png_bytes,
    surface_face_colours,
)
from spectranorm_neuro.report.centiles import centile_charts
from spectranorm_neuro.report.clusters import cluster_geometries, find_clusters
from spectranorm_neuro.report.figures import CentileChartFigure
from spectranorm_neuro.report.pages import format_value, model_card_rows

from .test_report_numbers import LinearModel
from .test_report_render import body_rows, parse, value
from .test_report_surface import octasphere


def _line(ax, gid):
    return next(line for line in ax.get_lines() if line.get_gid() == gid)


def drawn_centile(ax, levels=(0.025, 0.975)):
    """Centile of the star recomputed from the drawn mean and outer centile curves of one panel."""
    (x,), (y,) = _line(ax, "subject").get_data()
    grid, mean = _line(ax, "mean").get_data()
    lo = np.interp(x, grid, _line(ax, f"centile-{levels[0]:g}").get_data()[1])
    hi = np.interp(x, grid, _line(ax, f"centile-{levels[1]:g}").get_data()[1])
    sd = (hi - lo) / (special.ndtri(levels[1]) - special.ndtri(levels[0]))
    return float(special.ndtr((y - np.interp(x, grid, mean)) / sd))


@pytest.fixture
def sexed_cohort():
    """A cohort whose model has a strong sex effect (7 women: the reference; 5 men far above)."""
    rng = np.random.default_rng(5)
    n_features, n_modes, n = 80, 6, 12
    q, _ = np.linalg.qr(rng.normal(size=(n_features, n_modes)))
    structures = (Structure("Lattice", "lattice", n_features, np.arange(n_features), shape=(8, 10)),)
    basis = EigenmodeBasis(np.arange(float(n_modes)), q, structures=structures)
    model = LinearModel(basis, seed=3)
    model.beta[2] = 8.0 * np.sign(basis.eigenvectors.sum(axis=0))  # male >> female for the mean query
    subjects = pd.DataFrame({"age": rng.uniform(20, 80, n), "sex": list("FMFMFFMMFMFF"),
                             "site": list("ABABABABABAB"), "group": ["HC"] * 6 + ["AD"] * 6},
                            index=pd.Index([f"s{i:02d}" for i in range(n)], name="subject"))
    # draw each subject's modes from its own normative distribution (no site harmonization needed)
    mu = model.design(subjects) @ model.beta
    coefficients = mu + rng.normal(size=mu.shape) * model.sd
    z = rng.normal(size=(n, n_features))
    return subjects, basis, model, coefficients, z


def test_star_sits_at_the_table_centile_for_women_and_men(sexed_cohort, tmp_path):
    subjects, basis, model, coefficients, z = sexed_cohort
    index = generate_report(tmp_path / "rep", z, subjects, basis, model=model, coefficients=coefficients,
                            controls=subjects["group"].eq("HC").to_numpy(), group_column="group",
                            inline_subjects=0, progress=False)
    blocks = resolve_blocks(basis, None, basis.n_features)
    charts = centile_charts(model, subjects, basis.n_features, coefficients, blocks=blocks)
    figure = CentileChartFigure(charts)
    wrong = np.zeros(len(subjects))
    for i, sid in enumerate(subjects.index):
        page = parse(index.parent / "subjects" / f"{sid}.html")
        table = {r[0][0]: value(r[4]) for r in body_rows(page, f"subject-{sid}-centiles")}
        ax = figure.subject_figure(i, sid).axes[0]
        assert ax.get_title() == "Whole-map mean"
        assert drawn_centile(ax) == pytest.approx(table["Whole-map mean"], abs=0.01), sid
        # the old chart (curves at the reference sex) puts the other sex elsewhere: this test catches it
        x, y = charts.subject_x[i], charts.subject_y[i, 0]
        ref = special.ndtr((y - np.interp(x, charts.grid, charts.mean[:, 0])) / np.interp(x, charts.grid,
                                                                                          charts.std[:, 0]))
        wrong[i] = abs(ref - table["Whole-map mean"])
    other = subjects["sex"].ne(charts.reference["sex"]).to_numpy()
    assert wrong[~other].max() < 1e-3 and wrong[other].max() > 0.3
    # cohort chart: points standardized to the reference keep their own z against the drawn curves
    mu_ref = np.interp(charts.subject_x, charts.grid, charts.mean[:, 0])
    sd_ref = np.interp(charts.subject_x, charts.grid, charts.std[:, 0])
    np.testing.assert_allclose((charts.reference_y[:, 0] - mu_ref) / sd_ref, charts.subject_z[:, 0], atol=1e-3)


def test_kept_chart_figure_draws_each_subject_as_a_new_figure_would(sexed_cohort):
    subjects, basis, model, coefficients, _ = sexed_cohort
    charts = centile_charts(model, subjects, basis.n_features, coefficients)
    figure = CentileChartFigure(charts)
    kept = [figure.render_subject(i, f"s{i:02d}") for i in (0, 1, 0)]  # subject 0 again after subject 1
    new = png_bytes(CentileChartFigure(charts).subject_figure(0, "s00"), figure.dpi)
    assert kept[0] == kept[2] == new and kept[1] != kept[0]


def test_every_modelled_vertex_is_coloured_zero_included(tmp_path):
    vertices, faces = octasphere()
    n = len(vertices)
    scale = ColourScale("YlOrRd", 0.0, 0.5, "fraction |z| > 2")
    values = np.zeros(n)  # true zeros (no subject extreme anywhere)
    colours = surface_face_colours(values, faces, None, scale)
    assert not np.any(np.all(colours == NOT_MODELLED, axis=1))
    expected = 0.85 * np.array(scale_colour(scale, 0.0)) + 0.15 * 0.8  # colour map at 0 over the anatomy
    np.testing.assert_allclose(colours[:, :3], np.broadcast_to(expected, (len(faces), 3)), atol=1e-9)
    masked = values.copy()
    masked[vertices[:, 2] > 30] = np.nan  # a "medial wall" cap
    colours = surface_face_colours(masked, faces, None, scale)
    unmodelled = np.isnan(masked)[faces].all(axis=1)
    assert np.all(np.all(colours[unmodelled] == NOT_MODELLED, axis=1))
    assert not np.any(np.all(colours[~unmodelled] == NOT_MODELLED, axis=1))

    # rendered: no NOT_MODELLED pixel when every vertex is modelled; some when the cap is not
    def grey_pixels(index):
        structures = (Structure("CortexLeft", "surface", n, index),)
        blocks = resolve_blocks(None, structures, index.size)
        renderer = BrainRenderer(blocks, {"CortexLeft": (vertices, faces, None)})
        png = renderer.render(np.zeros(index.size), scale, "zeros")[0].png
        img = mpimg.imread(io.BytesIO(png))[..., :3]
        h, w = img.shape[:2]
        img = img[int(0.12 * h):int(0.88 * h), :int(0.75 * w)]  # the views, not the title, labels or bar
        return int(np.sum(np.all(np.abs(img - NOT_MODELLED[0]) < 2 / 255, axis=2)))

    assert grey_pixels(np.arange(n)) == 0
    assert grey_pixels(np.flatnonzero(vertices[:, 2] <= 30)) > 200


def scale_colour(scale, v):
    import matplotlib

    return matplotlib.colormaps[scale.cmap]((v - scale.vmin) / (scale.vmax - scale.vmin))[:3]


def test_calibration_counts_only_controls_and_pages_say_the_group(sexed_cohort, tmp_path):
    subjects, basis, _model, _coefficients, z = sexed_cohort
    controls = subjects["group"].eq("HC").to_numpy()
    z = z.copy()
    z[~controls] -= 1.5  # patients far off: pooling them would move the mean
    index = generate_report(tmp_path / "rep", z, subjects, basis, controls=controls, group_column="group",
                            inline_subjects=0, progress=False)
    p = parse(index)
    summary = {r[0][0]: r for r in body_rows(p, "calibration-summary")}
    assert value(summary["Subjects"][1]) == controls.sum() == 6
    assert value(summary["Pooled z-scores"][1]) == 6 * basis.n_features
    assert value(summary["Mean z"][1]) == pytest.approx(z[controls].mean())
    sites = body_rows(p, "calibration-sites")
    assert sum(value(r[1]) for r in sites) == 6
    text = index.read_text()
    assert "calibration on 6 control subjects (group HC)" in text
    patient = (index.parent / "subjects" / "s11.html").read_text()
    assert "Group <strong>AD</strong>" in patient and "not in the calibration set" in patient
    control = (index.parent / "subjects" / "s00.html").read_text()
    assert "Group <strong>HC</strong>" in control and "in the calibration (control) set" in control
    # without controls the report says the calibration pools everyone, and claims no "control" status
    index = generate_report(tmp_path / "all", z, subjects, basis, group_column="group", inline_subjects=0,
                            progress=False)
    text = index.read_text()
    assert "No control subjects were designated" in text and "patients included" in text
    assert "calibration set" not in (index.parent / "subjects" / "s11.html").read_text()


def test_subject_table_is_sorted_by_severity_and_pages_link_in_that_order(sexed_cohort, tmp_path):
    subjects, basis, _model, _coefficients, z = sexed_cohort
    z = z.copy()
    z[7, :30] = -4.0  # the most severe: a large negative cluster
    z[3, :10] = 4.0
    index = generate_report(tmp_path / "rep", z, subjects, basis, inline_subjects=0, progress=False)
    rows = body_rows(parse(index), "subject-table")
    ids = [r[0][0] for r in rows]
    assert ids[0] == "s07" and value(rows[0][3]) >= 30
    area = [value(r[3]) + value(r[4]) for r in rows]
    assert area == sorted(area, reverse=True)
    for k, sid in enumerate(ids):
        page = parse(index.parent / "subjects" / f"{sid}.html")
        expected = ({f"{ids[k - 1]}.html"} if k else set()) | ({f"{ids[k + 1]}.html"} if k + 1 < len(ids) else set())
        assert {h for h in page.hrefs if h.endswith(".html") and not h.startswith("..")} == expected


def test_clusters_on_a_mesh_use_its_area_and_threshold():
    vertices, faces = octasphere()  # sphere of radius 50 mm
    n = len(vertices)
    structures = (Structure("CortexLeft", "surface", n, np.arange(n)),)
    blocks = resolve_blocks(None, structures, n)
    geometry = cluster_geometries(blocks, {"CortexLeft": (vertices, faces)})
    z = np.zeros(n)
    cap = vertices[:, 0] < -40  # spherical cap of height 10 mm: area 2 pi r h = 3142 mm²
    z[cap] = -3.0
    z[np.argmax(vertices[:, 0])] = 5.0  # a single vertex: a tiny cluster
    shown, clusters = find_clusters(z, geometry, 2.0, 500.0)
    assert np.array_equal(shown, cap)
    (big,) = clusters
    assert big.sign == -1 and big.n_features == cap.sum() and big.peak_z == -3.0 and big.unit == "mm²"
    assert big.size == pytest.approx(2 * np.pi * 50 * 10, rel=0.25)  # coarse mesh
    shown, clusters = find_clusters(z, geometry, 2.0, 0.0)
    assert len(clusters) == 2 and shown.sum() == cap.sum() + 1
    assert find_clusters(z, geometry, 3.5, 0.0)[0].sum() == 1  # only the single vertex exceeds 3.5


def test_atlas_regions_name_the_clusters(tmp_path):
    structures = (Structure("CortexLeft", "lattice", 40, np.arange(40), shape=(4, 10)),
                  Structure("CortexRight", "lattice", 40, np.arange(5, 40), shape=(4, 10)))
    # an atlas as io.read_labels gives it: one label per feature, names by label value (0 = unknown)
    labels = np.concatenate([np.repeat([0, 3, 7, 7], 10), np.repeat([17, 13, 13, 0], 10)[5:]])
    labels[labels == 0] = -1
    names = {3: "lh.precentral", 7: "lh.insula", 13: "rh.precentral", 17: "rh.insula"}
    z = np.zeros((1, 75))
    z[0, 20:40] = -3.0  # lh insula
    z[0, 40:45] = 3.0  # rh insula
    index = generate_report(tmp_path / "rep", z, None, None, structures=structures,
                            atlas_labels=(labels, names), progress=False)
    p = parse(index)
    rows = body_rows(p, "subject-sub-001-clusters")
    assert [(r[0][0], r[1][0], r[2][0]) for r in rows] == [("lh.insula", "CortexLeft", "below"),
                                                          ("rh.insula", "CortexRight", "above")]
    assert [r[0][0] for r in body_rows(p, "subject-sub-001-parcels")][:2] == ["lh.insula", "rh.insula"]


def test_model_card_is_readable():
    card = {"basis": {"structures": [{"name": "CortexLeft", "n_features": 9642}, {"name": "CortexRight"}]},
            "files": {"model.npz": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
            "sites": ["A", "B"]}
    rows = dict(model_card_rows(card))
    assert rows["basis.structures"] == "name: CortexLeft, n_features: 9642; name: CortexRight"
    assert rows["files.model.npz"] == "9f86d081884c…"
    assert rows["sites"] == "A, B"
    assert "{" not in "".join(rows.values())
    assert format_value("sha256:" + "ab" * 32) == "sha256:abababababab…"


def test_qq_plot_reaches_the_observed_extremes():
    from spectranorm_neuro.report.calibration import calibration_summary

    z = np.random.default_rng(0).normal(size=(40, 500))
    z[3, 7] = -7.5
    cal = calibration_summary(z)
    assert cal.qq_sample[0] == -7.5 and cal.qq_sample[-1] == z.max()
    assert cal.qq_theoretical[-1] == pytest.approx(stats.norm.ppf(1 - 0.5 / z.size))
