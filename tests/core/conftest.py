"""A temporary Sisyphus project (settings.py, recipe/toy.py, config/) and a runner for `sis`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@dataclass
class SisProject:
    root: Path

    def write_config(self, body: str, name: str = "exp.py") -> str:
        (self.root / "config" / name).write_text(textwrap.dedent(body))
        return f"config/{name}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["TOY_EVENTS"] = str(self.root / "events.jsonl")
        env["PYTHONPATH"] = str(self.root)
        return env

    def sis(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "sisyphus", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"sis {args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def sis_background(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "sisyphus", *args],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def events(self) -> list[dict]:
        path = self.root / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def sis_project(tmp_path: Path) -> SisProject:
    root = tmp_path / "project"
    (root / "recipe").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "recipe" / "__init__.py").write_text("")
    (root / "config" / "__init__.py").write_text("")
    shutil.copy(HERE / "toy_recipe.py", root / "recipe" / "toy.py")
    (root / "settings.py").write_text(
        textwrap.dedent("""
        from sisyphus.engine import EngineSelector, LocalEngine
        WAIT_PERIOD_BETWEEN_CHECKS = 1
        def engine():
            return EngineSelector({"short": LocalEngine(cpus=1), "long": LocalEngine(cpus=2, mem=2)}, "long")
    """)
    )
    return SisProject(root)
