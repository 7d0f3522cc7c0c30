"""Bad inputs on the command line: exit code != 0, one line naming the problem and the fix, nothing written."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from spectranorm_neuro.graphs._graph import Structure
from spectranorm_neuro.io import write_gifti

from . import _cli_data
from ._cli_data import FIT_ARGS, leftovers, run_cli, write_variant

study, bundle_dir = _cli_data.study, _cli_data.bundle_dir  # the shared module-scoped fixtures

pytestmark = pytest.mark.filterwarnings("ignore::spectranorm_neuro.exceptions.ExtrapolationWarning")


def _fails(argv, out, *needles, code=1):
    """Run, expect exit ``code``, one error line holding every needle and a fix, and nothing at ``out``."""
    got, _, stderr = run_cli(argv)
    assert got == code, (got, stderr)
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, stderr
    line = errors[0]
    if code == 1:
        assert line.startswith("error: ") and "Fix:" in line, line
        assert "Traceback" not in stderr
    for needle in needles:
        assert needle in line, (needle, line)
    assert not out.exists(), f"{out} was written"
    assert leftovers(out) == []
    return line


def test_missing_files(study, bundle_dir, tmp_path):
    out = tmp_path / "o"
    _fails(["apply", tmp_path / "nope", study.root / "clinic", "--out", out], out, "nope", "does not exist")
    _fails(["apply", bundle_dir, tmp_path / "nocohort", "--out", out], out, "nocohort", "does not exist")
    _fails(["fit", study.root / "reference", "--basis", tmp_path / "nobasis.npz", *FIT_ARGS, "--out", out], out,
           "--basis", "nobasis.npz", "spectranorm-neuro basis")
    # a participant listed without maps
    broken = tmp_path / "broken"
    shutil.copytree(study.root / "clinic", broken)
    victim = next(broken.glob("sub-*/anat/*.gii"))
    victim.unlink()
    _fails(["apply", bundle_dir, broken, "--out", out], out, "participants", "no map")


def test_wrong_vertex_count_and_space(study, bundle_dir, tmp_path):
    out = tmp_path / "o"
    # maps on a coarser mesh (2562 vertices) named as fsaverage5
    small = tmp_path / "small"
    shutil.copytree(study.root / "clinic", small)
    rng = np.random.default_rng(0)
    coarse = Structure("CortexLeft", "surface", 2562, np.arange(2562))
    for path in small.glob("sub-*/anat/*.gii"):
        write_gifti(rng.normal(size=2562), path, coarse, kind="NIFTI_INTENT_SHAPE", overwrite=True)
    _fails(["apply", bundle_dir, small, "--out", out], out, "2562", "10242")
    # maps in another template space (by their BIDS names)
    other = tmp_path / "other"
    shutil.copytree(study.root / "clinic", other)
    for path in other.glob("sub-*/anat/*.gii"):
        path.rename(path.with_name(path.name.replace("den-10k", "den-41k")))
    _fails(["apply", bundle_dir, other, "--out", out], out, "den-41k", "den-10k", "resample")
    _fails(["apply", bundle_dir, study.root / "clinic", "--space", "fsaverage6", "--out", out], out,
           "--space", "den-41k", "space-fsaverage_den-10k")
    # maps of the other hemisphere than the bundle models
    right = tmp_path / "right"
    shutil.copytree(study.root / "clinic", right)
    for path in right.glob("sub-*/anat/*.gii"):
        img = nib.load(path)
        img.meta["AnatomicalStructurePrimary"] = "CortexRight"
        nib.save(img, path.with_name(path.name.replace("hemi-L", "hemi-R")))
        path.unlink()
    _fails(["apply", bundle_dir, right, "--out", out], out, "participants", "no map")


def test_tampered_and_newer_bundles(study, bundle_dir, tmp_path):
    out = tmp_path / "o"
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle_dir, tampered)
    params = tampered / "model" / "params.npz"
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0xFF
    params.write_bytes(bytes(data))
    _fails(["apply", tampered, study.root / "clinic", "--out", out], out, "model/params.npz", "SHA-256",
           "restore the original file")
    _fails(["info", tampered], out, "model/params.npz")
    card = tmp_path / "card"
    shutil.copytree(bundle_dir, card)
    text = json.loads((card / "model_card.json").read_text())
    text["training"]["n_subjects"] = 100000
    (card / "model_card.json").write_text(json.dumps(text))
    _fails(["info", card], out, "model_card.json", "SHA-256")
    newer = tmp_path / "newer"
    shutil.copytree(bundle_dir, newer)
    manifest = json.loads((newer / "manifest.json").read_text())
    manifest["format_version"] = 99
    (newer / "manifest.json").write_text(json.dumps(manifest))
    _fails(["apply", newer, study.root / "clinic", "--out", out], out, "format_version=99", "version 1",
           "upgrade")
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"\x80\x04\x95" + b"\x00" * 20)
    _fails(["info", pickled], out, "pickle", "never unpickles")
    _fails(["info", bundle_dir / "model"], out, "saved model folder", "not a bundle")
    _fails(["info", study.root / "clinic"], out, "no manifest.json")


def test_unseen_site_needs_population_or_adaptation(study, bundle_dir, tmp_path):
    out = tmp_path / "o"
    line = _fails(["apply", bundle_dir, study.root / "newsite_test", "--out", out], out, "site", "'D'",
                  "--population", "spectranorm-neuro adapt")
    assert "known: ['A', 'B', 'C']" in line
    _fails(["harmonize", bundle_dir, study.root / "newsite_test", "--out", out], out, "'D'", "adapt")
    # adapting with data of known sites only: nothing to adapt
    _fails(["adapt", bundle_dir, study.root / "clinic", "--out", out], out, "site=A", "nothing to adapt",
           "new site")
    mixed = tmp_path / "mixed.tsv"
    rows = [f"sub-{i}\t{p}\t50\tF\t{s}\n" for i, (p, s) in enumerate([
        (next((study.root / "newsite").glob("sub-*/anat/*.gii")), "D"),
        (next((study.root / "clinic").glob("sub-*/anat/*.gii")), "A")])]
    mixed.write_text("participant_id\tlh\tage\tsex\tsite\n" + "".join(rows))
    _fails(["adapt", bundle_dir, mixed, "--out", out], out, "site=D", "site=A", "--select")
    # participants without maps can be dropped on request
    broken = tmp_path / "broken"
    shutil.copytree(study.root / "clinic", broken)
    next(broken.glob("sub-*/anat/*.gii")).unlink()
    code, _, stderr = run_cli(["apply", bundle_dir, broken, "--out", out, "--missing", "drop"])
    assert code == 0 and "left out 1 participant(s) without maps" in stderr


def test_existing_output_needs_overwrite(study, bundle_dir, tmp_path):
    out = tmp_path / "z"
    assert run_cli(["apply", bundle_dir, study.root / "clinic", "--out", out, "-q"])[0] == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    code, _, stderr = run_cli(["apply", bundle_dir, study.root / "clinic", "--out", out])
    assert code == 1 and stderr.count("\n") == 1
    assert "--out" in stderr and "already exists" in stderr and "--overwrite" in stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # untouched
    code, _, stderr = run_cli(["apply", bundle_dir, study.root / "clinic", "--out", out, "--overwrite", "-q"])
    assert code == 0, stderr
    assert sorted(before) == sorted(p for p in out.rglob("*") if p.is_file())
    # bundles: refused without --overwrite; a folder that is not a bundle is never replaced
    code, _, stderr = run_cli(["fit", study.root / "reference", "--basis", study.root / "basis.npz", *FIT_ARGS,
                               "--out", bundle_dir])
    assert code == 1 and "already exists" in stderr
    code, _, stderr = run_cli(["adapt", bundle_dir, study.root / "newsite", "--out", out, "--overwrite"])
    assert code == 1 and "not a model bundle" in stderr
    assert {p for p in out.rglob("*") if p.is_file()} == set(before)


def test_covariate_problems(study, bundle_dir, tmp_path):
    out = tmp_path / "o"
    clinic = study.cohorts["clinic"]
    cov = clinic.covariates.drop(columns="age")
    root = write_variant(tmp_path, clinic, study.basis.structures, "noage", cov)
    _fails(["apply", bundle_dir, root, "--out", out], out, "['age']", "add")
    # out-of-range ages: scored, with a one-line extrapolation warning naming the range
    old = clinic.covariates.copy()
    old["age"] = 95.0
    root = write_variant(tmp_path, clinic, study.basis.structures, "old", old)
    code, _, stderr = run_cli(["apply", bundle_dir, root, "--out", out])
    assert code == 0
    warnings_ = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings_) == 1 and "12 subject(s) have age outside the training range [" in warnings_[0]
    assert "observed 95 .. 95" in warnings_[0]
    assert out.exists()


def test_usage_errors_exit_2(study, bundle_dir, tmp_path):
    out = tmp_path / "o"
    _fails(["fit", study.root / "reference", "--basis", study.root / "basis.npz", "--out", out], out,
           "--numerical", code=2)
    _fails(["fit", study.root / "reference", "--basis", study.root / "basis.npz", "--numerical", "age",
            "--batch", "site", "--out", out], out, "--batch", "--categorical", code=2)
    _fails(["apply", bundle_dir, study.root / "clinic", "--out", out, "--maps", "zscores"], out, "invalid choice",
           code=2)
    _fails(["apply", bundle_dir, study.root / "clinic", "--out", out, "--select", "group"], out, "COLUMN=VALUE",
           code=2)
    _fails(["fit", study.root / "reference", "--basis", study.root / "basis.npz", "--numerical", "age",
            "--out", out], out, "--measure", code=2)
    _fails(["fit", study.root / "reference", "--basis", study.root / "basis.npz", *FIT_ARGS, "--holdout", "1.5",
            "--out", out], out, "--holdout=1.5", "[0, 1)")


def test_messages_name_the_option_and_show_the_bad_value(study, bundle_dir, tmp_path):
    basis, out = study.root / "basis.npz", tmp_path / "b"
    args = ["fit", study.root / "reference", "--basis", basis, "--out", out]
    # a covariate typo: named by its option, with the close match, before any encoding
    got, stdout, stderr = run_cli([*args, "--measure", "thickness", "--numerical", "agee", "--categorical", "sex",
                                   "site", "--batch", "site"])
    assert got == 1 and "Encoding" not in stdout
    assert "--numerical=['agee']: are not columns" in stderr and "'agee' -> 'age'?" in stderr
    # a measure that is not there: the measures that are
    _fails([*args, *FIT_ARGS[2:], "--measure", "thick"], out, "--measure='thick'", "['thickness']")
    # --n-modes beyond the basis: before encoding
    got, stdout, stderr = run_cli([*args, *FIT_ARGS, "--n-modes", "500"])
    assert got == 1 and "Encoding" not in stdout and "--n-modes=500: is outside the 20 available modes" in stderr
    # a Python argument name of the workflow becomes the command's option
    _fails(["report", bundle_dir, study.root / "clinic", "--out", tmp_path / "r", "--group-column", "Group"],
           tmp_path / "r", "--group-column='Group'")


def test_missing_covariate_values_are_named_by_option_and_file_before_encoding(study, tmp_path):
    ref = study.cohorts["reference"]
    cov = ref.covariates.copy()
    cov["age"] = cov["age"].astype(object)
    cov.iloc[[3, 7], cov.columns.get_loc("age")] = [None, "unknown"]
    root = write_variant(tmp_path, ref, study.basis.structures, "gaps", cov)
    out = tmp_path / "b"
    got, stdout, stderr = run_cli(["fit", root, "--basis", study.root / "basis.npz", *FIT_ARGS, "--out", out])
    assert got == 1 and "Encoding" not in stdout and not out.exists()
    ids = list(cov.index[[3, 7]])
    assert f"--numerical age=[None, 'unknown']: 2 value(s) in {root}" in stderr, stderr
    assert f"(subjects {ids})" in stderr and "Fix: fill them in" in stderr
