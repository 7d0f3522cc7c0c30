"""Whole-cortex benchmark (issue #9): fsaverage5, both hemispheres, thousands of subjects, on one machine.

Pipeline, each step timed with its CPU time (user + system of this process and its joblib
workers: on a shared machine the figure to compare) and peak memory (proportional set size summed
over this process and its joblib workers, sampled every 50 ms):

1. **basis** — Laplace–Beltrami modes of nilearn's fsaverage5 midthickness, both hemispheres
   (20,484 vertices; the medial wall removed, 19,307 modelled), 200 modes per hemisphere;
2. **encode** — the 5000 training subjects' maps read from GIFTI files (BIDS derivatives, two
   ``.shape.gii`` per subject), encoded and cached once in a float32 ``.npy`` file for the residual
   fit (``io.store_cohort``), a chunk of 64 maps per task (never all in memory);
3. **fit** — the spectral normative model (age spline, sex, hierarchical site on the mean; age and
   site on the variance; the default low-rank cross-mode correlation with 200 mode pairs on top)
   on the 5000 subjects, then its residual part (what the modes miss) at every vertex from the
   cached maps, a block of vertices at a time, calibrated on 500 of the training maps (the default);
4. **apply** — the 1000 new subjects' maps read, exact vertex-level z-score and centile maps of all
   of them scored block by block and written as GIFTI (4000 ``.shape.gii`` files, as sMRIPrep names
   thickness maps) plus the z summary table (``workflow.score_and_write`` with
   ``maps=cohort.maps()``: blocks of 64 subjects, each written as it arrives).

``--no-residual`` runs the spectral-only pipeline (projected low-pass z) of earlier releases.

The synthetic cohorts come from the demo's known normative process
(:class:`spectranorm_neuro.datasets.DemoProcess`) and are written to a temporary folder before the
timed steps (that preparation is reported but is not part of the pipeline). BLAS is pinned to one
thread (threadpoolctl) and parallelism comes from ``--jobs`` joblib workers. Targets (issue #13):
the four steps together at most 2x the time of the spectral-only pipeline of the release before the
residual part (``--baseline`` the ``--json`` figures of that release's run on the same machine) and
<= 2 GB.

Then the scaling exponents (log-log slopes over 3 sizes, single thread, best of 3 runs): the fit
against subjects and modes (pairs = modes / 2), and the prediction of vertex means and sds
against subjects, queries (vertices) and modes.

Usage: python bench/bench_cortex.py [--n-train 5000] [--n-new 1000] [--modes 200] [--jobs 2]
       [--no-scaling] [--keep DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from threadpoolctl import threadpool_info, threadpool_limits

from spectranorm_neuro import snm
from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.datasets import DemoProcess
from spectranorm_neuro.graphs import fsaverage5_graph
from spectranorm_neuro.io import (
    build_bids_name,
    encode_cohort,
    read_bids_cohort,
    split_features,
    store_cohort,
    write_dataset_description,
    write_gifti,
)
from spectranorm_neuro.workflow import encoded_queries, score_and_write

SITES = ("A", "B", "C")
SPACE = {"space": "fsaverage", "den": "10k"}
MEASURE = "thickness"
N_VERTICES = 20484


# ---------------------------------------------------------------------------------------------- measuring
def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _pss_mb(pid: int) -> float:
    """Proportional set size of a process (MB): shared pages split among the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_pids() -> list[int]:
    """This process and all its descendants (joblib/loky workers)."""
    todo, out = [os.getpid()], []
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += _children(pid)
    return out


def tree_memory_mb() -> float:
    """Summed PSS of this process and all its descendants (joblib/loky workers), MB."""
    todo, total = [os.getpid()], 0.0
    while todo:
        pid = todo.pop()
        total += _pss_mb(pid)
        todo += _children(pid)
    return total


