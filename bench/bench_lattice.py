"""Benchmark of the spectral engine on the reference tutorial's cohort.

50 x 50 lattice, 100 modes, 3000 training and 1000 test subjects, 2500 Gaussian-kernel pixel queries
(sigma 0.05), the tutorial's model (age spline + hierarchical site on mean and variance).

Prints fit seconds, evaluate seconds (2500 queries x 1000 subjects), peak memory, the test MSLL
median, and the RMSE between predicted z-scores and the true z-scores of the generative process.
Reference implementation on this kind of machine: fit 1389 s, evaluate 1.8 s, MSLL median -0.60,
z RMSE 0.103. Targets: fit <= 10 s, evaluate <= 0.5 s, z RMSE <= 0.08.

``--decompose`` splits the z error into its mean and sd parts and prints the floor any fit of this
model specification can reach on this training cohort: the mean part with the best possible mean
at this spline (weighted least squares with the true per-mode sd as weights) and the sd part with
the sd fitted on the true residuals (the mean known exactly). ``--seeds`` repeats the run on other
draws of the same process (other cohorts and site effects) to show the spread between draws.

Usage: python bench/bench_lattice.py [--threads N] [--jobs N] [--pair-selection correlation|covariance]
       [--df DF] [--smoothing eb] [--decompose] [--seeds 1 7 100]
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
from spectranorm_neuro.engine.effects import Design
from spectranorm_neuro.engine.spectral import SpectralPredictions

TUTORIAL_SEEDS = (42, 43)


def build(basis, train, df: int, influencing_mean=("age", "site"), smoothing=None):
    """The tutorial's model (its defaults except the spline df and, optionally, estimated smoothness)."""
    kwargs = {"df": df} if smoothing is None else {"df": df, "smoothing": smoothing}
    return snm.SpectralNormativeModel.build_from_dataframe(
        eigenmode_basis=basis, model_type="HBR", covariates_dataframe=train, numerical_covariates=["age"],
        nonlinear_covariates=["age"], categorical_covariates=["site"], batch_covariates=["site"],
        influencing_mean=list(influencing_mean), influencing_variance=["age", "site"], spline_kwargs=kwargs)


def z_rmse(z: np.ndarray, eps: np.ndarray) -> float:
    """RMSE between z-scores (n_subjects, n_queries) and the true z ``eps`` (n_subjects,)."""
    return float(np.sqrt(np.mean((z - eps[:, None]) ** 2)))


