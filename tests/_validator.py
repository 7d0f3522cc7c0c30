"""Run the official BIDS validator (``bids-validator-deno``, from the ``test`` extra) on a folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def validator() -> str | None:
    """Path of the ``bids-validator-deno`` executable (next to this Python first), or None."""
    here = Path(sys.executable).with_name("bids-validator-deno")
    return str(here) if here.exists() else shutil.which("bids-validator-deno")


def bids_issues(root) -> list[dict]:
    """Issues of the validator on ``root`` (each a dict with ``code``, ``severity``, ``location``).

    Skips the test when the validator is not installed (``pip install -e .[test]`` installs it).
    """
    exe = validator()
    if exe is None:
        pytest.skip("bids-validator-deno is not installed (pip install -e .[test])")
    done = subprocess.run([exe, str(root), "--format", "json"], capture_output=True, text=True, timeout=300)
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout)["issues"]["issues"]


def bids_errors(root) -> list[str]:
    """``CODE location`` of every error (not warning) the validator reports on ``root``."""
    return [f"{i['code']} {i.get('location', '')}" for i in bids_issues(root) if i["severity"] == "error"]
