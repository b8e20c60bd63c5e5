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
JOB_FINISHED_MARKER = "finished"
JOB_FINISHED_ARCHIVE = "finished.tar.gz"  # what the cleanup leaves of a finished job's logs and markers
JOB_LOG = "log"
JOB_LOG_ENGINE = "engine"
STATE_HOLD = "hold"
CONFIG_PREFIX = "config"
RECIPE_PREFIX = "recipe"
PLOGGING_FILE = "usage"

# the automatic cleanup of finished jobs, as in the real Sisyphus (on by default): the manager removes
# a finished job's work/ and packs its logs, markers and job.save into finished.tar.gz
JOB_AUTO_CLEANUP = True
JOB_CLEANUP_KEEP_WORK = False  # keep work/ instead of removing it
JOB_CLEANUP_KEEP_INPUT = True  # keep the input/ links instead of packing them
JOB_CLEANER_INTERVAL: float = 60  # seconds between two cleanup passes of a running manager
JOB_DEFAULT_KEEP_VALUE = 50

# the environment of a task: the real Sisyphus cleans it by default (CLEANUP_ENVIRONMENT=True keeps only
# DEFAULT_ENVIRONMENT_KEEP and sets DEFAULT_ENVIRONMENT_SET); this core keeps the manager's environment
# unless settings.py asks for the cleanup. Stored per job in job.save (Job._sis_environment).
CLEANUP_ENVIRONMENT = False
DEFAULT_ENVIRONMENT_KEEP = {
    "CUDA_VISIBLE_DEVICES",
    "HOME",
    "PWD",
    "TMP",
    "TMPDIR",
    "USER",
    "PATH",
    "VIRTUAL_ENV",
}
DEFAULT_ENVIRONMENT_SET: dict[str, Any] = {"LANG": "en_US.UTF-8", "MKL_NUM_THREADS": 1, "OMP_NUM_THREADS": 1}

TMP_PREFIX = os.path.join(os.environ.get("TMPDIR", "/tmp"), "sis_")  # i6_core's temporary directories
INCLUDE_CREATOR_STATE = False  # pickled paths keep their creator (False: absolute path, no creator)
LEGACY_PATH_CONVERSION = False  # repr(Path) is repr(str(path)) instead of <Path ...>
LEGACY_VARIABLE_CONVERSION = False
RAISE_VARIABLE_NOT_SET_EXCEPTION = True
WARNING_ABSPATH = True
WARNING_NO_FUNCTION_CALLED = True
DELAYED_CHECK_FOR_WORKER = False
USE_UI = False
SHOW_VIS_NAME_IN_MANAGER = True

# Seconds. The real Sisyphus waits long for network file systems; this core has no such waits.
# the manager's longest sleep between passes (the local engine wakes it when a task starts or ends)
WAIT_PERIOD_BETWEEN_CHECKS: float = 30
# a manager pass this long after the last heartbeat prints the summary and the running tasks' progress
WAIT_PERIOD_HEARTBEAT: float = 30
USAGE_UPDATE_PERIOD: float = 60  # how often a worker rewrites usage.<task>.<id>

# a task id that started, is no longer running and has no marker is shown as retry_error instead of
# interrupted once its submit_log.<task> has more lines than this
MAX_SUBMIT_RETRIES = 3

DEFAULT_RQMT: dict[str, Any] = {"cpu": 1, "mem": 1, "time": 1}  # under every task's rqmt
MINI_TASK_RQMT: dict[str, Any] = {"cpu": 1, "mem": 1, "time": 1, "engine": "short"}

SIS_COMMAND: list[str] = [sys.executable, "-m", "sisyphus"]  # how engines start a worker


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
    """Called by a running manager once for every job it finds in the error state (a failed try of a
    task with ``tries`` left is no error: it is resubmitted)."""


def on_job_finished(job) -> None:
    """Called by a running manager once for every job it saw unfinished that has now finished (not
    for jobs that were finished when it started)."""


def file_caching(path: str) -> str:
    """Where a ``cached`` path is read from inside a worker (``Path.get_cached_path``): e.g. copy it to a
    local disk and return the copy; identity by default."""
    return path


def check_engine_limits(rqmt: dict[str, Any], task) -> dict[str, Any]:
    """Adjust a task's requirements (the last step of ``Task.rqmt()``, before the manager submits
    it); identity by default."""
    return rqmt


# settings of the real Sisyphus that this core does not implement: settings.py may set them (a
# settings file shared with the real one), the manager warns that they have no effect here
UNSUPPORTED_SETTINGS = frozenset(
    {
        "JOB_CLEANER_WORKER",
        "JOB_USE_TAGS_IN_PATH",
        "TEAM_SHARE_DIR",
        "ALIAS_AND_OUTPUT_SUBDIR",
        "SHOW_JOB_TARGETS",
        "WAIT_PERIOD_JOB_FS_SYNC",
        "WAIT_PERIOD_JOB_CLEANUP",
        "WAIT_PERIOD_MTIME_OF_INPUTS",
        "WAIT_PERIOD_FOR_INPUTS_AVAILABLE",
        "WAIT_PERIOD_CACHE",
        "CLEAR_ERROR",
        "PRINT_ERROR_LINES",
        "CACHE_FINISHED_RESULTS",
        "update_engine_rqmt",
    }
)


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def load_settings(base_dir: str | None = None, warn_unsupported: bool = True) -> None:
    """Execute ``settings.py`` of ``base_dir`` into this module, then apply ``SIS_*`` overrides;
    warn on stderr about ``UNSUPPORTED_SETTINGS`` that it sets."""
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
        ignored = sorted(UNSUPPORTED_SETTINGS & set(namespace))
        if ignored and warn_unsupported:
            print(
                f"warning: {path} sets {', '.join(ignored)}: setting(s) of the real Sisyphus that this "
                f"workflow core does not implement (no effect)",
                file=sys.stderr,
            )
    for key, value in os.environ.items():
        if key.startswith("SIS_") and key not in ("SIS_BASE_DIR",):
            setattr(module, key[4:], _literal(value))
