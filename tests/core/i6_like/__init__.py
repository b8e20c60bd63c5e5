"""i6_core-shaped jobs for the compatibility tests, copied into a temporary project as the package
``recipe/i6_like/`` (so ``__package__`` is dotted: ``recipe.i6_like``, or ``i6_like`` through the
``recipe/`` import path). They use the Sisyphus API the way i6_core does."""

import os
import shutil
import tempfile

from sisyphus import Job, Task, gs, setup_path, tk
from sisyphus.delayed_ops import DelayedFormat

rel_path = setup_path(__package__)  # data files next to this package, hashed independently of the project


class CorpusJob(Job):
    """Like i6_core's text jobs: reads a (cached) input file, counts lines with ``sh(..., True)``."""

    def __init__(self, text_file: tk.Path, prefix: str = "line"):
        self.text_file = text_file
        self.prefix = prefix
        self.out_text = self.output_path("corpus.txt", cached=True)
        self.out_num_lines = self.output_var("num_lines")
        self.out_dir = self.output_path("parts", directory=True)
        self.set_vis_name(f"Corpus {prefix}")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self):
        with tempfile.TemporaryDirectory(prefix=gs.TMP_PREFIX) as tmp:  # as i6_core does
            local = shutil.copy(self.text_file.get_cached_path(), os.path.join(tmp, "in.txt"))
            lines = [f"{self.prefix} {line.strip()}" for line in open(local)]
        with open(self.out_text.get_path(), "w") as f:
            f.write("\n".join(lines) + "\n")
        count = self.sh("wc -l < {out_text}", True)  # positional capture_output, as i6_core's HeadJob
        self.out_num_lines.set(int(count))
        assert os.path.isdir(self.out_dir.get_path())


class HeadJob(Job):
    """Keeps the first lines; the count is a DelayedFormat over a Variable (resolved in the task)."""

    def __init__(self, text_file: tk.Path, num_lines, cmd_template=None):
        self.text_file = text_file
        self.num_lines = num_lines
        self.cmd = cmd_template or DelayedFormat("head -n {} {}", num_lines, text_file)
        self.out = self.output_path("head.txt")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self):
        text = self.sh(f"{self.cmd.get()}", capture_output=True)
        with open(self.out.get_path(), "w") as f:
            f.write(text)
        with open(self.out.get_path() + ".cmd", "w") as f:
            f.write(str(self.cmd))


class ConfigJob(Job):
    """Like i6_core's ReturnnConfig.write: delayed values (paths included) become plain values."""

    def __init__(self, config: dict):
        self.config = config
        self.out_config = self.output_path("config.py")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self):
        from sisyphus.delayed_ops import DelayedBase

        def instanciate(obj):
            if isinstance(obj, DelayedBase):
                return obj.get()
            if isinstance(obj, dict):
                return {k: instanciate(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return type(obj)(instanciate(v) for v in obj)
            return obj

        with open(self.out_config.get_path(), "w") as f:
            for key, value in sorted(instanciate(self.config).items()):
                f.write(f"{key} = {value!r}\n")
