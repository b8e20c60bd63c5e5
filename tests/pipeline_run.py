"""Running this project's own configs through the real ``sis manager`` in a temporary project directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_manager_to_completion(root: Path, config: str, timeout: float = 1800) -> str:
    """``sis m <config> -r`` in ``root`` (with this repository importable); returns its stdout after
    asserting that it exited 0 with every target done."""
    proc = subprocess.run(
        [sys.executable, "-m", "sisyphus", "m", config, "-r"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert "All targets are done." in proc.stdout
    return proc.stdout
