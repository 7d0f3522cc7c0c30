"""The steps of the shared-model workflow: fit a bundle, apply it, adapt it to new sites, harmonize.

Each step takes Python objects (a :class:`~spectranorm_neuro.io.Cohort`, an
:class:`~spectranorm_neuro.basis.EigenmodeBasis`, a :class:`~spectranorm_neuro.workflow.ModelBundle`
and options) and writes exactly what the matching ``spectranorm-neuro`` command writes (the command
line only parses its arguments, loads the inputs and calls these functions). Everything cheap is
checked first (options, covariate columns, the output path), before any map is encoded; outputs
are written through :func:`~spectranorm_neuro.workflow.output.staged_directory` (complete or
absent) or :func:`~spectranorm_neuro.workflow.bundle.save_bundle` (atomic).
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from .._util import check_n_jobs, check_n_modes
from ..exceptions import IncompatibleModelError, InvalidInputError, UsageError, bad_value
from ..io import Cohort, encode_cohort, store_cohort, write_participants
from .bundle import ModelBundle, check_bundle_target, check_compatible
from .card import basis_space, build_model_card, record_adaptation
from .cohorts import covariates_frame, files_space
from .fitting import fit_model
from .output import check_destination, staged_directory
from .parcels import Atlas, parcel_scores, write_parcel_outputs
from .scoring import MAP_KINDS, check_covariates, check_writable, score_and_write, smoothing_queries, z_metadata

__all__ = ["Attachment", "ApplyResult", "check_fit_options", "fit_bundle", "apply_bundle", "adapt_bundle",
           "harmonize_bundle", "prepare_scoring", "map_metadata", "source_datasets", "harmonized_covariates",
           "covariate_messages"]

Say = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default status/warning sink: silent."""


class Attachment(Protocol):
    """Something written into an ``apply`` output folder next to the maps (e.g. the HTML report).

    ``check`` runs before any computation (it raises on bad options); ``write`` runs inside the
    staging folder, before the folder is committed.
    """

    def check(self, bundle: ModelBundle, covariates: pd.DataFrame) -> None:
        """Raise if the attachment cannot be made for these covariates."""

    def write(self, folder: Path, bundle: ModelBundle, covariates: pd.DataFrame, zscores: np.ndarray,
              coefficients: np.ndarray, n_jobs: int | None, progress: bool, maps=None) -> None:
        """Write into ``folder`` (a sub-folder of the staged output); ``maps``: the cohort's maps."""


@dataclass
class ApplyResult:
    """What :func:`apply_bundle` and :func:`harmonize_bundle` wrote.

    Attributes
    ----------
    out : pathlib.Path
        The output folder.
    files : list of pathlib.Path
        The map files (and the summary table), under ``out``.
    n_subjects : int
    space : dict of str to str
        Template entities of the written maps.
    summary : pandas.DataFrame or None
        The per-subject z summary (``apply`` only).
    warnings : list of str
        Extrapolation and other warnings about the cohort.
    """

    out: Path
    files: list[Path]
    n_subjects: int
    space: dict
    summary: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)


def check_fit_options(numerical: Sequence[str], categorical: Sequence[str], batch: Sequence[str] = (),
                      nonlinear: Sequence[str] = (), holdout: float = 0.0, columns=None) -> None:
    """Check the covariate options of :func:`fit_bundle` (and the columns, when given) before any work.

    Raises
    ------
    UsageError
        No covariate named; batch covariates not categorical, nonlinear ones not numerical.
    InvalidInputError
        ``holdout`` outside [0, 1); covariates missing from ``columns``.
    """
    numerical, categorical, batch, nonlinear = list(numerical), list(categorical), list(batch), list(nonlinear)
    if not numerical and not categorical:
        raise UsageError("name the covariates with --numerical and/or --categorical (e.g. --numerical age "
                         "--categorical sex site --batch site)")
    for opt, names, pool in (("--batch", batch, categorical), ("--nonlinear", nonlinear, numerical)):
        extra = [n for n in names if n not in pool]
        if extra:
            raise UsageError(f"{opt} {' '.join(extra)}: also list them under "
                             f"{'--categorical' if opt == '--batch' else '--numerical'}")
    if not 0.0 <= float(holdout) < 1.0:
        raise bad_value("--holdout", holdout, "is not a fraction in [0, 1)", "pass e.g. --holdout 0.2")
    if columns is None:
        return
    columns = [str(c) for c in columns]
    for opt, names in (("--numerical", numerical), ("--categorical", categorical)):
        missing = [c for c in names if c not in columns]
        if missing:
            close = {c: difflib.get_close_matches(c, columns, n=1) for c in missing}
            hint = "; ".join(f"{c!r} -> {m[0]!r}?" for c, m in close.items() if m)
            raise bad_value(opt, missing, f"are not columns of the covariate table ({columns})",
                            (f"fix the spelling ({hint})" if hint else "name existing columns")
                            + " or add the columns to participants.tsv / the table", InvalidInputError)


