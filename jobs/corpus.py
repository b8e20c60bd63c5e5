"""Corpus jobs: the KJV default corpus, any text file as a corpus, the train/dev/test split, merging
text dicts and normalizing text-lines files.

All corpora are i6 text dicts ``{seq_tag: text}`` (``text_dictionary.py.gz``, see :mod:`recipe.data.text_dict`).
"""

from collections.abc import Sequence

from recipe.data.corpus import KJV_ALL_VERSES, kjv_corpus, split_corpus, text_file_corpus
from recipe.data.text_dict import (
    TextFormatError,
    read_lines,
    read_seq_tags,
    read_text_dict,
    write_text_dict,
    write_text_lines,
)
from recipe.data.text_normalization import normalize_text
from sisyphus import Job, Task, tk


class KjvCorpusJob(Job):
    """The King James Bible (Debian package ``bible-kjv``) as a normalized text dict ``{kjv/Ge1:1: text}``.

    Outputs: ``out_text_dict``, ``out_num_seqs`` (31,102 for all verses).
    """

    def __init__(
        self, *, lowercase: bool = True, verses: str = KJV_ALL_VERSES, bible_exe: str = "bible"
    ) -> None:
        self.lowercase = lowercase
        self.verses = verses
        self.bible_exe = bible_exe
        self.out_text_dict = self.output_path("text_dictionary.py.gz")
        self.out_num_seqs = self.output_var("num_seqs")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        corpus = kjv_corpus(lowercase=self.lowercase, verses=self.verses, bible_exe=self.bible_exe)
        write_text_dict(self.out_text_dict, corpus)
        self.out_num_seqs.set(len(corpus))


class TextFileCorpusJob(Job):
    """A user text file (a sentence per line, optionally gzipped) as a text dict ``{<name>/line-<n>: text}``.

    ``n`` is the 1-based line number in the file; lines empty after normalization are dropped.
    Outputs: ``out_text_dict``, ``out_num_seqs``.
    """

    def __init__(
        self,
        text_file: tk.Path,
        name: str,
        *,
        lowercase: bool = True,
        normalize: bool = True,
        encoding: str = "utf-8",
    ) -> None:
        self.text_file = text_file
        self.name = name
        self.lowercase = lowercase
        self.normalize = normalize
        self.encoding = encoding
        self.out_text_dict = self.output_path("text_dictionary.py.gz")
        self.out_num_seqs = self.output_var("num_seqs")

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 4, "time": 2})

    def run(self) -> None:
        corpus = text_file_corpus(
            self.text_file,
            self.name,
            lowercase=self.lowercase,
            normalize=self.normalize,
            encoding=self.encoding,
        )
        write_text_dict(self.out_text_dict, corpus)
        self.out_num_seqs.set(len(corpus))


class SplitCorpusJob(Job):
    """Deterministic train/dev/test split of a text dict by a hash of the sequence tag.

    A tag goes to dev if ``sha256(seed + tag)`` as a fraction in [0, 1) is below ``dev_fraction``,
    to test if below ``dev_fraction + test_fraction``, else to train
    (:func:`recipe.data.corpus.split_corpus`). ``exclude_tags`` (tags, and/or ``tk.Path`` s of text dicts
    or tag lists, e.g. the rescoring references) are removed from train and must all exist in the corpus.

    Outputs: ``out_train_text_dict``, ``out_dev_text_dict``, ``out_test_text_dict`` and ``out_num_seqs``
    (``{"train": n, "dev": n, "test": n, "excluded": n}``).
    """

    def __init__(
        self,
        text_dict: tk.Path,
        *,
        dev_fraction: float = 0.01,
        test_fraction: float = 0.01,
        exclude_tags: Sequence[str | tk.Path] | tk.Path | None = None,
        seed: str = "",
    ) -> None:
        self.text_dict = text_dict
        self.dev_fraction = dev_fraction
        self.test_fraction = test_fraction
        self.exclude_tags = exclude_tags
        self.seed = seed
        self.out_train_text_dict = self.output_path("train.text_dictionary.py.gz")
        self.out_dev_text_dict = self.output_path("dev.text_dictionary.py.gz")
        self.out_test_text_dict = self.output_path("test.text_dictionary.py.gz")
        self.out_num_seqs = self.output_var("num_seqs")

    def tasks(self):
        yield Task("run", mini_task=True)

    def _exclude_tags(self) -> list[str]:
        items = (
            [self.exclude_tags] if isinstance(self.exclude_tags, tk.Path) else list(self.exclude_tags or [])
        )
        tags: list[str] = []
        for item in items:
            tags.extend([item] if isinstance(item, str) else read_seq_tags(item))
        return tags

    def run(self) -> None:
        split = split_corpus(
            read_text_dict(self.text_dict),
            dev_fraction=self.dev_fraction,
            test_fraction=self.test_fraction,
            exclude_tags=self._exclude_tags(),
            seed=self.seed,
            source=str(self.text_dict),
        )
        write_text_dict(self.out_train_text_dict, split.train)
        write_text_dict(self.out_dev_text_dict, split.dev)
        write_text_dict(self.out_test_text_dict, split.test)
        self.out_num_seqs.set(
            {
                "train": len(split.train),
                "dev": len(split.dev),
                "test": len(split.test),
                "excluded": len(split.excluded),
            }
        )


class MergeTextDictsJob(Job):
    """Several text dicts as one, in the given order (e.g. the LibriSpeech subsets train-clean-100,
    train-clean-360 and train-other-500 as train-960); a tag in two of them raises ValueError.

    Outputs: ``out_text_dict``, ``out_num_seqs``.
    """

    def __init__(self, text_dicts: Sequence[tk.Path]) -> None:
        self.text_dicts = list(text_dicts)
        self.out_text_dict = self.output_path("text_dictionary.py.gz")
        self.out_num_seqs = self.output_var("num_seqs")

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 4, "time": 1})

    def run(self) -> None:
        merged: dict[str, str] = {}
        for path in self.text_dicts:
            for tag, text in read_text_dict(path).items():
                if tag in merged:
                    raise ValueError(f"{path}: sequence tag {tag!r} is already in an earlier text dict")
                merged[tag] = text
        write_text_dict(self.out_text_dict, merged)
        self.out_num_seqs.set(len(merged))


class NormalizeTextLinesJob(Job):
    """Text-lines files (optionally gzipped) concatenated into one, every line normalized as the corpora
    (:func:`recipe.data.text_normalization.normalize_text`: lowercase unless ``lowercase=False``);
    lines that end up empty are dropped. Streams, so it suits the ~40M lines of the LibriSpeech LM text.

    Outputs: ``out_text_lines`` (``text_lines.txt.gz``), ``out_num_lines``.
    """

    def __init__(self, text_files: Sequence[tk.Path], *, lowercase: bool = True) -> None:
        self.text_files = list(text_files)
        self.lowercase = lowercase
        self.out_text_lines = self.output_path("text_lines.txt.gz")
        self.out_num_lines = self.output_var("num_lines")

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 2, "time": 4})

    def _lines(self):
        for path in self.text_files:
            for _, line in read_lines(path):
                text = normalize_text(line, lowercase=self.lowercase)
                if text:
                    yield text

    def run(self) -> None:
        count = write_text_lines(self.out_text_lines, self._lines())
        if not count:
            raise TextFormatError(f"{self.text_files}: no non-empty line in these files")
        self.out_num_lines.set(count)
