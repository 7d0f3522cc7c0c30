"""The whole workflow, offline, on a synthetic fsaverage5 cohort (``spectranorm-neuro demo``).

Steps (all outputs under ``--out``, default ``./spectranorm_demo``; written to a staging folder and
moved into place only when every step succeeded):

1. the basis: Laplace–Beltrami modes of nilearn's fsaverage5 midthickness (medial wall removed),
   ``--n-modes`` in all (over both hemispheres) -> ``basis.npz``;
2. a reference cohort of 1600 healthy subjects from three sites and a clinic cohort (1280 held-out
   controls and 40 patients with one planted focal deviation of -3 sd each) drawn from a known
   normative process (:class:`spectranorm_neuro.datasets.DemoProcess`), written as BIDS derivatives
   datasets (``data/reference``, ``data/clinic``: GIFTI ``.shape.gii`` per hemisphere,
   ``participants.tsv`` + JSON sidecar);
3. the reference maps read back and encoded, the model fitted (10% of each site held out for
   the model card) -> ``model_bundle/``;
4. the bundle loaded (checksums verified) and applied to the clinic cohort -> z-score and centile
   maps as BIDS derivatives (``derivatives/``, GIFTI with intents) plus the summary TSV;
5. the HTML report -> ``report/index.html``;
6. the check: the mean z-score inside the planted patches must be far below the mean elsewhere.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..basis import EigenmodeBasis
from ..datasets import DemoProcess, SyntheticCohort
from ..graphs import fsaverage5_graph
from ..io import (
    build_bids_name,
    encode_cohort,
    read_bids_cohort,
    split_features,
    surface_extension,
    write_dataset_description,
    write_gifti,
    write_participants,
)
from ..io._common import STRUCTURE_TO_HEMI
from .bundle import ModelBundle
from .output import check_destination, staged_directory
from .scoring import score, write_maps, z_metadata
from .steps import Attachment, Say, _quiet, fit_bundle, prepare_scoring

__all__ = ["run_demo", "DemoSettings", "write_bids_cohort", "planted_check"]

MEASURE = "thickness"
SPACE = {"space": "fsaverage", "den": "10k"}
SITES = ("A", "B", "C")


class DemoSettings:
    """Sizes of a demo run (``small`` is the reduced run used by the tests).

    Parameters
    ----------
    small : bool
    hemi, n_train : optional overrides
    n_modes : int, optional
        Modes in all (over both hemispheres with ``hemi="both"``), as everywhere in the package;
        default 40 per hemisphere with ``small``, else 80.
    """

    def __init__(self, small: bool = False, hemi: str | None = None, n_train: int | None = None,
                 n_modes: int | None = None):
        self.hemi = hemi or ("left" if small else "both")
        self.n_train = n_train or (150 if small else 1600)
        self.n_modes = n_modes or (40 if small else 80) * (2 if self.hemi == "both" else 1)
        # The controls' mean z of each sex on the centile charts errs by the fit's sampling error
        # (sd ~0.09 with 360 training subjects, ~0.045 with 1440) plus their own standard error
        # (~0.08 with 160 controls per sex, ~0.04 with 640): 1600 and 1280 keep both sexes near 0.
        self.n_controls = 10 if small else 1280
        self.n_patients = 10 if small else 40


_DESCRIPTIONS = {
    "participant_id": {"Description": "Participant identifier"},
    "age": {"Description": "Age at scan", "Units": "years"},
    "sex": {"Description": "Sex"},
    "site": {"Description": "Acquisition site (scanner)"},
    "group": {"Description": "Diagnostic group (patients carry one planted focal deviation)"},
}


def write_bids_cohort(root: Path, cohort: SyntheticCohort, structures, name: str) -> None:
    """Write synthetic maps as a BIDS derivatives dataset (one ``.shape.gii`` per hemisphere and subject).

    The dataset (``dataset_description.json``, ``README.md``, ``.bidsignore``, ``participants.tsv``
    with its JSON, the maps) passes the BIDS validator.

    Parameters
    ----------
    root : pathlib.Path
        Dataset folder.
    cohort : SyntheticCohort
    structures : sequence of Structure
        Feature layout of ``cohort.maps`` (the basis').
    name : str
        ``Name`` of ``dataset_description.json``.
    """
    write_dataset_description(root, name=name, readme=_README.format(name=name, measure=MEASURE))
    write_participants(root, cohort.covariates, _DESCRIPTIONS, description=f"Participants of the {name}.")
    by_structure = split_features(cohort.maps, structures)
    lookup = {s.name: s for s in structures}
    for i, pid in enumerate(cohort.covariates.index):
        for sname, block in by_structure.items():
            ents = {"sub": pid, "hemi": STRUCTURE_TO_HEMI[sname], **SPACE}
            path = root / pid / "anat" / build_bids_name(ents, MEASURE, surface_extension(MEASURE))
            write_gifti(block[i], path, lookup[sname], kind="NIFTI_INTENT_SHAPE", names=[MEASURE])


_README = """# {name}

Synthetic {measure} maps on fsaverage5 (`space-fsaverage_den-10k`, one GIFTI `.shape.gii` per hemisphere
and subject, medial wall NaN) drawn by `spectranorm-neuro demo` from a known normative process: a smooth
age trend, sex and site (A, B, C) effects and a covariate-dependent spread. Patients carry one planted
focal deviation of -3 standard deviations. `participants.tsv` holds age (years), sex, site and group.
`.bidsignore` lists the surface-derivative file patterns the released BIDS schema has no rule for.
"""


def planted_check(z: np.ndarray, core: np.ndarray, patients: np.ndarray) -> dict:
    """Compare the z-scores inside the planted patches with those elsewhere.

    Parameters
    ----------
    z : numpy.ndarray, shape (n_subjects, n_features)
    core : numpy.ndarray of bool, shape (n_subjects, n_features)
        Core of each patient's patch.
    patients : numpy.ndarray of bool, shape (n_subjects,)

    Returns
    -------
    dict
        ``mean_z_inside`` (patients, inside their patch), ``mean_z_outside`` (patients, elsewhere),
        ``mean_z_controls``, ``sd_z_controls`` and ``passed``: inside <= -1, at least 1 below
        outside, and |outside| < 0.5.
    """
    zp, cp = z[patients], core[patients]
    inside = float(zp[cp].mean())
    outside = float(zp[~cp].mean())
    controls = z[~patients]
    out = {"mean_z_inside": inside, "mean_z_outside": outside,
           "mean_z_controls": float(controls.mean()) if controls.size else float("nan"),
           "sd_z_controls": float(controls.std()) if controls.size else float("nan")}
    out["passed"] = bool(inside <= -1.0 and inside <= outside - 1.0 and abs(outside) < 0.5)
    return out


def run_demo(out: str | os.PathLike, settings: DemoSettings | None = None, *, report: Attachment | None = None,
             seed: int = 0, n_jobs: int | None = 1, progress: bool = False, overwrite: bool = False,
             say: Say = _quiet, warn: Say = _quiet) -> dict:
    """Run the demo (see the module docstring) into the folder ``out`` (complete or absent).

    Parameters
    ----------
    out : path-like
    settings : DemoSettings, optional
    report : Attachment, optional
        Writes ``report/`` (e.g. :class:`spectranorm_neuro.report.BundleReport`).
    seed, n_jobs, progress, overwrite, say, warn :
        As in :func:`~spectranorm_neuro.workflow.apply_bundle`.

    Returns
    -------
    dict
        What ``demo_check.json`` holds: ``settings``, ``planted_deviation_check`` (see
        :func:`planted_check`) and ``held_out_metrics``.
    """
    out = check_destination(out, overwrite)
    cfg = settings or DemoSettings()
    t0 = time.perf_counter()

    def step(message: str) -> None:
        say(f"[{time.perf_counter() - t0:6.1f} s] {message}")

    with staged_directory(out, overwrite, command="demo") as stage:
        step(f"Basis: {cfg.n_modes} Laplace-Beltrami modes of fsaverage5 ({cfg.hemi}, medial wall dropped)")
        graph = fsaverage5_graph(cfg.hemi, cortex_mask="auto")
        basis = EigenmodeBasis.from_graph(graph, cfg.n_modes)
        basis.save(stage / "basis.npz")
        process = DemoProcess(basis, graph, seed=seed)
        step(f"Synthetic cohorts: {cfg.n_train} reference subjects (sites {', '.join(SITES)}), "
             f"{cfg.n_controls} held-out controls and {cfg.n_patients} patients with a planted -3 sd patch")
        reference = process.cohort(cfg.n_train, 0, SITES, seed=seed + 1, prefix="ref")
        clinic = process.cohort(cfg.n_controls, cfg.n_patients, SITES, seed=seed + 2, prefix="cli")
        order = np.r_[np.arange(cfg.n_controls, len(clinic.covariates)), np.arange(cfg.n_controls)]
        clinic = SyntheticCohort(clinic.covariates.iloc[order], clinic.maps[order], clinic.core[order])
        write_bids_cohort(stage / "data" / "reference", reference, basis.structures, "demo reference cohort")
        write_bids_cohort(stage / "data" / "clinic", clinic, basis.structures, "demo clinic cohort")

        step("Fit: reading the reference dataset back, encoding, fitting (10% of each site held out)")
        cohort = read_bids_cohort(stage / "data" / "reference", MEASURE, basis=basis)
        cohort.source = "data/reference"
        fitted = fit_bundle(cohort, basis, stage / "model_bundle", numerical=["age"], nonlinear=["age"],
                            categorical=["sex", "site"], batch=["site"], holdout=0.1, measure=MEASURE, space=SPACE,
                            seed=seed, n_jobs=n_jobs, progress=progress)

        step("Apply: loading the bundle (checksums verified) and scoring the clinic cohort")
        bundle = ModelBundle.load(stage / "model_bundle")
        clinic_cohort = read_bids_cohort(stage / "data" / "clinic", MEASURE, basis=bundle.basis, **SPACE)
        clinic_cohort.source = "data/clinic"
        clinic_cov, _, _ = prepare_scoring(bundle, clinic_cohort, SPACE, False, warn)
        clinic_coeffs = encode_cohort(clinic_cohort, bundle.basis, n_jobs=n_jobs, progress=progress)
        maps = score(bundle.model, clinic_coeffs, clinic_cov, ["zscore", "centile"], progress=progress,
                     maps=clinic_cohort.maps())  # exact per-vertex z (the bundle has its residual part)
        write_maps(stage / "derivatives", maps, clinic_cohort.subjects, MEASURE, bundle.basis.structures, SPACE,
                   progress=progress, meta=z_metadata(bundle.model, "exact"))

        patients = clinic_cov["group"].astype(str).to_numpy() == "patient"
        check = planted_check(maps["zscore"], clinic.core, patients)
        if report is not None:
            step("Report")
            report.check(bundle, clinic_cov)
            report.write(stage, bundle, clinic_cov, maps["zscore"], clinic_coeffs, n_jobs, progress,
                         maps=clinic_cohort.maps())
        result = {"settings": vars(cfg), "planted_deviation_check": check,
                  "held_out_metrics": fitted.card["metrics"]["held_out"]}
        (stage / "demo_check.json").write_text(json.dumps(result, indent=2) + "\n")
    step("Done")
    return result