def _check_covariate_values(cohort: Cohort, numerical: Sequence[str], categorical: Sequence[str]) -> None:
    """Missing or non-numeric covariate values, named by option and file, before any map is read."""
    for opt, names in (("--numerical", numerical), ("--categorical", categorical)):
        for name in names:
            col = cohort.covariates[name]
            values = pd.to_numeric(col, errors="coerce") if opt == "--numerical" else col
            bad = values.isna().to_numpy() | (np.isinf(values.to_numpy(dtype=float)) if opt == "--numerical" else False)
            if bad.any():
                shown = [None if pd.isna(v) else v for v in col[bad].tolist()[:5]]
                raise bad_value(f"{opt} {name}", shown, f"{int(bad.sum())} value(s) in {cohort.source or 'the table'} "
                                f"are missing{' or not numbers' if opt == '--numerical' else ''} (subjects "
                                f"{list(cohort.covariates.index[bad][:5])})",
                                "fill them in, or leave those subjects out (e.g. remove their rows)", InvalidInputError)


def fit_bundle(cohort: Cohort, basis, out: str | os.PathLike | None = None, *, numerical: Sequence[str] = (),
               categorical: Sequence[str] = (), batch: Sequence[str] = (), nonlinear: Sequence[str] = (),
               mean: Sequence[str] | None = None, variance: Sequence[str] | None = None, model_type: str = "HBR",
               n_modes: int = -1, covariance_structure: float | str = "lowrank", inference: str = "map",
              holdout: float = 0.0,
               measure: str | None = None, space: dict | None = None, seed: int = 0, n_jobs: int | None = 1,
               progress: bool = False, overwrite: bool = False, say: Say = _quiet, residual: bool = True,
               calibrate_fwhm: Sequence[float] = (), surfaces=None,
               local_modes: int | None = None) -> ModelBundle:
    """Fit a spectral normative model on a cohort and make it a bundle (what ``spectranorm-neuro fit`` does).

    Parameters
    ----------
    cohort : Cohort
        Training maps and covariates (e.g. from :func:`~spectranorm_neuro.workflow.load_cohort`).
    basis : EigenmodeBasis
    out : path-like, optional
        Bundle to write (a folder, or a file ending in ``.zip``); None writes nothing.
    numerical, categorical, batch, nonlinear : sequence of str
        Covariates by type (batch covariates are also categorical, nonlinear ones numerical).
    mean, variance : sequence of str, optional
        Where covariates act (defaults of ``NormativeModelSpec.from_dataframe``).
    model_type, n_modes, covariance_structure, inference :
        See ``SpectralNormativeModel.fit``.
    holdout : float, optional
        Fraction of each site held out of the fit and scored for the model card.
    measure : str, optional
        Modelled measure (default: the cohort's).
    space : dict, optional
        Template entities of the maps (default: those of the file names, else the basis').
    seed : int, optional
    n_jobs : int or None, optional
        Workers (joblib semantics).
    progress : bool, optional
    overwrite : bool, optional
        Replace an existing bundle at ``out`` (never anything else).
    say : callable, optional
        Receives one-line status messages.
    residual : bool, optional
        Also fit the residual part (what the modes miss) on the maps, for exact per-vertex
        z-scores (default). The maps are cached once in a temporary float32 file and read a block
        at a time.
    calibrate_fwhm : sequence of float, optional
        FWHMs (mm) of smoothed maps to calibrate on the training maps (``apply --fwhm``).
    surfaces : mapping, optional
        Meshes for the smoothing kernels (default: fsaverage5's when the basis was built on it).
    local_modes : int, optional
        Declare and calibrate the local z (``apply --z local``): the number of coarse modes it
        removes (``--local-modes``; needs the residual part).

    Returns
    -------
    ModelBundle
        The fitted model and its card (``card["metrics"]["held_out"]`` with ``holdout``).
    """
    n_jobs = check_n_jobs(n_jobs, "--n-jobs")
    check_fit_options(numerical, categorical, batch, nonlinear, holdout, cohort.covariates.columns)
    k = check_n_modes(n_modes, basis.n_modes, "--n-modes")  # before the (long) encoding
    if local_modes is not None:
        from ..engine.maps import check_local_modes

        check_local_modes(local_modes, k, "--local-modes")
    _check_covariate_values(cohort, numerical, categorical)
    if out is not None:
        out = check_bundle_target(out, overwrite)
    space = dict(space or files_space(cohort.files.to_numpy().ravel()) or basis_space(basis))
    covariates = covariates_frame(cohort)
    kernels = [smoothing_queries(basis, f, surfaces) for f in calibrate_fwhm]
    options = dict(numerical=numerical, categorical=categorical, batch=batch, nonlinear=nonlinear, mean=mean,
                   variance=variance, model_type=model_type, n_modes=n_modes,
                   covariance_structure=covariance_structure, inference=inference, holdout=holdout, seed=seed,
                   n_jobs=n_jobs, progress=progress, local_modes=local_modes if residual else None)
    with tempfile.TemporaryDirectory(prefix="spectranorm-maps-") as tmp:
        say(f"Encoding {cohort.n_subjects} maps on {basis.n_modes} modes ...")
        if residual:
            store = store_cohort(cohort, Path(tmp) / "maps.npy", basis, n_jobs=n_jobs, progress=progress)
            coeffs = store.coefficients
        else:
            store, coeffs = None, encode_cohort(cohort, basis, n_jobs=n_jobs, progress=progress)
        say(f"Fitting the normative model ({model_type}, {n_modes if n_modes > 0 else basis.n_modes} modes"
            f"{', residual part at every vertex' if residual else ''}) ...")
        result = fit_model(basis, coeffs, covariates, maps=store, calibrate=kernels, **options)
    card = build_model_card(result.model, covariates.loc[result.train],
                            measure=measure or cohort.metadata.get("measure"), space=space, seed=seed,
                            holdout=holdout, metrics=result.metrics, source=cohort.source or None)
    bundle = ModelBundle(result.model, card)
    if out is not None:
        bundle.save(out, overwrite=overwrite)
    return bundle


