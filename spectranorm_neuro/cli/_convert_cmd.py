"""``spectranorm-neuro convert-upstream``: rewrite a file saved by SpectraNorm 0.1.4 in this package's safe format."""

from __future__ import annotations

from ..workflow.migrate import convert_upstream
from ._common import Run

__all__ = ["cmd_convert_upstream"]


def cmd_convert_upstream(run: Run) -> int:
    """Convert ``args.path`` (reference basis file or model directory) into ``args.out``."""
    args = run.args
    out = convert_upstream(args.path, args.out, overwrite=run.overwrite)
    run.say(f"Converted {args.path} (read without executing anything) to {out}")
    return 0
