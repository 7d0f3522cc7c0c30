"""Commands that make or describe models: ``basis``, ``fit``, ``adapt``, ``info``, ``sys-info``."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np

from .._version import __version__
from ..basis import EigenmodeBasis
from ..exceptions import InvalidInputError, bad_value
from ..io import encode_cohort, normalize_entities
from ._common import Run, UsageError, covariates_frame, load_cohort
from ._fitting import fit_model
from ._output import check_destination
from .bundle import check_compatible, load_bundle, save_bundle, space_label
from .card import basis_space, build_model_card, format_card, record_adaptation

__all__ = ["cmd_basis", "cmd_fit", "cmd_adapt", "cmd_info", "cmd_sys_info", "make_basis"]


def _graph_from_args(args):
    from ..graphs import from_nifti_mask, fsaverage5_graph, lattice_graph, load_surface, merge_graphs, mesh_graph

    if args.mesh:
        sources = list(args.mesh)
        if sources == ["fsaverage5"]:
            mask = None if args.cortex_mask in (None, "none") else args.cortex_mask
            return fsaverage5_graph(args.hemi, cortex_mask=mask, surface=args.surface)
        hemis = ["left", "right"] if args.hemi == "both" else [args.hemi]
        if len(sources) != len(hemis):
            raise UsageError(f"--hemi {args.hemi} needs {len(hemis)} surface file(s) after --mesh "
                             f"(left first), got {len(sources)}")
        if args.cortex_mask == "auto":
            raise UsageError("--cortex-mask auto is only for --mesh fsaverage5; pass label file(s) for other meshes")
        masks = [None] * len(hemis)
        if args.cortex_mask not in (None, "none"):
            masks = args.cortex_mask.split(",")
            if len(masks) != len(hemis):
                raise UsageError(f"--cortex-mask needs {len(hemis)} comma-separated label file(s), left first")
        graphs = []
        for src, hemi, mask in zip(sources, hemis, masks):
            v, f = load_surface(src)
            graphs.append(mesh_graph(v, f, cortex_mask=mask, name="CortexLeft" if hemi == "left" else "CortexRight",
                                     provenance={"source": str(src), "hemi": hemi}))
        return graphs[0] if len(graphs) == 1 else merge_graphs(graphs)
    if args.mask:
        return from_nifti_mask(args.mask, connectivity=args.connectivity or 6)
    return lattice_graph(tuple(args.lattice), connectivity=args.connectivity)


def make_basis(args) -> EigenmodeBasis:
    """Build the basis described by the ``basis`` command's options."""
    graph = _graph_from_args(args)
    basis = EigenmodeBasis.from_graph(graph, args.n_modes, args.laplacian)
    ents = {k: getattr(args, k) for k in ("space", "den", "res") if getattr(args, k, None)}
    if ents:
        basis.provenance.update({k: v for k, v in normalize_entities(ents).items()})
    return basis


def cmd_basis(run: Run) -> int:
    """``spectranorm-neuro basis``: compute an eigenmode basis and save it."""
    args = run.args
    check_destination(args.out, run.overwrite)
    basis = make_basis(args)
    basis.save(args.out, overwrite=run.overwrite)
    space = space_label(basis_space(basis))
    run.say(f"Wrote {args.out}: {basis.n_modes} modes ({basis.provenance.get('laplacian')}) over "
            f"{basis.n_features} features ({', '.join(s.name for s in basis.structures)}), space {space}")
    return 0


def _load_basis(path: Path) -> EigenmodeBasis:
    if not Path(path).exists():
        raise bad_value("--basis", str(path), "does not exist",
                        "compute one with `spectranorm-neuro basis ... --out basis.npz`", InvalidInputError)
    return EigenmodeBasis.load(path)


