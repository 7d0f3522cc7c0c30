"""Benchmark of neuroimaging I/O (issue #5 targets).

Prints:

* reading + encoding throughput (subjects per second) of a BIDS derivatives cohort of fsaverage5
  GIFTI maps, both hemispheres (20484 vertices, an approximate medial wall masked out), into a
  basis of 200 modes per hemisphere (400 in all), for ``n_jobs`` = 1 and 2;
* writing throughput (subjects per second) of z-maps as a BIDS derivatives tree (two
  ``.func.gii`` per subject);
* peak traced memory (:mod:`tracemalloc`: numpy and Python allocations) of the streaming
  ``encode_cohort`` path for a small and a large cohort (default 500 and 2000 subjects), also
  without the ``(n_subjects, n_modes)`` coefficients it returns, next to the size the large
  cohort's maps would take in memory at once. The target is a working set that does not grow
  with the cohort (it grows with ``--chunk-size``).

The basis is a random orthonormal one with the shapes of a real hemisphere basis (block diagonal,
200 modes per hemisphere): encoding cost depends on shapes only, and building Laplace–Beltrami
modes is benchmarked in ``bench_basis.py``. Maps are synthetic (nilearn's fsaverage5 sulcal depth
plus noise) and written to a temporary folder that is removed at the end.

Run: ``python bench/bench_io.py [--n-subjects 2000] [--small 500] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from spectranorm_neuro import io
from spectranorm_neuro.basis import EigenmodeBasis

N_VERT = 10242


def structures_and_basis(n_modes: int, seed: int = 0):
    """fsaverage5 hemispheres without an approximate medial wall, and a block-diagonal basis."""
    from nilearn.datasets import load_fsaverage_data

    thick = load_fsaverage_data(mesh="fsaverage5", data_type="thickness")
    structs = tuple(io.surface_structure(h, N_VERT, np.nan_to_num(np.asarray(thick.data.parts[p])) > 1.0)
                    for h, p in (("L", "left"), ("R", "right")))
    r = np.random.default_rng(seed)
    n = sum(s.n_features for s in structs)
    evecs = np.zeros((n, 2 * n_modes))
    row = 0
    for i, s in enumerate(structs):
        evecs[row:row + s.n_features, i * n_modes:(i + 1) * n_modes] = np.linalg.qr(
            r.normal(size=(s.n_features, n_modes)))[0]
        row += s.n_features
    return structs, EigenmodeBasis(np.arange(2 * n_modes, dtype=float), evecs, structures=structs)


def make_cohort(root: Path, n_subjects: int, structs, seed: int = 0) -> None:
    """participants.tsv + two GIFTI maps per subject (NaN on the medial wall)."""
    from nilearn.datasets import load_fsaverage_data

    sulc = load_fsaverage_data(mesh="fsaverage5", data_type="sulcal")
    base = {"L": np.asarray(sulc.data.parts["left"]), "R": np.asarray(sulc.data.parts["right"])}
    full = {h: io.surface_structure(h, N_VERT) for h in "LR"}
    r = np.random.default_rng(seed)
    ids = [f"sub-{i:05d}" for i in range(n_subjects)]
    root.mkdir(parents=True)
    pd.DataFrame({"participant_id": ids, "age": r.uniform(10, 90, n_subjects)}).to_csv(
        root / "participants.tsv", sep="\t", index=False)
    for pid in ids:
        for h, s in zip("LR", structs):
            values = base[h] + r.normal(scale=0.3, size=N_VERT)
            values[np.setdiff1d(np.arange(N_VERT), s.index)] = np.nan
            io.write_gifti(values, root / pid / "anat" / f"{pid}_hemi-{h}_space-fsaverage5_thickness.shape.gii",
                           full[h], kind="none")


def encode_throughput(root: Path, basis, n_jobs: int, chunk_size: int) -> tuple[float, float]:
    cohort = io.read_bids_cohort(root, "thickness", basis=basis)
    t0 = time.perf_counter()
    coeffs = io.encode_cohort(cohort, basis, chunk_size=chunk_size, n_jobs=n_jobs, progress=False)
    elapsed = time.perf_counter() - t0
    assert coeffs.shape == (cohort.n_subjects, basis.n_modes)
    return cohort.n_subjects / elapsed, elapsed


def write_throughput(out: Path, basis, n_subjects: int) -> tuple[float, float]:
    z = np.random.default_rng(1).normal(size=(n_subjects, basis.n_features))
    writer = io.DerivativesWriter(out)
    t0 = time.perf_counter()
    writer.write_cohort(z, [f"{i:05d}" for i in range(n_subjects)], "zscore", "thickness", basis.structures,
                        space="fsaverage5")
    elapsed = time.perf_counter() - t0
    return n_subjects / elapsed, elapsed


def streaming_peak(root: Path, basis, chunk_size: int) -> float:
    """Peak traced memory (MiB) of reading the cohort table and encoding every map."""
    tracemalloc.start()
    cohort = io.read_bids_cohort(root, "thickness", basis=basis)
    io.encode_cohort(cohort, basis, chunk_size=chunk_size, n_jobs=1, progress=False)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=2000, help="large cohort (memory figure)")
    parser.add_argument("--small", type=int, default=500, help="small cohort (memory figure, throughput)")
    parser.add_argument("--modes", type=int, default=200, help="modes per hemisphere")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--write-subjects", type=int, default=200)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    structs, basis = structures_and_basis(args.modes)
    tmp = Path(tempfile.mkdtemp(prefix="bench_io_"))
    results = {"n_features": basis.n_features, "n_modes": basis.n_modes, "chunk_size": args.chunk_size}
    try:
        t0 = time.perf_counter()
        make_cohort(tmp / "small", args.small, structs, seed=1)
        make_cohort(tmp / "large", args.n_subjects, structs, seed=2)
        results["generate_s"] = time.perf_counter() - t0
        print(f"fsaverage5, both hemispheres: {basis.n_features} features (medial wall masked), "
              f"{basis.n_modes} modes ({args.modes} per hemisphere); cohorts written in "
              f"{results['generate_s']:.1f} s", flush=True)

        encode_throughput(tmp / "small", basis, 1, args.chunk_size)  # warm up imports and caches
        for n_jobs in (1, 2):
            rate, elapsed = encode_throughput(tmp / "large", basis, n_jobs, args.chunk_size)
            results[f"read_encode_subjects_per_s_jobs{n_jobs}"] = rate
            print(f"read + encode, n_jobs={n_jobs}: {rate:7.1f} subjects/s "
                  f"({args.n_subjects} subjects in {elapsed:.2f} s)", flush=True)

        rate, elapsed = write_throughput(tmp / "deriv", basis, args.write_subjects)
        results["write_zmaps_subjects_per_s"] = rate
        print(f"write z-maps (BIDS derivatives, 2 x .func.gii): {rate:7.1f} subjects/s "
              f"({args.write_subjects} subjects in {elapsed:.2f} s)", flush=True)

        small_peak = streaming_peak(tmp / "small", basis, args.chunk_size)
        large_peak = streaming_peak(tmp / "large", basis, args.chunk_size)
        dense = args.n_subjects * basis.n_features * 8 / 2**20
        # the (n_subjects, n_modes) result must be held; the rest is the streaming working set
        out_small, out_large = (n * basis.n_modes * 8 / 2**20 for n in (args.small, args.n_subjects))
        work_small, work_large = small_peak - out_small, large_peak - out_large
        results.update({"peak_mib_small": small_peak, "peak_mib_large": large_peak,
                        "working_mib_small": work_small, "working_mib_large": work_large,
                        "all_maps_in_memory_mib": dense})
        print(f"streaming encode, peak traced memory: {small_peak:6.1f} MiB for {args.small} subjects, "
              f"{large_peak:6.1f} MiB for {args.n_subjects} subjects; without the coefficients returned "
              f"({out_small:.1f} / {out_large:.1f} MiB): {work_small:.1f} / {work_large:.1f} MiB "
              f"(all {args.n_subjects} maps at once would take {dense:.0f} MiB)", flush=True)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results["peak_rss_mib"] = rss
        print(f"process peak resident set size: {rss:.0f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
