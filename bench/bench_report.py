"""Benchmark of the HTML deviation report (issue #7 target: 100 subjects in <= 2 minutes on 2 cores).

Renders a synthetic cohort on fsaverage5 (both hemispheres, 20,484 vertices): every subject in
detail (``max_subjects=100``, so per-subject pages), two groups, three sites, an atlas of 40
parcels and centile charts from a small stand-in model with the ``predict``/``harmonize`` contract
of :class:`~spectranorm_neuro.engine.spectral.SpectralNormativeModel`. Prints the wall time of
:func:`~spectranorm_neuro.report.generate_report` and the report's size.

Run: ``python bench/bench_report.py [--subjects N] [--jobs N] [--out DIR]``.

``--demo DIR [DIR ...]`` (output folders of ``spectranorm-neuro demo``, e.g. with several
``--seed``) instead checks the issue-18 targets on each demo cohort: the held-out controls' mean z
against the drawn centile curves, per sex (cohort chart: points standardized to the reference;
subject charts: curves at each subject's own covariates), that no modelled vertex is drawn in the
"not modelled" colour, and how well the two severity scores of the subject table separate the
patients from the controls (AUC of the multivariate z and of the cluster area, with the
multivariate score's calibration in the controls and its CPU time).

Timings are CPU seconds of this process and its workers (joblib's loky workers are joined before
reading them) and wall seconds, with the load average: the machine may be shared, so compare the
CPU time with a run of another tree in the same sitting (``PYTHONPATH=/path/to/other/tree``).
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


def demo_targets(folder: Path) -> None:
    """Print the issue-18 targets measured on a demo output folder."""
    import warnings

    from spectranorm_neuro.exceptions import ExtrapolationWarning
    from spectranorm_neuro.io import encode_cohort
    from spectranorm_neuro.report.brainviews import NOT_MODELLED, ColourScale, fsaverage5_geometry, surface_face_colours
    from spectranorm_neuro.report.centiles import centile_charts
    from spectranorm_neuro.workflow import ModelBundle, load_cohort, prepare_scoring, score

    bundle = ModelBundle.load(folder / "model_bundle")
    cohort, space = load_cohort(folder / "data" / "clinic", bundle.basis, bundle=bundle)
    covariates, _, _ = prepare_scoring(bundle, cohort, space)
    coeffs = encode_cohort(cohort, bundle.basis, n_modes=int(bundle.model.model_params["n_modes"]), progress=False)
    z = score(bundle.model, coeffs, covariates, ["zscore"])["zscore"]
    structures = bundle.basis.structures
    blocks = [SimpleNamespace(name=s.name, kind=s.kind, start=int(a), stop=int(a + s.n_features), structure=s)
              for s, a in zip(structures, np.cumsum([0] + [s.n_features for s in structures])[:-1])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        charts = centile_charts(bundle.model, covariates, bundle.basis.n_features, coeffs, blocks=blocks)
    controls = covariates["group"].astype(str).eq("control").to_numpy()
    grid_mu = np.interp(charts.subject_x, charts.grid, charts.mean[:, 0])
    grid_sd = np.interp(charts.subject_x, charts.grid, charts.std[:, 0])
    for sex in sorted(covariates["sex"].astype(str).unique()):
        sel = controls & covariates["sex"].astype(str).eq(sex).to_numpy()
        cohort_z = (charts.reference_y[sel, 0] - grid_mu[sel]) / grid_sd[sel]
        own = []
        for i in np.flatnonzero(sel):
            p = charts.subject_profile[i]
            mu = np.interp(charts.subject_x[i], charts.grid, charts.profile_mean[p, :, 0])
            sd = np.interp(charts.subject_x[i], charts.grid, charts.profile_std[p, :, 0])
            own.append((charts.subject_y[i, 0] - mu) / sd)
        old = (charts.subject_y[sel, 0] - grid_mu[sel]) / grid_sd[sel]
        print(f"{sex} controls (n={sel.sum()}), {charts.query_names[0]}: mean z against the drawn curves "
              f"{cohort_z.mean():+.3f} (cohort chart), {np.mean(own):+.3f} (own charts); "
              f"raw values against the reference curves (the old chart) {old.mean():+.3f}; "
              f"se of a mean of {sel.sum()} N(0,1) values {1 / np.sqrt(sel.sum()):.2f}")
    frac = (np.abs(z[controls]) > 2).mean(axis=0)
    scale = ColourScale("YlOrRd", 0.0, 0.5, "fraction |z| > 2")
    wrong = n_modelled = 0
    for block in blocks:
        geometry = fsaverage5_geometry("left" if "left" in block.name.lower() else "right")
        full = np.full(block.structure.n_total, np.nan)
        full[block.structure.index] = frac[block.start:block.stop]
        modelled = np.isfinite(full)
        n_modelled += int(modelled.sum())
        coloured = np.zeros(full.size, dtype=bool)
        for view in ("lateral", "medial"):
            faces = geometry.visible_faces(view)
            grey = np.all(surface_face_colours(full, faces, geometry.background, scale) == NOT_MODELLED, axis=1)
            coloured[faces[~grey].ravel()] = True
        wrong += int((modelled & ~coloured).sum())
    print(f"controls' fraction |z| > 2 map: {int(np.sum(frac == 0))} modelled vertices at exactly 0; "
          f"modelled vertices drawn only in the 'not modelled' colour: {wrong} of {n_modelled}")
    severity_auc(bundle, cohort, covariates, z, blocks, controls)


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive subject scores above a negative one (ties count one half)."""
    from scipy import stats

    ranks = stats.rankdata(score)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def severity_auc(bundle, cohort, covariates, z, blocks, controls) -> None:
    """AUC (patients vs controls) of the multivariate z and of the cluster area; the score's calibration."""
    from spectranorm_neuro.report._generate import DEFAULT_MIN_CLUSTER_AREA, DEFAULT_THRESHOLD
    from spectranorm_neuro.report.brainviews import fsaverage5_geometry
    from spectranorm_neuro.report.clusters import cluster_geometries, find_clusters
    from spectranorm_neuro.report.severity import multivariate_severity

    meshes = {b.name: fsaverage5_geometry("left" if "left" in b.name.lower() else "right") for b in blocks}
    geometries = cluster_geometries(blocks, {k: (g.vertices if g.area_vertices is None else g.area_vertices, g.faces)
                                             for k, g in meshes.items()})
    area = np.array([sum(c.size for c in find_clusters(z[i], geometries, DEFAULT_THRESHOLD,
                                                       DEFAULT_MIN_CLUSTER_AREA)[1]) for i in range(len(z))])
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    sev = multivariate_severity(bundle.model, cohort.maps(), covariates, controls)
    cpu, wall = _cpu_seconds() - cpu0, time.perf_counter() - t0
    patients = ~controls
    held = sev.z[controls]
    print(f"severity, patients ({patients.sum()}) vs controls ({controls.sum()}): AUC multivariate z "
          f"{_auc(sev.z, patients):.3f}, cluster area (|z| > {DEFAULT_THRESHOLD:g}, >= "
          f"{DEFAULT_MIN_CLUSTER_AREA:g} mm²) {_auc(area, patients):.3f}; multivariate z in controls: mean "
          f"{held.mean():+.2f}, sd {held.std():.2f}, p < 0.05 in {100 * np.mean(sev.p_value[controls] < 0.05):.1f} % "
          f"(null {sev.scale:.2f} x chi2({sev.dof:.0f}), {sev.n_parcels} parcels); in patients median "
          f"{np.median(sev.z[patients]):.1f}, min {sev.z[patients].min():.1f}")
    print(f"multivariate score of {len(z)} subjects: {cpu:.1f} s CPU, {wall:.1f} s wall "
          f"({100 * cpu / len(z):.1f} s CPU per 100 subjects); load average {_load_text()}")


def _load_text() -> str:
    return ", ".join(f"{x:.1f}" for x in _load())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (n_jobs)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: a temporary one)")
    parser.add_argument("--demo", type=Path, nargs="+", default=None,
                        help="check the issue-18 targets on demo folders")
    args = parser.parse_args()
    if args.demo is not None:
        for folder in args.demo:
            print(f"== {folder}")
            demo_targets(folder)
        return
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
        print(f"CPU time (this process + workers): {cpu:.1f} s; load average at the end: {_load_text()}")


if __name__ == "__main__":
    main()
