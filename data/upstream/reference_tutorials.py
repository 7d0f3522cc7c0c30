"""Run this package's ports of the reference's tutorials ON THE REFERENCE, and record what they print.

Run with the REFERENCE's interpreter (see README.md in this folder), from the repository root::

    OMP_NUM_THREADS=1 /work/refenv/bin/python data/upstream/reference_tutorials.py [--full] [TUTORIAL ...]

Each tutorial in ``tutorials/`` that is a port of a reference tutorial uses only the reference's
API, with its import line changed to ``from spectranorm_neuro import snm``. This script switches that
line back to ``from spectranorm import snm``, runs the tutorial in a temporary folder and writes its
standard output to ``reference_<tutorial>.txt`` next to this script; ``tests/test_tutorials.py``
compares this package's numbers with them. ``05_univariate_model.py`` and
``06_digit_eigenmode_bases.py`` are cell-by-cell ports and always run at the notebook's size;
``02_spectral_model.py`` has a reduced run (``SPECTRANORM_TUTORIAL_FAST=1``), used unless ``--full``
(its output then goes to ``reference_<tutorial>_full.txt``).
"""

import contextlib
import io
import os
import re
import runpy
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
PORTS = ["02_spectral_model.py", "05_univariate_model.py", "06_digit_eigenmode_bases.py"]
IMPORT = re.compile(r"^from spectranorm_neuro import snm(?=\s*(#.*)?$)", re.M)  # a trailing comment may follow

if __name__ == "__main__":
    full = "--full" in sys.argv[1:]
    if not full:
        os.environ["SPECTRANORM_TUTORIAL_FAST"] = "1"
    chosen = [a for a in sys.argv[1:] if not a.startswith("--")] or PORTS
    for name in chosen:
        source = (ROOT / "tutorials" / name).read_text()
        assert len(IMPORT.findall(source)) == 1, name
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / name
            script.write_text(IMPORT.sub("from spectranorm import snm", source))
            cwd = os.getcwd()
            os.chdir(tmp)
            buffer = io.StringIO()
            try:
                with contextlib.redirect_stdout(buffer):
                    runpy.run_path(str(script), run_name="__main__")
            finally:  # what was printed is kept even if the run fails
                os.chdir(cwd)
                target = OUT / f"reference_{Path(name).stem}{'_full' if full else ''}.txt"
                target.write_text(buffer.getvalue())
        print(f"{name}: {len(buffer.getvalue().splitlines())} lines -> {target.name}")
