"""Sisyphus settings for this project: engine, waits, and the Python that runs RETURNN.

Read by this project's workflow core and, unchanged, by the real rwth-i6 Sisyphus (which executes this
file while ``sisyphus.global_settings`` is being imported: so nothing from ``sisyphus`` is imported at
the top, engines are imported inside ``engine()`` from the modules where both cores have them).
"""

import os
import sys

import psutil

# The project root (the directory `sis` runs in) on sys.path, so that `jobs`, `recipe` and `config`
# import in workers too: the real worker runs tasks inside the job's work directory, where the real
# loader's relative import paths no longer find them.
_ROOT = os.path.abspath(globals().get("BASE_DIR") or os.getcwd())
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

WAIT_PERIOD_BETWEEN_CHECKS = 5
RETURNN_PYTHON_EXE = sys.executable  # the project's virtual environment has RETURNN (PyPI) and torch
RETURNN_ROOT = None  # None: run RETURNN as `python -m returnn` from the installed package

_CPUS = os.cpu_count() or 1
_MEM_GB = psutil.virtual_memory().total / 1024**3


def engine():
    """mini_tasks go to a 1-cpu "short" engine beside the "long" engine that has the whole machine."""
    from sisyphus.engine import EngineSelector
    from sisyphus.localengine import LocalEngine

    gpus = _gpu_count()
    return EngineSelector(
        engines={
            "short": LocalEngine(cpus=1, mem=2),
            "long": LocalEngine(
                cpus=_CPUS,
                gpus=gpus,
                available_gpus=",".join(map(str, range(gpus))),
                mem=max(1.0, _MEM_GB - 2),
            ),
        },
        default_engine="long",
    )


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0
