"""Benchmark of regional normative models on synthetic regional cohorts with known truth.

Cohorts: subjects aged 8-85 from 12 training sites (site mean shifts, and residual spreads x0.6 to
x2.0 of the population's, as between FCON-1000 sites), sex, and three kinds of regions: Normal
(thickness-like: nonlinear age curve, age-dependent sd), log-normal volumes (ventricle-like,
right-skewed, skewness ~1), and heavy-tailed thickness (t with 4 degrees of freedom).

Prints, per seed:

* held-out MSLL of the Normal and of the SHASHb likelihood per kind of region (median over
  regions), the share of skewed/heavy regions where SHASHb is better, and the largest loss of
  SHASHb on Normal regions (target: better where skewed/heavy-tailed, never worse by > 0.01 where
  Normal); held-out z skew, kurtosis and the fraction beyond +-1.96;
* the likelihood-ratio verdict (regions found non-Normal, per kind);
* adaptation to held-out sites with x0.6, x1.0 and x2.0 spread (``--spreads``) from 20 controls each
  (``--controls``; ``--sites`` training sites, default 12): their z mean and sd on 300 further
  subjects of the site, not the controls (median over regions; target z sd 0.9-1.1, mean within
  +-0.1), the share of regions with z sd in 0.9-1.1 and the reported effective number of controls
  (``--only adapt`` runs only this part);

then the time to fit a 200-region table (1000 subjects) with SHASHb on the MAP path, with the
same-run ratio to the Normal fit (target <= 10 s; the machine is shared, so compare ratios), and,
with ``--pymc``, the agreement of the pymc ADVI path with the MAP path on the same Normal model.

Usage: python bench/bench_regional.py [--seeds 0 1 2] [--regions 60] [--pymc]
       python bench/bench_regional.py --only adapt [--spreads 0.6 1 2] [--controls 5 20 50]
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, machine, pinned

from spectranorm_neuro.engine.regional import RegionalNormativeModel

SITES = [f"S{i:02d}" for i in range(12)]
KINDS = ("normal", "lognormal", "t4")


def cohort(n, seed, sites, shifts, spreads, n_regions):
    """Covariates and a table (n, n_regions); regions cycle through the three kinds."""
    rng = np.random.default_rng(seed)
    cov = pd.DataFrame({"age": rng.uniform(8, 85, n), "sex": rng.choice(["F", "M"], n),
                        "site": rng.choice(sites, n)}, index=[f"sub-{seed}-{i:05d}" for i in range(n)])
    a = cov["age"].to_numpy()[:, None]
    male = (cov["sex"] == "M").to_numpy(float)[:, None]
    k = np.arange(n_regions)[None, :]
    shift = cov["site"].map(shifts).to_numpy(float)[:, None]
    spread = cov["site"].map(spreads).to_numpy(float)[:, None]
    kind = k % 3
    base = 2.6 - 0.25 * np.tanh((a - 30) / 25) + 0.05 * np.sin(a / 12 + k) + 0.04 * male
    sd = (0.09 + 0.0006 * a) * spread
    eps = rng.normal(size=(n, n_regions))
    t4 = rng.standard_t(4, size=(n, n_regions)) / np.sqrt(2.0)  # unit variance
    y = np.where(kind == 2, base + shift * 0.05 + sd * t4, base + shift * 0.05 + sd * eps)
    # log-normal volumes growing with age (ventricle-like), site acts multiplicatively
    vol = np.exp(np.log(8.0 + 0.15 * a + 0.5 * male) + 0.05 * shift + 0.35 * spread * eps)
    y = np.where(kind == 1, vol, y)
    return pd.DataFrame(y, index=cov.index, columns=[f"{KINDS[j % 3]}_{j:03d}" for j in range(n_regions)]), cov


def build(cov, likelihood):
    return RegionalNormativeModel.from_dataframe(
        "HBR", cov, numerical_covariates=["age"], nonlinear_covariates=["age"], categorical_covariates=["sex", "site"],
        batch_covariates=["site"], influencing_mean=["age", "sex", "site"], influencing_variance=["age", "site"],
        likelihood=likelihood)


def accuracy(seed, n_regions, n_train, n_test, only=None, new_spreads=(0.6, 1.0, 2.0), controls=(20,), n_sites=12):
    rng = np.random.default_rng(1000 + seed)
    sites = SITES if n_sites == len(SITES) else [f"S{i:02d}" for i in range(n_sites)]
    shifts = dict(zip(sites, rng.normal(0, 1, len(sites))))
    spreads = dict(zip(sites, np.exp(rng.permutation(np.linspace(np.log(0.6), np.log(2.0), len(sites)))) / 1.1))
    train, cov = cohort(n_train, seed, sites, shifts, spreads, n_regions)
    test, tcov = cohort(n_test, seed + 500, sites, shifts, spreads, n_regions)
    res = {}
    for lik in ("Normal", "SHASHb"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build(cov, lik).fit(train, cov)
        res[lik] = (model, model.evaluate(test, tcov))
    kinds = np.array([c.split("_")[0] for c in train.columns])
    print(f"seed {seed}: {n_regions} regions, {n_train} training / {n_test} test subjects, {len(sites)} sites")
    if only == "adapt":
        adapt(res["SHASHb"][0], res["Normal"][0], seed, n_regions, new_spreads, controls)
        return
    d = res["SHASHb"][1].metrics["MSLL"] - res["Normal"][1].metrics["MSLL"]
    comp = res["SHASHb"][0].likelihood_comparison()
    for kind in KINDS:
        sel = kinds == kind
        zn, zs = res["Normal"][1]["z-score"].loc[:, sel], res["SHASHb"][1]["z-score"].loc[:, sel]
        line = (f"  {kind:9s} MSLL median Normal {res['Normal'][1].metrics['MSLL'][sel].median():.4f} "
                f"SHASHb {res['SHASHb'][1].metrics['MSLL'][sel].median():.4f}; SHASHb-Normal median "
                f"{d[sel].median():+.4f} max {d[sel].max():+.4f}; better in {np.mean(d[sel] < 0):.0%}")
        print(line)
        for name, z in (("Normal", zn), ("SHASHb", zs)):
            sk, ku = stats.skew(z, axis=0), stats.kurtosis(z, axis=0)
            print(f"    {name:6s} z: |skew| median {np.median(np.abs(sk)):.2f}, excess kurtosis median "
                  f"{np.median(ku):.2f}, |z|>1.96 {np.mean(np.abs(z.to_numpy()) > 1.96):.3f}")
        print(f"    likelihood-ratio test: Normal rejected in {np.mean(~comp['normal_adequate'][sel]):.0%} of regions")
    adapt(res["SHASHb"][0], res["Normal"][0], seed, n_regions, new_spreads, controls)


def adapt(model_shash, model_normal, seed, n_regions, spreads=(0.6, 1.0, 2.0), controls=(20,)):
    """A held-out site's z on 300 further subjects after adapting on its controls (scored apart)."""
    for mult in spreads:
        for n_controls in controls:
            for name, model in (("Normal", model_normal), ("SHASHb", model_shash)):
                shifts, spread = {"NEW": 0.8}, {"NEW": mult}
                ctrl, ccov = cohort(n_controls, seed + 700, ["NEW"], shifts, spread, n_regions)
                test, tcov = cohort(300, seed + 800, ["NEW"], shifts, spread, n_regions)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # fewer than 10 controls warn
                    adapted = copy.deepcopy(model).adapt_fit(ctrl, ccov)
                z = adapted.evaluate(test, tcov)["z-score"]
                rep = adapted.model_params["adaptation"]["site"]["NEW"]
                inside = np.mean((z.std() > 0.9) & (z.std() < 1.1))
                print(f"  adapt x{mult} spread, {n_controls} controls ({name}): z mean median "
                      f"{z.mean().median():+.3f}, z sd median {z.std().median():.3f} (regions in 0.9-1.1: "
                      f"{inside:.0%}); effective controls {rep['n_effective']:.1f}")


