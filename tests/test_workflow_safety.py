"""Outputs that never lose data: the nine defects of issue 16, each reproduced and shown fixed.

1. ``save_model(overwrite=True)`` replaces only a saved model; 2. ``--overwrite`` replaces only an
output of the package (checked on the destination); 3. SIGKILL during the commit leaves ``--out``
absent, previous or complete, and the next run cleans up; 4. ``--overwrite`` replaces the whole
previous output; 5. zip bundles and JSON are read within bounds; 6. corrupt inputs and bad options
give one ``error: ... Fix: ...`` line (usage errors exit 2); 7. operating-system errors name
``--out``; 8. format versions must be known integers; 9. cheap checks come before any computation.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import spectranorm_neuro
from spectranorm_neuro import _manifest, _util
from spectranorm_neuro.exceptions import FileFormatError, FormatVersionError, OutputExistsError
from spectranorm_neuro.workflow import OUTPUT_RECORD, ModelBundle
from spectranorm_neuro.workflow import bundle as bundle_module
from spectranorm_neuro.workflow.output import relative_files

from . import _cli_data
from ._cli_data import FIT_ARGS, leftovers, run_cli

study, bundle_dir = _cli_data.study, _cli_data.bundle_dir  # the shared module-scoped fixtures

pytestmark = pytest.mark.filterwarnings("ignore::spectranorm_neuro.exceptions.ExtrapolationWarning")
ROOT = Path(spectranorm_neuro.__file__).resolve().parents[1]


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "unexpected" not in stderr and "this is a bug" not in stderr
    return lines[0]


def _fails(argv, *needles, code=1) -> str:
    got, _, stderr = run_cli(argv)
    assert got == code, (got, stderr)
    line = _error_line(stderr)
    if code == 1:
        assert line.startswith("error: ") and "Fix:" in line, line
    for needle in needles:
        assert needle in line, (needle, line)
    assert ".staging" not in line and ".previous" not in line
    return line


def _tree(path: Path) -> dict[str, bytes]:
    return {rel: (path / rel).read_bytes() for rel in relative_files(path)}


# 1 ------------------------------------------------------------------------------------------------
def test_save_model_overwrite_replaces_only_a_saved_model(study, bundle_dir, tmp_path):
    model = ModelBundle.load(bundle_dir).model
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(OutputExistsError, match="not a model saved by spectranorm_neuro"):
        model.save_model(precious, overwrite=True)
    assert (precious / "chapter1.tex").read_text() == "years of work"
    saved = tmp_path / "m"
    model.save_model(saved)
    (saved / "notes.txt").write_text("mine")  # a saved model with a foreign file in it is not replaced either
    with pytest.raises(OutputExistsError):
        model.save_model(saved, overwrite=True)
    (saved / "notes.txt").unlink()
    model.save_model(saved, overwrite=True)  # a saved model is replaced
    assert sorted(p.name for p in saved.iterdir()) == ["basis.npz", "manifest.json", "model.json", "params.npz",
                                                        "spec.json"]


def test_basis_overwrite_replaces_only_a_basis_file(tmp_path):
    notes = tmp_path / "notes.npz"
    notes.write_text("not a basis")
    _fails(["basis", "--lattice", "6", "5", "--n-modes", "3", "--out", notes, "--overwrite"], "--out",
           "not a basis file")
    assert notes.read_text() == "not a basis"
    basis = tmp_path / "basis.npz"
    assert run_cli(["basis", "--lattice", "6", "5", "--n-modes", "3", "--out", basis, "-q"])[0] == 0
    _fails(["basis", "--lattice", "6", "5", "--n-modes", "4", "--out", basis], "--out", "already exists")
    assert run_cli(["basis", "--lattice", "6", "5", "--n-modes", "4", "--out", basis, "--overwrite", "-q"])[0] == 0


# 2 and 4 ------------------------------------------------------------------------------------------
def test_overwrite_refuses_a_raw_dataset_and_replaces_a_whole_earlier_output(study, bundle_dir, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(study.root / "clinic", raw)
    before = _tree(raw)
    line = _fails(["apply", bundle_dir, study.root / "clinic", "--out", raw, "--overwrite"], "--out",
                  "did not write", OUTPUT_RECORD)
    assert str(raw) in line
    assert _tree(raw) == before  # dataset_description.json and every map untouched
    out = tmp_path / "z"
    assert run_cli(["apply", bundle_dir, study.root / "clinic", "--out", out, "-q"])[0] == 0
    first = set(relative_files(out))
    code, _, stderr = run_cli(["apply", bundle_dir, study.root / "clinic", "--select", "group=patient", "--out", out,
                               "--overwrite", "-q"])
    assert code == 0, stderr
    files = set(relative_files(out))
    subjects = {f.split("/")[0] for f in files if f.startswith("sub-")}
    assert len(subjects) == 6 and len({f.split("/")[0] for f in first if f.startswith("sub-")}) == 12
    summary = (out / "group" / "desc-zscoresummary_thickness.tsv").read_text().splitlines()[1:]
    assert {row.split("\t")[0] for row in summary} == subjects  # no stale subject map beside the summary
    assert leftovers(out) == []


# 3 ------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("point", ["staged", "recorded", "moved-aside", "swapped"])
def test_sigkill_during_the_commit_never_leaves_a_partial_output(study, bundle_dir, tmp_path, point):
    out = tmp_path / "z"
    assert run_cli(["apply", bundle_dir, study.root / "clinic", "--select", "group=control", "--out", out,
                    "-q"])[0] == 0
    previous = _tree(out)
    env = dict(os.environ, SPECTRANORM_NEURO_TEST_KILL_AT=point, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    argv = [sys.executable, "-c", "import sys; from spectranorm_neuro.cli import main; sys.exit(main())",
            "apply", str(bundle_dir), str(study.root / "clinic"),
            "--out", str(out), "--overwrite", "-q"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr  # killed by SIGKILL at that step
    if out.exists():
        now = _tree(out)
        record = json.loads(now[OUTPUT_RECORD])
        assert now == previous or sorted(record["files"]) == sorted(f for f in now if f != OUTPUT_RECORD)
        assert now == previous or len({f.split("/")[0] for f in now if f.startswith("sub-")}) == 12
    # the next run removes (or puts back) what the killed run left, then writes a complete output
    assert run_cli(["apply", bundle_dir, study.root / "clinic", "--out", out, "--overwrite", "-q"])[0] == 0
    assert leftovers(out) == []
    record = json.loads((out / OUTPUT_RECORD).read_text())
    assert sorted(record["files"]) == sorted(f for f in relative_files(out) if f != OUTPUT_RECORD)


def test_leftovers_of_a_killed_run_are_cleaned_and_a_moved_aside_output_restored(study, bundle_dir, tmp_path):
    out = tmp_path / "z"
    assert run_cli(["apply", bundle_dir, study.root / "clinic", "--select", "group=control", "--out", out,
                    "-q"])[0] == 0
    previous = _tree(out)
    dead = f"{_util._host()}-{2**22 + 12345}"  # this machine, no such process
    staging = tmp_path / f".z.snm-{dead}-00ff.staging"
    staging.mkdir()
    (staging / "half.gii").write_text("half")
    os.rename(out, tmp_path / f".z.snm-{dead}-00ff.previous")  # killed between the two renames
    alive = tmp_path / f".z.snm-{_util._host()}-{os.getpid()}-00aa.staging"  # a run still going: kept
    alive.mkdir()
    other = tmp_path / f".z.snm-elsewhere-{2**22 + 12345}-00bb.staging"  # another machine's: kept
    other.mkdir()
    code, _, stderr = run_cli(["apply", bundle_dir, study.root / "clinic", "--out", out, "-q"])
    assert code == 1 and "already exists" in stderr  # the previous output is back, and protected
    assert _tree(out) == previous and leftovers(out) == sorted([alive.name, other.name])


# 5 ------------------------------------------------------------------------------------------------
def test_zip_bundles_extract_only_listed_members_within_bounds(study, bundle_dir, tmp_path, monkeypatch):
    good = tmp_path / "good.zip"
    assert run_cli(["fit", study.root / "reference", "--basis", study.root / "basis.npz", *FIT_ARGS,
                    "--out", good])[0] == 0
    bomb = tmp_path / "bomb.zip"
    shutil.copy(good, bomb)
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("extra/zeros.bin", b"\0" * (64 << 20))  # 64 MiB that the manifest does not list
    extracted = []
    real = bundle_module._copy_member
    monkeypatch.setattr(bundle_module, "_copy_member",
                        lambda archive, info, *a: extracted.append(info.filename) or real(archive, info, *a))
    assert ModelBundle.load(bomb).card == ModelBundle.load(good).card
    assert "extra/zeros.bin" not in extracted and "model/params.npz" in extracted
    monkeypatch.setattr(bundle_module, "MAX_BUNDLE_BYTES", 10_000)
    with pytest.raises(FileFormatError, match="size limit"):
        ModelBundle.load(good)
    monkeypatch.setattr(bundle_module, "MAX_BUNDLE_MEMBERS", 3)
    with pytest.raises(FileFormatError, match="members, more than 3"):
        ModelBundle.load(good)


def test_json_is_bounded_in_size_and_depth(tmp_path, monkeypatch):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FileFormatError, match="nests lists/objects deeper than 64"):
        _manifest.read_json(deep)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"files": {}, "pad": "x" * 5000}))
    monkeypatch.setattr(_manifest, "MAX_JSON_BYTES", 1000)
    with pytest.raises(FileFormatError, match="more than the 1000 bytes"):
        _manifest.read_json(big, max_bytes=_manifest.MAX_JSON_BYTES)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(FileFormatError, match="holds a JSON list, not an object"):
        _manifest.read_json(listed)


# 6 ------------------------------------------------------------------------------------------------
def test_corrupt_inputs_and_bad_options_give_one_error_line(study, bundle_dir, tmp_path):
    out = tmp_path / "o"
    flipped = tmp_path / "basis.npz"
    data = bytearray((study.root / "basis.npz").read_bytes())
    data[20:40] = b"\xff" * 20  # a corrupt zip member header
    flipped.write_bytes(bytes(data))
    _fails(["fit", study.root / "reference", "--basis", flipped, *FIT_ARGS, "--out", out], "--basis", str(flipped))
    objects = tmp_path / "objects.npz"
    np.savez(objects, eigenvalues=np.array([{"a": 1}], dtype=object))
    _fails(["fit", study.root / "reference", "--basis", objects, *FIT_ARGS, "--out", out], "--basis", "objects.npz")
    for name, text in [("manifest.json", "[1, 2]"), ("model_card.json", "[1, 2]")]:
        broken = tmp_path / f"list-{name}"
        shutil.copytree(bundle_dir, broken)
        (broken / name).write_text(text)
        if name == "model_card.json":  # keep its checksum true, so the card itself is read
            manifest = json.loads((broken / "manifest.json").read_text())
            manifest["files"][name] = _manifest.sha256_file(broken / name)
            (broken / "manifest.json").write_text(json.dumps(manifest))
        _fails(["info", broken], name, "JSON list")
    _fails(["apply", bundle_dir, study.root / "clinic", "--out", out, "--n-jobs", "0"], "--n-jobs", code=2)
    assert not out.exists() and leftovers(out) == []


def test_a_truncated_nifti_is_a_file_format_error_naming_it(tmp_path):
    import gzip

    import nibabel as nib

    from spectranorm_neuro.io import read_nifti, volume_structure

    nib.save(nib.Nifti1Image(np.ones((30, 30, 30), "f4"), np.eye(4)), tmp_path / "mask.nii")
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((30, 30, 30)).astype("f4"), np.eye(4)),
             tmp_path / "map.nii.gz")
    whole = (tmp_path / "map.nii.gz").read_bytes()
    assert gzip.decompress(whole)  # a valid gzip stream, then cut in half
    (tmp_path / "map.nii.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(FileFormatError, match=r"map\.nii\.gz.*truncated or damaged.*Fix: "):
        read_nifti(tmp_path / "map.nii.gz", volume_structure(tmp_path / "mask.nii"))


# 7 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code, needle", [(errno.ENOSPC, "disk is full"), (errno.EACCES, "permission denied"),
                                          (errno.EROFS, "read-only")])
def test_os_errors_name_out_and_a_fix(study, bundle_dir, tmp_path, monkeypatch, code, needle):
    from spectranorm_neuro.io import DerivativesWriter

    def fail(self, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(self.root / "sub-x" / "anat" / "x.gii"))

    monkeypatch.setattr(DerivativesWriter, "write_cohort", fail)
    out = tmp_path / "deep" / "er" / "z"
    line = _fails(["apply", bundle_dir, study.root / "clinic", "--out", out], "--out", str(out), needle, "Fix:")
    assert "Errno" not in line
    assert not (tmp_path / "deep").exists()  # no empty parent folders left behind


# 8 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", [0, -1, "1", 1.0, True, None])
def test_format_versions_must_be_known_integers(bundle_dir, tmp_path, version):
    for manifest_of in ("bundle", "model"):
        broken = tmp_path / f"{manifest_of}-{version!r}"
        shutil.copytree(bundle_dir, broken)
        path = broken / ("manifest.json" if manifest_of == "bundle" else "model/manifest.json")
        manifest = json.loads(path.read_text())
        manifest["format_version"] = version
        path.write_text(json.dumps(manifest))
        if manifest_of == "model":  # keep the bundle's checksum of the model manifest true
            outer = json.loads((broken / "manifest.json").read_text())
            outer["files"]["model/manifest.json"] = _manifest.sha256_file(path)
            (broken / "manifest.json").write_text(json.dumps(outer))
        with pytest.raises(FormatVersionError, match="is not a known format version"):
            ModelBundle.load(broken)


# 9 ------------------------------------------------------------------------------------------------
def test_cheap_checks_come_before_any_computation(study, bundle_dir, tmp_path, monkeypatch):
    import spectranorm_neuro.workflow.steps as steps

    def no_encoding(*args, **kwargs):
        raise AssertionError("maps were encoded before the options were checked")

    monkeypatch.setattr(steps, "encode_cohort", no_encoding)
    out = tmp_path / "a" / "b" / "z"
    _fails(["apply", bundle_dir, study.root / "clinic", "--report", "--group-column", "nope", "--out", out],
           "--group-column", "nope")
    _fails(["apply", bundle_dir, study.root / "clinic", "--report", "--controls", "nope=1", "--out", out],
           "--controls")
    _fails(["fit", study.root / "reference", "--basis", study.root / "basis.npz", "--measure", "thickness",
            "--numerical", "agee", "--categorical", "sex", "--out", out], "agee")
    assert not (tmp_path / "a").exists()
    # an empty --out folder is fine for a bundle (it used to fit, then refuse)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.undo()
    code, _, stderr = run_cli(["fit", study.root / "reference", "--basis", study.root / "basis.npz", *FIT_ARGS,
                               "--out", empty])
    assert code == 0, stderr
    assert ModelBundle.load(empty).measure == "thickness"


def test_a_killed_save_model_is_cleaned_by_the_next_save(bundle_dir, tmp_path):
    model = ModelBundle.load(bundle_dir).model
    saved = tmp_path / "m"
    model.save_model(saved)
    first = _tree(saved)
    half = tmp_path / f".m.snm-{_util._host()}-{2**22 + 7}-0a0a.staging"  # a save killed half-way
    half.mkdir()
    (half / "spec.json").write_text("{")
    model.save_model(saved, overwrite=True)
    assert _tree(saved) == first and leftovers(saved) == []


def test_a_bundle_that_cannot_be_written_leaves_nothing(study, bundle_dir, tmp_path, monkeypatch):
    def full(model, card, root):
        (root / "model_card.json").write_text("{}")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(root / "model" / "params.npz"))

    monkeypatch.setattr(bundle_module, "_write_tree", full)
    out = tmp_path / "new" / "dir" / "bundle.zip"
    line = _fails(["adapt", bundle_dir, study.root / "newsite", "--out", out], "--out", "disk is full")
    assert "--out=" in line and not (tmp_path / "new").exists()