def cmd_fit(run: Run) -> int:
    """``spectranorm-neuro fit``: cohort + basis -> model bundle."""
    args = run.args
    if not args.numerical and not args.categorical:
        raise UsageError("name the covariates with --numerical and/or --categorical (e.g. --numerical age "
                         "--categorical sex site --batch site)")
    for opt, names, pool in (("--batch", args.batch, args.categorical), ("--nonlinear", args.nonlinear,
                                                                          args.numerical)):
        extra = [n for n in names if n not in pool]
        if extra:
            kind = "--categorical" if opt == "--batch" else "--numerical"
            raise UsageError(f"{opt} {' '.join(extra)}: also list them under {kind}")
    check_destination(args.out, run.overwrite)
    basis = _load_basis(args.basis)
    cohort, files_space = load_cohort(run, basis)
    space = files_space or basis_space(basis)
    covariates = covariates_frame(cohort)
    run.say(f"Encoding {cohort.n_subjects} maps on {basis.n_modes} modes ...")
    coeffs = encode_cohort(cohort, basis, n_jobs=run.n_jobs, progress=run.progress)
    run.say(f"Fitting the normative model ({args.model_type}, {args.n_modes if args.n_modes > 0 else basis.n_modes} "
            "modes) ...")
    result = fit_model(basis, coeffs, covariates, numerical=args.numerical, categorical=args.categorical,
                       batch=args.batch, nonlinear=args.nonlinear, mean=args.mean, variance=args.variance,
                       model_type=args.model_type, n_modes=args.n_modes,
                       covariance_structure=args.covariance_structure, inference=args.inference,
                       holdout=args.holdout, seed=run.seed, n_jobs=run.n_jobs, progress=run.progress)
    card = build_model_card(result.model, covariates.loc[result.train], measure=args.measure or _measure(cohort),
                            space=space, seed=run.seed, holdout=args.holdout, metrics=result.metrics,
                            source=str(args.cohort))
    save_bundle(result.model, args.out, card, overwrite=run.overwrite)
    run.say(f"Wrote the model bundle {args.out} (trained on {int(result.train.sum())} subjects"
            + (f", {int((~result.train).sum())} held out" if result.metrics else "") + ")")
    if result.metrics:
        m = result.metrics
        run.say(f"Held-out calibration: mean z {m['z_mean']:.3f}, sd z {m['z_sd']:.3f}, "
                f"|z| > 1.96 in {100 * m['fraction_abs_z_gt_1.96']:.1f}% (5% expected)")
    return 0


def _measure(cohort) -> str | None:
    return cohort.metadata.get("measure")


def cmd_adapt(run: Run) -> int:
    """``spectranorm-neuro adapt``: learn new sites' effects from their controls -> new bundle."""
    args = run.args
    check_destination(args.out, run.overwrite)
    if Path(args.out).resolve() == Path(args.bundle).resolve():
        raise UsageError("--out must differ from the input bundle (write the adapted bundle next to it)")
    bundle = load_bundle(args.bundle)
    model = bundle.model
    if not model.spec.batch_covariates:
        raise bad_value("bundle", str(args.bundle), "has no batch (site) covariate, so there is nothing to adapt",
                        "apply it directly, or fit a model with --batch site", InvalidInputError)
    cohort, space = load_cohort(run, bundle.basis, bundle.space, bundle.measure)
    check_compatible(bundle, cohort.structures, space, "cohort")
    covariates = covariates_frame(cohort)
    _check_new_levels(model, covariates, str(args.cohort))
    coeffs = encode_cohort(cohort, bundle.basis, n_jobs=run.n_jobs, progress=run.progress)
    before = {c.name: set(c.adapted or []) for c in model.spec.covariates}
    model = model.adapt_fit(coeffs, covariates)
    added = {c.name: sorted(set(c.adapted or []) - before.get(c.name, set())) for c in model.spec.covariates
             if set(c.adapted or []) - before.get(c.name, set())}
    card = record_adaptation(bundle.card, added, cohort.n_subjects, str(args.cohort))
    save_bundle(model, args.out, card, overwrite=run.overwrite)
    levels = "; ".join(f"{k}: {', '.join(v)}" for k, v in added.items())
    run.say(f"Adapted to {levels} from {cohort.n_subjects} subjects; wrote {args.out}")
    return 0


def _check_new_levels(model, covariates, source: str) -> None:
    """Adaptation needs controls of sites (batch levels) the model does not know yet, and only those."""
    new, old = [], []
    for cov in model.spec.covariates:
        if cov.name not in model.spec.batch_covariates:
            continue
        if cov.name not in covariates.columns:
            raise bad_value("cohort", source, f"has no {cov.name!r} column", f"add the {cov.name} of every subject",
                            InvalidInputError)
        known = set(cov.known_levels)
        levels = cov.levels_in(covariates[cov.name], dropna=True)
        new += [f"{cov.name}={v}" for v in sorted(levels - known)]
        old += [f"{cov.name}={v}" for v in sorted(levels & known)]
    if not new:
        raise bad_value("cohort", source, f"holds only levels the bundle already knows ({', '.join(old)}), so there "
                        "is nothing to adapt", "pass controls of the new site(s), labelled with their new site names",
                        InvalidInputError)
    if old:
        raise bad_value("cohort", source, f"mixes new levels ({', '.join(new)}) with levels the bundle already knows "
                        f"({', '.join(old)})", "pass controls of the new site(s) only (e.g. with --select site=<new>)",
                        InvalidInputError)


def cmd_info(run: Run) -> int:
    """``spectranorm-neuro info``: verify a bundle and print its model card."""
    bundle = load_bundle(run.args.bundle)
    if run.args.json:
        print(json.dumps(bundle.card, indent=2))
    else:
        print(format_card(bundle.card, bundle.manifest, str(run.args.bundle)))
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
