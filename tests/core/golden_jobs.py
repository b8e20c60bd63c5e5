"""The job classes of ../shared/design/sisyphus_golden_ids.md, loaded as module ``recipe.golden``."""

import enum

from sisyphus import Job, Task


class EchoJob(Job):
    def __init__(self, value, other=None):
        self.value = value
        self.other = other
        self.out = self.output_path("out.txt")

    def tasks(self):
        yield Task("run", mini_task=True)


class DefaultsJob(Job):
    __sis_hash_exclude__ = {"verbose": False}

    def __init__(self, text, *, size=10, verbose=False):
        self.text = text
        self.size = size
        self.verbose = verbose
        self.out = self.output_path("out")
        self.out_var = self.output_var("count")

    def tasks(self):
        yield Task("run")


class VersionedJob(Job):
    __sis_version__ = 2

    def __init__(self, x):
        self.x = x
        self.out = self.output_path("out")


class Color(enum.Enum):
    RED = "red"
