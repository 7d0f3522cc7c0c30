"""Run every tutorial end to end at reduced size (SPECTRANORM_TUTORIAL_FAST=1) and check its outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("[0-9][0-9]_*.py"))


def run_tutorial(path: Path, cwd: Path) -> str:
    env = dict(os.environ, SPECTRANORM_TUTORIAL_FAST="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_spectral_model_tutorial(tmp_path):
    out = run_tutorial(next(p for p in TUTORIALS if p.name.startswith("02_")), tmp_path)
    assert len(list(tmp_path.glob("*.png"))) == 10
    assert (tmp_path / "tmp_directory" / "manifest.json").exists()
    assert (tmp_path / "eigenmode_basis.joblib").read_bytes()[:2] == b"PK"  # a zip (npz), not a pickle
    msll = float(re.search(r"median test MSLL: (\S+)", out).group(1))
    z_rmse = float(re.search(r"RMSE of z-scores against the true z: (\S+)", out).group(1))
    assert msll < -0.4
    assert z_rmse < 0.25  # 600 training subjects in the fast run; 0.09 at full size


def test_eigenmode_bases_tutorial(tmp_path):
    out = run_tutorial(next(p for p in TUTORIALS if p.name.startswith("01_")), tmp_path)
    assert {p.name for p in tmp_path.glob("*.png")} == {"01_first_modes.png", "02_reconstructions.png"}
    assert (tmp_path / "lattice_basis.npz").read_bytes()[:2] == b"PK"
    err = {(m.group(1).strip(), int(m.group(2))): float(m.group(3))
           for m in re.finditer(r"^(.{12}) +(\d+) modes: relative error +(\S+)%", out, re.M)}
    assert len(err) == 6
    for name in ("wide blob", "narrow blob", "square"):
        assert err[(name, 100)] < err[(name, 20)]  # more modes, smaller error
    assert err[("wide blob", 20)] < 5 < err[("narrow blob", 20)]  # smooth maps need few modes


def test_every_tutorial_is_tested():
    tested = {"01_", "02_"}  # add each new tutorial's prefix together with its test above
    names = {p.name[:3] for p in TUTORIALS}
    assert "02_" in names and names <= tested, names
