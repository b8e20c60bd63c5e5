"""The global graph: what the config registered (outputs, reports, async waits) and the jobs
reachable from it through job inputs."""

from __future__ import annotations

import os
import pprint
from dataclasses import dataclass, field
from typing import Any

from sisyphus import global_settings as gs
from sisyphus.delayed_ops import DelayedBase
from sisyphus.job import Job, extract_paths
from sisyphus.job_path import AbstractPath


@dataclass
class OutputTarget:
    """``output/<name>`` links to ``path`` once it is available."""

    name: str
    path: AbstractPath

    def paths(self) -> set[AbstractPath]:
        return {self.path}

    def done(self) -> bool:
        return self.path.available()

    def update(self) -> None:
        if not self.done():
            return
        link = os.path.join(gs.BASE_DIR, gs.OUTPUT_DIR, self.name)
        _symlink(os.path.realpath(self.path.get_path()), link)


@dataclass
class ReportTarget:
    """``output/<name>``: ``values`` (Variables resolved) pretty-printed or formatted with ``template``."""

    name: str
    values: Any
    template: str | None = None
    required: set[AbstractPath] = field(default_factory=set)
    written: bool = False

    def paths(self) -> set[AbstractPath]:
        return self.required | extract_paths(self.values)

    def done(self) -> bool:
        return self.written

    def update(self) -> None:
        if self.written or not all(p.available() for p in self.paths()):
            return
        values = _resolve(self.values)
        text = (
            self.template.format(**values) if self.template is not None else pprint.pformat(values, width=110)
        )
        path = os.path.join(gs.BASE_DIR, gs.OUTPUT_DIR, self.name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(path + ".tmp", path)
        self.written = True


@dataclass
class WaitTarget:
    """Paths an async config awaits with ``tk.async_run``."""

    required: set[AbstractPath]

    def paths(self) -> set[AbstractPath]:
        return self.required

    def done(self) -> bool:
        return all(p.available() for p in self.required)

    def update(self) -> None:
        pass


@dataclass
class CallbackTarget:
    """``tk.register_callback(f, *args, **kwargs)``: ``f`` is called once when every path in the
    arguments is available."""

    func: Any
    args: tuple
    kwargs: dict
    called: bool = False

    def paths(self) -> set[AbstractPath]:
        return extract_paths((self.args, self.kwargs))

    def done(self) -> bool:
        return self.called

    def update(self) -> None:
        if not self.called and all(p.available() for p in self.paths()):
            self.called = True
            self.func(*self.args, **self.kwargs)


def _resolve(obj: Any) -> Any:
    if isinstance(obj, DelayedBase):  # paths resolve to their absolute path, variables to their value
        return obj.get()
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v) for v in obj)
    return obj


def _symlink(target: str, link: str) -> None:
    parent = os.path.dirname(link)
    if os.path.islink(parent) or (os.path.exists(parent) and not os.path.isdir(parent)):
        raise FileExistsError(f"cannot create {link}: {parent} is a link of another alias/output; rename one")
    os.makedirs(parent, exist_ok=True)
    if os.path.islink(link):
        if os.readlink(link) == target:
            return
        os.unlink(link)
    elif os.path.exists(link):
        raise FileExistsError(f"{link} exists and is not a symlink; move it away")
    os.symlink(target, link)


class Graph:
    """Targets registered by configs; ``jobs()`` walks their inputs' creators."""

    def __init__(self) -> None:
        self.targets: list[OutputTarget | ReportTarget | WaitTarget | CallbackTarget] = []
        self.coroutines: list[Any] = []

    def add_target(self, target: OutputTarget | ReportTarget | WaitTarget | CallbackTarget) -> None:
        self.targets.append(target)

    def remove_target(self, target: WaitTarget) -> None:
        if target in self.targets:
            self.targets.remove(target)

    def clear(self) -> None:
        self.targets.clear()
        self.coroutines.clear()

    def jobs(self) -> list[Job]:
        """Every job the targets depend on, dependencies before dependants."""
        order: list[Job] = []
        seen: set[str] = set()
        stack: list[tuple[Job, bool]] = []
        for target in self.targets:
            for p in sorted(target.paths(), key=lambda p: p.rel_path()):
                if p.creator is not None:
                    stack.append((p.creator, False))
        while stack:
            job, expanded = stack.pop()
            if expanded:
                order.append(job)
                continue
            if job._sis_id() in seen:
                continue
            seen.add(job._sis_id())
            stack.append((job, True))
            for p in job._sis_inputs:
                if p.creator is not None and p.creator._sis_id() not in seen:
                    stack.append((p.creator, False))
        return order

    def update_targets(self) -> None:
        for target in self.targets:
            target.update()


graph = Graph()
