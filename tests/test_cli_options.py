"""The command line's start-up cost, --config files, progress-bar defaults and option names."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spectranorm_neuro.cli._common import Run
from spectranorm_neuro.cli._config import parse_with_config

cli_main = importlib.import_module("spectranorm_neuro.cli.main")

HEAVY = ("numpy", "pandas", "scipy", "pymc", "pytensor", "nilearn", "nibabel", "matplotlib", "joblib", "tqdm")


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_help_imports_nothing_heavy():
    # --help of the program and of every command: the parser is built and printed, no heavy module loaded
    commands = ["demo", "basis", "fit", "apply", "adapt", "harmonize", "report", "info", "sys-info"]
    code = ("import contextlib, importlib, io, sys\n"
            "m = importlib.import_module('spectranorm_neuro.cli.main')\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    codes = [m.main([*c, '--help']) for c in [[], *[[c] for c in {commands!r}]]]\n"
            f"print(codes, sorted(x for x in {HEAVY!r} if x in sys.modules))\n")
    out = _python(code).stdout.strip()
    assert out == f"{[0] * (len(commands) + 1)} []"


def test_parser_module_imports_in_well_under_half_a_second():
    # -X importtime reports the cumulative import time of the module, without interpreter start-up
    stderr = _python("import spectranorm_neuro.cli.main").stderr
    times = {line.split("|")[2].strip(): int(line.split("|")[1]) for line in stderr.splitlines()
             if line.startswith("import time:") and "|" in line and line.split("|")[1].strip().isdigit()}
    assert times["spectranorm_neuro.cli.main"] < 250_000, times["spectranorm_neuro.cli.main"]  # microseconds


def test_map_kinds_of_the_parser_are_the_workflows():
    from spectranorm_neuro.workflow import MAP_KINDS

    assert cli_main.MAP_KINDS == MAP_KINDS


# ---------------------------------------------------------------------------------------------- --config
def _parse(argv):
    return parse_with_config(cli_main.build_parser(), [str(a) for a in argv])


def test_config_file_gives_the_options_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "study.toml"
    cfg.write_text('cohort = "derivatives"\nmeasure = "thickness"\nbasis = "basis.npz"\nnumerical = ["age"]\n'
                   'categorical = ["sex", "site"]\nbatch = ["site"]\nholdout = 0.1\nout = "bundle.zip"\n'
                   "n-jobs = 2\nquiet = true\n\n[apply]\nmaps = [\"zscore\", \"mu\"]\npopulation = true\n")
    args = _parse(["fit", "--config", cfg])
    assert (args.cohort, args.basis, args.out) == (Path("derivatives"), Path("basis.npz"), Path("bundle.zip"))
    assert (args.measure, args.numerical, args.categorical, args.batch) == ("thickness", ["age"], ["sex", "site"],
                                                                            ["site"])
    assert (args.holdout, args.n_jobs, args.quiet) == (0.1, 2, True)
    again = _parse(["fit", "other", "--config", cfg, "--holdout", "0.2", "--numerical", "age", "bmi"])
    assert (again.cohort, again.holdout, again.numerical) == (Path("other"), 0.2, ["age", "bmi"])
    # a [command] table applies to that command only; top-level keys to every command run with the file
    both = tmp_path / "apply.toml"
    both.write_text('measure = "thickness"\n[apply]\nmaps = ["zscore", "mu"]\npopulation = true\nout = "z"\n'
                    '[fit]\nholdout = 0.3\n')
    args = _parse(["apply", "bundle", "patients", "--config", both])
    assert (args.maps, args.population, args.out, args.measure) == (["zscore", "mu"], True, Path("z"), "thickness")


@pytest.mark.parametrize("text, message", [
    ('mesure = "thickness"\n', r"--config \S+: 'mesure' is not an option of `fit`; use keys among .*measure"),
    ('holdout = "a lot"\n', r"--config \S+: holdout = 'a lot'.*write a value the option accepts"),
    ('inference = "mcmc"\n', r"inference = 'mcmc' is not one of \['map', 'advi', 'nuts'\]"),
    ("overwrite = 1\n", r"overwrite = 1 is not true or false"),
    ("holdout = [0.1, 0.2]\n", r"holdout = \[0.1, 0.2\] is a list but the option takes one value"),
    ("measure = \n", r"is not valid TOML"),
])
def test_bad_config_files_are_usage_errors_naming_the_key_and_value(tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(SystemExit) as exc:
        _parse(["fit", "derivatives", "--basis", "b.npz", "--out", "o", "--config", cfg])
    assert exc.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_missing_config_file_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(["info", "bundle", "--config", tmp_path / "nope.toml"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and re.search(r"--config \S*nope\.toml: cannot be read", err)


# ---------------------------------------------------------------------------------------------- progress
class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("tty, quiet, verbose, shown", [
    (True, False, 0, True),  # a terminal: bars by default
    (False, False, 0, False),  # a pipe or a file: no bars
    (True, True, 0, False),  # --quiet: none
    (False, False, 1, True),  # --verbose: always
])
def test_progress_bars_default_to_on_a_terminal(monkeypatch, tty, quiet, verbose, shown):
    monkeypatch.setattr(sys, "stderr", _Stream(tty))
    assert Run(argparse.Namespace(), quiet=quiet, verbose=verbose).progress is shown


# ---------------------------------------------------------------------------------------------- basis defaults
def _n_features(path) -> int:
    from spectranorm_neuro.basis import EigenmodeBasis

    return EigenmodeBasis.load(path).n_features


@pytest.mark.slow
def test_basis_drops_the_medial_wall_where_a_cortex_mask_is_known(tmp_path):
    import nibabel as nib
    import numpy as np

    from spectranorm_neuro.graphs import fsaverage5_graph
    from spectranorm_neuro.graphs.mesh import fsaverage5_cortex_mask

    from ._cli_data import run_cli

    n_cortex = int(np.asarray(fsaverage5_cortex_mask("left"), bool).sum())
    assert run_cli(["basis", "--mesh", "fsaverage5", "--hemi", "left", "--n-modes", "4", "--out",
                    tmp_path / "a.npz", "-q"])[0] == 0
    assert _n_features(tmp_path / "a.npz") == n_cortex < 10242  # fsaverage5: its mask by default
    assert run_cli(["basis", "--mesh", "fsaverage5", "--hemi", "left", "--cortex-mask", "none", "--n-modes", "4",
                    "--out", tmp_path / "b.npz", "-q"])[0] == 0
    assert _n_features(tmp_path / "b.npz") == 10242
    # a FreeSurfer subject: <subject>/label/lh.cortex.label next to <subject>/surf/lh.white is used by default
    g = fsaverage5_graph("left", cortex_mask=None)
    (tmp_path / "subj" / "surf").mkdir(parents=True)
    (tmp_path / "subj" / "label").mkdir()
    nib.freesurfer.write_geometry(str(tmp_path / "subj" / "surf" / "lh.white"), g.coords, g.faces)
    keep = np.flatnonzero(fsaverage5_cortex_mask("left"))  # FreeSurfer meshes have no built-in mask: the label
    rows = "\n".join(f"{v} 0.0 0.0 0.0 0.0" for v in keep)
    (tmp_path / "subj" / "label" / "lh.cortex.label").write_text(f"#!ascii label\n{keep.size}\n{rows}\n")
    code, _, err = run_cli(["basis", "--mesh", tmp_path / "subj" / "surf" / "lh.white", "--hemi", "left",
                            "--n-modes", "4", "--out", tmp_path / "c.npz", "-q"])
    assert code == 0, err
    assert _n_features(tmp_path / "c.npz") == keep.size == n_cortex
    os.remove(tmp_path / "subj" / "label" / "lh.cortex.label")  # without the label: every vertex
    assert run_cli(["basis", "--mesh", tmp_path / "subj" / "surf" / "lh.white", "--hemi", "left", "--n-modes", "4",
                    "--out", tmp_path / "e.npz", "-q"])[0] == 0
    assert _n_features(tmp_path / "e.npz") == 10242
    code, _, err = run_cli(["basis", "--mesh", "a.gii", "b.gii", "c.gii", "--n-modes", "4", "--out", tmp_path / "d"])
    assert code == 2 and "--hemi both needs 2 surface file(s)" in err and "c.gii" in err


def test_n_modes_is_a_total_everywhere():
    from spectranorm_neuro.workflow.demo import DemoSettings

    parser = cli_main.build_parser()
    for command in ("demo", "basis", "fit"):
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        text = next(a.help for a in sub._actions if a.dest == "n_modes")
        assert "in all" in text and "per hemisphere" not in text, (command, text)
    assert DemoSettings(small=True).n_modes == 40 and DemoSettings().n_modes == 160
    assert DemoSettings(n_modes=100).n_modes == 100


def test_reading_commands_list_only_their_options(capsys):
    for command in ("info", "sys-info"):
        with pytest.raises(SystemExit):
            cli_main.build_parser().parse_args([command, "--help"])
        text = capsys.readouterr().out
        assert "--config" in text and "--quiet" in text
        assert not any(opt in text for opt in ("--n-jobs", "--seed", "--overwrite", "--scheduler")), command
    with pytest.raises(SystemExit):
        cli_main.build_parser().parse_args(["fit", "--help"])
    text = capsys.readouterr().out
    assert all(opt in text for opt in ("--n-jobs", "--seed", "--overwrite", "--scheduler"))
    assert cli_main.main(["sys-info", "--json", "-q"]) == 0
