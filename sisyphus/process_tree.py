"""The processes of a task: every process a worker starts (RETURNN, torchrun, its data loaders, a
child that calls ``setsid``) belongs to the task, not only the worker.

Two handles find them on this machine:

- the worker's process group: the local engine starts a worker with a new session, so the worker's pid
  is the group id of everything it forks or execs that does not leave the group;
- the owner token ``SIS_TASK_OWNER=<job dir>/<task>.<id>#<nonce>`` in the environment: the engine (or the
  worker itself) sets it, and every descendant that is exec'd inherits it, also one in a session of its
  own. ``/proc/<pid>/environ`` shows it. The nonce is unique per worker start, so the processes of one run
  are told from those of the next run of the same task.

``kill_task_processes`` ends them; the engine calls it when a worker ends (also by ``kill -9``) before
it resubmits anything, a new worker calls it for leftovers of earlier runs before its task starts, and
``Task.state`` counts a task with a live process as running even when the worker's lock is gone.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

OWNER_ENV = "SIS_TASK_OWNER"


def task_key(job_dir: str, task_name: str, task_id: int) -> str:
    """The token's prefix for every run of a task id (``#`` ends it: ``run.1`` is no prefix of ``run.10``)."""
    return f"{os.path.abspath(job_dir)}/{task_name}.{task_id}#"


def new_owner_token(job_dir: str, task_name: str, task_id: int) -> str:
    return task_key(job_dir, task_name, task_id) + uuid.uuid4().hex


def _alive(pid: int) -> bool:
    """True for a process that exists and is no zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


def find_task_processes(prefix: str, exclude_token: str | None = None) -> list[int]:
    """Pids of live processes (readable by this user) whose owner token starts with ``prefix``;
    ``exclude_token``: not those with exactly this token (the current run's own processes)."""
    needle = f"{OWNER_ENV}={prefix}".encode()
    own = os.getpid()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        for var in env.split(b"\0"):
            if var.startswith(needle):
                token = var[len(OWNER_ENV) + 1 :].decode(errors="replace")
                if token != exclude_token and _alive(int(entry)):
                    found.append(int(entry))
                break
    return found


def kill_task_processes(
    prefix: str | None = None,
    *,
    token: str | None = None,
    pgid: int | None = None,
    exclude_token: str | None = None,
    timeout: float = 10.0,
) -> list[int]:
    """SIGKILL the process group ``pgid`` and every process whose token starts with ``prefix`` (or is
    exactly ``token``), except ``exclude_token``'s, and wait until they are gone. Returns the pids
    found by token (the group is killed as a whole)."""
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + timeout
    killed: list[int] = []
    while True:
        if token is not None:
            pids = [p for p in find_task_processes(token.split("#", 1)[0] + "#") if _token_of(p) == token]
        elif prefix is not None:
            pids = find_task_processes(prefix, exclude_token)
        else:
            pids = []
        if pgid is not None:
            pids += [p for p in _group_members(pgid) if p not in pids]
        if not pids or time.monotonic() > deadline:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
            if pid not in killed:
                killed.append(pid)
        time.sleep(0.05)


def _token_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    for var in env.split(b"\0"):
        if var.startswith(f"{OWNER_ENV}=".encode()):
            return var[len(OWNER_ENV) + 1 :].decode(errors="replace")
    return None


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            members.append(int(entry))
    return members
