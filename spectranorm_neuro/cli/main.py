"""Entry point of the ``spectranorm-neuro`` command: parser, dispatch, exit codes, messages.

Exit codes: 0 success; 1 runtime error (a :class:`~spectranorm_neuro.exceptions.SpectraNormError`
or an operating-system error: one line ``error: <reason>. Fix: <what to do>.`` on stderr, no
traceback); 2 usage error (argparse's message, or an option that needs another). Warnings
(extrapolation, ...) go to stderr as ``warning: ...`` lines; status lines go to stdout unless
``--quiet``.

Parallel steps (encoding, fitting, scoring and writing maps) run through joblib: every command
runs inside ``joblib.parallel_config(n_jobs=--n-jobs)``, and with ``--scheduler ADDRESS`` inside
``joblib.parallel_config(backend="dask")`` with a ``dask.distributed.Client`` connected to that
scheduler (dask is the optional extra ``spectranorm-neuro[dask]``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

from .._version import __version__
from ..exceptions import InvalidInputError, SpectraNormError, SpectraNormWarning, UsageError, bad_value
from ._common import Run, cohort_options, common_options
from ._config import parse_with_config

__all__ = ["main", "build_parser", "SCHEDULER_TIMEOUT"]

#: ``workflow.MAP_KINDS``, spelled out so that ``--help`` imports nothing heavy (a test checks they agree).
MAP_KINDS = ("zscore", "centile", "harmonized", "mu", "sd")
_EPILOG = "Run `spectranorm-neuro <command> --help` for the options of a command."

#: Seconds to wait for the dask scheduler named by ``--scheduler``.
SCHEDULER_TIMEOUT = 20.0
_DASK_EXTRA = 'pip install "spectranorm-neuro[dask]"'


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _structure(text: str) -> float | str:
    if text == "lowrank":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'lowrank' or a number") from None
    return int(value) if value >= 1 and value == int(value) else value


def _add_demo(sub, parent) -> None:
    p = sub.add_parser("demo", parents=[parent], help="run the whole workflow on a synthetic fsaverage5 cohort",
                       description="Offline end-to-end demo: synthetic cohort on fsaverage5 with a known normative "
                                   "process and three sites -> BIDS derivatives -> basis -> fit -> bundle -> apply "
                                   "to held-out patients with planted focal deviations -> z-maps and HTML report. "
                                   "Checks that the planted deviations show up.")
    p.add_argument("--out", type=Path, default=Path("spectranorm_demo"),
                   help="output folder (default ./spectranorm_demo)")
    p.add_argument("--small", action="store_true", help="a reduced, faster run (one hemisphere, fewer subjects)")
    p.add_argument("--hemi", choices=("both", "left"), default=None,
                   help="hemispheres (default both; left with --small)")
    p.add_argument("--n-train", type=_positive_int, default=None,
                   help="training subjects (default 1600; 150 with --small)")
    p.add_argument("--n-modes", type=_positive_int, default=None,
                   help="eigenmodes in all, over both hemispheres (default 160; 40 with --small, one hemisphere)")
    p.add_argument("--max-subjects", type=_positive_int, default=6, help="subjects shown in detail in the report")
    p.set_defaults(handler="demo")


def _add_basis(sub, parent) -> None:
    p = sub.add_parser("basis", parents=[parent], help="compute an eigenmode basis (surface, NIfTI mask or lattice)",
                       description="Compute the eigenmodes of a surface (Laplace-Beltrami), a NIfTI mask or a lattice "
                                   "(graph Laplacian) and save them as a basis file.",
                       epilog="example: spectranorm-neuro basis --mesh fsaverage5 --hemi both "
                              "--n-modes 200 --out basis.npz")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--mesh", nargs="+", metavar="SURFACE",
                     help="'fsaverage5' (offline), or GIFTI/FreeSurfer surface file(s) (left first with --hemi both)")
    src.add_argument("--mask", type=Path, help="NIfTI mask: a voxel graph over its non-zero voxels")
    src.add_argument("--lattice", nargs="+", type=_positive_int, metavar="N", help="grid shape (2 or 3 sizes)")
    p.add_argument("--hemi", choices=("left", "right", "both"), default="both", help="hemisphere(s) of --mesh")
    p.add_argument("--cortex-mask", default="auto",
                   help="'auto' (default): drop the medial wall where a cortex mask is known (fsaverage5; FreeSurfer "
                        "<subject>/label/?h.cortex.label next to <subject>/surf/); 'none': keep every vertex; or "
                        "label file(s), comma-separated, left first")
    p.add_argument("--surface", default="midthickness", help="fsaverage5 surface (default midthickness)")
    p.add_argument("--connectivity", type=int, default=None, help="voxel/lattice neighbourhood (6, 18, 26 / 4, 8)")
    p.add_argument("--n-modes", type=_positive_int, required=True,
                   help="number of modes in all (over both hemispheres with --hemi both)")
    p.add_argument("--laplacian", default="auto", choices=("auto", "lbo", "combinatorial", "normalized", "random_walk"),
                   help="operator (auto: Laplace-Beltrami for meshes, normalized graph Laplacian otherwise)")
    p.add_argument("--space", help="BIDS space- of the template (recorded in the basis; fsaverage5 is known)")
    p.add_argument("--den", help="BIDS den- of the template")
    p.add_argument("--res", help="BIDS res- of the template")
    p.add_argument("--out", type=Path, required=True, help="basis file to write (e.g. basis.npz)")
    p.set_defaults(handler="basis")


def _add_fit(sub, parent) -> None:
    p = sub.add_parser("fit", parents=[parent], help="fit a normative model on a cohort -> model bundle",
                       description="Encode a cohort's maps in a basis, fit the spectral normative model and write a "
                                   "model bundle (model + model card + checksums). Without --basis the cohort is a "
                                   "table of regional measures (FreeSurfer aparcstats2table/asegstats2table output "
                                   "or CSV/TSV, one column per region): every region is fitted at once and the "
                                   "bundle is a regional bundle that apply/adapt/harmonize/report take alike.",
                       epilog="examples: spectranorm-neuro fit derivatives/ --measure thickness --basis basis.npz "
                              "--numerical age --nonlinear age --categorical sex site --batch site --holdout 0.1 "
                              "--out model_bundle; spectranorm-neuro fit aseg_volumes.txt --participants "
                              "participants.tsv --numerical age --nonlinear age --categorical sex site --batch site "
                              "--out regional_bundle")
    cohort_options(p, "training cohort")
    p.add_argument("--basis", type=Path, default=None,
                   help="basis file (from `spectranorm-neuro basis`); leave it out to fit a table of regional measures")
    p.add_argument("--out", type=Path, required=True, help="bundle to write: a folder, or a file ending in .zip")
    g = p.add_argument_group("model")
    g.add_argument("--numerical", nargs="+", default=[], metavar="COL", help="numerical covariates (e.g. age)")
    g.add_argument("--nonlinear", nargs="+", default=[], metavar="COL", help="numerical covariates with spline effects")
    g.add_argument("--categorical", nargs="+", default=[], metavar="COL", help="categorical covariates (e.g. sex site)")
    g.add_argument("--batch", nargs="+", default=[], metavar="COL", help="categorical batch covariates (site/scanner)")
    g.add_argument("--mean", nargs="+", default=None, metavar="COL", help="covariates acting on the mean (default all)")
    g.add_argument("--variance", nargs="+", default=None, metavar="COL",
                   help="covariates acting on the log sd (default: numerical and batch covariates)")
    g.add_argument("--model-type", choices=("HBR", "BLR"), default="HBR",
                   help="HBR: partially pooled site effects (default); BLR: fixed effects")
    g.add_argument("--n-modes", type=int, default=-1,
                   help="leading modes to model, in all (default -1: every mode of the basis)")
    g.add_argument("--covariance-structure", type=_structure, default="lowrank",
                   help="cross-mode correlation: 'lowrank' (all modes, low rank plus diagonal) or mode pairs with "
                        "correlation models: fraction of n-modes (<1) or a count. Default 0.5")
    g.add_argument("--no-residual", dest="residual", action="store_false",
                   help="do not fit the residual part (what the modes miss): the bundle then gives only the "
                        "projected low-pass z, not exact per-vertex z-scores")
    g.add_argument("--fwhm", type=float, nargs="+", default=[], metavar="MM",
                   help="calibrate smoothed maps of these kernel FWHMs (mm on the mesh) for `apply --fwhm`")
    g.add_argument("--local-modes", type=int, default=None, metavar="N",
                   help="declare and calibrate the local z (`apply --z local`): the vertex or smoothed value minus "
                        "the subject's own first N modes (e.g. 100 of 400 with --fwhm 10: see the README's bench): "
                        "finds focal changes under broad noise")
    g.add_argument("--inference", choices=("map", "advi", "nuts"), default="map", help="default map (fast)")
    g.add_argument("--holdout", type=float, default=0.0,
                   help="fraction of each site held out of the fit and scored for the model card (default 0)")
    r = p.add_argument_group("regional tables (fit without --basis)")
    r.add_argument("--regions", nargs="+", default=None, metavar="COL",
                   help="region columns (default: every numeric column that is not a covariate)")
    r.add_argument("--likelihood", choices=("SHASHb", "Normal"), default="SHASHb",
                   help="SHASHb (default): skew and tails per region, kept only where a likelihood-ratio test "
                        "rejects the Normal (the card says which); Normal: Gaussian only")
    r.add_argument("--smoothing", choices=("eb", "none"), default="eb",
                   help="nonlinear effects: eb (default) a penalized spline whose smoothness is estimated per "
                        "region; none the fixed df=5 spline")
    p.set_defaults(handler="fit")


def _add_scoring(sub, parent) -> None:
    p = sub.add_parser("apply", parents=[parent], help="apply a bundle to a new cohort -> z/centile maps + summary",
                       description="Score a cohort with a model bundle: BIDS derivatives with z-score and centile "
                                   "maps (optionally harmonized, mu, sd), a per-subject summary TSV, optionally the "
                                   "HTML report.",
                       epilog="example: spectranorm-neuro apply model_bundle patients/ --out zmaps --report")
    p.add_argument("bundle", type=Path, help="model bundle (folder or .zip)")
    cohort_options(p, "cohort to score")
    p.add_argument("--out", type=Path, required=True, help="derivatives folder to write")
    p.add_argument("--maps", nargs="+", choices=MAP_KINDS, default=["zscore", "centile"],
                   help="maps to write (default zscore centile)")
    p.add_argument("--population", action="store_true",
                   help="population-level norms (leave the site effects out): needed for sites the model never saw")
    p.add_argument("--z", choices=("exact", "local", "projected"), default=None,
                   help="exact: per-vertex z of the map itself (spectral + residual part; default when the bundle "
                        "has a residual part); local: the same minus the subject's own coarse modes (declared at "
                        "fit time with --local-modes; finds focal changes under broad noise); projected: low-pass z "
                        "of the map's projection onto the modes")
    p.add_argument("--fwhm", type=float, default=None, metavar="MM",
                   help="write smoothed maps: Gaussian kernels of this FWHM in mm on the mesh (e.g. 10)")
    p.add_argument("--report", action="store_true", help="also write the HTML report into <out>/report")
    _report_options(p)
    p.set_defaults(handler="apply")

    p = sub.add_parser("harmonize", parents=[parent], help="remove site effects from a cohort's maps",
                       description="Write harmonized maps: each value moved to the same centile without the site "
                                   "(batch) effects.",
                       epilog="example: spectranorm-neuro harmonize model_bundle cohort/ --out harmonized")
    p.add_argument("bundle", type=Path, help="model bundle (folder or .zip)")
    cohort_options(p, "cohort to harmonize (its sites must be known to the bundle)")
    p.add_argument("--out", type=Path, required=True, help="derivatives folder to write")
    p.add_argument("--covariates", nargs="+", default=None, metavar="COL",
                   help="covariates whose effects are removed (default: the batch covariates)")
    p.set_defaults(handler="harmonize")

    p = sub.add_parser("report", parents=[parent], help="HTML deviation report of a cohort",
                       description="Score a cohort with a bundle and write the HTML report (summary, calibration on "
                                   "the --controls, group maps, centile charts, subjects by severity, model card).",
                       epilog="example: spectranorm-neuro report model_bundle patients/ --out report "
                              "--group-column group --controls group=control")
    p.add_argument("bundle", type=Path, help="model bundle (folder or .zip)")
    cohort_options(p, "cohort to report on")
    p.add_argument("--out", type=Path, required=True, help="report folder to write")
    p.add_argument("--population", action="store_true", help="population-level norms (no site effects)")
    _report_options(p)
    p.set_defaults(handler="report")


def _report_options(p) -> None:
    g = p.add_argument_group("report")
    g.add_argument("--group-column", default=None, help="covariate column defining groups (e.g. group)")
    g.add_argument("--controls", default=None, metavar="COLUMN=VALUE",
                   help="controls used for the calibration section, e.g. group=control (default all subjects)")
    g.add_argument("--max-subjects", type=_positive_int, default=20, help="subjects shown in detail (default 20)")
    g.add_argument("--threshold", type=float, default=2.0, metavar="Z",
                   help="subject maps show |z| > Z in clusters (default 2; 0 draws unthresholded maps)")
    g.add_argument("--min-cluster-area", type=float, default=100.0, metavar="MM2",
                   help="smallest cluster kept on the cortical surface, in mm² (default 100)")
    a = p.add_argument_group("parcels")
    a.add_argument("--atlas", nargs="+", type=Path, metavar="FILE",
                   help="atlas on the basis' mesh or grid: one .dlabel.nii or NIfTI atlas, or one .annot/.label.gii "
                        "per hemisphere (lh.* rh.*); apply writes parcel tables (group/atlas-<name>_...tsv) and "
                        "parcel maps, the report names the regions")
    a.add_argument("--atlas-name", default=None, metavar="NAME",
                   help="atlas- label of the parcel outputs (default from the file name, e.g. aparc)")


def _add_info(sub, parent) -> None:
    p = sub.add_parser("adapt", parents=[parent], help="adapt a bundle to new sites from their controls",
                       description="Learn the effects of new sites (batch levels) from a handful of their healthy "
                                   "controls, everything else frozen, and write an adapted bundle.",
                       epilog="example: spectranorm-neuro adapt model_bundle new_site_controls/ --out adapted_bundle")
    p.add_argument("bundle", type=Path, help="model bundle (folder or .zip)")
    cohort_options(p, "controls of the new site(s), with their site labels")
    p.add_argument("--out", type=Path, required=True, help="adapted bundle to write (folder or .zip)")
    p.set_defaults(handler="adapt")

    light = common_options(compute=False)  # reading commands: no --n-jobs, --seed, --overwrite, --scheduler
    p = sub.add_parser("info", parents=[light], help="verify a bundle and print its model card",
                       epilog="example: spectranorm-neuro info model_bundle")
    p.add_argument("bundle", type=Path, help="model bundle (folder or .zip)")
    p.add_argument("--json", action="store_true", help="print the model card as JSON")
    p.set_defaults(handler="info")

    p = sub.add_parser("sys-info", parents=[light], help="versions and machine facts for bug reports")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler="sys-info")

    p = sub.add_parser("convert-upstream", parents=[parent],
                       help="convert a basis or model saved by SpectraNorm 0.1.4 (joblib) to the safe format",
                       epilog="example: spectranorm-neuro convert-upstream old_model_dir --out new_model_dir")
    p.add_argument("path", type=Path, help="reference file (eigenmode_basis.joblib) or the directory given to its "
                                           "save_model(); read by a restricted unpickler that executes nothing")
    p.add_argument("--out", type=Path, required=True, help="basis file (.npz) or model directory to write")
    p.set_defaults(handler="convert-upstream")


def _add_scheduler_option(parent: argparse.ArgumentParser) -> None:
    group = parent.add_argument_group("distributed computing")
    group.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="run the parallel steps (encoding, fitting, scoring and writing maps) on the dask "
                            "cluster whose scheduler listens at ADDRESS, e.g. tcp://10.0.0.5:8786 (results are "
                            "the same as on this machine; --n-jobs then defaults to -1, every worker thread; "
                            "outputs must go to a folder all workers share). Needs " + _DASK_EXTRA)
    parent.set_defaults(n_jobs=None)  # None: 1, or -1 with --scheduler (see _resolve_n_jobs)


def _resolve_n_jobs(args: argparse.Namespace) -> None:
    if getattr(args, "n_jobs", 1) is None:
        args.n_jobs = -1 if getattr(args, "scheduler", None) else 1


def _dask_client(address: str):
    """Connect a ``dask.distributed.Client`` to ``address`` (errors name --scheduler and the fix)."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise bad_value("--scheduler", address, "needs dask.distributed, which is not installed",
                        f"install the optional extra with {_DASK_EXTRA}, or run without --scheduler",
                        InvalidInputError) from None
    try:
        return Client(address, timeout=SCHEDULER_TIMEOUT)
    except ValueError as exc:
        raise bad_value("--scheduler", address, f"is not a scheduler address ({_one_line(exc)})",
                        "pass the address the scheduler prints, e.g. tcp://10.0.0.5:8786", InvalidInputError) from None
    except OSError as exc:  # includes TimeoutError
        raise bad_value("--scheduler", address, f"cannot be reached ({_one_line(exc)})",
                        "start the scheduler and its workers (`dask scheduler`, `dask worker ADDRESS`) or check "
                        "the address and port; or run without --scheduler", InvalidInputError) from None


