"""A Sisyphus-compatible workflow core: ``from sisyphus import Job, Task, tk, gs``."""

from sisyphus import global_settings as gs
from sisyphus import toolkit as tk
from sisyphus.job import Job
from sisyphus.job_path import Path
from sisyphus.task import Task
from sisyphus.toolkit import setup_path

__all__ = ["Job", "Task", "tk", "gs", "Path", "setup_path"]
