"""Benchmark of the HTML deviation report (issue #7 target: 100 subjects in <= 2 minutes on 2 cores).

Renders a synthetic cohort on fsaverage5 (both hemispheres, 20,484 vertices): every subject in
detail (``max_subjects=100``, so per-subject pages), two groups, three sites, an atlas of 40
parcels and centile charts from a small stand-in model with the ``predict``/``harmonize`` contract
of :class:`~spectranorm_neuro.engine.spectral.SpectralNormativeModel`. Prints the wall time of
:func:`~spectranorm_neuro.report.generate_report` and the report's size.

Run: ``python bench/bench_report.py [--subjects N] [--jobs N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.graphs import Structure
from spectranorm_neuro.report import generate_report

N_VERTICES = 10242
N_MODES = 20


class LinearModel:
    """Stand-in model: mode means linear in age, sex and site; constant sds."""

    def __init__(self, basis):
        self.numerical_covariates = ["age"]
        self.categorical_covariates = ["sex"]
        self.batch_covariates = ["site"]
        self.eigenmode_basis = basis
        rng = np.random.default_rng(1)
        self.beta = rng.normal(size=(4, basis.n_modes))  # intercept, age, male, site B
        self.sd = 0.5 + rng.uniform(size=basis.n_modes)

    def _design(self, cov, without):
        site = np.zeros(len(cov)) if "site" in without else cov["site"].astype(str).eq("B").to_numpy(float)
        return np.column_stack([np.ones(len(cov)), cov["age"].to_numpy(float) / 50,
                                cov["sex"].astype(str).eq("M").to_numpy(float), site])

    def predict(self, encoded_query, test_covariates, predict_without=(), n_modes=None):
        q = np.asarray(encoded_query)[: self.beta.shape[1]]
        mu = self._design(test_covariates, predict_without) @ self.beta @ q
        sd = np.sqrt((self.sd[:, None] ** 2 * q**2).sum(axis=0))
        return SimpleNamespace(predictions={"mu_estimate": mu, "std_estimate": np.broadcast_to(sd, mu.shape)})

    def harmonize(self, encoded_query, covariates_dataframe, spectral_coeff_data, covariates_to_harmonize):
        q = np.asarray(encoded_query)[: self.beta.shape[1]]
        site = self._design(covariates_dataframe, ())[:, 3]
        return spectral_coeff_data[:, : q.shape[0]] @ q - site[:, None] * (self.beta[3] @ q)[None, :]


def synthetic_cohort(n_subjects: int, seed: int = 0):
    """fsaverage5 basis, z-scores with a planted patch per AD subject, covariates, atlas, coefficients."""
    from nilearn import datasets

    rng = np.random.default_rng(seed)
    structures = (Structure("CortexLeft", "surface", N_VERTICES, np.arange(N_VERTICES)),
                  Structure("CortexRight", "surface", N_VERTICES, np.arange(N_VERTICES)))
    q, _ = np.linalg.qr(rng.normal(size=(2 * N_VERTICES, N_MODES)))
    basis = EigenmodeBasis(np.arange(N_MODES, dtype=float), q, structures=structures)
    sphere = datasets.load_fsaverage("fsaverage5")["sphere"]
    coords = np.vstack([sphere.parts["left"].coordinates, sphere.parts["right"].coordinates])
    subjects = pd.DataFrame({
        "age": rng.uniform(20, 85, n_subjects), "sex": rng.choice(["F", "M"], n_subjects),
        "site": rng.choice(["A", "B", "C"], n_subjects), "group": rng.choice(["HC", "AD"], n_subjects),
    }, index=pd.Index([f"sub-{i + 1:03d}" for i in range(n_subjects)], name="subject"))
    z = rng.normal(size=(n_subjects, 2 * N_VERTICES))
    patch = np.flatnonzero(np.linalg.norm(coords - coords[100], axis=1) < 30)
    z[np.ix_(subjects["group"].eq("AD").to_numpy(), patch)] += 3.0
    atlas = np.concatenate([np.digitize(coords[:N_VERTICES, 1], np.linspace(-100, 100, 19)),
                            20 + np.digitize(coords[N_VERTICES:, 1], np.linspace(-100, 100, 19))])
    coefficients = rng.normal(size=(n_subjects, N_MODES))
    return basis, subjects, z, atlas, coefficients


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (joblib workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _load() -> tuple[float, ...]:
    try:
        import os

        return os.getloadavg()
    except (AttributeError, OSError):  # pragma: no cover - not on every platform
        return ()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (n_jobs)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: a temporary one)")
    args = parser.parse_args()
    basis, subjects, z, atlas, coefficients = synthetic_cohort(args.subjects)
    model = LinearModel(basis)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "report"
        t0 = time.perf_counter()
        cpu0 = _cpu_seconds()
        index = generate_report(out, z, subjects, basis, model=model, coefficients=coefficients,
                                controls=subjects["group"].eq("HC").to_numpy(), group_column="group",
                                atlas_labels=atlas, max_subjects=args.subjects, overwrite=True,
                                progress=False, model_card={"model": "bench stand-in", "seed": 0},
                                n_jobs=args.jobs)
        elapsed = time.perf_counter() - t0
        if args.jobs != 1:  # join the joblib workers so their CPU time is counted
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=True)
        cpu = _cpu_seconds() - cpu0
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
        n_png = len(list(out.rglob("*.png")))
        print(f"report for {args.subjects} subjects (fsaverage5, 20,484 vertices, n_jobs={args.jobs}): "
              f"{elapsed:.1f} s "
              f"({elapsed / args.subjects:.2f} s per subject); {n_png} PNGs, {size:.1f} MiB; "
              f"index {index.stat().st_size / 2**20:.2f} MiB")
        print(f"CPU time (this process + workers): {cpu:.1f} s; load average at the end: "
              f"{', '.join(f'{x:.1f}' for x in _load())}")


if __name__ == "__main__":
    main()
