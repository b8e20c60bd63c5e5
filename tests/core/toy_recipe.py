"""Toy jobs for the workflow-core tests; copied into a temporary project as recipe/toy.py."""

import json
import os
import time

from sisyphus import Job, Task


def _record(event: str, name: str, cpu: int) -> None:
    """Append an event to the file named by $TOY_EVENTS (shared by all workers), if set."""
    path = os.environ.get("TOY_EVENTS")
    if not path:
        return
    with open(path, "a") as f:
        f.write(
            json.dumps({"event": event, "name": name, "cpu": cpu, "t": time.time(), "pid": os.getpid()})
            + "\n"
        )


class SleepJob(Job):
    """Writes its name after sleeping; records start/end events to check rqmt and concurrency."""

    def __init__(self, name, inputs=(), cpu=1, sleep=0.5):
        self.name = name
        self.inputs = list(inputs)
        self.cpu = cpu
        self.sleep = sleep
        self.out = self.output_path("out.txt")
        self.length = self.output_var("length")

    def tasks(self):
        yield Task("run", rqmt={"cpu": self.cpu, "mem": 0.5})

    def run(self):
        _record("start", self.name, self.cpu)
        text = self.name + "".join(open(p.get_path()).read() for p in self.inputs)
        time.sleep(self.sleep)
        with open(self.out.get_path(), "w") as f:
            f.write(text)
        self.length.set(len(text))
        _record("end", self.name, self.cpu)


class CountJob(Job):
    """Counts to ``steps`` with a checkpoint in its work dir; ``resume`` continues from it."""

    def __init__(self, steps, resumable=True, step_time=0.2):
        self.steps = steps
        self.resumable = resumable
        self.step_time = step_time
        self.out = self.output_path("count.txt")

    def tasks(self):
        yield Task("run", resume="run" if self.resumable else None)

    def run(self):
        start = int(open("ckpt").read()) if os.path.exists("ckpt") else 0
        with open("starts", "a") as f:
            f.write(f"{start}\n")
        for i in range(start, self.steps):
            time.sleep(self.step_time)
            with open("ckpt.tmp", "w") as f:
                f.write(str(i + 1))
            os.replace("ckpt.tmp", "ckpt")
        with open(self.out.get_path(), "w") as f:
            f.write(str(self.steps))


class FailJob(Job):
    """Fails while the file ``fail_flag`` exists in the project directory."""

    def __init__(self, flag):
        self.flag = flag
        self.out = self.output_path("out.txt")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self):
        with open("attempts", "a") as f:
            f.write("x\n")
        if os.path.exists(self.flag):
            raise RuntimeError(f"flag file {self.flag} exists")
        with open(self.out.get_path(), "w") as f:
            f.write("ok")


class PidJob(Job):
    """Records every process that runs it (to prove a task runs once with two managers)."""

    def __init__(self, name, sleep=2.0):
        self.name = name
        self.sleep = sleep
        self.out = self.output_path("out.txt")

    def run(self):
        _record("start", self.name, 1)
        time.sleep(self.sleep)
        with open(self.out.get_path(), "w") as f:
            f.write(self.name)


class GrowJob(Job):
    """Adds an input in ``update()`` once its first input exists: a SleepJob named by that input's value."""

    def __init__(self, length):
        self.length = length
        self.extra = None
        self.out = self.output_path("out.txt")

    def update(self):
        self.extra = SleepJob("y" * self.length.get(), sleep=0).out

    def run(self):
        with open(self.out.get_path(), "w") as f:
            f.write(open(self.extra.get_path()).read() + "!")


class FlakyJob(Job):
    """Fails its first ``failures`` runs (counted in its work dir), then succeeds; ``tries`` as in Task."""

    def __init__(self, failures, tries=1):
        self.failures = failures
        self.tries = tries
        self.out = self.output_path("out.txt")

    def tasks(self):
        yield Task("run", tries=self.tries, rqmt={"mem": 0.5})

    def run(self):
        with open("attempts", "a") as f:
            f.write(f"{os.getpid()}\n")
        attempt = len(open("attempts").read().split())
        print(f"attempt {attempt}")
        if attempt <= self.failures:
            raise RuntimeError(f"flaky failure {attempt}")
        with open(self.out.get_path(), "w") as f:
            f.write(f"ok after {attempt}")


