"""Sisyphus settings for this project: engine, waits, and the Python that runs RETURNN."""

import os
import sys

import psutil

from sisyphus.engine import EngineSelector, LocalEngine

WAIT_PERIOD_BETWEEN_CHECKS = 5
RETURNN_PYTHON_EXE = sys.executable  # the project's virtual environment has RETURNN (PyPI) and torch
RETURNN_ROOT = None  # None: run RETURNN as `python -m returnn` from the installed package

_CPUS = os.cpu_count() or 1
_MEM_GB = psutil.virtual_memory().total / 1024**3


def engine():
    """mini_tasks go to a 1-cpu "short" engine beside the "long" engine that has the whole machine."""
    return EngineSelector(
        engines={
            "short": LocalEngine(cpus=1, mem=2),
            "long": LocalEngine(cpus=_CPUS, mem=max(1.0, _MEM_GB - 2), gpus=_gpu_count()),
        },
        default_engine="long",
    )


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0