@contextlib.contextmanager
def _parallel(args: argparse.Namespace) -> Iterator[None]:
    """Run a command inside ``joblib.parallel_config``: local workers, or a dask cluster with --scheduler."""
    from joblib import parallel_config

    address = getattr(args, "scheduler", None)
    if not address:
        with parallel_config(n_jobs=args.n_jobs):
            yield
        return
    client = _dask_client(address)
    try:
        with parallel_config(backend="dask", n_jobs=args.n_jobs):
            yield
    finally:
        client.close()


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``spectranorm-neuro``."""
    parser = argparse.ArgumentParser(prog="spectranorm-neuro", epilog=_EPILOG,
                                     description="Spectral normative modelling of brain maps: fit once, share the "
                                                 "model bundle, apply it to any new cohort.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    parent = common_options()
    _add_scheduler_option(parent)
    _add_demo(sub, parent)
    _add_basis(sub, parent)
    _add_fit(sub, parent)
    _add_scoring(sub, parent)
    _add_info(sub, parent)
    return parser


def _handlers() -> dict:
    from . import _apply_cmds, _convert_cmd, _model_cmds, demo

    return {"convert-upstream": _convert_cmd.cmd_convert_upstream,
            "demo": demo.cmd_demo, "basis": _model_cmds.cmd_basis, "fit": _model_cmds.cmd_fit,
            "adapt": _model_cmds.cmd_adapt, "info": _model_cmds.cmd_info, "sys-info": _model_cmds.cmd_sys_info,
            "apply": _apply_cmds.cmd_apply, "harmonize": _apply_cmds.cmd_harmonize, "report": _apply_cmds.cmd_report}


def _option_names(message: str, parser: argparse.ArgumentParser, command: str) -> str:
    """Name the command-line option in a message that starts with a Python argument name.

    ``group_column='Group': ...`` becomes ``--group-column='Group': ...`` when the command has an
    option whose destination is ``group_column`` (one translation for every message of the package).
    """
    match = re.match(r"([A-Za-z_]\w*)(?=(\[[^\]]*\])?=)", message)
    if not match:
        return message
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices.get(command)
    options = {a.dest: a.option_strings[-1] for a in (sub._actions if sub else []) if a.option_strings}
    option = options.get(match.group(1))
    return option + message[match.end():] if option else message


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _os_error(exc: OSError) -> str:
    """One line for an operating-system error that no step translated (a file that cannot be read)."""
    what = exc.filename or "a file"
    reason = (exc.strerror or _one_line(exc)).rstrip(".")
    return (f"{what}: cannot be used ({reason}). Fix: check that the path exists and is readable, and that the "
            "disk has space")


@contextlib.contextmanager
def _console(run: Run) -> Iterator[None]:
    """Route package warnings and log records to stderr lines for the duration of a command."""
    logger = logging.getLogger("spectranorm_neuro")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if run.verbose > 1 else logging.INFO if run.verbose else logging.WARNING)
    logger.propagate = False
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = _one_line(message if isinstance(message, Warning) else Warning(message))
        if issubclass(category, SpectraNormWarning) or run.verbose:
            if text not in seen:
                seen.add(text)
                run.warn(text)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
            logger.propagate = old_propagate


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0 ok, 1 runtime error, 2 usage error.
    """
    parser = build_parser()
    try:
        args = parse_with_config(parser, sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: a command is required (demo, basis, fit, apply, adapt, harmonize, report, "
              "info, sys-info, convert-upstream)", file=sys.stderr)
        return 2
    _resolve_n_jobs(args)
    run = Run(args, quiet=bool(args.quiet), verbose=int(args.verbose or 0))
    handler = _handlers()[args.handler]
    try:
        with _console(run), _parallel(args):
            return int(handler(run) or 0)
    except UsageError as exc:
        print(f"{parser.prog} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except SpectraNormError as exc:
        print(f"error: {_option_names(_one_line(exc), parser, args.command)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted (nothing was written)", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: keep the message to one line unless asked
        if run.verbose:
            traceback.print_exc()
        print(f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (this is a bug; please report it with "
              "the output of `spectranorm-neuro sys-info`; run with --verbose for the traceback)", file=sys.stderr)
        return 1