def decompose(basis, model, queries, train, test, c_train, c_test, eps, truth, pair_selection) -> None:
    """Print the mean and sd parts of the z error and the floors of this specification."""
    mean_tr, sd_tr, mean_te, sd_te = truth
    sp = model.compute_spectral_predictions(test)
    mu_q, sd_q = sp.query_moments(queries)
    y = c_test @ queries
    mu_true, sd_true = basis.encode(mean_te) @ queries, np.abs(basis.encode(sd_te) @ queries)
    # best mean this design can give: per-mode weighted least squares with the true sd as weights
    design = Design(model.base_model.spec, "mean")
    X, _ = design.matrix(train, warn=False)
    Xt, _ = design.matrix(test, warn=False)
    w = 1.0 / np.maximum(np.abs(basis.encode(sd_tr)), 1e-12)
    B = np.stack([np.linalg.lstsq(X * w[:, k:k + 1], c_train[:, k] * w[:, k], rcond=None)[0]
                  for k in range(c_train.shape[1])], axis=1)
    mu_wls = Xt @ B @ queries
    # sd fitted on the true residuals (mean known exactly), with the fitted model's correlations
    resid = c_train - basis.encode(mean_tr)
    kw = model.base_model.spec.spline_kwargs
    known_mean = build(basis, train, kw["df"], influencing_mean=(), smoothing=kw.get("smoothing"))
    known_mean.fit(resid, train, pair_selection=pair_selection, progress=False)
    sd_known = known_mean.compute_spectral_predictions(test).sd
    _, sd_q_known = SpectralPredictions(sp.mu, sd_known, sp.rho, sp.pairs).query_moments(queries)
    print("z error decomposition (RMSE against the true z):")
    print(f"  fitted mean, fitted sd:             {z_rmse((y - mu_q) / sd_q, eps):.4f}")
    print(f"  fitted mean, true sd (mean part):   {z_rmse((y - mu_q) / sd_true, eps):.4f}")
    print(f"  WLS mean with true weights, true sd: {z_rmse((y - mu_wls) / sd_true, eps):.4f}  "
          "<- floor of the mean part")
    print(f"  true mean, fitted sd (sd part):     {z_rmse((y - mu_true) / sd_q, eps):.4f}")
    print(f"  true mean, sd fitted on true residuals: {z_rmse((y - mu_true) / sd_q_known, eps):.4f}  "
          "<- floor of the sd part")
    floor = z_rmse((y - mu_wls) / sd_q_known, eps)
    print(f"  both floors together:               {floor:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads outside the fit (default 1)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="joblib workers of the fit (default 1: its CPU time, printed, is then the whole fit's)")
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--pair-selection", default="covariance", choices=["correlation", "covariance"])
    parser.add_argument("--covariance-structure", default=None,
                        help="'lowrank' or a pair fraction such as 0.5 (default: the package's default)")
    parser.add_argument("--df", type=int, default=5, help="spline df (default 5, the tutorial's)")
    parser.add_argument("--smoothing", default=None, choices=["eb"],
                        help="'eb': penalized B-spline with --df basis functions, smoothness by empirical Bayes")
    parser.add_argument("--decompose", action="store_true", help="split the z error and print its floors")
    parser.add_argument("--cohort-seed", type=int, default=None,
                        help="draw the main cohort with seeds (s, s + 1) instead of the tutorial's (42, 43)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[],
                        help="also report z RMSE on other draws (training seed s, test seed s + 1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {machine()}; BLAS threads pinned to {args.threads}; spline df {args.df}"
          + ("" if args.smoothing is None else f", smoothing {args.smoothing}"))
    with pinned(args.threads):
        with Timer() as t:
            basis = lattice_basis(50, 100)
        print(f"basis (50x50 lattice, 100 modes): {t.seconds:.2f} s")
        queries = basis.encode_queries(gaussian_kernel_queries(50, 0.05))
        (train, m_tr, s_tr, obs, _), (test, m_te, s_te, obs_te, eps) = tutorial_cohorts(
            args.train, args.test, seeds=TUTORIAL_SEEDS if args.cohort_seed is None else (args.cohort_seed,
                                                                                          args.cohort_seed + 1))
        c_train, c_test = basis.encode(obs), basis.encode(obs_te)
        model = build(basis, train, args.df, smoothing=args.smoothing)
        structure = {} if args.covariance_structure is None else {"covariance_structure": (
            args.covariance_structure if args.covariance_structure == "lowrank" else float(args.covariance_structure))}
        with MemorySampler() as mem_fit, Timer() as t_fit:
            model.fit(c_train, train, pair_selection=args.pair_selection, n_jobs=args.jobs, **structure)
        y_train = c_train @ queries
        moments = np.stack([y_train.mean(0), y_train.std(0, ddof=1)])
        with MemorySampler() as mem_eval, Timer() as t_eval:
            perf = model.evaluate(queries, c_test, test, query_train_moments=moments)
        z = perf.predictions["z-score"]
        msll = perf.evaluations["MSLL"]
        print(f"fit: {t_fit.seconds:.2f} s, cpu {t_fit.cpu_seconds:.2f} s (reference 1389 s; target <= 10 s; ratio "
              f"{1389 / t_fit.seconds:.0f}x), "
              f"{model.model_params['n_pairs']} pairs, rank {model.model_params.get('covariance_rank')}, "
              f"converged fraction "
              f"{model.model_params['converged_fraction']:.3f}, peak +{mem_fit.increase:.0f} MB")
        print(f"evaluate 2500 queries x {args.test} subjects: {t_eval.seconds:.2f} s (reference 1.8 s; "
              f"target <= 0.5 s), peak +{mem_eval.increase:.0f} MB")
        print(f"test MSLL median {np.median(msll):.3f} (reference -0.60), max {msll.max():.3f}, "
              f"all negative: {bool(np.all(msll < 0))}")
        print(f"z RMSE vs true z: {z_rmse(z, eps):.4f} (reference 0.103; target <= 0.08)")
        print(f"z calibration: mean {z.mean():.3f}, sd {z.std():.3f}, |z|>1.96 {np.mean(np.abs(z) > 1.96):.3f}")
        if args.decompose:
            decompose(basis, model, queries, train, test, c_train, c_test, eps, (m_tr, s_tr, m_te, s_te),
                      args.pair_selection)
        for seed in args.seeds:
            (tr, _, _, o, _), (te, _, _, o_te, e) = tutorial_cohorts(args.train, args.test, seeds=(seed, seed + 1))
            other = build(basis, tr, args.df, smoothing=args.smoothing)
            other.fit(basis.encode(o), tr, pair_selection=args.pair_selection, progress=False, **structure)
            mu_q, sd_q = other.compute_spectral_predictions(te).query_moments(queries)
            z_other = (basis.encode(o_te) @ queries - mu_q) / sd_q
            print(f"draw with seeds ({seed}, {seed + 1}): z RMSE {z_rmse(z_other, e):.4f}")
    print(f"process peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
