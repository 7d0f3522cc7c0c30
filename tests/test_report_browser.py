"""Open a rendered report in headless Chromium and check the screenshot is not blank.

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

    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    assert screenshot(blank, tmp_path / "blank.png", tmp_path / "chromium-profile-2").std() < 0.01
