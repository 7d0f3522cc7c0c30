"""A small synthetic fsaverage5 (left hemisphere) study on disk for the command-line tests.

``make_study(root)`` writes, from the demo's known normative process:

* ``basis.npz``: 20 LBO modes of the left fsaverage5 hemisphere (medial wall removed);
* ``reference/``: 90 controls from sites A, B, C (BIDS derivatives, ``.shape.gii``);
* ``clinic/``: 6 controls and 6 patients (planted -3 sd patches) from sites A, B, C;
* ``newsite/``: 16 controls from the unseen site D; ``newsite_test/``: 6 more from site D;
* ``clinic.tsv``: the clinic as a CSV-style table of file paths + covariates.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.cli import main
from spectranorm_neuro.datasets import DemoProcess, SyntheticCohort
from spectranorm_neuro.graphs import fsaverage5_graph
from spectranorm_neuro.workflow.demo import write_bids_cohort

N_MODES = 20
FIT_ARGS = ["--measure", "thickness", "--numerical", "age", "--nonlinear", "age", "--categorical", "sex", "site",
            "--batch", "site"]


@dataclass
class Study:
    root: Path
    basis: EigenmodeBasis
    cohorts: dict
    process: DemoProcess


def make_study(root: Path) -> Study:
    graph = fsaverage5_graph("left", cortex_mask="auto")
    basis = EigenmodeBasis.from_graph(graph, N_MODES)
    basis.save(root / "basis.npz")
    proc = DemoProcess(basis, graph, seed=0)
    cohorts = {
        "reference": proc.cohort(90, 0, "ABC", seed=11, prefix="ref"),
        "clinic": proc.cohort(6, 6, "ABC", seed=12, prefix="cli"),
        "newsite": proc.cohort(16, 0, "D", seed=13, prefix="new"),
        "newsite_test": proc.cohort(6, 0, "D", seed=14, prefix="nte"),
    }
    for name, cohort in cohorts.items():
        write_bids_cohort(root / name, cohort, basis.structures, name)
    clinic = cohorts["clinic"].covariates.reset_index()
    clinic["lh"] = [f"clinic/{p}/anat/{p}_hemi-L_space-fsaverage_den-10k_thickness.shape.gii"
                    for p in clinic["participant_id"]]
    clinic.to_csv(root / "clinic.tsv", sep="\t", index=False)
    return Study(root, basis, cohorts, proc)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study of :func:`make_study`, once per test module."""
    return make_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def bundle_dir(study):
    """A bundle folder fitted on the study's reference cohort by the command line."""
    out = study.root / "bundle"
    code, _, stderr = run_cli(["fit", study.root / "reference", "--basis", study.root / "basis.npz", *FIT_ARGS,
                               "--out", out])
    assert code == 0, stderr
    return out


def write_variant(root: Path, cohort: SyntheticCohort, structures, name: str, covariates: pd.DataFrame) -> Path:
    """Write ``cohort``'s maps with other covariates (e.g. ages out of range, a missing column)."""
    write_bids_cohort(root / name, SyntheticCohort(covariates, cohort.maps, cohort.core), structures, name)
    return root / name


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``main(argv)`` and capture (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def leftovers(path: Path) -> list[str]:
    """Staging/temporary siblings of ``path`` left behind (must be none)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def finite_rows(maps: np.ndarray) -> np.ndarray:
    return maps[:, np.isfinite(maps).all(axis=0)]


def write_band_annot(path, n_parcels: int = 4):
    """A synthetic left-hemisphere .annot on fsaverage5: parcels are bands of the y coordinate."""
    import nibabel as nib

    y = fsaverage5_graph("left", cortex_mask=None).coords[:, 1]
    labels = np.digitize(y, np.quantile(y, np.linspace(0, 1, n_parcels + 1)[1:-1])).astype(np.int32)
    ctab = np.array([[40 * i, 200 - 40 * i, 100, 0, 0] for i in range(n_parcels)], dtype=np.int32)
    names = ["unknown", *[f"band{i}" for i in range(1, n_parcels)]]  # colour index 0: no region (FreeSurfer)
    nib.freesurfer.write_annot(str(path), labels, ctab, names, fill_ctab=True)
    return labels, names
