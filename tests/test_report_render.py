"""Rendering of full reports: sections, embedded figures, tables, pages, overwrite, determinism.

The HTML is parsed with the standard library's parser; the calibration and per-site tables are
compared with numbers computed in the test from the z-scores themselves.
"""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.exceptions import OutputExistsError
from spectranorm_neuro.graphs import Structure
from spectranorm_neuro.report import generate_report

from .test_report_numbers import LinearModel

SECTIONS = ("overview", "model-card", "cohort", "calibration", "group-view", "subjects")


class ReportParser(HTMLParser):
    """Collects section ids, images, links, scripts and the cells of every table with an id."""

    def __init__(self):
        super().__init__()
        self.ids, self.images, self.hrefs, self.scripts, self.links = set(), [], [], 0, []
        self.script_sources = []
        self.tables: dict[str, list[list[tuple[str, dict]]]] = {}
        self._table = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.images.append(a)
        elif tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        elif tag == "script":
            self.scripts += 1
            self.script_sources += [a["src"]] if "src" in a else []
        elif tag == "link":
            self.links.append(a)
        elif tag == "table" and "id" in a:
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = [tag, "", a]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append((self._cell[1].strip(), self._cell[2]))
            self._cell = None
        elif tag == "table":
            self._table = None


def parse(path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def body_rows(parser, table_id):
    return [row for row in parser.tables[table_id] if row and row[0][1].get("scope") == "row"]


def value(cell):
    return float(cell[1]["data-value"])


def check_self_contained(parser: ReportParser, root: Path, page_dir: Path):
    """Every image is a base64 PNG identical to its file in figures/; nothing external."""
    assert parser.images, "no figures"
    # at most the inline table sorter; nothing loaded from elsewhere
    assert parser.scripts <= 1 and parser.script_sources == [] and parser.links == []
    for img in parser.images:
        assert img["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(img["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert img["data-file"].startswith("figures/")
        assert (root / img["data-file"]).read_bytes() == png
        assert img["alt"]
    for href in parser.hrefs:
        assert not href.startswith(("http:", "https:", "//")), href
        if not href.startswith("#"):
            assert (page_dir / href).exists(), href


# ---------------------------------------------------------------------- a mixed (fast) cohort
def mixed_structures():
    rng = np.random.default_rng(11)
    shape = (9, 10, 8)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-16.0, -20.0, -14.0]
    voxels = np.flatnonzero(rng.uniform(size=int(np.prod(shape))) < 0.5)
    return (Structure("Lattice", "lattice", 144, np.arange(144), shape=(12, 12)),
            Structure("Volume", "volume", int(np.prod(shape)), voxels, shape=shape, affine=affine),
            Structure("Parcels", "parcels", 25, np.arange(25)))


@pytest.fixture
def mixed():
    structures = mixed_structures()
    n_features = sum(s.n_features for s in structures)
    rng = np.random.default_rng(2)
    n = 7
    subjects = pd.DataFrame({
        "age": rng.uniform(20, 80, n), "sex": ["F", "M", "M", "F", "M", "F", "M"],
        "site": ["A", "B", "A", "B", "C", "A", "B"], "group": ["HC", "HC", "AD", "AD", "HC", "AD", "HC"],
    }, index=pd.Index([f"sub-{i:02d}" for i in range(n)], name="subject"))
    z = rng.normal(size=(n, n_features))
    z[2, 10:40] += 4.0  # sub-02: a strong positive patch in the lattice
    q, _ = np.linalg.qr(rng.normal(size=(n_features, 5)))
    basis = EigenmodeBasis(np.arange(5.0), q, structures=structures)
    atlas = np.arange(n_features) % 6
    coefficients = rng.normal(size=(n, 5))
    return {"z": z, "subjects": subjects, "basis": basis, "atlas": atlas, "coefficients": coefficients,
            "model": LinearModel(basis)}


def render_mixed(mixed, out, **kwargs):
    args = {"model": mixed["model"], "coefficients": mixed["coefficients"], "group_column": "group",
            "controls": mixed["subjects"]["group"].eq("HC").to_numpy(), "atlas_labels": mixed["atlas"],
            "model_card": {"training": {"n_subjects": 812, "sites": ["A", "B", "C"]}, "seed": 7,
                           "version": "0.1"},
            "progress": False}
    args.update(kwargs)
    return generate_report(out, mixed["z"], mixed["subjects"], mixed["basis"], **args)


@pytest.mark.slow
def test_mixed_report_sections_figures_and_calibration_numbers(mixed, tmp_path):
    index = render_mixed(mixed, tmp_path / "rep")
    assert index == tmp_path / "rep" / "index.html"
    p = parse(index)
    for section in SECTIONS:
        assert section in p.ids
    check_self_contained(p, index.parent, index.parent)

    keys = {img["data-figure"] for img in p.images}
    assert "calibration" in keys and "centiles-cohort" in keys
    for group in ("all", "ad", "hc"):
        for what in ("mean-z", "frac-extreme"):
            for kind in ("lattice-Lattice", "volume-Volume", "parcels-Parcels"):
                assert f"group-{group}-{what}-{kind}" in keys
    for i in range(7):  # 7 <= inline_subjects: every subject inline
        assert f"subject-sub-{i:02d}" in p.ids
        assert f"subjects/sub-{i:02d}-centiles" in keys
        assert f"subjects/sub-{i:02d}-zmap-volume-Volume" in keys
    assert len(keys) == len(p.images)  # no figure embedded twice
    assert len(list((index.parent / "figures").rglob("*.png"))) == len(keys)

    # calibration numbers vs an independent computation on the control subjects
    z, subjects = mixed["z"], mixed["subjects"]
    controls = subjects["group"].eq("HC").to_numpy()
    flat = z[controls].ravel()
    summary = {r[0][0]: r for r in body_rows(p, "calibration-summary")}
    assert value(summary["Subjects"][1]) == controls.sum()
    assert value(summary["Pooled z-scores"][1]) == flat.size
    assert value(summary["Mean z"][1]) == pytest.approx(flat.mean(), rel=1e-12)
    assert summary["Mean z"][1][0] == f"{flat.mean():.3f}"
    assert value(summary["SD of z"][1]) == pytest.approx(flat.std(ddof=1), rel=1e-12)
    assert value(summary["Fraction |z| > 2"][1]) == pytest.approx(np.mean(np.abs(flat) > 2))
    assert value(summary["Fraction |z| > 2"][2]) == pytest.approx(2 * stats.norm.sf(2))

    coverage = body_rows(p, "calibration-coverage")
    assert [r[0][0] for r in coverage] == ["2.5th", "25th", "50th", "75th", "97.5th"]
    for row, level in zip(coverage, (0.025, 0.25, 0.5, 0.75, 0.975)):
        observed = np.mean(flat < stats.norm.ppf(level))
        assert value(row[1]) == pytest.approx(stats.norm.ppf(level))
        assert value(row[2]) == pytest.approx(observed)
        assert row[2][0] == f"{observed:.4f}"
        assert value(row[3]) == pytest.approx(level)
        assert value(row[4]) == pytest.approx(observed - level)

    sites = {r[0][0]: r for r in body_rows(p, "calibration-sites")}
    control_sites = subjects["site"].to_numpy()[controls]
    assert sorted(sites) == sorted(set(control_sites))
    for site, row in sites.items():
        values = z[controls][control_sites == site].ravel()
        assert value(row[1]) == np.sum(control_sites == site)
        assert value(row[2]) == pytest.approx(values.mean())
        assert value(row[3]) == pytest.approx(values.std(ddof=1))

    # subject table and per-subject numbers
    rows = body_rows(p, "subject-table")
    table = {r[0][0]: r for r in rows}
    assert sorted(table) == sorted(subjects.index)
    severity = [value(r[3]) + value(r[4]) for r in rows]
    assert severity == sorted(severity, reverse=True)  # default order: most severe first
    for i, sid in enumerate(subjects.index):
        assert value(table[sid][6]) == np.sum(np.abs(z[i]) > 2)
        assert value(table[sid][8]) == np.sum(np.abs(z[i]) > 3)
        assert value(table[sid][9]) == pytest.approx(np.abs(z[i]).max())
    counts = {r[0][0]: r for r in body_rows(p, "subject-sub-02-counts")}
    lattice = z[2, :144]
    assert value(counts["Lattice"][2]) == np.sum(np.abs(lattice) > 2)
    assert value(counts["Lattice"][4]) == np.sum(lattice > 2)
    assert value(counts["All"][1]) == z.shape[1]
    parcels = body_rows(p, "subject-sub-02-parcels")
    atlas = mixed["atlas"]
    means = [np.abs(z[2, atlas == k]).mean() for k in range(6)]
    assert [r[0][0] for r in parcels] == [str(k) for k in np.argsort(means)[::-1][:5]]
    assert value(parcels[0][2]) == pytest.approx(max(means))

    # centile table: the harmonized value of the whole-map mean, computed from the model double
    model, basis = mixed["model"], mixed["basis"]
    centiles = {r[0][0]: r for r in body_rows(p, "subject-sub-02-centiles")}
    q = basis.eigenvectors.T @ np.full(basis.n_features, 1 / basis.n_features)
    site_b = float(subjects["site"].iloc[2] == "B")
    expected = mixed["coefficients"][2] @ q - site_b * model.beta[3] @ q
    assert value(centiles["Whole-map mean"][2]) == pytest.approx(expected)
    assert value(centiles["Whole-map mean"][1]) == pytest.approx(subjects["age"].iloc[2])

    # header: model card and cohort
    html = index.read_text()
    assert "training.n_subjects" in html and "812" in html and "training.sites" in html
    assert "Groups (group)" in html and "AD: 3, HC: 4" in html


@pytest.mark.slow
def test_many_subjects_get_linked_pages_and_max_subjects(mixed, tmp_path):
    index = render_mixed(mixed, tmp_path / "rep", inline_subjects=3, max_subjects=5, model=None,
                         coefficients=None)
    p = parse(index)
    check_self_contained(p, index.parent, index.parent)
    assert not any(i.startswith("subject-sub-") for i in p.ids)  # no subject inline in the index
    rows = {r[0][0]: r for r in body_rows(p, "subject-table")}
    assert len(rows) == 7
    for i in range(7):
        page = index.parent / "subjects" / f"sub-{i:02d}.html"
        assert page.exists() == (i < 5)
        assert (f"subjects/sub-{i:02d}.html" in p.hrefs) == (i < 5)
    assert "2 of 7 subjects are listed without figures (max_subjects=5)" in index.read_text()
    sp = parse(index.parent / "subjects" / "sub-02.html")
    assert "subject-sub-02" in sp.ids
    assert "../index.html" in sp.hrefs
    assert sp.scripts == 0
    for img in sp.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert (index.parent / img["data-file"]).read_bytes() == base64.b64decode(img["src"].split(",", 1)[1])
    assert "centiles" not in {k for img in p.images for k in img["data-figure"].split("-")}


def test_existing_report_is_not_overwritten(mixed, tmp_path):
    out = tmp_path / "rep"
    args = {"model": None, "max_subjects": 1, "group_column": None}
    index = render_mixed(mixed, out, **args)
    before = index.read_bytes()
    with pytest.raises(OutputExistsError, match=r"out_dir=.*already holds a report.*overwrite=True"):
        render_mixed(mixed, out, **args)
    assert index.read_bytes() == before
    mixed["z"][0] += 1.0
    render_mixed(mixed, out, overwrite=True, **args)
    assert index.read_bytes() != before


@pytest.mark.slow
def test_same_inputs_give_identical_files(mixed, tmp_path):
    a = render_mixed(mixed, tmp_path / "a", max_subjects=2).parent
    b = render_mixed(mixed, tmp_path / "b", max_subjects=2).parent
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_lattice_map_puts_the_deviation_where_it_was_planted(mixed, tmp_path):
    index = render_mixed(mixed, tmp_path / "rep", model=None, max_subjects=3, group_column=None)
    png = (index.parent / "figures" / "subjects" / "sub-02-zmap-lattice-Lattice.png").read_bytes()
    img = mpimg.imread(io.BytesIO(png))[..., :3]
    image_part = img[:, : int(0.75 * img.shape[1])]  # left of the colour bar
    dark = image_part.max(axis=2) < 0.3  # the black frame of the axes
    frame_rows = np.flatnonzero(dark.sum(axis=1) > 0.4 * image_part.shape[1])
    frame_cols = np.flatnonzero(dark.sum(axis=0) > 0.4 * image_part.shape[0])
    top, bottom, left, right = frame_rows.min(), frame_rows.max(), frame_cols.min(), frame_cols.max()

    centres_y = np.round(top + (np.arange(12) + 0.5) * (bottom - top) / 12).astype(int)
    centres_x = np.round(left + (np.arange(12) + 0.5) * (right - left) / 12).astype(int)
    colours = image_part[centres_y[:, None], centres_x[None, :]].reshape(144, 3)  # row-major cells
    red, green, blue = colours.T
    strong = np.flatnonzero((red - green > 0.3) & (green < 0.25) & (blue < 0.25))  # z above about 3.3
    reddish = np.flatnonzero((red - blue > 0.3) & (red - green > 0.2))  # z above about 1.5
    planted = np.arange(10, 40)  # z[2, 10:40] += 4 on a row-major 12 x 12 lattice
    expected_strong = planted[mixed["z"][2, planted] > 3.6]
    assert expected_strong.size > 15
    assert set(expected_strong) <= set(strong) <= set(planted)
    assert np.isin(planted, reddish).mean() > 0.9


def test_interactive_pages_are_written_and_offline(mixed, tmp_path):
    structures = mixed_structures()[:2]
    n = sum(s.n_features for s in structures)
    z = mixed["z"][:2, :n]
    index = generate_report(tmp_path / "rep", z, mixed["subjects"].iloc[:2], None, structures=structures,
                            interactive=True, progress=False)
    page = index.parent / "interactive" / "sub-00-Volume.html"
    assert page.exists()
    text = page.read_text()
    assert "favicon" not in text and "<script" in text
    assert "interactive/sub-00-Volume.html" in parse(index).hrefs


def test_plain_arrays_without_subjects_or_model(tmp_path):
    structures = (Structure("Lattice", "lattice", 36, np.arange(36), shape=(6, 6)),)
    z = np.random.default_rng(0).normal(size=(3, 36))
    index = generate_report(tmp_path / "rep", z, None, None, structures=structures, progress=False)
    p = parse(index)
    assert sorted(r[0][0] for r in body_rows(p, "subject-table")) == ["sub-001", "sub-002", "sub-003"]
    assert "calibration-sites" not in p.tables  # no site column
    text = index.read_text()
    assert "No model card was given" in text and "No model was given" in text


def test_subject_ids_are_escaped_and_zero_detailed_subjects(tmp_path):
    structures = (Structure("Lattice", "lattice", 16, np.arange(16), shape=(4, 4)),)
    z = np.random.default_rng(1).normal(size=(2, 16))
    subjects = pd.DataFrame({"age": [1.0, 2.0]}, index=["<script>alert(1)</script>", "a&b"])
    index = generate_report(tmp_path / "rep", z, subjects, None, structures=structures, progress=False)
    p = parse(index)
    assert p.scripts == 1  # the table sorter only: the id is escaped
    assert sorted(r[0][0] for r in body_rows(p, "subject-table")) == ["<script>alert(1)</script>", "a&b"]
    assert (index.parent / "figures" / "subjects" / "script_alert_1_script-zmap-lattice-Lattice.png").exists()
    none = generate_report(tmp_path / "none", z, subjects, None, structures=structures, progress=False,
                           max_subjects=0)
    p = parse(none)
    assert not (none.parent / "figures" / "subjects").exists()
    assert all(r[0][0] in ("<script>alert(1)</script>", "a&b") for r in body_rows(p, "subject-table"))
    assert not any(h.startswith("#subject-") for h in p.hrefs)
