"""Helpers with the names the real Sisyphus has in ``sisyphus.tools`` (i6_core imports ``try_get`` and
``extract_paths`` from here; ``EnvironmentModifier`` is pickled in ``job.save`` by both cores)."""

from __future__ import annotations

import logging
import os
import string
import subprocess
import sys
from typing import Any

log = logging.getLogger("sisyphus")


def try_get(value: Any) -> Any:
    """``value.get()`` for delayed objects (paths, variables, delayed ops), else ``value`` itself."""
    from sisyphus.delayed_ops import DelayedBase

    return value.get() if isinstance(value, DelayedBase) else value


def extract_paths(obj: Any) -> set:
    """Every Path and Variable inside ``obj`` (see ``sisyphus.job.extract_paths``)."""
    from sisyphus.job import extract_paths as _extract

    return _extract(obj)


def sis_hash(obj: Any) -> str:
    from sisyphus.hash import short_hash

    return short_hash(obj)


def sh(
    command: str,
    capture_output: bool = False,
    pipefail: bool = True,
    executable: str | None = None,
    except_return_codes: tuple[int, ...] = (0,),
    sis_quiet: bool = False,
    sis_replace: dict[str, Any] | None = None,
    include_stderr: bool = False,
    **kwargs: Any,
) -> str | bytes | None:
    """Run ``command`` in a shell after ``command.format(**sis_replace, **kwargs)``.

    bash with ``set -ueo pipefail`` unless another ``executable`` is given; returns the decoded output
    with ``capture_output`` (stderr too with ``include_stderr``), else None. A return code in
    ``except_return_codes`` other than 0 is not an error (with ``capture_output`` its output, as bytes, is
    returned, as in the real Sisyphus)."""
    cmd = command.format(**{**(sis_replace or {}), **kwargs})
    if not sis_quiet:
        log.info("Run in Shell%s: %s", " (capture output)" if capture_output else "", cmd)
    sys.stdout.flush()
    sys.stderr.flush()
    if executable is None:
        executable = "/bin/bash"
        if pipefail:
            cmd = "set -ueo pipefail && " + cmd
    try:
        if capture_output:
            stderr = subprocess.STDOUT if include_stderr else None
            return subprocess.check_output(cmd, shell=True, executable=executable, stderr=stderr).decode()
        subprocess.check_call(cmd, shell=True, executable=executable)
    except subprocess.CalledProcessError as e:
        if e.returncode not in except_return_codes:
            raise
        if capture_output:
            return e.output
    return None


class EnvironmentModifier:
    """The environment a task runs in: optionally start from a cleaned environment (only ``keep_vars``
    survive), then set ``set_vars`` (``$NAME`` substituted from the original environment) and
    ``set_vars_verbatim``. Part of ``job.save`` (same attributes as the real Sisyphus')."""

    def __init__(self, *, cleanup_env: bool = True) -> None:
        self.cleanup_env = cleanup_env
        self.keep_vars: set[str] = set()
        self.set_vars: dict[str, Any] = {}
        self.set_vars_verbatim: dict[str, str] = {}

    def keep(self, var: str | Any) -> None:
        if isinstance(var, str):
            self.keep_vars.add(var)
        else:
            self.keep_vars.update(var)

    def set(self, var: str | dict[str, Any], value: Any = None) -> None:
        if isinstance(var, dict):
            self.set_vars.update(var)
        else:
            self.set_vars[var] = value

    def set_verbatim(self, key: str, value: str) -> None:
        self.set_vars_verbatim[key] = value

    def modify_environment(self) -> None:
        original = dict(os.environ)
        if self.cleanup_env:
            for key in list(os.environ):
                if key not in self.keep_vars:
                    del os.environ[key]
        for key, value in self.set_vars.items():
            os.environ[key] = (
                string.Template(value).substitute(original) if isinstance(value, str) else str(value)
            )
        os.environ.update(self.set_vars_verbatim)

    def __repr__(self) -> str:
        keep = f"keep={self.keep_vars!r} " if self.cleanup_env else ""
        return f"cleanup_env={self.cleanup_env} {keep}set={self.set_vars!r}"
