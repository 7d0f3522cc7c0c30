"""Benchmark of eigenmode basis construction (issue #3 targets).

Prints, with BLAS threads pinned to one:

* a 50 x 50 lattice, 100 normalized-Laplacian modes (target <= 1 s);
* fsaverage5 left hemisphere, 200 Laplace–Beltrami modes: spectranorm_neuro (graph + FEM
  assembly + solve) against lapy's own ``Solver(TriaMesh).eigs(k=200)`` (assembly + solve) on
  the same mesh in the same process, and their ratio (target <= 1.2);
* the same with the approximate cortex mask, and both hemispheres as one basis;
* peak traced memory (numpy/Python allocations, :mod:`tracemalloc`) per step and the process'
  peak resident set size.

Each timing is the best of ``--repeats`` runs (default 3), alternating ours and lapy's so both
see the same machine load. Run: ``python bench/bench_basis.py [--repeats N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.graphs import fsaverage5_cortex_mask, fsaverage5_graph, lattice_graph, load_surface
from spectranorm_neuro.snm.utils.gsp import compute_symmetric_normalized_laplacian_eigenmodes


def timed(fn, repeats):
    """Best wall time over ``repeats`` untraced runs, peak traced memory (MiB) of one more run, result."""
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return best, peak, out


def _once(fn, trace):
    """((wall time, peak traced MiB or 0), result) of one untraced run, plus a traced run if asked."""
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    peak = 0.0
    if trace:
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return (wall, peak), out


def lapy_eigs(vertices, faces, k):
    from lapy import Solver, TriaMesh

    return Solver(TriaMesh(vertices, faces)).eigs(k=k)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    results = {}
    with threadpool_limits(1):
        adj = lattice_graph((50, 50)).adjacency
        t, mem, _ = timed(lambda: compute_symmetric_normalized_laplacian_eigenmodes(adj, 100), args.repeats)
        results["lattice_50x50_100_modes_s"] = t
        print(f"50x50 lattice, 100 modes (normalized):           {t:7.3f} s  (target <= 1 s)  "
              f"peak {mem:6.1f} MiB")
        t, mem, _ = timed(lambda: EigenmodeBasis.from_graph(lattice_graph((50, 50)), 100), args.repeats)
        results["lattice_50x50_from_graph_s"] = t
        print(f"50x50 lattice, from_graph incl. graph build:     {t:7.3f} s                   "
              f"peak {mem:6.1f} MiB")

        v, f = load_surface("fsaverage5", hemi="left")
        ours, lapy_t = np.inf, np.inf
        mem_ours = mem_lapy = 0.0
        for r in range(args.repeats):  # alternate so both see the same load; trace memory once
            t, basis = _once(lambda: EigenmodeBasis.from_graph(fsaverage5_graph("left", cortex_mask=None), 200), r == 0)
            ours, mem_ours = min(ours, t[0]), max(mem_ours, t[1])
            t, (lvals, _) = _once(lambda: lapy_eigs(v, f, 200), r == 0)
            lapy_t, mem_lapy = min(lapy_t, t[0]), max(mem_lapy, t[1])
        ratio = ours / lapy_t
        results.update(fsaverage5_200_lbo_s=ours, lapy_200_s=lapy_t, ratio_vs_lapy=ratio,
                       max_abs_eigenvalue_difference=float(np.max(np.abs(basis.eigenvalues - lvals))))
        print(f"fsaverage5 left, 200 LBO modes (spectranorm):    {ours:7.3f} s  peak {mem_ours:6.1f} MiB")
        print(f"fsaverage5 left, 200 modes lapy Solver.eigs:     {lapy_t:7.3f} s  peak {mem_lapy:6.1f} MiB")
        print(f"  ratio spectranorm / lapy:                      {ratio:7.3f}    (target <= 1.2); "
              f"max |eigenvalue difference| {results['max_abs_eigenvalue_difference']:.2e}")

        mask = fsaverage5_cortex_mask("left")
        t, mem, _ = timed(lambda: EigenmodeBasis.from_graph(fsaverage5_graph("left", cortex_mask=mask), 200),
                          args.repeats)
        results["fsaverage5_masked_200_lbo_s"] = t
        print(f"fsaverage5 left, cortex mask ({mask.sum()} vertices):  {t:7.3f} s  peak {mem:6.1f} MiB")
        t, mem, _ = timed(lambda: EigenmodeBasis.from_graph(fsaverage5_graph("both", cortex_mask=None), 200), 1)
        results["fsaverage5_both_200_lbo_s"] = t
        print(f"fsaverage5 both hemispheres, 200 modes:          {t:7.3f} s  peak {mem:6.1f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["peak_rss_mib"] = rss
    print(f"process peak resident memory:                    {rss:7.1f} MiB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
