"""LibriSpeech download jobs: the normalized LM text and the transcriptions of a subset."""

import os

from recipe.data.download import download
from recipe.data.librispeech import LM_CORPUS_URL, SUBSET_SHA256, SUBSET_URL, read_transcriptions_from_tar
from recipe.data.text_dict import write_text_dict
from sisyphus import Job, Task


class DownloadLibriSpeechLmCorpusJob(Job):
    """Download ``librispeech-lm-norm.txt.gz`` (openslr resource 11, ~40M upper-case sentences).

    ``checksum`` (sha256 hex) is required: openslr publishes no sha256 for this file, so pass the
    digest you trust, or ``None`` to skip the check (``out_sha256`` then tells the digest to pin).
    Outputs: ``out_corpus_file`` (``librispeech-lm-norm.txt.gz``), ``out_sha256``.
    """

    def __init__(self, *, checksum: str | None, url: str = LM_CORPUS_URL) -> None:
        self.checksum = checksum
        self.url = url
        self.out_corpus_file = self.output_path("librispeech-lm-norm.txt.gz")
        self.out_sha256 = self.output_var("sha256")

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 1, "time": 4})

    def run(self) -> None:
        self.out_sha256.set(download(self.url, self.out_corpus_file, sha256=self.checksum))


class DownloadLibriSpeechTranscriptionsJob(Job):
    """Download a LibriSpeech subset tarball and keep only its transcriptions, as a normalized text dict.

    Tags as i6_core: ``<subset>/<utt-id>/<utt-id>``; texts lowercased unless ``lowercase=False``.
    ``url`` defaults to the openslr tarball of ``subset``; ``checksum`` (sha256 hex) defaults to the
    published digest of that tarball, and is not checked for a custom ``url`` unless given.
    The tarball is deleted after reading. Outputs: ``out_text_dict``, ``out_num_seqs``, ``out_sha256``.
    """

    def __init__(
        self, subset: str, *, url: str | None = None, checksum: str | None = None, lowercase: bool = True
    ) -> None:
        if url is None and subset not in SUBSET_SHA256:
            raise ValueError(f"unknown LibriSpeech subset {subset!r}; known: {sorted(SUBSET_SHA256)}")
        self.subset = subset
        self.url = url
        self.checksum = checksum
        self.lowercase = lowercase
        self.out_text_dict = self.output_path("text_dictionary.py.gz")
        self.out_num_seqs = self.output_var("num_seqs")
        self.out_sha256 = self.output_var("sha256")

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 1, "time": 2})

    def run(self) -> None:
        url = self.url or SUBSET_URL.format(subset=self.subset)
        checksum = self.checksum if self.checksum or self.url else SUBSET_SHA256[self.subset]
        archive = f"{self.subset}.tar.gz"
        self.out_sha256.set(download(url, archive, sha256=checksum))
        transcriptions = read_transcriptions_from_tar(archive, self.subset, lowercase=self.lowercase)
        os.remove(archive)
        write_text_dict(self.out_text_dict, transcriptions)
        self.out_num_seqs.set(len(transcriptions))