def equal_spread_sites(seed: int) -> tuple[dict, dict]:
    """Site mean shifts drawn N(0, 1) and spreads all 1 (the timing and pymc cohorts)."""
    rng = np.random.default_rng(seed)
    return dict(zip(SITES, rng.normal(0, 1, len(SITES)))), dict.fromkeys(SITES, 1.0)


def timing(n_regions=200, n=1000):
    shifts, spreads = equal_spread_sites(5)
    table, cov = cohort(n, 5, SITES, shifts, spreads, n_regions)
    times = {}
    for lik in ("Normal", "SHASHb", "Normal", "SHASHb"):
        with Timer() as t:
            build(cov, lik).fit(table, cov)
        times.setdefault(lik, []).append(t.seconds)
    tn, ts = min(times["Normal"]), min(times["SHASHb"])
    print(f"fit {n_regions} regions x {n} subjects (MAP path, shared machine, best of 2): Normal {tn:.2f} s, "
          f"SHASHb {ts:.2f} s (target <= 10 s); SHASHb/Normal ratio {ts / tn:.1f}x; "
          f"per region {ts / n_regions * 1e3:.0f} ms")


def pymc_agreement(n_regions=6, n=600):
    shifts, spreads = equal_spread_sites(6)
    table, cov = cohort(n, 6, SITES, shifts, spreads, n_regions)
    test, tcov = cohort(300, 7, SITES, shifts, spreads, n_regions)
    out = {}
    for inference in ("map", "advi"):
        with Timer() as t:
            kwargs = {"select_normal": False} if inference == "map" else {}  # the same model on both paths
            m = build(cov, "SHASHb").fit(table, cov, inference=inference, random_state=0, **kwargs)
        pred = m.predict(tcov)
        z = m.evaluate(test, tcov)["z-score"].to_numpy()
        out[inference] = (pred["mu"].to_numpy(), pred["sd"].to_numpy(), z, t.seconds)
    dmu = np.abs(out["map"][0] - out["advi"][0]) / out["map"][1]
    dsd = np.abs(np.log(out["advi"][1] / out["map"][1]))
    dz = np.abs(out["map"][2] - out["advi"][2])
    print(f"pymc ADVI vs MAP (SHASHb, {n_regions} regions, {n} subjects): max |d mu|/sd {dmu.max():.3f}, "
          f"max |d log sd| "
          f"{dsd.max():.3f}, held-out z max |diff| {dz.max():.3f} (mean {dz.mean():.3f}); ADVI/MAP time ratio "
          f"{out['advi'][3] / out['map'][3]:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--regions", type=int, default=60)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--pymc", action="store_true", help="also compare the pymc ADVI path with MAP")
    parser.add_argument("--only", choices=["adapt"], help="run only the adaptation part (no MSLL, timing, pymc)")
    parser.add_argument("--spreads", type=float, nargs="+", default=[0.6, 1.0, 2.0],
                        help="spread multipliers of the held-out sites adapted to")
    parser.add_argument("--controls", type=int, nargs="+", default=[20], help="numbers of controls to adapt on")
    parser.add_argument("--sites", type=int, default=12, help="training sites of the accuracy/adaptation cohorts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {machine()} (shared: compare same-run ratios, not absolute times)")
    with pinned(1):
        for seed in args.seeds:
            accuracy(seed, args.regions, args.train, args.test, args.only, args.spreads, args.controls, args.sites)
        if args.only:
            return
        timing()
        if args.pymc:
            pymc_agreement()


if __name__ == "__main__":
    main()
