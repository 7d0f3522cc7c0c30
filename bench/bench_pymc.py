"""Benchmark of the pymc ADVI inference path on the seed cohort (issue #4 target: <= 180 s).

The seed cohort is the SpectraNorm "Spectral Model" tutorial's: 3000 training subjects drawn with
the tutorial's exact random streams (``datasets.tutorial_cohorts``), encoded on the 100 leading
modes of the 50 x 50 lattice's normalized Laplacian, modelled with an age B-spline (df=5) and a
6-site hierarchical effect on the mean and the log-sd. In one process it fits

* the fast path: ``SpectralNormativeModel.fit(..., inference="map")``;
* the pymc path: ``SpectralNormativeModel.fit(..., inference="advi", random_state=0)``;

and prints, for each, wall and CPU seconds (best of ``--repeats``; the first ADVI fit of the
process is printed too: it includes pytensor's graph rewriting and, with a cold cache, its C
compilation), then the agreement of the two on the tutorial's 1000-subject test cohort: for the
100 mode coefficients and for the tutorial's 2500 Gaussian-kernel pixel queries, the largest and
median ``|mu_advi - mu_map| / sd_map`` and the range of ``sd_advi / sd_map``.

Run: ``python bench/bench_pymc.py [--repeats N] [--cold] [--json PATH]``. ``--cold`` compiles into
a fresh temporary pytensor cache, so the first ADVI time includes all C compilation.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np


def timed(fn):
    """(wall seconds, CPU seconds of this process, result)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w0, time.process_time() - c0, out


def agreement(mu_ref, sd_ref, mu, sd) -> dict:
    """Max/median |mu - mu_ref| / sd_ref and the range of sd / sd_ref."""
    dmu = np.abs(mu - mu_ref) / sd_ref
    ratio = sd / sd_ref
    return {"max_dmu_over_sd": float(dmu.max()), "median_dmu_over_sd": float(np.median(dmu)),
            "sd_ratio_min": float(ratio.min()), "sd_ratio_max": float(ratio.max())}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="fits of each path (best time is kept)")
    parser.add_argument("--cold", action="store_true", help="use a fresh pytensor compile cache")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.cold:
        if "pytensor" in sys.modules:
            raise SystemExit("--cold must be set before pytensor is imported")
        cache = tempfile.mkdtemp(prefix="pytensor_cold_")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        flags = os.environ.get("PYTENSOR_FLAGS", "")
        os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (flags, f"compiledir={cache}") if f)

    from spectranorm_neuro import snm
    from spectranorm_neuro.datasets import gaussian_kernel_queries, lattice_basis, tutorial_cohorts

    t0 = time.perf_counter()
    (train, _, _, obs, _), (test, *_rest) = tutorial_cohorts(3000, 1000)
    basis = lattice_basis(50, 100)
    C = basis.encode(obs)
    print(f"seed cohort: {C.shape[0]} subjects x {C.shape[1]} modes, generated in "
          f"{time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs visible")

    def model():
        return snm.SpectralNormativeModel.build_from_dataframe(
            eigenmode_basis=basis, model_type="HBR", covariates_dataframe=train, numerical_covariates=["age"],
            nonlinear_covariates=["age"], categorical_covariates=["site"], batch_covariates=["site"],
            influencing_mean=["age", "site"], influencing_variance=["age", "site"])

    results: dict = {"n_subjects": int(C.shape[0]), "n_modes": int(C.shape[1])}
    best = {"map": (np.inf, np.inf), "advi": (np.inf, np.inf)}
    fitted = {}
    for r in range(args.repeats):
        for path, kwargs in (("map", {}), ("advi", {"inference": "advi", "random_state": 0})):
            wall, cpu, fitted[path] = timed(lambda kw=kwargs: model().fit(C, train, n_jobs=1, **kw))
            if path == "advi" and r == 0:
                results["advi_first_fit_s"] = wall
                print(f"ADVI, first fit in this process{' (cold cache)' if args.cold else ''}: "
                      f"{wall:7.1f} s wall, {cpu:7.1f} s CPU")
            best[path] = min(best[path], (wall, cpu))
    for path, label in (("map", "MAP + Laplace (fast path)"), ("advi", "pymc ADVI")):
        wall, cpu = best[path]
        results[f"{path}_fit_s"], results[f"{path}_fit_cpu_s"] = wall, cpu
        target = "  (target <= 180 s)" if path == "advi" else ""
        print(f"{label:28s} fit: {wall:7.1f} s wall, {cpu:7.1f} s CPU{target}")
    results["advi_converged"] = bool(fitted["advi"].direct_params.converged.all())
    print(f"ADVI converged: {results['advi_converged']}")

    sp = {p: m.compute_spectral_predictions(test) for p, m in fitted.items()}
    results["modes"] = agreement(sp["map"].mu, sp["map"].sd, sp["advi"].mu, sp["advi"].sd)
    Q = basis.encode_queries(gaussian_kernel_queries(50, 0.05))
    pred = {p: fitted[p].predict(Q, test, spectral_predictions=sp[p]).predictions for p in fitted}
    results["pixel_queries"] = agreement(pred["map"]["mu_estimate"], pred["map"]["std_estimate"],
                                         pred["advi"]["mu_estimate"], pred["advi"]["std_estimate"])
    for key, label in (("modes", "100 mode coefficients"), ("pixel_queries", "2500 pixel queries")):
        a = results[key]
        print(f"agreement on {label:22s} (1000 test subjects): |dmu|/sd max {a['max_dmu_over_sd']:.3f}, "
              f"median {a['median_dmu_over_sd']:.4f}; sd ratio {a['sd_ratio_min']:.3f}..{a['sd_ratio_max']:.3f}")
    if args.json:
        from spectranorm_neuro._util import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2), overwrite=True)
    return results


if __name__ == "__main__":
    main()
