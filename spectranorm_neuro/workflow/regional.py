"""The workflow for tables of regional measures: the same bundles, cards, fit, apply, adapt and harmonize as maps.

A regional cohort is a table with one row per subject and one column per region (FreeSurfer
``aparcstats2table`` / ``asegstats2table`` output, or any CSV/TSV), with the covariates in a
``participants.tsv`` (``participants=``) or in the same table. A regional bundle is an ordinary
model bundle (:class:`~spectranorm_neuro.workflow.ModelBundle`) whose manifest says
``kind: "regional"``; it holds a :class:`~spectranorm_neuro.engine.regional.RegionalNormativeModel`
(every region fitted at once) and a model card with, per region, the likelihood used (Normal or
SHASHb, by the likelihood-ratio test). :func:`~spectranorm_neuro.workflow.apply_bundle`,
:func:`~spectranorm_neuro.workflow.adapt_bundle` and :func:`~spectranorm_neuro.workflow.harmonize_bundle`
take a regional bundle and a :class:`RegionalCohort` and call the functions of this module.

Outputs of ``apply`` (complete or absent, like every output folder)::

    dataset_description.json, README.md, .bidsignore
    group/desc-<kind>_<measure>.tsv    one row per subject (participant_id), one column per region,
    group/desc-<kind>_<measure>.json   kind among zscore, centile, harmonized, mu, sd; sidecar: columns,
                                       units and the model (bundle, checksums, covariates, likelihood)
    group/desc-zscoresummary_<measure>.tsv (+ .json)   per subject: mean/max |z|, count of |z| > 2

``harmonize`` writes ``group/desc-harmonized_<measure>.tsv`` (+ JSON) and its covariates as
``group/participants.tsv`` (+ JSON; not at the top, where BIDS would want a subject folder for
every row), so that it can be fitted or applied again with ``--participants``.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine.regional import RegionalNormativeModel
from ..exceptions import ExtrapolationWarning, InvalidInputError, UsageError, bad_value
from ..io import (
    build_bids_name,
    cohort_summary,
    read_participants,
    read_regional_cohort,
    read_regional_table,
    write_dataset_description,
    write_parcel_table,
    write_participants,
    write_summary,
)
from ..io._common import write_text
from .bundle import ModelBundle, check_bundle_target
from .card import build_regional_card, held_out_metrics, record_adaptation
from .cohorts import covariates_frame, select_subjects
from .fitting import holdout_mask
from .output import check_destination, staged_directory
from .parcels import PARCEL_KINDS, Atlas, region_parcels, write_parcel_outputs
from .scoring import MAP_KINDS

__all__ = ["RegionalCohort", "load_regional_cohort", "fit_regional_bundle", "apply_regional", "adapt_regional",
           "harmonize_regional", "regional_tables", "prepare_regional", "SMOOTHING_OPTIONS", "LIKELIHOOD_OPTIONS"]

#: ``smoothing=`` values: ``"eb"`` a penalized B-spline (df 20) whose smoothness is estimated per
#: region by empirical Bayes (the default: it beats the fixed df=5 spline on every draw measured,
#: see the README), ``"none"`` the fixed df=5 B-spline of the seed API.
SMOOTHING_OPTIONS = {"eb": {"df": 20, "smoothing": "eb"}, "none": {"df": 5}}
LIKELIHOOD_OPTIONS = ("SHASHb", "Normal")
_UNITS = {"zscore": "standard deviations", "centile": "percent (0-100)"}
_WHAT = {"zscore": "z-score (standard deviations from the normative mean, from the exact CDF)",
         "centile": "centile of the normative distribution (0-100)",
         "mu": "normative mean", "sd": "normative standard deviation",
         "harmonized": "value with the site effects removed (same centile)"}
_README = """# {name}

Regional normative scores written by spectranorm_neuro ({command}).

* `group/desc-<kind>_<measure>.tsv`: one row per participant, one column per region; `kind` is
  `zscore`, `centile`, `harmonized`, `mu` or `sd`. Each table has a JSON sidecar naming the
  model (bundle, SHA-256 of its card and parameters) and the units.
* `group/desc-zscoresummary_<measure>.tsv`: per participant, mean and largest |z| and the number
  of regions with |z| > 2.