class Step:
    """``with Step(name, results): ...`` times a step and samples the peak memory of the process tree."""

    def __init__(self, name: str, results: dict, counted: bool = True):
        self.name, self.results, self.counted = name, results, counted

    def _sample_cpu(self) -> None:
        for pid in tree_pids():
            self.cpu_end[pid] = max(self.cpu_end.get(pid, 0.0), _cpu_seconds(pid))

    def __enter__(self):
        self.peak = tree_memory_mb()
        self.cpu_start = {pid: _cpu_seconds(pid) for pid in tree_pids()}
        self.cpu_end = dict(self.cpu_start)
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.05):
                self.peak = max(self.peak, tree_memory_mb())
                self._sample_cpu()

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_memory_mb())
        self._sample_cpu()
        self.cpu = sum(end - self.cpu_start.get(pid, 0.0) for pid, end in self.cpu_end.items())
        if exc[0] is None:
            self.results["steps"][self.name] = {"seconds": self.seconds, "cpu_seconds": self.cpu, "peak_mb": self.peak,
                                                "counted": self.counted}
            print(f"  {self.name:<34s} {self.seconds:8.1f} s   cpu {self.cpu:8.1f} s   peak {self.peak:7.0f} MB"
                  f"{'' if self.counted else '   (preparation, not counted)'}", flush=True)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as fh:
            ram = int(fh.readline().split()[1]) / 2**20
    except OSError:
        ram = float("nan")
    blas = ", ".join(sorted({f"{i['internal_api']} {i.get('version') or ''}".strip() for i in threadpool_info()}))
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(ram, 1), "python": platform.python_version(),
            "numpy": np.__version__, "blas": blas}


def slope(sizes, seconds) -> float:
    """Log-log slope: the exponent b of seconds ~ size^b."""
    return float(np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(seconds, float)), 1)[0])


