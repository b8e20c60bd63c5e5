"""Jobs that prepare data files for RETURNN datasets (see :mod:`recipe.returnn_glue.datasets` for the dicts)."""

from recipe.data.ogg_zip import write_text_ogg_zip
from recipe.data.text_dict import read_text_dict
from sisyphus import Job, Task, tk


class TextDictToOggZipJob(Job):
    """A text-only ogg zip (RETURNN ``OggZipDataset`` with ``audio=None``) from a text dict.

    Each entry keeps its tag as ``seq_name``; ``duration`` is a pseudo-duration for length sorting
    (:mod:`recipe.data.ogg_zip`). Output: ``out_ogg_zip`` (``out.ogg.zip``).
    """

    def __init__(self, text_dict: tk.Path) -> None:
        self.text_dict = text_dict
        self.out_ogg_zip = self.output_path("out.ogg.zip")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        write_text_ogg_zip(read_text_dict(self.text_dict), self.out_ogg_zip)