def _check_new_levels(model, covariates: pd.DataFrame, source: str) -> None:
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


def adapt_bundle(bundle: ModelBundle, cohort: Cohort, out: str | os.PathLike | None = None, *,
                 space: dict | None = None, n_jobs: int | None = 1, progress: bool = False,
                 overwrite: bool = False) -> ModelBundle:
    """Learn new sites' effects from their controls (what ``spectranorm-neuro adapt`` does).

    Parameters
    ----------
    bundle : ModelBundle
        Left unchanged; the adapted model is a copy.
    cohort : Cohort
        Controls of the new site(s) only, labelled with their new batch levels.
    out : path-like, optional
        Adapted bundle to write (folder or ``.zip``; not the input bundle).
    space : dict, optional
        Template entities of the cohort's maps (compared with the bundle's).
    n_jobs, progress, overwrite :
        As in :func:`fit_bundle`.

    Returns
    -------
    ModelBundle
        The adapted bundle; its card records the new levels (``card["adaptations"]``).
    """
    n_jobs = check_n_jobs(n_jobs, "--n-jobs")
    if bundle.kind == "regional":
        from .regional import adapt_regional

        return adapt_regional(bundle, cohort, out, overwrite=overwrite)
    if out is not None:
        if bundle.path is not None and Path(out).resolve() == Path(bundle.path).resolve():
            raise UsageError("--out must differ from the input bundle (write the adapted bundle next to it)")
        out = check_bundle_target(out, overwrite)
    model = bundle.model
    shown = cohort.source or "cohort"
    if not model.spec.batch_covariates:
        raise bad_value("bundle", str(bundle.path), "has no batch (site) covariate, so there is nothing to adapt",
                        "apply it directly, or fit a model with --batch site", InvalidInputError)
    check_compatible(bundle, cohort.structures, space, "cohort")
    covariates = covariates_frame(cohort)
    _check_new_levels(model, covariates, shown)
    before = {c.name: set(c.adapted or []) for c in model.spec.covariates}
    with tempfile.TemporaryDirectory(prefix="spectranorm-maps-") as tmp:
        if model.residual_params is not None:  # the residual part is adapted too: it needs the maps
            store = store_cohort(cohort, Path(tmp) / "maps.npy", bundle.basis, n_jobs=n_jobs, progress=progress)
            model = model.adapt_fit(store.coefficients, covariates, maps=store)
        else:
            model = model.adapt_fit(encode_cohort(cohort, bundle.basis, n_jobs=n_jobs, progress=progress),
                                    covariates)
    added = {c.name: sorted(set(c.adapted or []) - before.get(c.name, set())) for c in model.spec.covariates
             if set(c.adapted or []) - before.get(c.name, set())}
    adapted = ModelBundle(model, record_adaptation(bundle.card, added, cohort.n_subjects, cohort.source or None))
    if out is not None:
        adapted.save(out, overwrite=overwrite)
    return adapted