def best_of(func, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        func()
        times.append(time.perf_counter() - t)
    return min(times)


# ---------------------------------------------------------------------------------------------- data
def _write_chunk(process: DemoProcess, covariates: pd.DataFrame, seed: tuple, root: Path, structures) -> int:
    """Draw a chunk of subjects' maps and write them as BIDS ``.shape.gii`` files (one per hemisphere)."""
    with threadpool_limits(1):
        maps = process.draw(covariates, np.random.default_rng(seed))
    hemis = {"CortexLeft": "L", "CortexRight": "R"}
    lookup = {s.name: s for s in structures}
    for name, block in split_features(maps, structures).items():
        for pid, row in zip(covariates.index, block):
            path = root / pid / "anat" / build_bids_name({"sub": pid, "hemi": hemis[name], **SPACE}, MEASURE,
                                                         ".shape.gii")
            write_gifti(row, path, lookup[name], kind="NIFTI_INTENT_SHAPE", names=[MEASURE])
    return len(covariates)


def write_cohort(root: Path, process: DemoProcess, n: int, prefix: str, seed: int, n_jobs: int,
                 chunk: int = 250) -> None:
    """A BIDS derivatives dataset of ``n`` synthetic subjects, drawn and written chunk by chunk."""
    rng = np.random.default_rng([seed, 0])
    cov = process.covariates(n, rng, SITES, "control", prefix)[["age", "sex", "site"]]
    write_dataset_description(root, name=f"bench_cortex {prefix}")
    (root / "participants.tsv").write_text(cov.reset_index().to_csv(sep="\t", index=False, lineterminator="\n"))
    sidecar = {"age": {"Description": "Age at scan", "Units": "years"},
               "sex": {"Description": "Sex", "Levels": {"F": "F", "M": "M"}},
               "site": {"Description": "Site", "Levels": {s: s for s in SITES}}}
    (root / "participants.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    tasks = (delayed(_write_chunk)(process, cov.iloc[a:a + chunk], (seed, a), root, process.basis.structures)
             for a in range(0, n, chunk))
    Parallel(n_jobs=n_jobs)(tasks)


def plain(covariates: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as strings (what the engine expects)."""
    return covariates.astype({"sex": str, "site": str})


def build_model(basis, covariates):
    return snm.SpectralNormativeModel.build_from_dataframe(
        basis, "HBR", covariates, numerical_covariates=["age"], nonlinear_covariates=["age"],
        categorical_covariates=["sex", "site"], batch_covariates=["site"], influencing_mean=["age", "sex", "site"],
        influencing_variance=["age", "site"])


# ---------------------------------------------------------------------------------------------- scaling
def scaling(basis, C, cov_train, cov_new, Q, results: dict) -> None:
    """Exponents of fit and prediction costs (single thread, best of 3)."""
    n_train, k_all = C.shape
    print("\nscaling (single thread, best of 3; exponent b of seconds ~ size^b):", flush=True)
    out = results["scaling"] = {}

    subjects = [n_train // 4, n_train // 2, n_train]
    t = [best_of(lambda n=n: build_model(basis, cov_train.iloc[:n]).fit(C[:n], cov_train.iloc[:n], n_jobs=1))
         for n in subjects]
    out["fit_vs_subjects"] = {"sizes": subjects, "seconds": t, "exponent": slope(subjects, t)}
    modes = [k_all // 4, k_all // 2, k_all]
    models, t = {}, []
    for k in modes:
        def fit(k=k):
            models[k] = build_model(basis, cov_train).fit(C, cov_train, n_modes=k, n_jobs=1)
        t.append(best_of(fit))
    out["fit_vs_modes"] = {"sizes": modes, "seconds": t, "exponent": slope(modes, t)}

    model = models[k_all]
    sp = model.compute_spectral_predictions(cov_new)

    def moments(sp, Q):
        mean = best_of(lambda: sp.mu @ Q)
        both = best_of(lambda: sp.query_moments(Q))
        return mean, both

    n_new, n_q = sp.n_subjects, Q.shape[1]
    rows = {"subjects": [], "queries": [], "modes": []}
    for n in (n_new // 4, n_new // 2, n_new):
        rows["subjects"].append((n, *moments(sp.subset(slice(0, n)), Q)))
    for q in (n_q // 4, n_q // 2, n_q):
        rows["queries"].append((q, *moments(sp, np.ascontiguousarray(Q[:, :q]))))
    for k in modes:  # each model with its own pairs (modes / 2)
        sp_k = models[k].compute_spectral_predictions(cov_new)
        rows["modes"].append((k, *moments(sp_k, np.ascontiguousarray(Q[:k]))))
    for axis, vals in rows.items():
        sizes = [v[0] for v in vals]
        mean = [v[1] for v in vals]
        total = [v[2] for v in vals]
        out[f"predict_vs_{axis}"] = {"sizes": sizes, "mean_seconds": mean, "mean_and_sd_seconds": total,
                                     "mean_exponent": slope(sizes, mean), "mean_and_sd_exponent": slope(sizes, total)}
    f = out
    print(f"  fit vs subjects {subjects}: {', '.join(f'{s:.2f}' for s in f['fit_vs_subjects']['seconds'])} s"
          f" -> exponent {f['fit_vs_subjects']['exponent']:.2f} (at most 1: linear plus fixed per-mode costs)")
    print(f"  fit vs modes {modes} (pairs = modes / 2): {', '.join(f'{s:.2f}' for s in f['fit_vs_modes']['seconds'])}"
          f" s -> exponent {f['fit_vs_modes']['exponent']:.2f} (expected 1: linear)")
    for axis in ("subjects", "queries", "modes"):
        r = f[f"predict_vs_{axis}"]
        mean = ", ".join(f"{s:.3f}" for s in r["mean_seconds"])
        both = ", ".join(f"{s:.3f}" for s in r["mean_and_sd_seconds"])
        print(f"  predict vs {axis} {r['sizes']}: mean {mean} s -> exponent {r['mean_exponent']:.2f}; "
              f"mean + sd {both} s -> exponent {r['mean_and_sd_exponent']:.2f}")
    print("  expected: linear (1) in subjects and queries; in modes, 1 for the mean (a (subjects x modes) by\n"
          "  (modes x queries) product) and below 1 for mean + sd, whose (subjects x queries) element-wise work\n"
          "  does not grow with the modes while its two products grow with modes + pairs")


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-new", type=int, default=1000)
    parser.add_argument("--modes", type=int, default=200, help="modes per hemisphere (default 200)")
    parser.add_argument("--jobs", type=int, default=2, help="joblib workers (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per process (default 1)")
    parser.add_argument("--chunk-size", type=int, default=64, help="maps per encoding task")
    parser.add_argument("--block", type=int, default=64, help="subjects per apply task")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling exponents")
    parser.add_argument("--no-residual", dest="residual", action="store_false",
                        help="spectral part only (projected low-pass z), as earlier releases")
    parser.add_argument("--keep", type=Path, default=None, help="work in this (new) folder and keep it")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="JSON figures (--json) of a baseline run on the same machine to compare against")
    args = parser.parse_args(argv)

    results = {"machine": machine(), "settings": vars(args).copy(), "steps": {}}
    results["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in results["settings"].items()}
    m = results["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM; Python {m['python']}, numpy {m['numpy']}, "
          f"{m['blas']}; BLAS pinned to {args.threads} thread(s), {args.jobs} joblib worker(s)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench_cortex_")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        with threadpool_limits(args.threads):
            run(args, work, results)
            if not args.no_scaling:
                scaling(*results.pop("_scaling_inputs"), results)
    finally:
        results.pop("_scaling_inputs", None)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return results


def compare(base: dict, results: dict) -> None:
    """Print this run's step times against a baseline run's (``--json`` of an earlier release's bench)."""
    counted = [name for name, step in results["steps"].items() if step["counted"]]
    print("\nagainst the baseline run (same machine; wall seconds, and CPU seconds of the process and its workers "
          "where the baseline has them):")
    for name in [*counted, "total"]:
        if name == "total":
            mine = {k: sum(results["steps"][n].get(k, 0.0) for n in counted) for k in ("seconds", "cpu_seconds")}
            theirs = {k: sum(s.get(k, float("nan")) for n, s in base["steps"].items() if s["counted"])
                      for k in ("seconds", "cpu_seconds")}
        else:
            mine, theirs = results["steps"][name], base["steps"].get(name, {})
        if "seconds" not in theirs:
            continue
        cpu = (f"; cpu {mine['cpu_seconds']:.1f} / {theirs['cpu_seconds']:.1f} s = "
               f"{mine['cpu_seconds'] / theirs['cpu_seconds']:.2f}x" if np.isfinite(theirs.get("cpu_seconds", np.nan))
               else "")
        print(f"  {name:<34s} wall {mine['seconds']:.1f} / {theirs['seconds']:.1f} s = "
              f"{mine['seconds'] / theirs['seconds']:.2f}x{cpu}" + ("   (target <= 2x)" if name == "total" else ""))


def run(args, work: Path, results: dict) -> None:
    k = 2 * args.modes
    print(f"\nfsaverage5, both hemispheres, {args.modes} modes per hemisphere; {args.n_train} training and "
          f"{args.n_new} new subjects\n", flush=True)
    with Step("basis", results):
        graph = fsaverage5_graph("both", cortex_mask="auto")
        basis = EigenmodeBasis.from_graph(graph, k)
    n_feat = basis.n_features
    per_hemi = [int(np.count_nonzero(np.abs(basis.eigenvectors[sl]).sum(0))) for sl in
                (slice(0, basis.structures[0].n_features), slice(basis.structures[0].n_features, None))]
    with Step("synthetic GIFTI cohorts", results, counted=False):
        process = DemoProcess(basis, graph, seed=0)
        write_cohort(work / "train", process, args.n_train, "t", 1, args.jobs)
        write_cohort(work / "new", process, args.n_new, "n", 2, args.jobs)
    del process, graph

    with Step("encode (training maps)", results):
        train = read_bids_cohort(work / "train", MEASURE, basis=basis)
        if args.residual:
            store = store_cohort(train, work / "train_maps.npy", basis, chunk_size=args.chunk_size, n_jobs=args.jobs)
            C = store.coefficients
        else:
            C = encode_cohort(train, basis, chunk_size=args.chunk_size, n_jobs=args.jobs, progress=False)
    cov_train = plain(train.covariates)
    with Step("fit", results):
        model = build_model(basis, cov_train).fit(C, cov_train, n_jobs=args.jobs,
                                                  maps=store if args.residual else None)
    with Step("apply (encode, z + centile GIFTI)", results):
        new = read_bids_cohort(work / "new", MEASURE, basis=basis)
        cov_new = plain(new.covariates)
        Q = encoded_queries(model)
        if args.residual:
            written, _ = score_and_write(work / "out", model, None, cov_new, new.subjects, MEASURE, basis.structures,
                                         SPACE, kinds=("zscore", "centile"), block=args.block, n_jobs=args.jobs,
                                         maps=new.maps())
        else:
            C_new = encode_cohort(new, basis, chunk_size=args.chunk_size, n_jobs=args.jobs, progress=False)
            written, _ = score_and_write(work / "out", model, C_new, cov_new, new.subjects, MEASURE,
                                         basis.structures, SPACE, kinds=("zscore", "centile"), block=args.block,
                                         n_jobs=args.jobs)

    steps = results["steps"]
    counted = {name: s for name, s in steps.items() if s["counted"]}
    total = sum(s["seconds"] for s in counted.values())
    cpu = sum(s["cpu_seconds"] for s in counted.values())
    peak = max(s["peak_mb"] for s in counted.values())
    n_gifti = sum(p.name.endswith(".gii") for p in written)
    size = sum(p.stat().st_size for p in written) / 2**20
    summary = pd.read_csv(written[-1], sep="\t", index_col=0)
    frac = float(summary["n_abs_z_gt_2"].sum() / summary["n_features"].sum())
    results.update({
        "n_vertices": N_VERTICES, "n_features": n_feat, "n_modes": k, "modes_per_hemisphere": per_hemi,
        "n_pairs": int(model.model_params["n_pairs"]), "converged_fraction": model.model_params["converged_fraction"],
        "total_seconds": total, "total_cpu_seconds": cpu, "peak_mb": peak, "gifti_files": n_gifti, "gifti_mb": size,
        "fraction_abs_z_gt_2": frac, "mean_abs_z": float(summary["mean_abs_z"].mean()),
        "fit_ms_per_vertex": 1000 * steps["fit"]["seconds"] / n_feat,
        "pipeline_ms_per_vertex": 1000 * total / n_feat,
        "apply_ns_per_subject_vertex": 1e9 * steps["apply (encode, z + centile GIFTI)"]["seconds"] / (
            args.n_new * n_feat),
    })
    r = results
    print(f"\n  {'total (basis + encode + fit + apply)':<34s} {total:8.1f} s   cpu {cpu:8.1f} s   "
          f"peak {peak:7.0f} MB   target <= 2048 MB: {'met' if peak <= 2048 else 'NOT met'}")
    if args.baseline is not None:
        compare(json.loads(args.baseline.read_text()), results)
    print(f"\n{n_feat} modelled vertices of {N_VERTICES} (medial wall removed), {k} modes ({per_hemi[0]} left, "
          f"{per_hemi[1]} right), {r['n_pairs']} mode pairs, converged fraction {r['converged_fraction']:.3f}")
    print(f"written: {n_gifti} GIFTI files ({size:.0f} MB) + summary table; new subjects' |z| > 2 at "
          f"{100 * frac:.2f}% of vertices (4.55% expected), mean |z| {r['mean_abs_z']:.3f} (0.798 expected)")
    print(f"per-vertex cost: fit {r['fit_ms_per_vertex']:.3f} ms per vertex (one model for all {n_feat} vertices); "
          f"whole pipeline {r['pipeline_ms_per_vertex']:.2f} ms per vertex; apply "
          f"{r['apply_ns_per_subject_vertex']:.0f} ns per subject x vertex (read, encode, predict, score, write)",
          flush=True)
    results["_scaling_inputs"] = (basis, C, cov_train, cov_new, Q)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
