"""Indexing a large BIDS derivatives folder: spectranorm_neuro's own parser vs pybids (issue #17).

Writes a derivatives folder as ``apply`` writes it for ``--n-subjects`` subjects (default 5000):
per subject two hemispheres x (z-score, centile) GIFTI names with their JSON sidecars (8 files;
the GIFTI files are empty, only names are indexed), plus ``participants.tsv``. Then times, in the
same process:

* ``ours``: ``io.read_bids_cohort(root, "thickness", desc="zscore", ...)`` (file discovery, name
  parsing, entity matching, one row per subject);
* ``pybids``: ``bids.BIDSLayout(root, validate=False, is_derivative=True)`` and the same query
  (``layout.get(suffix="thickness", desc="zscore", extension=".shape.gii")`` grouped by subject and
  hemisphere), with and without ``index_metadata`` (reading the JSON sidecars);

and prints each time and the ratio pybids / ours (the decision rule: adopt pybids for parsing and
naming if it is not more than 2x slower). The folder is removed at the end.

Run: ``python bench/bench_bids_index.py [--n-subjects 5000] [--repeats 3]`` (needs ``pip install pybids``,
which the package itself does not use). The figures and the decision are in ``spectranorm_neuro/io/bids.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from spectranorm_neuro import io

N_VERTICES = 10242


def make_tree(root: Path, n_subjects: int) -> None:
    """An ``apply``-like derivatives tree with empty map files and real sidecars."""
    io.write_dataset_description(root)
    ids = [f"sub-{i:05d}" for i in range(n_subjects)]
    pd.DataFrame({"participant_id": ids, "age": 50.0}).to_csv(root / "participants.tsv", sep="\t", index=False)
    side = json.dumps(io.map_sidecar("zscore", "thickness")) + "\n"
    for pid in ids:
        anat = root / pid / "anat"
        anat.mkdir(parents=True)
        for hemi in ("L", "R"):
            for desc in ("zscore", "centile"):
                stem = f"{pid}_hemi-{hemi}_space-fsaverage_den-10k_desc-{desc}_thickness"
                (anat / f"{stem}.shape.gii").touch()
                (anat / f"{stem}.json").write_text(side)


def ours(root: Path) -> int:
    structures = (io.surface_structure("L", N_VERTICES), io.surface_structure("R", N_VERTICES))
    cohort = io.read_bids_cohort(root, "thickness", structures=structures, desc="zscore", check_first=False)
    return cohort.n_subjects


def pybids(root: Path, index_metadata: bool) -> int:
    import bids

    indexer = bids.BIDSLayoutIndexer(validate=False, index_metadata=index_metadata)
    layout = bids.BIDSLayout(root, validate=False, is_derivative=True, indexer=indexer)
    files = layout.get(suffix="thickness", desc="zscore", extension=".shape.gii")
    table: dict[str, dict[str, str]] = {}
    for f in files:
        ents = f.get_entities()
        table.setdefault(ents["subject"], {})[ents.get("hemi", "?")] = f.path
    return len(table)


def best_of(func, repeats: int, *args) -> tuple[float, int]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = func(*args)
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_bids_"))
    try:
        root = tmp / "deriv"
        make_tree(root, args.n_subjects)
        n_files = sum(1 for _ in root.rglob("*") if _.is_file())
        print(f"derivatives folder: {args.n_subjects} subjects, {n_files} files (machine may be shared; "
              f"best of {args.repeats})")
        t0 = time.perf_counter()
        import bids  # noqa: F401  (imported once, outside the timings)

        print(f"import bids (pybids, once)                   {time.perf_counter() - t0:8.2f} s")
        t_ours, n_ours = best_of(ours, args.repeats, root)
        print(f"ours   (io.read_bids_cohort)                 {t_ours:8.2f} s  {n_ours} subjects")
        t_nometa, n_nometa = best_of(pybids, args.repeats, root, False)
        print(f"pybids (BIDSLayout, index_metadata=False)    {t_nometa:8.2f} s  {n_nometa} subjects  "
              f"ratio {t_nometa / t_ours:6.1f}x")
        t_meta, n_meta = best_of(pybids, 1, root, True)
        print(f"pybids (BIDSLayout, index_metadata=True)     {t_meta:8.2f} s  {n_meta} subjects  "
              f"ratio {t_meta / t_ours:6.1f}x")
        verdict = "adopt pybids" if t_nometa <= 2 * t_ours else "keep our parser (pybids > 2x slower)"
        print(f"decision (pybids not more than 2x slower?): {verdict}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