"""


def _quiet(message: str) -> None:
    """Default status/warning sink: silent."""


@dataclass(eq=False)
class RegionalCohort:
    """A table of regional measures and the subjects' covariates.

    Attributes
    ----------
    values : pandas.DataFrame, shape (n_subjects, n_regions)
        Float values, indexed by ``participant_id`` (``sub-<label>``), one column per region.
    covariates : pandas.DataFrame, shape (n_subjects, n_covariates)
        Same index and order.
    source : str
        Where the table came from (for messages and provenance).
    metadata : dict
        ``measure`` (from a FreeSurfer header), ``participants_sidecar``, ``root``.
    """

    values: pd.DataFrame
    covariates: pd.DataFrame
    source: str = ""
    metadata: dict = field(default_factory=dict)

    @property
    def subjects(self) -> list[str]:
        """Participant ids in table order."""
        return [str(s) for s in self.values.index]

    @property
    def n_subjects(self) -> int:
        """Number of subjects."""
        return len(self.values)

    @property
    def regions(self) -> list[str]:
        """Region (column) names."""
        return [str(c) for c in self.values.columns]

    def subset(self, rows) -> RegionalCohort:
        """A new cohort with some subjects (positions or a boolean mask)."""
        return RegionalCohort(self.values.iloc[rows].copy(), self.covariates.iloc[rows].copy(), self.source,
                              dict(self.metadata))

    def __repr__(self) -> str:
        return f"RegionalCohort(n_subjects={self.n_subjects}, n_regions={len(self.regions)})"


def _sub(label) -> str:
    label = str(label).strip()
    return label if label.startswith("sub-") else f"sub-{label}"


def _header_measure(path: Path) -> str | None:
    """The measure named by a FreeSurfer table's first header (``lh.aparc.thickness``, ``Measure:volume``)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline().replace(",", "\t").split()
    except OSError:
        return None
    head = first[0] if first else ""
    if head.lower().startswith("measure:"):
        return head.split(":", 1)[1] or None
    parts = head.split(".")
    if len(parts) >= 3 and parts[0] in ("lh", "rh"):
        return parts[-1]
    return None


def load_regional_cohort(table, *, participants=None, subject_column: str | None = None,
                         regions: Sequence[str] | None = None, covariates: Sequence[str] = (),
                         select=None, bundle: ModelBundle | None = None) -> RegionalCohort:
    """Read a table of regional measures and its covariates (what every command does with a regional cohort).

    Parameters
    ----------
    table : path-like or pandas.DataFrame
        FreeSurfer ``aparcstats2table`` / ``asegstats2table`` output or a CSV/TSV (subject column
        named by ``subject_column`` or detected), or a DataFrame indexed by subject id.
    participants : path-like or pandas.DataFrame, optional
        Covariate table (``participants.tsv``, ``--participants``). Without it the covariates are
        columns of ``table``: the ``covariates`` named, every non-numeric column and, with
        ``regions`` (or a ``bundle``), every column that is not a region.
    subject_column : str, optional
        Header of the subject-id column of ``table`` (``--subject-column``).
    regions : sequence of str, optional
        Region columns (``--regions``; default: the bundle's regions, else every numeric column
        that is not a covariate).
    covariates : sequence of str, optional
        Covariate columns of ``table`` (when the covariates are in the same table).
    select : mapping or sequence of (column, value), optional
        Keep the subjects whose covariates equal these values (``--select``).
    bundle : ModelBundle, optional
        A regional bundle the cohort will be scored with: its regions are read.

    Returns
    -------
    RegionalCohort
    """
    if regions is None and bundle is not None:
        regions = list(bundle.model.regions)
    source = "DataFrame" if isinstance(table, pd.DataFrame) else str(table)
    meta: dict = {}
    if isinstance(table, pd.DataFrame):
        if participants is None:
            raise bad_value("participants", None, "is needed with a DataFrame table",
                            "pass the covariates as participants=<DataFrame or participants.tsv>")
        values = table[list(regions)] if regions is not None else table
        values = values.apply(pd.to_numeric, errors="coerce").astype(np.float64)
    elif participants is None:
        values, covs = read_regional_cohort(table, covariates, subject_column, regions)
    else:
        values = read_regional_table(table, subject_column, regions)
    if not isinstance(table, pd.DataFrame):
        meta["measure"] = _header_measure(Path(table))
    if participants is not None:
        covs, sidecar = read_participants(participants, "--participants")
        meta["participants_sidecar"] = sidecar
        if not isinstance(participants, pd.DataFrame):
            meta["root"] = str(Path(participants).parent)
    values.index = pd.Index([_sub(i) for i in values.index], name="participant_id")
    covs.index = pd.Index([_sub(i) for i in covs.index], name="participant_id")
    missing = [i for i in values.index if i not in covs.index]
    if missing:
        raise bad_value("--participants", f"{len(missing)} subject(s) of the table, e.g. {missing[:3]}",
                        "have no covariate row", "add their covariates, or drop them from the table",
                        InvalidInputError)
    cohort = RegionalCohort(values, covs.loc[values.index], source, meta)
    return select_subjects(cohort, select)


