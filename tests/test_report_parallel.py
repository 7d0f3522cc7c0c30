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


@pytest.mark.parametrize("n_jobs", [0, -2, 1.5, True])
def test_bad_n_jobs_is_named(tmp_path, n_jobs):
    structures = (Structure("Lattice", "lattice", 4, np.arange(4), shape=(2, 2)),)
    with pytest.raises(InvalidInputError, match=r"n_jobs=.*Fix: pass e.g. n_jobs=2"):
        generate_report(tmp_path / "r", np.zeros((1, 4)), None, None, structures=structures, n_jobs=n_jobs)
