"""A temporary Sisyphus project (settings.py, recipe/toy.py, config/) and a runner for `sis`, shared by
the workflow-core and the Slurm tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TOY_RECIPE = Path(__file__).parent / "core" / "toy_recipe.py"


@dataclass
class SisProject:
    root: Path
    extra_pythonpath: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, settings: str, recipes: tuple[Path, ...] = (), **kwargs) -> SisProject:
        """``root`` with ``settings.py``, ``config/`` and ``recipe/toy.py`` (+ ``recipes``, by file name)."""
        (root / "recipe").mkdir(parents=True)
        (root / "config").mkdir()
        (root / "recipe" / "__init__.py").write_text("")
        (root / "config" / "__init__.py").write_text("")
        shutil.copy(TOY_RECIPE, root / "recipe" / "toy.py")
        for recipe in recipes:
            shutil.copy(recipe, root / "recipe" / recipe.name)
        (root / "settings.py").write_text(textwrap.dedent(settings))
        return cls(root, **kwargs)

    def write_config(self, body: str, name: str = "exp.py") -> str:
        (self.root / "config" / name).write_text(textwrap.dedent(body))
        return f"config/{name}"

    def base_env(self) -> dict[str, str]:
        return dict(os.environ)

    def env(self) -> dict[str, str]:
        env = self.base_env()
        env["TOY_EVENTS"] = str(self.root / "events.jsonl")
        env["PYTHONPATH"] = os.pathsep.join([str(self.root), *self.extra_pythonpath])
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
        """``sis`` started in the background; it takes SIGINT (Ctrl-C) as from a terminal, also when the
        tests themselves run as a background command of a shell without job control, which starts them
        with SIGINT ignored (and Python keeps an ignored SIGINT ignored)."""
        return subprocess.Popen(
            [sys.executable, "-m", "sisyphus", *args],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_default_sigint,
        )

    def events(self) -> list[dict]:
        path = self.root / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    """Poll ``predicate`` every 0.1 s until it is true; AssertionError after ``timeout`` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")
