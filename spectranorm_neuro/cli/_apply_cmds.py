"""Commands that score a cohort with a bundle: ``apply``, ``harmonize``, ``report``."""

from __future__ import annotations

from ..report import BundleReport, bundle_report
from ..workflow import (
    ModelBundle,
    apply_bundle,
    check_destination,
    harmonize_bundle,
    read_atlas,
    read_atlas_layout,
    space_label,
)
from ._common import Run, UsageError, load_cohort, load_regional, parse_pair

__all__ = ["cmd_apply", "cmd_harmonize", "cmd_report"]


def _load(run: Run):
    """Check ``--out``, then load the bundle and the cohort named on the command line."""
    args = run.args
    check_destination(args.out, run.overwrite)
    bundle = ModelBundle.load(args.bundle)
    if bundle.kind == "regional":
        maps_only = [opt for opt, dest in (("--z", "z"), ("--fwhm", "fwhm")) if getattr(args, dest, None) is not None]
        if maps_only:
            raise UsageError(f"{' '.join(maps_only)}: for bundles of maps; {args.bundle} is a regional bundle")
        return bundle, load_regional(run, bundle), {}
    cohort, space = load_cohort(run, bundle.basis, bundle)
    return bundle, cohort, space


def _atlas(run: Run, bundle: ModelBundle):
    """The ``--atlas`` file(s) read onto the bundle's basis (None without ``--atlas``)."""
    args = run.args
    if not args.atlas:
        return None
    if bundle.kind == "regional":
        return read_atlas_layout(args.atlas, args.atlas_name)
    return read_atlas(args.atlas, bundle.basis, args.atlas_name)


def cmd_apply(run: Run) -> int:
    """``spectranorm-neuro apply``: bundle + cohort -> BIDS derivatives of z/centile (... ) maps + summary."""
    args = run.args
    controls = parse_pair(args.controls, "--controls")
    bundle, cohort, space = _load(run)
    atlas = _atlas(run, bundle)
    report = BundleReport(controls, args.group_column, args.max_subjects,
                          threshold=args.threshold or None, min_cluster_area=args.min_cluster_area,
                          atlas_labels=atlas.report_labels() if atlas else None)
    result = apply_bundle(bundle, cohort, args.out, maps=args.maps, population=args.population,
                          measure=args.measure, space=space, attachments=[report] if args.report else [],
                          overwrite=run.overwrite, n_jobs=run.n_jobs, progress=run.progress, say=run.say,
                          warn=run.warn, z=args.z, fwhm=args.fwhm, atlas=atlas)
    n_extreme = int(result.summary["n_abs_z_gt_2"].sum())
    n_values = int(result.summary["n_features"].sum())
    if bundle.kind == "regional":
        run.say(f"Wrote {', '.join(sorted({*args.maps, 'zscore'}))} tables of {result.n_subjects} subjects x "
                f"{len(bundle.model.regions)} regions and the summary table into {args.out}/group")
    else:
        run.say(f"Wrote {', '.join(sorted({*args.maps, 'zscore'}))} maps of {result.n_subjects} subjects "
                f"({space_label(result.space)}) and the summary table into {args.out}")
    run.say(f"  {n_extreme} values with |z| > 2 ({100 * n_extreme / n_values:.2f}%, about 4.6% expected "
            "in healthy subjects)")
    if atlas:
        tables = [f.name for f in result.files if f.parent.name == "group" and f.name.startswith("atlas-")]
        run.say(f"  {atlas.n_parcels} parcels of {atlas.name}: group/{', group/'.join(tables)} and per-subject "
                f"parcel maps (atlas-{atlas.name})")
    if args.report:
        run.say(f"  report: {args.out}/report/index.html")
    return 0


def cmd_harmonize(run: Run) -> int:
    """``spectranorm-neuro harmonize``: remove site effects from maps (each value keeps its centile)."""
    args = run.args
    bundle, cohort, space = _load(run)
    harmonize_bundle(bundle, cohort, args.out, covariates=args.covariates, measure=args.measure, space=space,
                     overwrite=run.overwrite, n_jobs=run.n_jobs, progress=run.progress, say=run.say, warn=run.warn)
    what = list(args.covariates or bundle.model.spec.batch_covariates)
    run.say(f"Wrote harmonized maps (without {', '.join(what)}) of {cohort.n_subjects} subjects into {args.out}")
    return 0


def cmd_report(run: Run) -> int:
    """``spectranorm-neuro report``: bundle + cohort -> HTML deviation report."""
    args = run.args
    controls = parse_pair(args.controls, "--controls")
    bundle, cohort, space = _load(run)
    if bundle.kind == "regional" and args.atlas:
        raise UsageError("--atlas: a regional report names the table's regions itself; pass --atlas to `apply` "
                         "to write the regional results as parcel maps")
    atlas = _atlas(run, bundle)
    bundle_report(bundle, cohort, args.out, population=args.population, controls=controls,
                  group_column=args.group_column, max_subjects=args.max_subjects, space=space,
                  overwrite=run.overwrite, n_jobs=run.n_jobs, progress=run.progress, warn=run.warn,
                  threshold=args.threshold or None, min_cluster_area=args.min_cluster_area,
                  atlas_labels=atlas.report_labels() if atlas else None)
    run.say(f"Wrote the report {args.out}/index.html ({cohort.n_subjects} subjects)")
    return 0
