"""Neuroimaging input/output: GIFTI, NIfTI, CIFTI, FreeSurfer and BIDS derivatives.

Everything goes through nibabel. Maps are read onto, and written from, a basis' features: the
concatenation of its structures' kept nodes (hemispheres left then right; volume voxels in C
order), see :mod:`spectranorm_neuro.graphs._graph`.

Reading
    :func:`read_map` (any format, checked against the structures), :func:`read_gifti`,
    :func:`read_morph`, :func:`read_dscalar`, :func:`read_nifti`; meshes, cortex masks (FreeSurfer
    ``.label``) and atlases (``.annot``, ``.label.gii``, ``.dlabel.nii``) with :func:`load_surface`,
    :func:`read_cortex_mask`, :func:`read_labels` (from :mod:`spectranorm_neuro.graphs`); cohorts with
    :func:`read_bids_cohort` / :func:`read_table_cohort` and :func:`encode_cohort` (chunked,
    joblib-parallel, progress bar).
Writing
    :func:`write_map` (by structure and extension), :func:`write_gifti`, :func:`write_nifti`,
    :func:`write_dscalar`, :func:`write_morph`, :func:`write_parcel_table`; BIDS derivatives with
    :class:`DerivativesWriter` (maps with JSON sidecars), :func:`write_dataset_description` (with a
    README and ``.bidsignore``) and :func:`write_participants`; cohort summaries with
    :func:`cohort_summary`. Every write is atomic and refuses to overwrite unless asked.
Queries
    :func:`vertex_queries`, :func:`voxel_queries`, :func:`kernel_queries`, :func:`atlas_queries`
    return a :class:`QuerySet` encoded for a basis (optionally streamed in blocks).
"""

from ..graphs.mesh import load_surface, read_cortex_mask
from ..graphs.parcellation import read_labels
from ._common import (
    KIND_INTENTS,
    check_feature_values,
    intent_for,
    normalize_hemi,
    resolve_structures,
    split_features,
    surface_structure,
    to_full,
)
from .bids import (
    BIDSIGNORE_PATTERNS,
    DESC_VOCABULARY,
    ENTITY_ORDER,
    MAP_DESCRIPTIONS,
    SHAPE_MEASURES,
    DerivativesWriter,
    build_bids_name,
    map_sidecar,
    normalize_entities,
    parse_bids_name,
    surface_extension,
    write_bidsignore,
    write_dataset_description,
    write_dataset_readme,
    write_participants,
)
from .cifti import CiftiMap, read_dscalar, write_dscalar
from .cohort import Cohort, CohortMaps, encode_cohort, read_bids_cohort, read_participants, read_table_cohort
from .freesurfer import FreeSurferMap, read_morph, write_morph
from .gifti import GiftiMap, read_gifti, write_gifti
from .maps import filename_hemi, read_map, read_parcel_table, write_map, write_parcel_table
from .mapstore import MapStore, store_cohort
from .nifti import read_nifti, volume_structure, write_nifti
from .queries import QuerySet, atlas_queries, kernel_queries, vertex_queries, voxel_queries
from .regional import SUBJECT_COLUMNS, align_subjects, read_regional_cohort, read_regional_table
from .summary import cohort_summary, write_summary

__all__ = [
    # layout helpers
    "KIND_INTENTS", "check_feature_values", "intent_for", "normalize_hemi", "resolve_structures",
    "split_features", "surface_structure", "to_full", "volume_structure",
    # formats (meshes, cortex masks and atlases are read by the graphs layer; re-exported here)
    "load_surface", "read_cortex_mask", "read_labels",
    "GiftiMap", "read_gifti", "write_gifti",
    "FreeSurferMap", "read_morph", "write_morph",
    "CiftiMap", "read_dscalar", "write_dscalar",
    "read_nifti", "write_nifti",
    "filename_hemi", "read_map", "write_map", "write_parcel_table", "read_parcel_table",
    "read_regional_table", "read_regional_cohort", "align_subjects", "SUBJECT_COLUMNS",
    # BIDS
    "DESC_VOCABULARY", "ENTITY_ORDER", "parse_bids_name", "normalize_entities", "build_bids_name",
    "write_dataset_description", "DerivativesWriter", "SHAPE_MEASURES", "surface_extension", "MAP_DESCRIPTIONS",
    "map_sidecar", "BIDSIGNORE_PATTERNS", "write_bidsignore", "write_dataset_readme", "write_participants",
    # cohorts
    "Cohort", "CohortMaps", "MapStore", "read_bids_cohort", "read_table_cohort", "read_participants", "encode_cohort",
    "store_cohort",
    "cohort_summary", "write_summary",
    # queries
    "QuerySet", "vertex_queries", "voxel_queries", "kernel_queries", "atlas_queries",
]
