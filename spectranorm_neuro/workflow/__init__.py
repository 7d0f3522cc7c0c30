"""The shared-model workflow in Python: fit a bundle, apply it, adapt it, harmonize, with outputs that never lose data.

This is what the ``spectranorm-neuro`` commands do, as functions that take Python objects; the
command line only parses its arguments and calls them, so a script and the command line write
the same bytes::

    from spectranorm_neuro.basis import EigenmodeBasis
    from spectranorm_neuro.workflow import ModelBundle, apply_bundle, fit_bundle, load_cohort

    basis = EigenmodeBasis.load("basis.npz")
    cohort, space = load_cohort("derivatives/", basis, measure="thickness")
    fit_bundle(cohort, basis, "bundle.zip", numerical=["age"], categorical=["sex", "site"], batch=["site"])
    bundle = ModelBundle.load("bundle.zip")                   # format and every checksum verified
    patients, space = load_cohort("patients/", bundle.basis, bundle=bundle)
    apply_bundle(bundle, patients, "zmaps", space=space)       # BIDS derivatives, complete or absent

Parts
    :func:`make_basis` (the basis of a mesh, mask or lattice, :func:`save_basis_file`);
    :class:`ModelBundle` (``load``, ``save``, ``verify``, ``card``, ``describe``), the model card
    (:func:`build_model_card`, :func:`format_card`); :func:`load_cohort`; the steps
    :func:`fit_bundle`, :func:`apply_bundle`, :func:`adapt_bundle`, :func:`harmonize_bundle`;
    scoring (:func:`score`, :func:`score_and_write`, :func:`write_maps`); output folders
    (:func:`check_destination`, :func:`staged_directory`). The HTML report of a bundle and a
    cohort is :func:`spectranorm_neuro.report.bundle_report`. Tables of regional measures:
    :func:`load_regional_cohort` and :func:`fit_regional_bundle` (a bundle of kind ``"regional"``,
    which ``apply_bundle``, ``adapt_bundle`` and ``harmonize_bundle`` take as they take maps'; see
    :mod:`spectranorm_neuro.workflow.regional`).
"""

from .bases import check_basis_target, known_cortex_label, make_basis, make_graph, save_basis_file
from .bundle import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    KINDS,
    ModelBundle,
    bundle_kind,
    check_bundle_target,
    check_compatible,
    load_bundle,
    save_bundle,
    space_label,
)
from .card import basis_space, build_model_card, build_regional_card, format_card, held_out_metrics, record_adaptation
from .cohorts import covariates_frame, load_basis, load_cohort, select_subjects
from .fitting import FitResult, fit_model, holdout_mask
from .output import OUTPUT_RECORD, check_destination, clean_leftovers, is_package_output, staged_directory
from .parcels import PARCEL_KINDS, Atlas, read_atlas, read_atlas_layout, region_parcels
from .regional import (
    RegionalCohort,
    adapt_regional,
    apply_regional,
    fit_regional_bundle,
    harmonize_regional,
    load_regional_cohort,
    prepare_regional,
    regional_tables,
)
from .scoring import MAP_KINDS, check_covariates, encoded_queries, score, score_and_write, write_maps
from .steps import (
    ApplyResult,
    Attachment,
    adapt_bundle,
    apply_bundle,
    check_fit_options,
    fit_bundle,
    harmonize_bundle,
    prepare_scoring,
)

__all__ = [
    "make_graph", "make_basis", "check_basis_target", "save_basis_file",
    "BUNDLE_FORMAT", "BUNDLE_FORMAT_VERSION", "ModelBundle", "load_bundle", "save_bundle", "check_bundle_target",
    "check_compatible", "space_label",
    "build_model_card", "format_card", "held_out_metrics", "record_adaptation", "basis_space",
    "known_cortex_label", "Atlas", "PARCEL_KINDS", "read_atlas", "read_atlas_layout", "region_parcels",
    "load_basis", "load_cohort", "covariates_frame", "select_subjects",
    "FitResult", "fit_model", "holdout_mask",
    "OUTPUT_RECORD", "check_destination", "staged_directory", "clean_leftovers", "is_package_output",
    "MAP_KINDS", "check_covariates", "encoded_queries", "score", "score_and_write", "write_maps",
    "ApplyResult", "Attachment", "check_fit_options", "fit_bundle", "apply_bundle", "adapt_bundle",
    "harmonize_bundle", "prepare_scoring",
    "RegionalCohort", "load_regional_cohort", "fit_regional_bundle", "apply_regional", "adapt_regional",
    "harmonize_regional", "regional_tables", "prepare_regional", "KINDS", "bundle_kind", "build_regional_card",
]
