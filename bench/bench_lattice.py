"""Benchmark of the spectral engine on the reference tutorial's cohort.

50 x 50 lattice, 100 modes, 3000 training and 1000 test subjects, 2500 Gaussian-kernel pixel queries
(sigma 0.05), the tutorial's model (age spline + hierarchical site on mean and variance).

Prints fit seconds, evaluate seconds (2500 queries x 1000 subjects), peak memory, the test MSLL
median, and the RMSE between predicted z-scores and the true z-scores of the generative process.
Reference implementation on this kind of machine: fit 1389 s, evaluate 1.8 s, MSLL median -0.60,
z RMSE 0.103. Targets: fit <= 10 s, evaluate <= 0.5 s, z RMSE <= 0.08.

Usage: python bench/bench_lattice.py [--threads N] [--pairs correlation|covariance]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MemorySampler, Timer, machine, peak_rss_mb, pinned

from spectranorm_neuro import snm
from spectranorm_neuro.datasets import gaussian_kernel_queries, lattice_basis, tutorial_cohorts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads outside the fit (default 1)")
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--pair-selection", default="covariance", choices=["correlation", "covariance"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {machine()}; BLAS threads pinned to {args.threads}")
    with pinned(args.threads):
        with Timer() as t:
            basis = lattice_basis(50, 100)
        print(f"basis (50x50 lattice, 100 modes): {t.seconds:.2f} s")
        (train, _, _, obs, _), (test, _, _, obs_te, eps) = tutorial_cohorts(args.train, args.test)
        c_train, c_test = basis.encode(obs), basis.encode(obs_te)
        model = snm.SpectralNormativeModel.build_from_dataframe(
            eigenmode_basis=basis, model_type="HBR", covariates_dataframe=train, numerical_covariates=["age"],
            nonlinear_covariates=["age"], categorical_covariates=["site"], batch_covariates=["site"],
            influencing_mean=["age", "site"], influencing_variance=["age", "site"])
        with MemorySampler() as mem_fit, Timer() as t_fit:
            model.fit(c_train, train, pair_selection=args.pair_selection)
        queries = basis.encode_queries(gaussian_kernel_queries(50, 0.05))
        y_train = c_train @ queries
        moments = np.stack([y_train.mean(0), y_train.std(0, ddof=1)])
        with MemorySampler() as mem_eval, Timer() as t_eval:
            perf = model.evaluate(queries, c_test, test, query_train_moments=moments)
    z = perf.predictions["z-score"]
    z_rmse = float(np.sqrt(np.mean((z - eps[:, None]) ** 2)))
    msll = perf.evaluations["MSLL"]
    print(f"fit: {t_fit.seconds:.2f} s (reference 1389 s; target <= 10 s; ratio {1389 / t_fit.seconds:.0f}x), "
          f"{model.model_params['n_pairs']} pairs, converged fraction {model.model_params['converged_fraction']:.3f}, "
          f"peak +{mem_fit.increase:.0f} MB")
    print(f"evaluate 2500 queries x {args.test} subjects: {t_eval.seconds:.2f} s (reference 1.8 s; target <= 0.5 s), "
          f"peak +{mem_eval.increase:.0f} MB")
    print(f"test MSLL median {np.median(msll):.3f} (reference -0.60), max {msll.max():.3f}, "
          f"all negative: {bool(np.all(msll < 0))}")
    print(f"z RMSE vs true z: {z_rmse:.4f} (reference 0.103; target <= 0.08)")
    print(f"z calibration: mean {z.mean():.3f}, sd {z.std():.3f}, |z|>1.96 {np.mean(np.abs(z) > 1.96):.3f}")
    print(f"process peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
