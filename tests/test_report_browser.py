"""Open every page of a rendered report in headless Chromium and check the screenshots are not blank.

Skipped only when no Chromium binary is installed (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import io
import shutil
import subprocess

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.graphs import Structure
from spectranorm_neuro.report import generate_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM = next((path for path in map(shutil.which, BROWSERS) if path), None)


def screenshot(page, png, user_data_dir):
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={user_data_dir}", f"--screenshot={png}", "--window-size=1280,2000",
               page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert png.exists(), f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    return mpimg.imread(io.BytesIO(png.read_bytes()))[..., :3]


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary installed")
def test_report_renders_in_headless_chromium(tmp_path):
    rng = np.random.default_rng(0)
    structures = (Structure("Lattice", "lattice", 400, np.arange(400), shape=(20, 20)),)
    z = rng.normal(size=(4, 400))
    z[0, 100:160] += 4.0
    subjects = pd.DataFrame({"age": [25.0, 40.0, 55.0, 70.0], "site": ["A", "B", "A", "B"]},
                            index=["sub-a", "sub-b", "sub-c", "sub-d"])
    index = generate_report(tmp_path / "report", z, subjects, None, structures=structures, progress=False)

    img = screenshot(index, tmp_path / "shot.png", tmp_path / "chromium-profile")
    assert img.shape[:2] == (2000, 1280)
    assert img.std() > 0.05  # not a blank page
    assert np.mean(img.min(axis=2) < 0.5) > 0.005  # dark text and figures
    # the page is laid out: the calibration figure (coloured histogram) is on screen
    blueish = (img[..., 2] - img[..., 0] > 0.15)
    assert blueish.sum() > 500

    # every page of a report with subject pages (index + one page per subject), with centile charts
    from .test_report_numbers import LinearModel

    q, _ = np.linalg.qr(rng.normal(size=(400, 5)))
    basis = EigenmodeBasis(np.arange(5.0), q, structures=structures)
    subjects["sex"] = ["F", "M", "F", "M"]
    subjects["group"] = ["control", "patient", "control", "patient"]
    index = generate_report(tmp_path / "pages", z, subjects, basis, model=LinearModel(basis),
                            coefficients=rng.normal(size=(4, 5)), controls=subjects["group"].eq("control"),
                            group_column="group", inline_subjects=0, progress=False)
    pages = [index, *sorted((index.parent / "subjects").glob("*.html"))]
    assert len(pages) == 5
    for k, page in enumerate(pages):
        img = screenshot(page, tmp_path / f"page-{k}.png", tmp_path / f"chromium-profile-p{k}")
        assert img.std() > 0.05, page.name  # not blank
        assert np.mean(img.min(axis=2) < 0.5) > 0.005, page.name  # text and figures on screen
        assert (img[..., 2] - img[..., 0] > 0.15).sum() > 500, page.name  # a coloured figure is laid out

    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert screenshot(blank, tmp_path / "blank.png", tmp_path / "chromium-profile-2").std() < 0.01


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary installed")
def test_subject_table_sorter_sorts_by_the_clicked_column(tmp_path):
    """The report's inline sorter, run by Chromium: numbers by data-value (descending first), text by text."""
    structures = (Structure("Lattice", "lattice", 16, np.arange(16), shape=(4, 4)),)
    z = np.random.default_rng(0).normal(size=(2, 16))
    index = generate_report(tmp_path / "rep", z, None, None, structures=structures, progress=False)
    html = index.read_text()
    script = html[html.index("<script>") + len("<script>"):html.index("</script>")]
    page = tmp_path / "sort.html"
    page.write_text(
        '<!DOCTYPE html><html><head><title>x</title></head><body><table class="sortable" id="t"><thead><tr><th>id</th>'
        '<th>v</th></tr></thead><tbody><tr><th>b</th><td data-value="2">2</td></tr><tr><th>a</th>'
        '<td data-value="10">10</td></tr><tr><th>c</th><td data-value="1">1</td></tr></tbody></table>'
        f"<script>{script}</script><script>"
        'var t = document.getElementById("t"), out = [];'
        "function ids() { return [].map.call(t.tBodies[0].rows, function (r) { return r.cells[0].textContent; })"
        '.join(""); }'
        "[1, 1, 0].forEach(function (c) { t.tHead.rows[0].cells[c].click(); out.push(ids()); });"
        'document.title = out.join("|");</script></body></html>')
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False).stdout
    assert "<title>abc|cba|cba</title>" in dom
