"""Benchmark of the command line (issue #6): the demo and each command on the demo's data.

Prints wall-clock seconds of:

* ``spectranorm-neuro --help`` and ``spectranorm-neuro fit --help`` in a fresh interpreter (best of
  5), next to ``python -c pass`` in the same run (target: ``--help`` <= 0.5 s; nothing heavy is
  imported before a command runs);
* ``spectranorm-neuro demo`` (default size: 1600 training subjects, both fsaverage5 hemispheres,
  80 modes per hemisphere, 1280 held-out controls + 40 patients, report with 6 subjects in detail), and the
  planted-deviation check it reports (target: <= 120 s on 2 cores, check passed);
* ``fit`` of the demo's reference dataset (BIDS, 1600 subjects) with its basis, to a ``.zip`` bundle;
* ``info`` of that bundle (checksums verified);
* ``apply`` of the bundle to the demo's clinic dataset (1320 subjects: z-score and centile GIFTI maps
  + summary), with and without ``--report``;
* ``adapt`` is not timed (the demo has no new site).

Everything goes to a temporary folder removed at the end.

Run: ``python bench/bench_cli.py [--small] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

from spectranorm_neuro.cli import main


def timed(argv: list[str]) -> float:
    sink = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        code = main([str(a) for a in argv])
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"{argv[0]} failed with exit code {code}")
    return elapsed


def help_times(repeats: int = 5) -> dict:
    """Best-of wall time of ``--help`` in a fresh interpreter, and of a bare interpreter, same run."""
    import subprocess
    import sys

    def best(argv: list[str]) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            # from a neutral folder: `python -c` puts the working directory first on sys.path
            subprocess.run(argv, capture_output=True, check=True, cwd=tempfile.gettempdir())
            times.append(time.perf_counter() - t0)
        return min(times)

    cli = [sys.executable, "-c", "from spectranorm_neuro.cli import main; raise SystemExit(main())"]
    out = {"python_c_pass_s": best([sys.executable, "-c", "pass"]), "help_s": best([*cli, "--help"]),
           "fit_help_s": best([*cli, "fit", "--help"])}
    out["help_over_bare_python"] = out["help_s"] / out["python_c_pass_s"]
    return out


def run(small: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench_cli_"))
    try:
        demo = tmp / "demo"
        out = {"demo_s": timed(["demo", "--out", demo, *(["--small"] if small else [])])}
        out["planted_check"] = json.loads((demo / "demo_check.json").read_text())["planted_deviation_check"]
        fit_args = ["--measure", "thickness", "--numerical", "age", "--nonlinear", "age", "--categorical", "sex",
                    "site", "--batch", "site"]
        out["fit_s"] = timed(["fit", demo / "data" / "reference", "--basis", demo / "basis.npz", *fit_args,
                              "--out", tmp / "bundle.zip"])
        out["info_s"] = timed(["info", tmp / "bundle.zip"])
        out["apply_s"] = timed(["apply", tmp / "bundle.zip", demo / "data" / "clinic", "--out", tmp / "z"])
        out["apply_with_report_s"] = timed(["apply", tmp / "bundle.zip", demo / "data" / "clinic", "--out",
                                            tmp / "z2", "--report", "--max-subjects", "6"])
        out["n_clinic_subjects"] = sum(1 for _ in (demo / "data" / "clinic").glob("sub-*"))
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the reduced demo")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--help-only", action="store_true", help="only the --help timings")
    args = parser.parse_args()
    res = help_times()
    if not args.help_only:
        res.update(run(args.small))
    for key, value in res.items():
        shown = value if not isinstance(value, float) else f"{value:.3f}" if value < 10 else f"{value:.1f}"
        print(f"{key:22s} {shown}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main_bench()
