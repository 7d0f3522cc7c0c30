"""The public Python workflow writes exactly what the command line writes (byte for byte)."""

from __future__ import annotations

import pytest

from spectranorm_neuro.basis import EigenmodeBasis
from spectranorm_neuro.workflow import (
    OUTPUT_RECORD,
    ModelBundle,
    adapt_bundle,
    apply_bundle,
    fit_bundle,
    harmonize_bundle,
    load_cohort,
)
from spectranorm_neuro.workflow.output import relative_files

from . import _cli_data
from ._cli_data import FIT_ARGS, run_cli

study = _cli_data.study  # the shared module-scoped fixture

pytestmark = pytest.mark.filterwarnings("ignore::spectranorm_neuro.exceptions.ExtrapolationWarning")


def _same_tree(a, b):
    files = relative_files(a)
    assert files == relative_files(b)
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    return files


def test_python_workflow_writes_the_same_bytes_as_the_command_line(study, tmp_path):
    root = study.root
    # fit: the same .zip bundle
    cli_zip, py_zip = tmp_path / "cli.zip", tmp_path / "py.zip"
    code, _, err = run_cli(["fit", root / "reference", "--basis", root / "basis.npz", *FIT_ARGS, "--holdout", "0.1",
                            "--seed", "3", "--out", cli_zip])
    assert code == 0, err
    basis = EigenmodeBasis.load(root / "basis.npz")
    reference, space = load_cohort(root / "reference", basis, measure="thickness")
    bundle = fit_bundle(reference, basis, py_zip, numerical=["age"], nonlinear=["age"], categorical=["sex", "site"],
                        batch=["site"], holdout=0.1, measure="thickness", space=space, seed=3)
    assert cli_zip.read_bytes() == py_zip.read_bytes()
    assert bundle.card["metrics"]["held_out"]["n_subjects"] > 0

    # apply (with every map kind): the same derivatives folder
    loaded = ModelBundle.load(cli_zip)
    clinic, space = load_cohort(root / "clinic", loaded.basis, bundle=loaded)
    code, _, err = run_cli(["apply", cli_zip, root / "clinic", "--maps", "zscore", "centile", "harmonized", "mu",
                            "sd", "--out", tmp_path / "cli_apply"])
    assert code == 0, err
    result = apply_bundle(loaded, clinic, tmp_path / "py_apply", maps=["zscore", "centile", "harmonized", "mu", "sd"],
                          space=space)
    files = _same_tree(tmp_path / "cli_apply", tmp_path / "py_apply")
    assert OUTPUT_RECORD in files and "dataset_description.json" in files and "spectranorm_apply.json" not in files
    assert len([f for f in files if f.endswith(".gii")]) == 5 * clinic.n_subjects
    assert len([f for f in files if f.startswith("sub-") and f.endswith(".json")]) == 5 * clinic.n_subjects
    assert result.summary.shape[0] == clinic.n_subjects

    # harmonize: the same folder
    code, _, err = run_cli(["harmonize", cli_zip, root / "clinic", "--out", tmp_path / "cli_harm"])
    assert code == 0, err
    harmonize_bundle(loaded, clinic, tmp_path / "py_harm", space=space)
    _same_tree(tmp_path / "cli_harm", tmp_path / "py_harm")

    # adapt: the same adapted bundle, and the input bundle is left as it was
    code, _, err = run_cli(["adapt", cli_zip, root / "newsite", "--out", tmp_path / "cli_adapted"])
    assert code == 0, err
    newsite, space = load_cohort(root / "newsite", loaded.basis, bundle=loaded)
    adapted = adapt_bundle(loaded, newsite, tmp_path / "py_adapted", space=space)
    _same_tree(tmp_path / "cli_adapted", tmp_path / "py_adapted")
    assert adapted.card["adaptations"][0]["levels"] == {"site": ["D"]}
    site = next(c for c in loaded.model.spec.covariates if c.name == "site")
    assert loaded.card["adaptations"] == [] and "D" not in site.known_levels


def test_model_bundle_round_trip_and_verify(study, tmp_path):
    basis = EigenmodeBasis.load(study.root / "basis.npz")
    reference, space = load_cohort(study.root / "reference", basis, measure="thickness", select={"site": "A"})
    assert set(reference.covariates["site"].astype(str)) == {"A"}
    bundle = fit_bundle(reference, basis, numerical=["age"], categorical=["sex"], space=space)
    assert bundle.path is None
    # one default, decided in the model specification: numerical covariates act on the log-sd
    assert bundle.card["fitting"]["influencing_variance"] == ["age"]
    path = bundle.save(tmp_path / "b")
    assert bundle.verify()["format"] == "spectranorm_neuro.model_bundle"
    again = ModelBundle.load(path)
    assert again.card == bundle.card and "Training: " in again.describe()


def _where(_):
    import os
    import threading

    return os.getpid(), threading.current_thread().name


def test_one_parallel_runner_with_joblib_semantics():
    import os
    import threading

    from joblib import parallel_config

    from spectranorm_neuro._util import run_tasks
    from spectranorm_neuro.exceptions import InvalidInputError

    assert list(run_tasks(_where, [(i,) for i in range(3)], 1)) == [(os.getpid(), threading.current_thread().name)] * 3
    with parallel_config(backend="threading", n_jobs=2):  # n_jobs=None: joblib's default, set here
        threaded = list(run_tasks(_where, [(i,) for i in range(8)]))
    assert len(threaded) == 8 and {pid for pid, _ in threaded} == {os.getpid()}
    assert all(name != threading.current_thread().name for _, name in threaded)
    assert [x * 2 for x in range(10)] == list(run_tasks(lambda x: 2 * x, [(i,) for i in range(10)], -1))
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(InvalidInputError, match=r"n_jobs=.*is not a non-zero integer"):
            list(run_tasks(_where, [(1,)], bad))
