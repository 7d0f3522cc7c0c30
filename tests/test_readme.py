"""README.md stays true: its quick-start runs, its command-line examples parse, CI runs its test command."""

import logging
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from spectranorm_neuro.cli.main import build_parser
from spectranorm_neuro.datasets import seed_lattice_cohort

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_quick_start_runs_silently_and_its_comments_are_true(tmp_path, monkeypatch, capfd, caplog):
    (code,) = _blocks(_section("Quick-start"), "python")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with caplog.at_level(logging.WARNING):
        exec(compile(code, "README.md#quick-start", "exec"), namespace)
    assert [r.getMessage() for r in caplog.records] == []  # no "Query moments not provided ..." or other
    assert capfd.readouterr() == ("", "")
    z = namespace["z"]
    assert z.shape == (200, 2500)  # "(200, 2500) deviation map per subject"
    true_z = seed_lattice_cohort(200, seed=1)[4]  # the quick-start's test cohort: every pixel's true z
    assert float(np.sqrt(np.mean((z - true_z[:, None]) ** 2))) < 0.2
    assert namespace["harmonized"].shape == (200, 2500)
    exact = namespace["exact"]  # "exact z of every pixel of the maps": no worse than the projected z
    assert exact.shape == (200, 2500)
    assert np.sqrt(np.mean((exact - true_z[:, None]) ** 2)) < float(np.sqrt(np.mean((z - true_z[:, None]) ** 2))) + 0.02
    saved = tmp_path / "my_model"
    assert saved.is_dir() and not list(saved.rglob("*.pkl")) and not list(saved.rglob("*.pickle"))
    reloaded = namespace["snm"].SpectralNormativeModel.load_model(saved)
    again = reloaded.evaluate(namespace["queries"], namespace["basis"].encode(namespace["test_maps"]),
                              namespace["test"]).predictions["z-score"]
    np.testing.assert_array_equal(again, z)


def _cli_examples() -> list[list[str]]:
    rows = re.findall(r"^\| `(\w[\w-]*)` \|.*\| `(spectranorm-neuro [^`]*)` \|$", _section("Command line"), flags=re.M)
    assert len(rows) >= 9
    return [shlex.split(example)[1:] for _, example in rows]


@pytest.mark.parametrize("argv", _cli_examples(), ids=lambda argv: argv[0])
def test_command_line_examples_parse(argv):
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]


def test_ci_installs_and_tests_as_the_readme_says():
    setup = _blocks(_section("Set-up"), "bash")[0]
    tests = _blocks(_section("Tests"), "bash")[0].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    install = setup.splitlines()[0].split("#")[0].strip()
    assert install.startswith("python -m pip install .")
    for command in tests.split("&&"):
        assert command.strip() in ci, command


@pytest.mark.slow
def test_python_workflow_runs(tmp_path, monkeypatch, capsys):
    (code,) = _blocks(_section("Python workflow"), "python")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md#python-workflow", "exec"), namespace)
    assert "Held-out metrics (" in capsys.readouterr().out  # describe() printed the card, with --holdout metrics
    result = namespace["result"]
    assert result.n_subjects == 12 and (tmp_path / "zmaps" / ".spectranorm_output.json").is_file()
    assert len(list((tmp_path / "zmaps").rglob("*_desc-zscore_thickness.*.gii"))) == 12
    assert namespace["adapted"].card["adaptations"][0]["levels"] == {"site": ["D"]}
    assert (tmp_path / "report" / "index.html").is_file()
    assert len(list((tmp_path / "harmonized").rglob("*_desc-harmonized_thickness.*.gii"))) == 12


def test_config_example_gives_fit_and_apply_their_options(tmp_path):
    from spectranorm_neuro.cli._config import parse_with_config

    (toml,) = _blocks(_section("Command line"), "toml")
    (tmp_path / "study.toml").write_text(toml)
    fit = parse_with_config(build_parser(), ["fit", "--config", str(tmp_path / "study.toml")])
    assert (fit.measure, fit.numerical, fit.batch, fit.holdout, str(fit.out)) == ("thickness", ["age"], ["site"],
                                                                                  0.1, "bundle")
    apply = parse_with_config(build_parser(), ["apply", "--config", str(tmp_path / "study.toml")])
    assert (str(apply.bundle), str(apply.cohort), str(apply.out), apply.measure) == ("bundle", "patients", "zmaps",
                                                                                     "thickness")


def test_regional_quick_start_runs_and_the_command_line_writes_the_same_tables(tmp_path, monkeypatch, capsys):
    from spectranorm_neuro.cli import main

    section = _section("Quick-start: regional tables")
    (code,) = _blocks(section, "python")
    (commands,) = _blocks(section, "bash")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md#quick-start-regional-tables", "exec"), namespace)
    assert "likelihood: Normal in 2, SHASHb" in capsys.readouterr().out  # describe() names the choice per region
    assert namespace["result"].n_subjects == 50
    assert namespace["adapted"].card["adaptations"][0]["levels"] == {"site": ["D"]}
    python_z = (tmp_path / "scores" / "group" / "desc-zscore_value.tsv").read_bytes()
    cli = tmp_path / "cli"
    cli.mkdir()
    for table in tmp_path.glob("*.tsv"):
        (cli / table.name).write_bytes(table.read_bytes())
    monkeypatch.chdir(cli)
    for line in commands.replace("\\\n", " ").strip().splitlines():
        argv = shlex.split(line)
        assert argv[0] == "spectranorm-neuro"
        assert main([*argv[1:], "--quiet"]) == 0, line
    assert (cli / "scores" / "group" / "desc-zscore_value.tsv").read_bytes() == python_z
    assert (cli / "harmonized" / "group" / "participants.tsv").is_file()
    assert {p.name for p in (cli / "scores" / "group").glob("desc-*_value.tsv")} == {
        f"desc-{k}_value.tsv" for k in ("zscore", "centile", "mu", "sd", "zscoresummary")}