class ChunkJob(Job):
    """``Task("run", args=range(n), parallel=parallel)``; records which process ran each arg."""

    def __init__(self, n, parallel=0):
        self.n = n
        self.parallel = parallel
        self.out = self.output_path("out.txt")

    def tasks(self):
        yield Task("run", args=list(range(self.n)), parallel=self.parallel, rqmt={"mem": 0.5})
        yield Task("collect", mini_task=True)

    def run(self, i):
        _record("arg", str(i), 1)
        with open(f"arg.{i}", "w") as f:
            f.write(str(os.getpid()))

    def collect(self):
        with open(self.out.get_path(), "w") as f:
            f.write(" ".join(open(f"arg.{i}").read() for i in range(self.n)))


class ContinuableJob(Job):
    """A task with ``continuable=True`` (rejected by this core)."""

    def __init__(self):
        self.out = self.output_path("out.txt")

    def tasks(self):
        yield Task("run", continuable=True)

    def run(self):
        with open(self.out.get_path(), "w") as f:
            f.write("ran")


_CHILD = r"""
import fcntl, os, sys, time
steps, step_time = int(sys.argv[1]), float(sys.argv[2])
with open("children", "a") as f:
    f.write(f"{os.getpid()}\n")
lock = open("exclusive", "w")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    open("CONCURRENT", "a").write(f"{os.getpid()}\n")
    fcntl.flock(lock, fcntl.LOCK_EX)
start = int(open("ckpt").read()) if os.path.exists("ckpt") else 0
for i in range(start, steps):
    time.sleep(step_time)
    print(f"step {i + 1} of {steps}", flush=True)
    with open("ckpt.tmp", "w") as f:
        f.write(str(i + 1))
    os.replace("ckpt.tmp", "ckpt")
"""


class SpawnJob(Job):
    """Shaped like ReturnnTrainingJob: ``create_files`` and ``plot`` are mini tasks, the resumable ``run``
    starts a long-running child in a session of its own (as RETURNN/torchrun may) and waits for it. The
    child counts with a checkpoint in the work dir, appends its pid to ``children`` and, if another
    child holds ``exclusive``, records itself in ``CONCURRENT``. ``plot`` sleeps ``plot_sleep`` s on its
    first start; ``plot_mini=False`` makes it a plain (not resumable) task."""

    def __init__(self, steps, step_time=0.2, plot_sleep=0.0, plot_mini=True):
        self.steps = steps
        self.step_time = step_time
        self.plot_sleep = plot_sleep
        self.plot_mini = plot_mini
        self.out = self.output_path("count.txt")
        self.plot_out = self.output_path("plot.txt")

    def tasks(self):
        yield Task("create_files", mini_task=True)
        yield Task("run", resume="run", rqmt={"mem": 0.5})
        yield Task("plot", mini_task=self.plot_mini, rqmt={"mem": 0.5})

    def create_files(self):
        with open("config", "w") as f:
            f.write(f"{self.steps}\n")

    def run(self):
        import subprocess
        import sys

        subprocess.check_call(
            [sys.executable, "-c", _CHILD, str(self.steps), str(self.step_time)], start_new_session=True
        )
        with open(self.out.get_path(), "w") as f:
            f.write(open("ckpt").read())

    def plot(self):
        first = not os.path.exists("plot_starts")
        with open("plot_starts", "a") as f:
            f.write(f"{os.getpid()}\n")
        if first:
            time.sleep(self.plot_sleep)
        with open(self.plot_out.get_path(), "w") as f:
            f.write("plot of " + open(self.out.get_path()).read())


class SubprocessFailJob(Job):
    """Runs a child that fails with ``message``: the worker raises a bare CalledProcessError."""

    def __init__(self, message):
        self.message = message
        self.out = self.output_path("out.txt")

    def tasks(self):
        yield Task("run", rqmt={"mem": 0.5})

    def run(self):
        import subprocess
        import sys

        print("loading the checkpoint", flush=True)
        subprocess.check_call([sys.executable, "-c", f"raise ValueError({self.message!r})"])
