"""Commands that make or describe models: ``basis``, ``fit``, ``adapt``, ``info``, ``sys-info``."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from .._version import __version__
from ..workflow import (
    ModelBundle,
    adapt_bundle,
    basis_space,
    check_bundle_target,
    check_fit_options,
    fit_bundle,
    fit_regional_bundle,
    load_basis,
    space_label,
)
from ..workflow.bases import check_basis_target, make_basis, save_basis_file
from ._common import Run, UsageError, load_cohort, load_regional

__all__ = ["cmd_basis", "cmd_fit", "cmd_adapt", "cmd_info", "cmd_sys_info"]


def cmd_basis(run: Run) -> int:
    """``spectranorm-neuro basis``: compute an eigenmode basis and save it."""
    args = run.args
    check_basis_target(args.out, run.overwrite)
    basis = make_basis(args.n_modes, args.mesh, args.mask, args.lattice, hemi=args.hemi,
                       cortex_mask=args.cortex_mask, surface=args.surface, connectivity=args.connectivity,
                       laplacian=args.laplacian, space=args.space, den=args.den, res=args.res)
    save_basis_file(basis, args.out, overwrite=run.overwrite)
    space = space_label(basis_space(basis))
    run.say(f"Wrote {args.out}: {basis.n_modes} modes ({basis.provenance.get('laplacian')}) over "
            f"{basis.n_features} features ({', '.join(s.name for s in basis.structures)}), space {space}")
    return 0


def cmd_fit(run: Run) -> int:
    """``spectranorm-neuro fit``: cohort + basis -> model bundle."""
    args = run.args
    check_fit_options(args.numerical, args.categorical, args.batch, args.nonlinear, args.holdout)
    check_bundle_target(args.out, run.overwrite)
    if args.basis is None:
        return _fit_regional(run)
    for option, value, default in (("--regions", args.regions, None), ("--likelihood", args.likelihood, "SHASHb"),
                                   ("--smoothing", args.smoothing, "eb"), ("--subject-column", args.subject_column,
                                                                          None)):
        if value != default:
            raise UsageError(f"{option} is for tables of regional measures (fit without --basis); maps are "
                             "modelled with Gaussian modes and the df=5 spline")
    basis = load_basis(args.basis, "--basis")
    cohort, space = load_cohort(run, basis)
    bundle = fit_bundle(cohort, basis, args.out, numerical=args.numerical, categorical=args.categorical,
                        batch=args.batch, nonlinear=args.nonlinear, mean=args.mean, variance=args.variance,
                        model_type=args.model_type, n_modes=args.n_modes,
                        covariance_structure=args.covariance_structure, inference=args.inference,
                        holdout=args.holdout, measure=args.measure, space=space, seed=run.seed, n_jobs=run.n_jobs,
                        progress=run.progress, overwrite=run.overwrite, say=run.say, residual=args.residual,
                        calibrate_fwhm=args.fwhm, local_modes=args.local_modes)
    _fitted(run, bundle)
    return 0


def _fit_regional(run: Run) -> int:
    """``spectranorm-neuro fit TABLE`` without ``--basis``: every region of a table -> regional bundle."""
    args = run.args
    if (args.residual is False or args.fwhm or args.n_modes != -1 or args.covariance_structure != "lowrank"
            or args.local_modes is not None):
        raise UsageError("--no-residual, --fwhm, --local-modes, --n-modes and --covariance-structure are for maps "
                         "(fit with --basis); a table of regional measures needs none of them")
    cohort = load_regional(run, covariates=[*args.numerical, *args.categorical], regions=args.regions)
    run.say(f"Read {cohort.n_subjects} subjects x {len(cohort.regions)} regions from {args.cohort}")
    bundle = fit_regional_bundle(cohort, args.out, numerical=args.numerical, categorical=args.categorical,
                                 batch=args.batch, nonlinear=args.nonlinear, mean=args.mean, variance=args.variance,
                                 model_type=args.model_type, likelihood=args.likelihood, smoothing=args.smoothing,
                                 inference=args.inference, holdout=args.holdout, measure=args.measure,
                                 seed=run.seed, overwrite=run.overwrite, say=run.say)
    _fitted(run, bundle)
    lik = bundle.card["regions"]["likelihood"]
    skewed = [r for r, v in lik.items() if v["used"] != "Normal"]
    run.say(f"Likelihood per region: Normal in {len(lik) - len(skewed)}, SHASHb in {len(skewed)}"
            + (f" ({', '.join(skewed[:6])}{' ...' if len(skewed) > 6 else ''})" if skewed else ""))
    return 0


def _fitted(run: Run, bundle) -> None:
    held = bundle.card["metrics"]["held_out"]
    run.say(f"Wrote the model bundle {run.args.out} (trained on {bundle.card['training']['n_subjects']} subjects"
            + (f", {held['n_subjects']} held out" if held else "") + ")")
    if held:
        run.say(f"Held-out calibration: mean z {held['z_mean']:.3f}, sd z {held['z_sd']:.3f}, "
                f"|z| > 1.96 in {100 * held['fraction_abs_z_gt_1.96']:.1f}% (5% expected)")


def cmd_adapt(run: Run) -> int:
    """``spectranorm-neuro adapt``: learn new sites' effects from their controls -> new bundle."""
    args = run.args
    if Path(args.out).resolve() == Path(args.bundle).resolve():
        raise UsageError("--out must differ from the input bundle (write the adapted bundle next to it)")
    check_bundle_target(args.out, run.overwrite)
    bundle = ModelBundle.load(args.bundle)
    if bundle.kind == "regional":
        cohort, space = load_regional(run, bundle), None
    else:
        cohort, space = load_cohort(run, bundle.basis, bundle)
    adapted = adapt_bundle(bundle, cohort, args.out, space=space, n_jobs=run.n_jobs, progress=run.progress,
                           overwrite=run.overwrite)
    last = adapted.card["adaptations"][-1]
    levels = "; ".join(f"{k}: {', '.join(v)}" for k, v in last["levels"].items())
    run.say(f"Adapted to {levels} from {cohort.n_subjects} subjects; wrote {args.out}")
    return 0


