"""Per-subject figures rendered in worker processes are byte-identical to the serial ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.exceptions import InvalidInputError
from spectranorm_neuro.graphs import Structure
from spectranorm_neuro.report import generate_report

from .test_report_numbers import LinearModel


@pytest.mark.slow
def test_parallel_rendering_gives_the_same_files(tmp_path):
    rng = np.random.default_rng(4)
    structures = (Structure("Lattice", "lattice", 100, np.arange(100), shape=(10, 10)),)
    n = 11  # three chunks of subjects
    q, _ = np.linalg.qr(rng.normal(size=(100, 4)))
    basis = EigenmodeBasis(np.arange(4.0), q, structures=structures)
    subjects = pd.DataFrame({"age": rng.uniform(20, 80, n), "sex": rng.choice(["F", "M"], n),
                             "site": rng.choice(["A", "B"], n)}, index=[f"p{i}" for i in range(n)])
    args = {"model": LinearModel(basis), "coefficients": rng.normal(size=(n, 4)), "inline_subjects": 4,
            "progress": False}
    z = rng.normal(size=(n, 100))
    a = generate_report(tmp_path / "a", z, subjects, basis, **args).parent
    b = generate_report(tmp_path / "b", z, subjects, basis, n_jobs=2, **args).parent
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    # index, subject pages, 2 group maps, calibration, cohort chart, z-map and chart per subject
    assert len(files) == 1 + n + 2 + 1 + 1 + 2 * n
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.mark.parametrize("n_jobs", [0, 1.5, True])
def test_bad_n_jobs_is_named(tmp_path, n_jobs):
    structures = (Structure("Lattice", "lattice", 4, np.arange(4), shape=(2, 2)),)
    with pytest.raises(InvalidInputError, match=r"n_jobs=.*Fix: pass 1 \(serial\), a number of workers"):
        generate_report(tmp_path / "r", np.zeros((1, 4)), None, None, structures=structures, n_jobs=n_jobs)


def test_figures_follow_joblib_parallel_config(tmp_path, monkeypatch):
    """The report uses the package's one runner: ``parallel_config`` picks the backend (no forced loky)."""
    import os
    import threading

    from joblib import parallel_config

    import spectranorm_neuro.report._render as render

    seen = []
    real = render._render_chunk

    def recording(*args):
        seen.append((os.getpid(), threading.current_thread().name))
        return real(*args)

    monkeypatch.setattr(render, "_render_chunk", recording)
    rng = np.random.default_rng(5)
    structures = (Structure("Lattice", "lattice", 36, np.arange(36), shape=(6, 6)),)
    z = rng.normal(size=(11, 36))  # three chunks of subjects
    with parallel_config(backend="threading"):
        generate_report(tmp_path / "r", z, None, None, structures=structures, n_jobs=2, progress=False)
    # threads of this process ran every chunk (a process backend would not see the patched function)
    assert len(seen) == 3 and {pid for pid, _ in seen} == {os.getpid()}
    assert any(name != threading.current_thread().name for _, name in seen)