def prepare_scoring(bundle: ModelBundle, cohort: Cohort, space: dict | None = None, population: bool = False,
                    warn: Say = _quiet) -> tuple[pd.DataFrame, dict, list[str]]:
    """Check a cohort against a bundle before scoring it (cheap: no map is encoded).

    Returns
    -------
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    space : dict
        Template entities of the outputs (the bundle's, else the data's).
    warnings : list of str
        Extrapolation warnings (also passed to ``warn``).
    """
    check_compatible(bundle, cohort.structures, space, "cohort")
    covariates = covariates_frame(cohort)
    messages = covariate_messages(bundle, covariates, population, cohort.source or "cohort", warn)
    return covariates, dict(bundle.space or space or {}), messages


def covariate_messages(bundle: ModelBundle, covariates: pd.DataFrame, population: bool, source: str,
                       warn: Say = _quiet) -> list[str]:
    """:func:`~spectranorm_neuro.workflow.scoring.check_covariates` for a bundle, its warnings passed to ``warn``."""
    messages = check_covariates(bundle.model, covariates, population, source, str(bundle.path or "BUNDLE"))
    if population and not bundle.model.spec.batch_covariates:
        messages.append("--population has no effect: the model has no batch (site) covariate")
    for message in messages:
        warn(message)
    return messages


def _measure(measure: str | None, bundle: ModelBundle, cohort: Cohort) -> str:
    measure = measure or bundle.measure or cohort.metadata.get("measure")
    if not measure:
        raise bad_value("--measure", None, "is needed to name the output files (the bundle records no measure)",
                        "pass --measure <BIDS suffix>, e.g. --measure thickness", InvalidInputError)
    return measure


def map_metadata(bundle: ModelBundle, command: str, population: bool = False,
                 removed: Sequence[str] | None = None) -> dict:
    """What every map's JSON sidecar says about the model: which bundle (checksums), covariates, modes.

    Parameters
    ----------
    bundle : ModelBundle
    command : str
        ``"apply"`` or ``"harmonize"``.
    population : bool, optional
        The norms were predicted without the batch covariates.
    removed : sequence of str, optional
        Covariates the harmonized maps are freed of.

    Returns
    -------
    dict
        ``{"Model": {...}}``: the bundle's name (no local path), package version, SHA-256 of the
        model card and parameters, measure, number of modes, covariates, batch covariates,
        ``PredictedWithout`` (and ``HarmonizedWithout``).
    """
    spec = bundle.model.spec
    files = bundle.manifest.get("files", {})
    model = {"Bundle": Path(bundle.path).name, "Command": f"spectranorm-neuro {command}",
             "PackageVersion": bundle.manifest.get("package_version"),
             "ModelCardSHA256": files.get("model_card.json"), "ParametersSHA256": files.get("model/params.npz"),
             "Measure": bundle.measure,
             **({"NModes": int(bundle.model.model_params["n_modes"])} if bundle.kind == "spectral" else
                {"NRegions": len(bundle.model.regions), "Likelihood": spec.likelihood}),
             "Covariates": list(spec.covariate_names), "BatchCovariates": list(spec.batch_covariates),
             "PredictedWithout": list(spec.batch_covariates) if population else []}
    if removed is not None:
        model["HarmonizedWithout"] = list(removed)
    return {"Model": model}