def _check_values(cohort: RegionalCohort) -> None:
    bad = ~np.isfinite(cohort.values.to_numpy(dtype=float))
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise bad_value("cohort", cohort.source, f"has {int(bad.sum())} missing or non-numeric region value(s) "
                        f"(e.g. {cohort.subjects[rows[0]]}, {cohort.regions[cols[0]]})",
                        "fill them in, or leave those subjects or regions out (--select, --regions)",
                        InvalidInputError)


def _measure(measure: str | None, bundle: ModelBundle | None, cohort: RegionalCohort) -> str:
    return measure or (bundle.measure if bundle is not None else None) or cohort.metadata.get("measure") or "value"


def fit_regional_bundle(cohort: RegionalCohort, out: str | os.PathLike | None = None, *,
                        numerical: Sequence[str] = (), categorical: Sequence[str] = (), batch: Sequence[str] = (),
                        nonlinear: Sequence[str] = (), mean: Sequence[str] | None = None,
                        variance: Sequence[str] | None = None, model_type: str = "HBR", likelihood: str = "SHASHb",
                        smoothing: str = "eb", inference: str = "map", holdout: float = 0.0,
                        measure: str | None = None, seed: int = 0, overwrite: bool = False,
                        say=_quiet) -> ModelBundle:
    """Fit every region of a table at once and make it a bundle (``spectranorm-neuro fit TABLE`` without ``--basis``).

    Parameters
    ----------
    cohort : RegionalCohort
        From :func:`load_regional_cohort`.
    out : path-like, optional
        Bundle to write (folder, or a file ending in ``.zip``); None writes nothing.
    numerical, categorical, batch, nonlinear, mean, variance, model_type, inference, holdout, seed, overwrite :
        As in :func:`~spectranorm_neuro.workflow.fit_bundle`.
    likelihood : {"SHASHb", "Normal"}, optional
        ``"SHASHb"`` (default) fits skew and tails per region and keeps them only where the
        likelihood-ratio test rejects the Normal; the card records the choice per region.
    smoothing : {"eb", "none"}, optional
        Nonlinear effects: penalized B-spline with estimated smoothness (default) or the fixed
        df=5 spline (:data:`SMOOTHING_OPTIONS`).
    measure : str, optional
        Name of the measure (default: from a FreeSurfer header, else ``"value"``).
    say : callable, optional
        Receives status lines.

    Returns
    -------
    ModelBundle
        Of kind ``"regional"``.
    """
    from .steps import _check_covariate_values, check_fit_options

    if likelihood not in LIKELIHOOD_OPTIONS:
        raise bad_value("--likelihood", likelihood, "is not a likelihood of regional models",
                        f"pass one of {list(LIKELIHOOD_OPTIONS)}", UsageError)
    if smoothing not in SMOOTHING_OPTIONS:
        raise bad_value("--smoothing", smoothing, "is not a smoothing rule", f"pass one of {list(SMOOTHING_OPTIONS)}",
                        UsageError)
    check_fit_options(numerical, categorical, batch, nonlinear, holdout, cohort.covariates.columns)
    _check_covariate_values(cohort, numerical, categorical)
    _check_values(cohort)
    if out is not None:
        out = check_bundle_target(out, overwrite)
    covariates = covariates_frame(cohort)
    hold = holdout_mask(covariates, holdout, seed, list(batch))
    train = ~hold
    cov_train = covariates.loc[train]
    model = RegionalNormativeModel.from_dataframe(
        model_type, cov_train, numerical_covariates=list(numerical), nonlinear_covariates=list(nonlinear),
        categorical_covariates=list(categorical), batch_covariates=list(batch),
        influencing_mean=None if mean is None else list(mean),
        influencing_variance=None if variance is None else list(variance),
        spline_kwargs=dict(SMOOTHING_OPTIONS[smoothing]), likelihood=likelihood)
    say(f"Fitting {len(cohort.regions)} regions of {int(train.sum())} subjects ({model_type}, {likelihood}, "
        f"smoothing {smoothing}) ...")
    model.fit(cohort.values.loc[train], cov_train, inference=inference, random_state=seed)
    metrics = None
    if hold.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExtrapolationWarning)
            res = model.evaluate(cohort.values.loc[hold], covariates.loc[hold])
        metrics = held_out_metrics(res["z-score"].to_numpy(), {k: res.metrics[k].to_numpy() for k in res.metrics},
                                   int(hold.sum()))
    card = build_regional_card(model, cov_train, measure=_measure(measure, None, cohort), seed=seed,
                               holdout=holdout, metrics=metrics, source=cohort.source or None)
    bundle = ModelBundle(model, card)
    if out is not None:
        bundle.save(out, overwrite=overwrite)
    return bundle


