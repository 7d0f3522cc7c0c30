"""Commands that score a cohort with a bundle: ``apply``, ``harmonize``, ``report``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from ..exceptions import ExtrapolationWarning, InvalidInputError, bad_value
from ..io import encode_cohort, write_participants
from ._common import Run, covariates_frame, load_cohort
from ._output import check_destination, staged_directory
from ._scoring import check_covariates, score, score_and_write
from .bundle import ModelBundle, check_compatible, load_bundle, space_label

__all__ = ["cmd_apply", "cmd_harmonize", "cmd_report", "prepare", "make_report", "map_metadata",
           "source_datasets"]


def prepare(run: Run, population: bool = False):
    """Load the bundle and the cohort, check them against each other, encode the maps.

    Returns
    -------
    bundle : ModelBundle
    cohort : Cohort
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    coefficients : numpy.ndarray, shape (n_subjects, n_modes)
    space : dict
        Template entities of the outputs (the bundle's, else the data's).
    """
    args = run.args
    bundle = load_bundle(args.bundle)
    cohort, space = load_cohort(run, bundle.basis, bundle.space, bundle.measure)
    check_compatible(bundle, cohort.structures, space, "cohort")
    covariates = covariates_frame(cohort)
    for message in check_covariates(bundle.model, covariates, population, str(args.cohort), str(args.bundle)):
        run.warn(message)
    if population and not bundle.model.spec.batch_covariates:
        run.warn("--population has no effect: the model has no batch (site) covariate")
    run.say(f"Encoding {cohort.n_subjects} maps ...")
    coeffs = encode_cohort(cohort, bundle.basis, n_modes=int(bundle.model.model_params["n_modes"]),
                           n_jobs=run.n_jobs, progress=run.progress)
    return bundle, cohort, covariates, coeffs, (bundle.space or space)


def _measure(run: Run, bundle: ModelBundle, cohort) -> str:
    measure = run.args.measure or bundle.measure or cohort.metadata.get("measure")
    if not measure:
        raise bad_value("--measure", None, "is needed to name the output files (the bundle records no measure)",
                        "pass --measure <BIDS suffix>, e.g. --measure thickness", InvalidInputError)
    return measure


def map_metadata(bundle: ModelBundle, command: str, population: bool = False,
                 removed: list[str] | None = None) -> dict:
    """What every map's JSON sidecar says about the model: which bundle (checksums), covariates, z.

    Parameters
    ----------
    bundle : ModelBundle
    command : str
        ``"apply"`` or ``"harmonize"``.
    population : bool, optional
        The norms were predicted without the batch covariates.
    removed : list of str, optional
        Covariates the harmonized maps are freed of.

    Returns
    -------
    dict
        ``{"Model": {...}}``: the bundle's folder name, package version, SHA-256 of the model card and
        parameters, measure, number of modes, covariates and batch covariates, ``PredictedWithout``.
    """
    spec = bundle.model.spec
    files = bundle.manifest.get("files", {})
    model = {"Bundle": bundle.path.name, "Command": f"spectranorm-neuro {command}",
             "PackageVersion": bundle.manifest.get("package_version"),
             "ModelCardSHA256": files.get("model_card.json"), "ParametersSHA256": files.get("model/params.npz"),
             "Measure": bundle.measure, "NModes": int(bundle.model.model_params["n_modes"]),
             "Covariates": list(spec.covariate_names), "BatchCovariates": list(spec.batch_covariates),
             "PredictedWithout": list(spec.batch_covariates) if population else []}
    if removed is not None:
        model["HarmonizedWithout"] = list(removed)
    return {"Model": model}


def source_datasets(cohort, out) -> list[dict[str, str]]:
    """``SourceDatasets`` of a derivative written to ``out`` from the dataset ``cohort`` (path relative to ``out``)."""
    try:
        rel = os.path.relpath(os.path.abspath(cohort), os.path.abspath(out))
    except ValueError:  # another drive (Windows)
        rel = os.path.basename(os.path.abspath(cohort))
    return [{"URL": Path(rel).as_posix()}]


def make_report(out_dir, z, covariates, bundle: ModelBundle, coefficients, controls=None,
                group_column: str | None = None, max_subjects: int = 20, overwrite: bool = False,
                progress: bool = False, n_jobs: int = 1):
    """Write the HTML report of scored subjects (``report.generate_report`` with the bundle's model card)."""
    from ..report import generate_report

    site = bundle.model.spec.batch_covariates[0] if bundle.model.spec.batch_covariates else None
    with warnings.catch_warnings():  # centile charts sweep the covariate range; check_covariates warned already
        warnings.simplefilter("ignore", ExtrapolationWarning)
        return generate_report(out_dir, z, covariates, bundle.basis, model=bundle.model, coefficients=coefficients,
                               model_card=bundle.card, controls=controls, group_column=group_column,
                               max_subjects=max_subjects, overwrite=overwrite, progress=progress,
                               site_column=site if site in covariates.columns else None, n_jobs=n_jobs)


def _controls(covariates, spec: str | None):
    if not spec:
        return None
    column, sep, value = spec.partition("=")
    if not sep or column not in covariates.columns:
        raise bad_value("--controls", spec, f"is not COLUMN=VALUE with a covariate column ({list(covariates.columns)})",
                        "pass e.g. --controls group=control", InvalidInputError)
    return covariates[column].astype(str).to_numpy() == value


def cmd_apply(run: Run) -> int:
    """``spectranorm-neuro apply``: bundle + cohort -> BIDS derivatives of z/centile (... ) maps + summary."""
    args = run.args
    check_destination(args.out, run.overwrite)
    kinds = list(dict.fromkeys(args.maps))
    bundle, cohort, covariates, coeffs, space = prepare(run, args.population)
    measure = _measure(run, bundle, cohort)
    controls = _controls(covariates, args.controls)
    run.say(f"Scoring {cohort.n_subjects} subjects at {bundle.basis.n_features} "
            f"{'vertices' if bundle.basis.structures[0].kind == 'surface' else 'features'} ...")
    need = list(dict.fromkeys([*kinds, "zscore"]))
    with staged_directory(args.out, run.overwrite) as stage:
        # blocks of subjects are predicted and written by joblib tasks: memory stays bounded
        written, kept = score_and_write(stage, bundle.model, coeffs, covariates, cohort.subjects, measure,
                                        bundle.basis.structures, space, kinds=need, population=args.population,
                                        keep=["zscore"] if args.report else [], progress=run.progress,
                                        metadata=map_metadata(bundle, "apply", args.population),
                                        source_datasets=source_datasets(args.cohort, args.out))
        if args.report:
            make_report(stage / "report", kept["zscore"], covariates, bundle, coeffs, controls, args.group_column,
                        args.max_subjects, progress=run.progress, n_jobs=run.n_jobs)
        summary = pd.read_csv(written[-1], sep="\t")
    n_extreme = int(summary["n_abs_z_gt_2"].sum())
    n_values = int(summary["n_features"].sum())
    run.say(f"Wrote {', '.join(sorted(set(need) & set([*kinds, 'zscore'])))} maps of {cohort.n_subjects} subjects "
            f"({space_label(space)}) and the summary table into {args.out}")
    run.say(f"  {n_extreme} values with |z| > 2 ({100 * n_extreme / n_values:.2f}%, about 4.6% expected "
            "in healthy subjects)")
    if args.report:
        run.say(f"  report: {args.out}/report/index.html")
    return 0


def cmd_harmonize(run: Run) -> int:
    """``spectranorm-neuro harmonize``: remove site effects from maps (each value keeps its centile)."""
    args = run.args
    check_destination(args.out, run.overwrite)
    bundle, cohort, covariates, coeffs, space = prepare(run, False)
    model = bundle.model
    what = list(args.covariates or model.spec.batch_covariates)
    if not what:
        raise bad_value("--covariates", None, "is empty and the model has no batch covariate",
                        "name the covariates to remove with --covariates", InvalidInputError)
    unknown = [c for c in what if c not in model.spec.covariate_names]
    if unknown:
        raise bad_value("--covariates", unknown, f"are not covariates of the model ({model.spec.covariate_names})",
                        "name covariates the model was fitted with", InvalidInputError)
    measure = _measure(run, bundle, cohort)
    with staged_directory(args.out, run.overwrite) as stage:
        # each block of subjects is harmonized and written by one joblib task (as apply does)
        score_and_write(stage, model, coeffs, covariates, cohort.subjects, measure, bundle.basis.structures,
                        space, kinds=("harmonized",), summary=False, n_jobs=run.n_jobs, progress=run.progress,
                        harmonize_without=what, metadata=map_metadata(bundle, "harmonize", removed=what),
                        source_datasets=source_datasets(args.cohort, args.out))
        # the covariates go along, so the harmonized dataset can be fitted or applied as it is
        write_participants(stage, covariates, cohort.metadata.get("participants_sidecar"),
                           description="Participants of the harmonized maps, covariates as in the source dataset.")
    run.say(f"Wrote harmonized maps (without {', '.join(what)}) of {cohort.n_subjects} subjects into {args.out}")
    return 0


def cmd_report(run: Run) -> int:
    """``spectranorm-neuro report``: bundle + cohort -> HTML deviation report."""
    args = run.args
    check_destination(args.out, run.overwrite)
    bundle, cohort, covariates, coeffs, _ = prepare(run, args.population)
    controls = _controls(covariates, args.controls)
    z = score(bundle.model, coeffs, covariates, ["zscore"], args.population, progress=run.progress)["zscore"]
    with staged_directory(args.out, run.overwrite) as stage:
        make_report(stage, z, covariates, bundle, coeffs, controls, args.group_column, args.max_subjects,
                    progress=run.progress, n_jobs=run.n_jobs)
    run.say(f"Wrote the report {args.out}/index.html ({cohort.n_subjects} subjects)")
    return 0