def source_datasets(cohort: Cohort, out: str | os.PathLike) -> list[dict[str, str]]:
    """``SourceDatasets`` of a derivative written to ``out`` from ``cohort``: its folder, relative to ``out``."""
    root = cohort.metadata.get("root") or (Path(cohort.source).parent if cohort.source else None)
    if not root:
        return []
    try:
        rel = os.path.relpath(os.path.abspath(root), os.path.abspath(out))
    except ValueError:  # another drive (Windows)
        rel = Path(root).name
    return [{"URL": Path(rel).as_posix()}]


def _z_choice(bundle: ModelBundle, z: str | None, warn: Say) -> str:
    """The z to write: ``--z`` checked against the bundle, or the best the bundle holds (with a note)."""
    if z is None and bundle.model.residual_params is None:
        warn("this bundle has no residual part (fitted by an older release or without maps): the maps are the "
             "projected low-pass z; refit it with `spectranorm-neuro fit` for exact per-vertex z-scores")
        return "projected"
    from ..engine.maps import resolve_score

    if z == "local" and not (bundle.model.model_params.get("residual") or {}).get("local_modes"):
        raise bad_value("--z", z, "needs the local z declared (and calibrated) at fit time, which this bundle did "
                        "not do", "refit the bundle with `spectranorm-neuro fit --local-modes N` (e.g. N = modes / "
                        "10), or pass --z exact", IncompatibleModelError)
    try:
        return resolve_score(bundle.model, z)
    except IncompatibleModelError as exc:
        raise bad_value("--z", z, "needs the bundle's residual part, which this bundle lacks (fitted by an older "
                        "release or without maps)", "refit the bundle with `spectranorm-neuro fit` (it fits the "
                        "residual part), or pass --z projected for the low-pass z", type(exc)) from None


def _encode(bundle: ModelBundle, cohort: Cohort, n_jobs, progress: bool, say: Say) -> np.ndarray:
    say(f"Encoding {cohort.n_subjects} maps ...")
    return encode_cohort(cohort, bundle.basis, n_modes=int(bundle.model.model_params["n_modes"]), n_jobs=n_jobs,
                         progress=progress)


