"""Shared pieces of the commands: the run context, common options, cohort options parsed into ``workflow`` calls."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import UsageError
from ._config import add_config_option

if TYPE_CHECKING:  # the parser stays light: nothing heavy is imported before a command runs
    from ..io import Cohort

__all__ = ["UsageError", "Run", "common_options", "cohort_options", "load_cohort", "load_regional", "parse_select",
           "parse_pair", "n_jobs_option"]


def n_jobs_option(text: str) -> int:
    """``--n-jobs`` value: a non-zero integer (joblib semantics); anything else is a usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value == 0:
        raise argparse.ArgumentTypeError("0 workers cannot run anything: pass 1 (serial), N workers or -1 (all "
                                         "cores)")
    return value


@dataclass
class Run:
    """What every command receives: the parsed arguments and the common options.

    Attributes
    ----------
    args : argparse.Namespace
    quiet : bool
        ``--quiet``: no status lines and no progress bars.
    verbose : int
        ``--verbose`` count (logging INFO at 1, DEBUG at 2; tracebacks on unexpected errors).
    """

    args: argparse.Namespace
    quiet: bool = False
    verbose: int = 0

    @property
    def n_jobs(self) -> int:
        """``--n-jobs`` (joblib semantics)."""
        return int(self.args.n_jobs)

    @property
    def seed(self) -> int:
        """``--seed``."""
        return int(self.args.seed)

    @property
    def overwrite(self) -> bool:
        """``--overwrite``."""
        return bool(self.args.overwrite)

    @property
    def progress(self) -> bool:
        """Show progress bars: on a terminal unless ``--quiet``, always with ``--verbose``."""
        if self.quiet:
            return False
        return bool(self.verbose) or sys.stderr.isatty()

    def say(self, message: str) -> None:
        """Print a status line on stdout (silenced by ``--quiet``)."""
        if not self.quiet:
            print(message, flush=True)

    def warn(self, message: str) -> None:
        """Print a one-line warning on stderr (always)."""
        print(f"warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def common_options(compute: bool = True) -> argparse.ArgumentParser:
    """Parent parser with the options every command accepts.

    Parameters
    ----------
    compute : bool, optional
        Include ``--n-jobs``, ``--seed`` and ``--overwrite`` (commands that compute or write; ``info``
        and ``sys-info`` get only the verbosity and ``--config`` options).
    """
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("common options")
    if compute:
        group.add_argument("--n-jobs", type=n_jobs_option, default=1, metavar="N",
                           help="parallel workers (joblib; -1 = all cores; results do not depend on it). Default 1")
        group.add_argument("--seed", type=int, default=0, help="seed of every random step. Default 0")
        group.add_argument("--overwrite", action="store_true", help="replace existing output files")
    else:
        parent.set_defaults(n_jobs=1, seed=0, overwrite=False, scheduler=None)
    verbosity = group.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="print only warnings and errors (no progress bars)")
    verbosity.add_argument("-v", "--verbose", action="count", default=0,
                           help="more output: log messages (-vv: debug), tracebacks, progress bars even when "
                                "stderr is not a terminal (on a terminal they are shown by default)")
    add_config_option(group)
    return parent


def cohort_options(parser: argparse.ArgumentParser, what: str) -> None:
    """Add the positional cohort and the options that select its maps."""
    parser.add_argument("cohort", type=Path,
                        help=f"{what}: a BIDS derivatives folder (with participants.tsv) or a CSV/TSV table with "
                             "participant_id, map path column(s) (lh/rh or file) and covariates; for regional "
                             "models a table of regional measures (FreeSurfer aparcstats2table/asegstats2table "
                             "output or CSV/TSV, covariates in it or in --participants)")
    group = parser.add_argument_group("cohort selection")
    group.add_argument("--subject-column", default=None, metavar="COL",
                       help="regional tables: header of the subject-id column (default: detected)")
    group.add_argument("--measure", help="BIDS suffix of the maps, e.g. thickness (BIDS folders; a bundle "
                                         "defaults to its own measure)")
    group.add_argument("--participants", type=Path,
                       help="covariate table (default <cohort>/participants.tsv for BIDS folders)")
    group.add_argument("--space", help="keep maps with this space- entity (fsaverage5 = fsaverage + den-10k)")
    group.add_argument("--den", help="keep maps with this den- entity")
    group.add_argument("--desc", help="keep maps with this desc- entity")
    group.add_argument("--session", help="keep maps of this session")
    group.add_argument("--file-columns", metavar="COLS",
                       help="CSV/TSV path columns: one name, or L=<col>,R=<col> (guessed by default)")
    group.add_argument("--missing", choices=("raise", "drop"), default="raise",
                       help="participants without maps (BIDS folders): raise an error (default) or drop them")
    group.add_argument("--select", action="append", default=[], metavar="COLUMN=VALUE",
                       help="keep subjects whose covariate COLUMN equals VALUE (repeatable, all must hold)")


def parse_select(items: list[str]) -> list[tuple[str, str]]:
    """Parse ``--select COLUMN=VALUE`` items."""
    out = []
    for item in items or []:
        column, sep, value = str(item).partition("=")
        if not sep or not column:
            raise UsageError(f"--select {item!r}: expected COLUMN=VALUE, e.g. --select group=control")
        out.append((column.strip(), value.strip()))
    return out


def parse_pair(text: str | None, option: str) -> tuple[str, str] | None:
    """Parse a ``COLUMN=VALUE`` option value (None when not given)."""
    if not text:
        return None
    column, sep, value = str(text).partition("=")
    if not sep or not column:
        raise UsageError(f"{option} {text!r}: expected COLUMN=VALUE, e.g. {option} group=control")
    return column.strip(), value.strip()


def _file_columns(text: str | None) -> Any:
    if not text:
        return None
    if "=" not in text:
        return text
    out = {}
    for part in text.split(","):
        key, sep, col = part.partition("=")
        if not sep:
            raise UsageError(f"--file-columns {text!r}: expected L=<column>,R=<column> or one column name")
        out[key.strip()] = col.strip()
    return out


def load_cohort(run: Run, basis, bundle=None) -> tuple[Cohort, dict[str, str]]:
    """Read the cohort named on the command line onto ``basis`` (``workflow.load_cohort``)."""
    from .. import workflow

    args = run.args
    return workflow.load_cohort(args.cohort, basis, bundle=bundle, measure=args.measure,
                                participants=args.participants, space=args.space, den=args.den, desc=args.desc,
                                session=args.session, file_columns=_file_columns(args.file_columns),
                                missing=args.missing, select=parse_select(args.select))


_MAP_ONLY = ("space", "den", "desc", "session", "file_columns")


def load_regional(run: Run, bundle=None, covariates=(), regions=None):
    """Read the table of regional measures named on the command line (``workflow.load_regional_cohort``)."""
    from .. import workflow

    args = run.args
    given = [f"--{name.replace('_', '-')}" for name in _MAP_ONLY if getattr(args, name, None)]
    if given:
        raise UsageError(f"{' '.join(given)}: select maps, not the rows of a table of regional measures (leave "
                         "them out, or use --select COLUMN=VALUE)")
    return workflow.load_regional_cohort(args.cohort, participants=args.participants,
                                         subject_column=args.subject_column, regions=regions,
                                         covariates=covariates, select=parse_select(args.select), bundle=bundle)