def prepare_regional(bundle: ModelBundle, cohort: RegionalCohort, population: bool = False, warn=_quiet
                     ) -> tuple[pd.DataFrame, list[str]]:
    """Check a regional cohort against a regional bundle before scoring it.

    Returns
    -------
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    warnings : list of str
        Extrapolation warnings (also passed to ``warn``).
    """
    if not isinstance(cohort, RegionalCohort):
        raise bad_value("cohort", type(cohort).__name__, "is not a table of regional measures, but the bundle "
                        "is regional", "read the table with load_regional_cohort(...)", InvalidInputError)
    missing = [r for r in bundle.model.regions if r not in cohort.values.columns]
    if missing:
        raise bad_value("cohort", cohort.source, f"lacks {len(missing)} region(s) of the bundle, e.g. {missing[:3]}",
                        "pass a table with every region the bundle was fitted on (same column names)",
                        InvalidInputError)
    _check_values(cohort)
    covariates = covariates_frame(cohort)
    lacking = [c for c in bundle.model.spec.covariate_names if c not in covariates.columns
               and not (population and c in bundle.model.spec.batch_covariates)]
    if lacking and "participants_sidecar" not in cohort.metadata:
        raise bad_value("--participants", None, f"is not given and the table {cohort.source} lacks the covariate "
                        f"column(s) {lacking} the model needs", "pass the covariates with --participants "
                        "participants.tsv (participants=...), or add the columns to the table", InvalidInputError)
    from .steps import covariate_messages

    return covariates, covariate_messages(bundle, covariates, population, cohort.source or "cohort", warn)


def regional_tables(model: RegionalNormativeModel, cohort: RegionalCohort, covariates: pd.DataFrame,
                    kinds: Sequence[str], population: bool = False) -> dict[str, pd.DataFrame]:
    """The tables ``apply`` writes: z-scores, centiles, means, sds and harmonized values per subject and region.

    Parameters
    ----------
    model : RegionalNormativeModel
    cohort : RegionalCohort
    covariates : pandas.DataFrame, shape (n_subjects, ...)
    kinds : sequence of str
        Among :data:`~spectranorm_neuro.workflow.MAP_KINDS`.
    population : bool, optional
        Predict without the batch covariates.

    Returns
    -------
    dict of str to pandas.DataFrame, each (n_subjects, n_regions)
    """
    batch = list(model.spec.batch_covariates)
    without = batch if population else []
    values = cohort.values[model.regions]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)  # reported once by check_covariates
        res = model.evaluate(values, covariates, predict_without=without)
        out = {"zscore": res["z-score"], "centile": res["centiles"], "mu": res["mu"], "sd": res["sd"]}
        if "harmonized" in kinds:
            out["harmonized"] = model.harmonize(values, covariates, batch) if batch else values.copy()
    return {k: out[k] for k in kinds}


def _model_metadata(bundle: ModelBundle, command: str, population: bool = False, removed=None) -> dict:
    from .steps import map_metadata

    return map_metadata(bundle, command, population, removed)


def _write_table(root: Path, table: pd.DataFrame, kind: str, measure: str, metadata: dict) -> Path:
    path = root / "group" / build_bids_name({"desc": kind}, measure, ".tsv")
    write_parcel_table(table.to_numpy(), path, list(table.columns), index=list(table.index))
    side = {"Description": f"{_WHAT.get(kind, kind)} of {measure}, one column per region",
            **({"Units": _UNITS[kind]} if kind in _UNITS else {}), **metadata,
            "participant_id": {"Description": "Participant identifier"},
            **{r: {"Description": f"{kind} of {measure} in {r}"} for r in table.columns}}
    write_text(path.with_suffix(".json"), json.dumps(side, indent=2) + "\n")
    return path