def apply_bundle(bundle: ModelBundle, cohort: Cohort, out: str | os.PathLike, *,
                 maps: Sequence[str] = ("zscore", "centile"), population: bool = False, measure: str | None = None,
                 space: dict | None = None, attachments: Sequence[Attachment] = (), overwrite: bool = False,
                 n_jobs: int | None = None, progress: bool = False, say: Say = _quiet,
                 warn: Say = _quiet, z: str | None = None, fwhm: float | None = None,
                 surfaces=None, atlas: Atlas | None = None) -> ApplyResult:
    """Score a cohort with a bundle and write BIDS derivatives (what ``spectranorm-neuro apply`` does).

    Writes, into ``out`` (complete or not at all): the z-score maps (always) and the other
    ``maps`` per subject, ``group/desc-zscoresummary_<measure>.tsv`` (provenance is in ``dataset_description.json`` and
    each map's JSON sidecar) and whatever the ``attachments`` write (e.g. the report, see
    :class:`spectranorm_neuro.report.BundleReport`).

    Parameters
    ----------
    bundle : ModelBundle
    cohort : Cohort
        Read onto ``bundle.basis`` (:func:`~spectranorm_neuro.workflow.load_cohort`).
    out : path-like
        Output folder: new, empty, or an earlier output of spectranorm_neuro with ``overwrite``.
    maps : sequence of str, optional
        Among ``zscore``, ``centile``, ``harmonized``, ``mu``, ``sd``.
    population : bool, optional
        Population-level norms (without the site effects), for sites the model never saw.
    measure : str, optional
        BIDS suffix of the outputs (default: the bundle's).
    space : dict, optional
        Template entities of the cohort's maps (``load_cohort`` returns them).
    attachments : sequence of Attachment, optional
    overwrite : bool, optional
        Replace an earlier output of spectranorm_neuro at ``out`` as a whole.
    n_jobs : int or None, optional
        Workers (joblib semantics; None: joblib's default).
    progress : bool, optional
    say, warn : callable, optional
        Receive status lines and warnings.
    z : {"exact", "local", "projected"}, optional
        Which z (``--z``): the exact per-vertex z (spectral plus residual part; the default when
        the bundle has a residual part), the local z (the same minus the subject's own coarse
        modes, declared at fit time with ``--local-modes``) or the low-pass z of the map's
        projection onto the modes (the default, with a warning, for bundles without one).
    fwhm : float, optional
        Write smoothed maps: Gaussian kernels of this FWHM in mm on the mesh (``--fwhm``).
    surfaces : mapping, optional
        Meshes for the kernels (default: fsaverage5's when the basis was built on it).
    atlas : Atlas, optional
        Also write parcel tables and parcel maps of the z-score (and other) maps
        (:func:`~spectranorm_neuro.workflow.parcels.read_atlas`, ``--atlas``).

    Returns
    -------
    ApplyResult
    """
    n_jobs = check_n_jobs(n_jobs, "--n-jobs")
    if bundle.kind == "regional":
        from .regional import apply_regional

        return apply_regional(bundle, cohort, out, maps=maps, population=population, measure=measure,
                              attachments=attachments, overwrite=overwrite, say=say, warn=warn, atlas=atlas)
    z = _z_choice(bundle, z, warn)
    kinds = list(dict.fromkeys(maps))
    if z == "local" and "harmonized" in kinds:
        raise bad_value("--maps", "harmonized", "is not defined for the local z (its moments are not those of the "
                        "map)", "write harmonized maps with --z exact (or the `harmonize` command)")
    unknown = [k for k in kinds if k not in MAP_KINDS]
    if unknown:
        raise bad_value("--maps", unknown, "are not maps apply can write", f"pass some of {list(MAP_KINDS)}")
    out = check_destination(out, overwrite)
    check_writable(bundle.basis.structures)
    covariates, space, messages = prepare_scoring(bundle, cohort, space, population, warn)
    measure = _measure(measure, bundle, cohort)
    for item in attachments:
        item.check(bundle, covariates)
    queries = None if fwhm is None else smoothing_queries(bundle.basis, fwhm, surfaces)
    if queries is not None and queries.n_queries != bundle.basis.n_features:
        raise bad_value("--fwhm", fwhm, "needs a kernel at every feature", "use it with surface bases only",
                        InvalidInputError)
    coeffs = _encode(bundle, cohort, n_jobs, progress, say) if attachments else None
    need = list(dict.fromkeys([*kinds, "zscore"]))
    meta = z_metadata(bundle.model, z, fwhm)
    say(f"Scoring {cohort.n_subjects} subjects at {bundle.basis.n_features} "
        f"{'vertices' if bundle.basis.structures[0].kind == 'surface' else 'features'} ({meta['SpectraNormZ']} z) ...")
    with staged_directory(out, overwrite, command="apply") as stage:
        written, kept = score_and_write(stage, bundle.model, None, covariates, cohort.subjects, measure,
                                        bundle.basis.structures, space, kinds=need, population=population,
                                        keep=["zscore"] if attachments else [], n_jobs=n_jobs, progress=progress,
                                        maps=cohort.maps(), z=z, queries=queries, meta=meta,
                                        metadata=map_metadata(bundle, "apply", population),
                                        source_datasets=source_datasets(cohort, out))
        parcel_files = []
        if atlas is not None:
            say(f"Scoring {atlas.n_parcels} parcels of the atlas {atlas.name} ...")
            parcel_maps = parcel_scores(bundle.model, coeffs, covariates, atlas, need, population, n_jobs, progress,
                                        maps=cohort.maps(), z=meta["SpectraNormZ"] if fwhm is None else z)
            parcel_files = write_parcel_outputs(stage, parcel_maps, cohort.subjects, measure, bundle.basis.structures,
                                                space, atlas, map_metadata(bundle, "apply", population))
        for item in attachments:
            item.write(stage, bundle, covariates, kept["zscore"], coeffs, n_jobs, progress, maps=cohort.maps())
        summary = pd.read_csv(written[-1], sep="\t")
    files = [out / Path(p).relative_to(stage) for p in [*written, *parcel_files]]
    return ApplyResult(out, files, cohort.n_subjects, space, summary, messages)


