"""``spectranorm-neuro demo``: the whole workflow, offline, on a synthetic fsaverage5 cohort.

The steps are :func:`spectranorm_neuro.workflow.demo.run_demo`'s; this command parses the options,
runs it with the HTML report and prints where everything is.
"""

from __future__ import annotations

from pathlib import Path

from ..report import BundleReport
from ..workflow.demo import MEASURE, DemoSettings, run_demo
from ._common import Run

__all__ = ["cmd_demo"]


def cmd_demo(run: Run) -> int:
    """Run the demo and print where its outputs are."""
    args = run.args
    out = Path(args.out)
    cfg = DemoSettings(args.small, args.hemi, args.n_train, args.n_modes)
    report = BundleReport(("group", "control"), "group", args.max_subjects)
    result = run_demo(out, cfg, report=report, seed=run.seed, n_jobs=run.n_jobs, progress=run.progress,
                      overwrite=run.overwrite, say=run.say, warn=run.warn)
    check = result["planted_deviation_check"]
    _print_locations(run, out, check, result["held_out_metrics"])
    return 0 if check["passed"] else 1


def _print_locations(run: Run, out: Path, check: dict, metrics: dict | None) -> None:
    run.say("")
    run.say(f"Everything is in {out}/:")
    run.say(f"  data/reference/      training cohort (BIDS derivatives, {MEASURE} .shape.gii + participants.tsv)")
    run.say("  data/clinic/         held-out controls and patients with planted deviations")
    run.say("  basis.npz            the eigenmode basis")
    run.say("  model_bundle/        the shared model: model/, model_card.json, manifest.json (SHA-256)")
    run.say("  derivatives/         z-score and centile maps (GIFTI) + group/desc-zscoresummary_thickness.tsv")
    run.say("  report/index.html    the HTML deviation report")
    run.say("  demo_check.json      the numbers below")
    if metrics:
        run.say(f"Held-out reference subjects: mean z {metrics['z_mean']:.2f}, sd z {metrics['z_sd']:.2f}, "
                f"|z| > 1.96 in {100 * metrics['fraction_abs_z_gt_1.96']:.1f}% (5% expected)")
    verdict = "RECOVERED" if check["passed"] else "NOT RECOVERED"
    line = (f"Planted deviations {verdict}: mean z inside the patches {check['mean_z_inside']:.2f} vs "
            f"{check['mean_z_outside']:.2f} elsewhere in patients (controls: mean {check['mean_z_controls']:.2f}, "
            f"sd {check['sd_z_controls']:.2f})")
    if check["passed"]:
        run.say(line)
    else:
        run.warn(line)
    run.say(f"Next: spectranorm-neuro info {out}/model_bundle ; spectranorm-neuro apply {out}/model_bundle "
            f"<your BIDS derivatives> --measure {MEASURE} --out <folder>")
