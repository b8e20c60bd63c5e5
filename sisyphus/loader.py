"""Loading config files: ``config/exp.py`` imports module ``config.exp`` and calls ``py()``;
``config/exp.main`` imports ``config.exp`` and calls ``main()``. An ``async def`` entry point is
scheduled as a coroutine that the manager steps each pass."""

from __future__ import annotations

import importlib
import inspect
import os
import sys

from sisyphus import global_settings as gs
from sisyphus.graph import graph


def config_entry(arg: str) -> tuple[str, str]:
    """(module, function) for a config argument."""
    arg = arg.rstrip("/")
    if arg.endswith(".py"):
        return arg[:-3].replace("/", ".").strip("."), "py"
    module_path, _, func = arg.replace("/", ".").rpartition(".")
    if not module_path:
        raise ValueError(f"Config {arg!r}: give a file (config/exp.py) or module.function (config/exp.main)")
    return module_path, func


def add_import_paths() -> None:
    for p in [gs.BASE_DIR, *(os.path.join(gs.BASE_DIR, d) for d in gs.IMPORT_PATHS)]:
        if os.path.isdir(p) and p not in sys.path:
            sys.path.insert(0 if p == gs.BASE_DIR else len(sys.path), p)


def load_configs(args: list[str]) -> None:
    """Import each config and run (or schedule) its entry function."""
    add_import_paths()
    for arg in args or ["config.main"]:
        module_name, func_name = config_entry(arg)
        if arg.endswith(".py") and not os.path.exists(os.path.join(gs.BASE_DIR, arg)):
            raise FileNotFoundError(f"Config file {arg} does not exist in {gs.BASE_DIR}")
        module = importlib.import_module(module_name)
        func = getattr(module, func_name, None)
        if func is None:
            if func_name == "py":
                continue  # a config that registers its outputs at import time
            raise AttributeError(f"Config {arg}: module {module_name} has no function {func_name}()")
        if inspect.iscoroutinefunction(func):
            graph.coroutines.append(func())
        else:
            func()