def harmonized_covariates(model, covariates: Sequence[str] | None) -> list[str]:
    """The covariates ``harmonize`` removes (``--covariates``, default the batch covariates), checked."""
    what = list(covariates or model.spec.batch_covariates)
    if not what:
        raise bad_value("--covariates", None, "is empty and the model has no batch covariate",
                        "name the covariates to remove with --covariates", InvalidInputError)
    unknown = [c for c in what if c not in model.spec.covariate_names]
    if unknown:
        raise bad_value("--covariates", unknown, f"are not covariates of the model ({model.spec.covariate_names})",
                        "name covariates the model was fitted with", InvalidInputError)
    return what


def harmonize_bundle(bundle: ModelBundle, cohort: Cohort, out: str | os.PathLike, *,
                     covariates: Sequence[str] | None = None, measure: str | None = None, space: dict | None = None,
                     overwrite: bool = False, n_jobs: int | None = None, progress: bool = False, say: Say = _quiet,
                     warn: Say = _quiet) -> ApplyResult:
    """Remove covariate (site) effects from a cohort's maps (what ``spectranorm-neuro harmonize`` does).

    Each value moves to the same centile without the effects of ``covariates``. Writes the
    ``harmonized`` maps (with JSON sidecars) and ``participants.tsv`` into ``out`` (complete or not at all).

    Parameters
    ----------
    bundle : ModelBundle
    cohort : Cohort
        Its sites must be known to the bundle.
    out : path-like
    covariates : sequence of str, optional
        Covariates whose effects are removed (default: the batch covariates).
    measure, space, overwrite, n_jobs, progress, say, warn :
        As in :func:`apply_bundle`.

    Returns
    -------
    ApplyResult
    """
    n_jobs = check_n_jobs(n_jobs, "--n-jobs")
    if bundle.kind == "regional":
        from .regional import harmonize_regional

        return harmonize_regional(bundle, cohort, out, covariates=covariates, measure=measure, overwrite=overwrite,
                                  say=say, warn=warn)
    model = bundle.model
    what = harmonized_covariates(model, covariates)
    out = check_destination(out, overwrite)
    check_writable(bundle.basis.structures)
    frame, space, messages = prepare_scoring(bundle, cohort, space, False, warn)
    measure = _measure(measure, bundle, cohort)
    z = _z_choice(bundle, None, warn)
    say(f"Harmonizing {cohort.n_subjects} subjects ...")
    with staged_directory(out, overwrite, command="harmonize") as stage:
        written, _ = score_and_write(stage, model, None, frame, cohort.subjects, measure, bundle.basis.structures,
                                     space, kinds=("harmonized",), summary=False, n_jobs=n_jobs, progress=progress,
                                     harmonize_without=what, maps=cohort.maps(), z=z,
                                     meta={"SpectraNormHarmonized": ",".join(what), "SpectraNormZ": z},
                                     metadata=map_metadata(bundle, "harmonize", removed=what),
                                     source_datasets=source_datasets(cohort, out))
        # the covariates go along, so the harmonized dataset can be fitted or applied as it is
        write_participants(stage, frame, cohort.metadata.get("participants_sidecar"),
                           description="Participants of the harmonized maps, covariates as in the source dataset.")
    files = [out / Path(p).relative_to(stage) for p in written]
    return ApplyResult(out, files, cohort.n_subjects, space, None, messages)
