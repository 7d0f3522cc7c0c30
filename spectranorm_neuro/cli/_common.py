"""Shared pieces of the commands: the run context, common options, reading cohorts from the command line."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import FileFormatError, IncompatibleModelError, InvalidInputError, bad_value
from ..io import Cohort, normalize_entities, parse_bids_name, read_bids_cohort, read_table_cohort
from .bundle import space_label

__all__ = ["UsageError", "Run", "common_options", "cohort_options", "load_cohort", "files_space",
           "bids_spaces", "parse_select", "covariates_frame"]


class UsageError(Exception):
    """A command line that cannot work (exit code 2), e.g. a missing option that depends on another."""


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


def common_options() -> argparse.ArgumentParser:
    """Parent parser with the options every command accepts."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("common options")
    group.add_argument("--n-jobs", type=int, default=1, metavar="N",
                       help="parallel workers (joblib; -1 = all cores; results do not depend on it). Default 1")
    group.add_argument("--seed", type=int, default=0, help="seed of every random step. Default 0")
    group.add_argument("--overwrite", action="store_true", help="replace existing output files")
    verbosity = group.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="print only warnings and errors")
    verbosity.add_argument("-v", "--verbose", action="count", default=0,
                           help="more output: progress bars, log messages (-vv: debug), tracebacks")
    return parent


def cohort_options(parser: argparse.ArgumentParser, what: str) -> None:
    """Add the positional cohort and the options that select its maps."""
    parser.add_argument("cohort", type=Path,
                        help=f"{what}: a BIDS derivatives folder (with participants.tsv) or a CSV/TSV table with "
                             "participant_id, map path column(s) (lh/rh or file) and covariates")
    group = parser.add_argument_group("cohort selection")
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


def _space_of(entities: dict) -> dict[str, str]:
    return {k: entities[k] for k in ("space", "den", "res") if entities.get(k)}


def bids_spaces(root: Path, measure: str) -> set[tuple[tuple[str, str], ...]]:
    """Distinct template entities (space/den/res) of the maps of ``measure`` under ``root/sub-*``."""
    found = set()
    for sub in root.glob("sub-*"):
        for path in sub.rglob(f"*_{measure}.*"):
            try:
                ents = parse_bids_name(path)
            except (FileFormatError, InvalidInputError):
                continue
            if ents.get("suffix") == measure:
                found.add(tuple(sorted(_space_of(ents).items())))
    return found


def files_space(paths) -> dict[str, str]:
    """Template entities shared by every file name (``{}`` when names carry none or disagree)."""
    spaces = set()
    for p in paths:
        try:
            spaces.add(tuple(sorted(_space_of(parse_bids_name(p)).items())))
        except (FileFormatError, InvalidInputError):
            spaces.add(())
    return dict(next(iter(spaces))) if len(spaces) == 1 else {}


def _requested_space(args) -> dict[str, str]:
    ents = {k: getattr(args, k, None) for k in ("space", "den")}
    return _space_of(normalize_entities({k: v for k, v in ents.items() if v}))


def _check_requested(requested: dict, want: dict, root: Path) -> None:
    clash = {k: v for k, v in requested.items() if k in want and v != want[k]}
    if clash:
        raise bad_value("--space", space_label(requested),
                        f"differs from the bundle's template space {space_label(want)}",
                        f"apply this bundle to maps in {space_label(want)} (resample yours), or use a bundle "
                        f"fitted in {space_label(requested)}", IncompatibleModelError)


def _apply_select(cohort: Cohort, select: list[tuple[str, str]]) -> Cohort:
    if not select:
        return cohort
    keep = np.ones(cohort.n_subjects, dtype=bool)
    for column, value in select:
        if column not in cohort.covariates.columns:
            raise bad_value("--select", f"{column}={value}", f"names no covariate column of the cohort "
                            f"({list(cohort.covariates.columns)})", "select on an existing column")
        keep &= cohort.covariates[column].astype(str).to_numpy() == value
    if not keep.any():
        raise bad_value("--select", [f"{c}={v}" for c, v in select], "keeps no subject",
                        "check the column values (compared as text)")
    return cohort.subset(np.flatnonzero(keep))


def load_cohort(run: Run, basis, bundle_space: dict | None = None,
                measure: str | None = None) -> tuple[Cohort, dict[str, str]]:
    """Read the cohort named on the command line onto ``basis``.

    Parameters
    ----------
    run : Run
    basis : EigenmodeBasis
        The maps are read onto its structures (vertex counts, hemispheres and masks are checked).
    bundle_space : dict, optional
        Template entities of the bundle the data are for: maps in another space are refused.
    measure : str, optional
        Default measure (the bundle's) when ``--measure`` is not given.

    Returns
    -------
    cohort : Cohort
        Subjects in table order, after ``--select``.
    space : dict of str to str
        Template entities of the maps (``{}`` when unknown).
    """
    args = run.args
    source = Path(args.cohort)
    if not source.exists():
        raise bad_value("cohort", str(source), "does not exist",
                        "pass a BIDS derivatives folder or a CSV/TSV table of map files and covariates",
                        FileFormatError)
    requested = _requested_space(args)
    if bundle_space:
        _check_requested(requested, bundle_space, source)
    select = parse_select(args.select)
    if source.is_dir():
        measure = args.measure or measure
        if not measure:
            raise UsageError("--measure is required for a BIDS folder (the BIDS suffix of the maps, e.g. thickness)")
        space = dict(requested)
        if bundle_space and not requested:
            found = bids_spaces(source, measure)
            wanted = tuple(sorted(bundle_space.items()))
            labelled = {s for s in found if s}
            if wanted in found:
                space = dict(bundle_space)
            elif labelled and not (found - labelled):
                listing = ", ".join(sorted(space_label(dict(s)) for s in labelled))
                raise bad_value("cohort", str(source), f"holds {measure} maps in {listing} but the bundle was fitted "
                                f"in {space_label(bundle_space)}",
                                f"resample the maps to {space_label(bundle_space)}, or use a bundle fitted in "
                                "their space", IncompatibleModelError)
        cohort = read_bids_cohort(source, measure, basis=basis, participants=args.participants,
                                  space=space.get("space"), den=space.get("den"), desc=args.desc,
                                  session=args.session, missing=args.missing)
        if not space:
            space = files_space(cohort.files.to_numpy().ravel())
    else:
        if args.participants is not None:
            raise UsageError("--participants is for BIDS folders; a CSV/TSV cohort holds the covariates itself")
        cohort = read_table_cohort(source, basis=basis, file_columns=_file_columns(args.file_columns))
        space = files_space(cohort.files.to_numpy().ravel()) or dict(requested)
        if bundle_space and space:
            clash = {k: v for k, v in space.items() if k in bundle_space and v != bundle_space[k]}
            if clash:
                raise bad_value("cohort", str(source), f"lists maps in {space_label(space)} but the bundle was "
                                f"fitted in {space_label(bundle_space)}",
                                f"resample the maps to {space_label(bundle_space)}", IncompatibleModelError)
    cohort = _apply_select(cohort, select)
    return cohort, space


def covariates_frame(cohort: Cohort) -> pd.DataFrame:
    """The cohort's covariates with categorical columns as plain strings (what the engine expects)."""
    frame = cohort.covariates.copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(str).where(frame[col].notna(), None)
    return frame
