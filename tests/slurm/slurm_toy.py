"""Toy jobs for the Slurm tests; copied into a temporary project as recipe/slurm_toy.py."""

import os
import time

from sisyphus import Job, Task


class WaitJob(Job):
    """Waits (at most ``timeout`` s) until the file ``release`` exists, then writes its name."""

    def __init__(self, name, release, timeout=120.0, sbatch_args=None):
        self.name = name
        self.release = release
        self.timeout = timeout
        self.sbatch_args = sbatch_args
        self.out = self.output_path("out.txt")

    def tasks(self):
        rqmt = {"cpu": 1, "mem": 0.25, "time": 0.1}
        if self.sbatch_args:
            rqmt["sbatch_args"] = self.sbatch_args
        yield Task("run", rqmt=rqmt)

    def run(self):
        with open("starts", "a") as f:
            f.write(f"{os.getpid()} {os.environ.get('SLURM_JOB_ID')}\n")
        end = time.time() + self.timeout
        while not os.path.exists(self.release) and time.time() < end:
            time.sleep(0.2)
        with open(self.out.get_path(), "w") as f:
            f.write(self.name)


class HogJob(Job):
    """Holds ``mb`` MB for a while (under ``mem`` GB rqmt) while the file ``flag`` exists."""

    def __init__(self, flag, mb=600, mem=0.2):
        self.flag = flag
        self.mb = mb
        self.mem = mem
        self.out = self.output_path("out.txt")

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": self.mem, "time": 0.1})

    def run(self):
        if os.path.exists(self.flag):
            block = b"\1" * (self.mb * 1024 * 1024)
            time.sleep(60)
            del block
        with open(self.out.get_path(), "w") as f:
            f.write("ok")


class PartsJob(Job):
    """A task with ``n`` parallel parts (one Slurm array job); part i writes ``part.<i>``."""

    def __init__(self, n):
        self.n = n
        self.out = self.output_path("parts.txt")

    def tasks(self):
        yield Task("part", args=list(range(1, self.n + 1)), rqmt={"cpu": 1, "mem": 0.25, "time": 0.1})
        yield Task("collect", mini_task=True)

    def part(self, i):
        with open(f"part.{i}", "w") as f:
            f.write(f"{i} {os.environ.get('SLURM_ARRAY_JOB_ID')} {os.environ.get('SLURM_ARRAY_TASK_ID')}\n")

    def collect(self):
        text = "".join(open(f"part.{i}").read() for i in range(1, self.n + 1))
        with open(self.out.get_path(), "w") as f:
            f.write(text)
