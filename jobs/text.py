"""Text format conversion jobs."""

from recipe.data.text_dict import read_text_dict, write_text_lines
from sisyphus import Job, Task, tk


class TextDictToTextLinesJob(Job):
    """The texts of a text dict, one per line in dict order (as i6_core's job of the same name).

    Output: ``out_text_lines`` (``text_lines.txt``, or ``text_lines.txt.gz`` with ``gzip=True``).
    """

    def __init__(self, text_dict: tk.Path, gzip: bool = False) -> None:
        self.text_dict = text_dict
        self.gzip = gzip
        self.out_text_lines = self.output_path("text_lines.txt.gz" if gzip else "text_lines.txt")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        write_text_lines(self.out_text_lines, read_text_dict(self.text_dict).values())
