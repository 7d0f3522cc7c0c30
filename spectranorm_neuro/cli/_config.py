"""``--config FILE``: a TOML file whose keys are the command's options, read before the command line.

Keys are the option names without the leading dashes (``n-jobs`` or ``n_jobs``); positional
arguments are keys too (``bundle``, ``cohort``). Top-level keys apply to the command being run;
a table named after a command (``[fit]``, ``[apply]``) applies to that command only, so one file can
serve a whole study. Options given on the command line win over the file. Example::

    # study.toml: spectranorm-neuro fit --config study.toml
    cohort = "derivatives/"
    measure = "thickness"
    basis = "basis.npz"
    numerical = ["age"]
    nonlinear = ["age"]
    categorical = ["sex", "site"]
    batch = ["site"]
    holdout = 0.1
    out = "model_bundle"
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_config_option", "parse_with_config"]


class ConfigError(Exception):
    """A config file that cannot be used (reported as a usage error, exit code 2)."""


def add_config_option(parent: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` to the common options."""
    parent.add_argument("--config", type=Path, metavar="FILE", default=None,
                        help="TOML file of option values (keys as the options, e.g. measure = \"thickness\"; "
                             "[<command>] tables for one command); the command line wins")


def _config_path(argv: list[str]) -> str | None:
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith("--config="):
            return token.split("=", 1)[1]
    return None


def _subparser(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[str, argparse.ArgumentParser] | None:
    command = next((t for t in argv if not t.startswith("-")), None)  # options of the main parser take no value
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return command, action.choices[command]
    return None


def _read(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot be read ({exc.strerror or exc}); "
                          "pass an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: is not valid TOML ({exc}); fix the file (keys as the options, "
                          'e.g. measure = "thickness")') from None


def _convert(action: argparse.Action, key: str, value: Any, path: str) -> Any:
    where = f"--config {path}: {key} = {value!r}"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} is not true or false; write {key} = true")
        return value
    if isinstance(action, argparse._CountAction):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} is not a count; write {key} = 1")
        return value
    many = action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction)
    items = value if isinstance(value, list) else [value]
    if not many and isinstance(value, list):
        raise ConfigError(f"{where} is a list but the option takes one value; write one value")
    out = []
    for item in items:
        if isinstance(item, (dict, list)):
            raise ConfigError(f"{where} holds {item!r}, not a plain value; write strings or numbers")
        text = str(item).lower() if isinstance(item, bool) else str(item)
        try:
            converted = action.type(text) if callable(action.type) else text
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}; write a value the option accepts") from None
        if action.choices is not None and converted not in action.choices:
            raise ConfigError(f"{where} is not one of {list(action.choices)}; write one of them")
        out.append(converted)
    return out if many else out[0]


def _apply(command: str, sub: argparse.ArgumentParser, config: dict, path: str, commands) -> None:
    values = {k: v for k, v in config.items() if not (isinstance(v, dict) and k in commands)}
    table = config.get(command)
    if isinstance(table, dict):
        values.update(table)
    actions = {a.dest: a for a in sub._actions if a.dest not in ("help", "config", argparse.SUPPRESS)}
    for key, value in values.items():
        action = actions.get(str(key).replace("-", "_"))
        if action is None:
            known = sorted(a.dest.replace("_", "-") for a in actions.values())
            raise ConfigError(f"--config {path}: {key!r} is not an option of `{command}`; use keys among "
                              f"{', '.join(known)}")
        converted = _convert(action, str(key), value, path)
        sub.set_defaults(**{action.dest: converted})
        action.default = converted
        action.required = False
        if not action.option_strings and action.nargs is None:  # a positional given by the file
            action.nargs = "?"


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; with ``--config FILE``, the file's values are the defaults of the command's options.

    Raises
    ------
    SystemExit
        As :meth:`argparse.ArgumentParser.parse_args` (code 2 for a config file that cannot be used,
        with a message naming ``--config``, the file, the key and the bad value).
    """
    path = _config_path(argv)
    found = _subparser(parser, argv)
    if path is not None and found is not None:
        command, sub = found
        commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        try:
            _apply(command, sub, _read(path), path, commands)
        except ConfigError as exc:
            sub.error(str(exc))
    return parser.parse_args(argv)
