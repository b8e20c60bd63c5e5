"""Global settings (``gs``): defaults, overridden by ``settings.py`` in the base directory.

``settings.py`` is executed into this module's namespace, then ``SIS_<NAME>`` environment
variables override single values (parsed as Python literals where possible). Hooks a
settings file may define: ``engine()``, ``worker_wrapper(job, task_name, call)``,
``on_job_failure(job)``, ``on_job_finished(job)``, ``check_engine_limits(rqmt, task)``.
"""

from __future__ import annotations

import ast
import os
import sys
from typing import Any

BASE_DIR: str = os.path.abspath(os.environ.get("SIS_BASE_DIR", os.getcwd()))
SETTINGS_FILE = "settings.py"

WORK_DIR = "work"
ALIAS_DIR = "alias"
OUTPUT_DIR = "output"
IMPORT_PATHS = ["config", "recipe", "recipe/"]
JOB_OUTPUT = "output"
JOB_INPUT = "input"
JOB_WORK_DIR = "work"
JOB_SAVE = "job.save"
JOB_INFO = "info"
ENGINE_DIR = "engine"
STATE_FINISHED = "finished"

# Seconds. The real Sisyphus waits long for network file systems; these defaults suit a local disk
# and settings.py may raise them.
WAIT_PERIOD_BETWEEN_CHECKS: float = 30
WAIT_PERIOD_JOB_FS_SYNC: float = 0
WAIT_PERIOD_HEARTBEAT: float = 30
RUNNING_TIMEOUT: float = 100  # a task whose usage/log file is older than this is not running
USAGE_UPDATE_PERIOD: float = 60

MAX_SUBMIT_RETRIES = 3
JOB_AUTO_CLEANUP = False
JOB_USE_TAGS_IN_PATH = False
SHOW_JOB_TARGETS = True
CLEANUP_ENVIRONMENT = False
CLEANER_WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

DEFAULT_RQMT: dict[str, Any] = {"cpu": 1, "mem": 1, "time": 1}
MINI_TASK_RQMT: dict[str, Any] = {"cpu": 1, "mem": 1, "time": 1, "engine": "short"}

SIS_COMMAND: list[str] = [sys.executable, "-m", "sisyphus"]


def engine():
    """The engine that runs tasks; settings.py overrides this."""
    from sisyphus.engine import EngineSelector, LocalEngine

    return EngineSelector(
        engines={"short": LocalEngine(cpus=1), "long": LocalEngine(cpus=os.cpu_count() or 1)},
        default_engine="long",
    )


def worker_wrapper(job, task_name: str, call: list[str]) -> list[str]:
    """Wrap the worker command line (e.g. in a container call); identity by default."""
    return call


def on_job_failure(job) -> None:
    """Called by the manager once for every job that enters the error state."""


def on_job_finished(job) -> None:
    """Called by the manager once for every job that finishes."""


def check_engine_limits(rqmt: dict[str, Any], task) -> dict[str, Any]:
    """Adjust a task's requirements before submission; identity by default."""
    return rqmt


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def load_settings(base_dir: str | None = None) -> None:
    """Execute ``settings.py`` of ``base_dir`` into this module, then apply ``SIS_*`` overrides."""
    global BASE_DIR
    if base_dir is not None:
        BASE_DIR = os.path.abspath(base_dir)
    module = sys.modules[__name__]
    path = os.path.join(BASE_DIR, SETTINGS_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), path, "exec")
        namespace = dict(vars(module))
        exec(code, namespace)
        for key, value in namespace.items():
            if not key.startswith("__"):
                setattr(module, key, value)
    for key, value in os.environ.items():
        if key.startswith("SIS_") and key not in ("SIS_BASE_DIR",):
            setattr(module, key[4:], _literal(value))