def cmd_info(run: Run) -> int:
    """``spectranorm-neuro info``: verify a bundle and print its model card."""
    bundle = ModelBundle.load(run.args.bundle)
    if run.args.json:
        print(json.dumps(bundle.card, indent=2))
    else:
        print(bundle.describe())
    return 0


_DEPENDENCIES = ("numpy", "scipy", "pandas", "nibabel", "nilearn", "lapy", "pymc", "pytensor", "joblib", "tqdm",
                 "matplotlib", "jinja2", "threadpoolctl", "scikit-learn", "dask")


def sys_info() -> dict:
    """Versions and machine facts for bug reports."""
    deps = {}
    for name in _DEPENDENCIES:
        try:
            deps[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            deps[name] = None
    try:
        from threadpoolctl import threadpool_info

        blas = [{"api": i.get("internal_api"), "version": i.get("version"), "threads": i.get("num_threads")}
                for i in threadpool_info()]
    except Exception:  # threadpoolctl cannot inspect some builds
        blas = []
    import os

    return {
        "spectranorm_neuro": __version__,
        "location": str(Path(__file__).resolve().parents[1]),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy_blas": blas,
        "dependencies": deps,
        "float_eps": float(np.finfo(float).eps),
    }


def cmd_sys_info(run: Run) -> int:
    """``spectranorm-neuro sys-info``: print versions for bug reports."""
    info = sys_info()
    if run.args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"spectranorm_neuro {info['spectranorm_neuro']} ({info['location']})")
    print(f"python {info['python']} ({info['executable']})")
    print(f"platform {info['platform']} ({info['machine']}), {info['cpu_count']} CPUs")
    for name, version in info["dependencies"].items():
        print(f"  {name:14s} {version or 'not installed'}")
    for lib in info["numpy_blas"]:
        print(f"  BLAS/OpenMP    {lib['api']} {lib['version']} ({lib['threads']} threads)")
    return 0