def _write_dataset(stage: Path, cohort: RegionalCohort, out: Path, command: str) -> None:
    from .steps import source_datasets

    name = f"spectranorm_neuro regional {command}"
    write_dataset_description(stage, name, source_datasets(cohort, out),
                              readme=_README.format(name=name, command=f"spectranorm-neuro {command}"))


def _write_parcel_maps(stage: Path, tables: dict, parcels: np.ndarray, subjects, measure: str, atlas: Atlas,
                       meta: dict) -> list[Path]:
    """The regional tables as parcel maps (``write_parcel_outputs``, the writer of ``apply --atlas``)."""
    maps = {}
    for kind in (k for k in tables if k in PARCEL_KINDS):
        values = tables[kind].to_numpy()[:, np.maximum(parcels, 0)]
        values[:, parcels < 0] = np.nan
        maps[kind] = values
    regions = list(next(iter(tables.values())).columns)
    note = {"RegionalTable": "Each vertex/voxel holds the value of the table region matched to its parcel by name "
                             "(a regional model of the table's columns, not a model of maps); n/a where no region "
                             "matches the parcel",
            "ParcelRegions": {p: (regions[j] if j >= 0 else None) for p, j in zip(atlas.names, parcels.tolist())}}
    return write_parcel_outputs(stage, maps, subjects, measure, atlas.structures, {}, atlas, {**meta, **note})


def apply_regional(bundle: ModelBundle, cohort: RegionalCohort, out: str | os.PathLike, *,
                   maps: Sequence[str] = ("zscore", "centile"), population: bool = False, measure: str | None = None,
                   attachments: Sequence = (), overwrite: bool = False, say=_quiet, warn=_quiet,
                   atlas: Atlas | None = None):
    """Score a regional cohort with a regional bundle (``spectranorm-neuro apply`` on a regional bundle).

    Parameters
    ----------
    bundle : ModelBundle
        Of kind ``"regional"``.
    cohort : RegionalCohort
    out : path-like
        Output folder (see the module notes); new, empty, or an earlier output with ``overwrite``.
    maps : sequence of str, optional
        Tables to write, among ``zscore``, ``centile``, ``harmonized``, ``mu``, ``sd``.
    population, measure, attachments, overwrite, say, warn :
        As in :func:`~spectranorm_neuro.workflow.apply_bundle` (an attachment's ``write`` gets the
        z-scores, subjects x regions, and no coefficients).
    atlas : Atlas, optional
        The parcellation the table's regions come from (:func:`~spectranorm_neuro.workflow.read_atlas_layout`,
        ``--atlas``): the ``zscore``, ``centile``, ``mu`` and ``sd`` tables are also written as parcel
        maps (each vertex or voxel holds its parcel's value; regions matched to parcels by name,
        :func:`~spectranorm_neuro.workflow.parcels.region_parcels`), as ``apply --atlas`` does for maps.

    Returns
    -------
    ApplyResult
    """
    from .steps import ApplyResult

    kinds = list(dict.fromkeys([*maps, "zscore"]))
    unknown = [k for k in kinds if k not in MAP_KINDS]
    if unknown:
        raise bad_value("--maps", unknown, "are not tables apply can write", f"pass some of {list(MAP_KINDS)}")
    out = check_destination(out, overwrite)
    covariates, messages = prepare_regional(bundle, cohort, population, warn)
    measure = _measure(measure, bundle, cohort)
    for item in attachments:
        item.check(bundle, covariates)
    parcels = None if atlas is None else region_parcels(atlas, bundle.model.regions)
    say(f"Scoring {cohort.n_subjects} subjects in {len(bundle.model.regions)} regions ...")
    tables = regional_tables(bundle.model, cohort, covariates, kinds, population)
    meta = _model_metadata(bundle, "apply", population)
    with staged_directory(out, overwrite, command="apply") as stage:
        _write_dataset(stage, cohort, out, "apply")
        written = [_write_table(stage, tables[k], k, measure, meta) for k in kinds]
        summary = cohort_summary(tables["zscore"].to_numpy(), cohort.subjects)
        written.append(write_summary(summary, stage / "group" / build_bids_name({"desc": "zscoresummary"}, measure,
                                                                                 ".tsv")))
        if atlas is not None:
            written += _write_parcel_maps(stage, tables, parcels, cohort.subjects, measure, atlas, meta)
        for item in attachments:
            item.write(stage, bundle, covariates, tables["zscore"].to_numpy(), None, 1, False)
    files = [out / Path(p).relative_to(stage) for p in written]
    return ApplyResult(out, files, cohort.n_subjects, {}, summary, messages)


