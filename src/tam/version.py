"""The code version written into every run directory and feature store."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from tam import __version__


@functools.cache
def code_version() -> str:
    """`<package version>+g<git sha>[.dirty]` when run from a git checkout, else the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}" + (".dirty" if dirty else "")
