"""The report of a cohort scored with a model bundle: the workflow's entry point into the report layer."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._util import check_n_jobs, check_positive_int
from ..exceptions import ExtrapolationWarning, InvalidInputError, bad_value
from ..io import Cohort, encode_cohort
from ..workflow import ModelBundle, prepare_scoring, score, staged_directory
from ..workflow.output import check_destination
from ._generate import DEFAULT_MIN_CLUSTER_AREA, DEFAULT_THRESHOLD, generate_report
from ._inputs import check_threshold
from .severity import MultivariateSeverity, multivariate_severity

__all__ = ["BundleReport", "bundle_report"]


@dataclass
class BundleReport:
    """Options of the HTML report of a scored cohort; an attachment of ``workflow.apply_bundle``.

    Attributes
    ----------
    controls : tuple of (str, str), or None
        ``(column, value)``: the subjects used for the calibration section (default all).
    group_column : str, optional
        Covariate column defining groups (e.g. ``"group"``).
    max_subjects : int, optional
        Subjects shown in detail.
    folder : str, optional
        Sub-folder of the apply output the report goes to.
    threshold : float or None, optional
        Subject maps show ``|z| > threshold`` in clusters of at least ``min_cluster_area`` mm²;
        None (CLI ``--threshold 0``) draws them unthresholded.
    min_cluster_area : float, optional
        Smallest cluster kept on surfaces (mm² on the mesh).
    atlas_labels : (labels (n_features,), names {label: name}), optional
        Atlas regions (an atlas read by ``io``): region names, top regions and regional charts.
    """

    controls: tuple[str, str] | None = None
    group_column: str | None = None
    max_subjects: int = 20
    folder: str = "report"
    threshold: float | None = DEFAULT_THRESHOLD
    min_cluster_area: float = DEFAULT_MIN_CLUSTER_AREA
    atlas_labels: tuple | None = None

    def check(self, bundle: ModelBundle, covariates: pd.DataFrame) -> None:
        """Refuse a ``group_column`` or ``controls`` column the cohort lacks (before any computation)."""
        check_positive_int(self.max_subjects, "--max-subjects", 20)
        check_threshold(self.threshold, self.min_cluster_area)
        columns = list(covariates.columns)
        if self.group_column is not None and self.group_column not in columns:
            raise bad_value("--group-column", self.group_column, f"is not a covariate column of the cohort ({columns})",
                            "name an existing column, e.g. --group-column group", InvalidInputError)
        if self.controls is not None:
            column, value = self.controls
            if column not in columns:
                raise bad_value("--controls", f"{column}={value}", f"is not COLUMN=VALUE with a covariate column "
                                f"({columns})", "pass e.g. --controls group=control", InvalidInputError)

    def _mask(self, covariates: pd.DataFrame) -> np.ndarray | None:
        if self.controls is None:
            return None
        column, value = self.controls
        return covariates[column].astype(str).to_numpy() == value

    def write(self, folder: Path, bundle: ModelBundle, covariates: pd.DataFrame, zscores: np.ndarray,
              coefficients: np.ndarray, n_jobs: int | None, progress: bool, maps=None) -> None:
        """Write the report into ``folder / self.folder`` (``maps``: the cohort's maps, for the multivariate z)."""
        self.render(Path(folder) / self.folder, bundle, covariates, zscores, coefficients, n_jobs, progress, maps)

    def severity(self, bundle: ModelBundle, covariates: pd.DataFrame, maps,
                 n_jobs: int | None = 1) -> MultivariateSeverity | None:
        """The multivariate deviation of every subject (None without maps or the bundle's residual part)."""
        model = bundle.model
        if maps is None or getattr(model, "residual_params", None) is None:
            return None
        batch = [c for c in model.spec.batch_covariates if c not in covariates.columns]
        return multivariate_severity(model, maps, covariates, self._mask(covariates), predict_without=batch,
                                     n_jobs=n_jobs)

    def render(self, out: Path, bundle: ModelBundle, covariates: pd.DataFrame, zscores: np.ndarray,
               coefficients: np.ndarray, n_jobs: int | None, progress: bool, maps=None) -> Path:
        """Write the report into the folder ``out`` (``generate_report`` with the bundle's model card)."""
        if bundle.kind == "regional":
            from ._regional import render_regional

            table = pd.DataFrame(zscores, index=covariates.index, columns=bundle.model.regions)
            return render_regional(out, bundle, covariates, table, self._mask(covariates), self.group_column)
        spec = bundle.model.spec
        site = spec.batch_covariates[0] if spec.batch_covariates else None
        multivariate = self.severity(bundle, covariates, maps, n_jobs)
        with warnings.catch_warnings():  # centile charts sweep the covariate range; the cohort was checked already
            warnings.simplefilter("ignore", ExtrapolationWarning)
            return generate_report(out, zscores, covariates, bundle.basis, model=bundle.model,
                                   coefficients=coefficients, model_card=bundle.card, controls=self._mask(covariates),
                                   group_column=self.group_column, max_subjects=self.max_subjects, progress=progress,
                                   site_column=site if site in covariates.columns else None,
                                   n_jobs=n_jobs, threshold=self.threshold,
                                   min_cluster_area=self.min_cluster_area, atlas_labels=self.atlas_labels,
                                   multivariate=multivariate)


def bundle_report(bundle: ModelBundle, cohort: Cohort, out: str | os.PathLike, *, population: bool = False,
                  controls: tuple[str, str] | Mapping[str, str] | None = None, group_column: str | None = None,
                  max_subjects: int = 20, space: dict | None = None, overwrite: bool = False,
                  n_jobs: int | None = None, progress: bool = False, warn=None,
                  threshold: float | None = DEFAULT_THRESHOLD, min_cluster_area: float = DEFAULT_MIN_CLUSTER_AREA,
                  atlas_labels: tuple | None = None) -> Path:
    """Score a cohort with a bundle and write its HTML report (what ``spectranorm-neuro report`` does).

    Parameters
    ----------
    bundle : ModelBundle
    cohort : Cohort
        Read onto ``bundle.basis`` (``workflow.load_cohort``).
    out : path-like
        Report folder (complete or absent; an earlier output only with ``overwrite``).
    population : bool, optional
        Population-level norms (no site effects).
    controls : (column, value) or {column: value}, optional
        Subjects used for the calibration section (default all).
    group_column : str, optional
    max_subjects : int, optional
    space : dict, optional
        Template entities of the cohort's maps.
    overwrite : bool, optional
    n_jobs : int or None, optional
        Workers (joblib semantics; the report's figures honour ``joblib.parallel_config``).
    progress : bool, optional
    warn : callable, optional
        Receives warnings about the cohort.
    threshold, min_cluster_area, atlas_labels : optional
        See :class:`BundleReport`.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    n_jobs = check_n_jobs(n_jobs, "--n-jobs")
    if isinstance(controls, Mapping):
        controls = next(iter(controls.items())) if controls else None
    if bundle.kind == "regional":
        from ._regional import regional_report

        return regional_report(bundle, cohort, out, population=population,
                               controls=tuple(controls) if controls else None, group_column=group_column,
                               overwrite=overwrite, warn=warn)
    options = BundleReport(tuple(controls) if controls else None, group_column, max_subjects,
                           threshold=threshold, min_cluster_area=min_cluster_area, atlas_labels=atlas_labels)
    out = check_destination(out, overwrite)
    covariates, _, _ = prepare_scoring(bundle, cohort, space, population, warn or (lambda message: None))
    options.check(bundle, covariates)
    coeffs = encode_cohort(cohort, bundle.basis, n_modes=int(bundle.model.model_params["n_modes"]), n_jobs=n_jobs,
                           progress=progress)
    kind = "exact" if bundle.model.residual_params is not None else "projected"
    z = score(bundle.model, coeffs, covariates, ["zscore"], population, progress=progress, n_jobs=n_jobs,
              maps=cohort.maps(), z=kind)["zscore"]
    with staged_directory(out, overwrite, command="report") as stage:
        options.render(stage, bundle, covariates, z, coeffs, n_jobs, progress, cohort.maps())
    return out