def harmonize_regional(bundle: ModelBundle, cohort: RegionalCohort, out: str | os.PathLike, *,
                       covariates: Sequence[str] | None = None, measure: str | None = None, overwrite: bool = False,
                       say=_quiet, warn=_quiet):
    """Remove site effects from a regional table (``spectranorm-neuro harmonize`` on a regional bundle).

    Writes ``group/desc-harmonized_<measure>.tsv`` (+ JSON) and ``group/participants.tsv`` (+ JSON).

    Returns
    -------
    ApplyResult
    """
    from .steps import ApplyResult, harmonized_covariates

    model = bundle.model
    what = harmonized_covariates(model, covariates)
    out = check_destination(out, overwrite)
    frame, messages = prepare_regional(bundle, cohort, False, warn)
    measure = _measure(measure, bundle, cohort)
    say(f"Harmonizing {cohort.n_subjects} subjects ...")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        table = model.harmonize(cohort.values[model.regions], frame, what)
    with staged_directory(out, overwrite, command="harmonize") as stage:
        _write_dataset(stage, cohort, out, "harmonize")
        written = [_write_table(stage, table, "harmonized", measure,
                                _model_metadata(bundle, "harmonize", removed=what))]
        write_participants(stage / "group", frame, cohort.metadata.get("participants_sidecar"),
                           description="Participants of the harmonized table, covariates as in the source.")
    files = [out / Path(p).relative_to(stage) for p in written]
    return ApplyResult(out, files, cohort.n_subjects, {}, None, messages)


def adapt_regional(bundle: ModelBundle, cohort: RegionalCohort, out: str | os.PathLike | None = None, *,
                   overwrite: bool = False) -> ModelBundle:
    """Learn new sites' mean and spread from their controls (``spectranorm-neuro adapt`` on a regional bundle).

    Parameters
    ----------
    bundle : ModelBundle
        Of kind ``"regional"``; left unchanged.
    cohort : RegionalCohort
        Controls of the new site(s) only, labelled with their new batch levels.
    out : path-like, optional
        Adapted bundle to write (not the input bundle).
    overwrite : bool, optional

    Returns
    -------
    ModelBundle
        Its card records the new levels, their controls and effective number of controls
        (``card["adaptations"][-1]["report"]``).
    """
    from .steps import _check_new_levels

    if out is not None:
        if bundle.path is not None and Path(out).resolve() == Path(bundle.path).resolve():
            raise UsageError("--out must differ from the input bundle (write the adapted bundle next to it)")
        out = check_bundle_target(out, overwrite)
    if not bundle.model.spec.batch_covariates:
        raise bad_value("bundle", str(bundle.path), "has no batch (site) covariate, so there is nothing to adapt",
                        "apply it directly, or fit a model with --batch site", InvalidInputError)
    _check_values(cohort)
    covariates = covariates_frame(cohort)
    _check_new_levels(bundle.model, covariates, cohort.source or "cohort")
    model = copy.deepcopy(bundle.model)
    before = {c.name: set(c.adapted or []) for c in model.spec.covariates}
    model.model_params.pop("adaptation", None)
    model.adapt_fit(cohort.values[model.regions], covariates)
    added = {c.name: sorted(set(c.adapted or []) - before.get(c.name, set())) for c in model.spec.covariates
             if set(c.adapted or []) - before.get(c.name, set())}
    report = model.model_params.get("adaptation")
    if bundle.model.model_params.get("adaptation"):  # earlier adaptations stay in the model's record
        model.model_params["adaptation"] = {**bundle.model.model_params["adaptation"], **(report or {})}
    adapted = ModelBundle(model, record_adaptation(bundle.card, added, cohort.n_subjects, cohort.source or None,
                                                   report))
    if out is not None:
        adapted.save(out, overwrite=overwrite)
    return adapted
