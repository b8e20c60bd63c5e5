"""Converter jobs: n-best lists of other toolkits to the RETURNN search-output format that
``RescoreNBestJob`` and the score-combination jobs read (formats in :mod:`recipe.asr.nbest_formats`).

Each job writes ``out_nbest`` (``nbest.py.gz``, ``{tag: [(score, text), ...]}``) and, where the format
carries references, ``out_references`` (i6 text dict). With ``normalize=True`` the texts are normalized
like the project's references (:func:`recipe.data.text_normalization.normalize_text`) and identical
hypotheses merged (best score kept, :func:`recipe.asr.nbest.deduplicate`).
"""

from collections.abc import Mapping

from recipe.asr.nbest import NBestList, deduplicate
from recipe.asr.nbest_formats import (
    read_espnet_json,
    read_hyporadise_json,
    read_icefall_recogs,
    read_kaldi_nbest,
    read_kaldi_text,
)
from recipe.asr.search_output import write_search_output
from recipe.data.text_dict import write_text_dict
from recipe.data.text_normalization import normalize_text
from sisyphus import Job, Task, tk


def _write(job: Job, nbest: Mapping[str, NBestList], references: Mapping[str, str] | None) -> None:
    if job.normalize:
        nbest = {tag: deduplicate([(s, normalize_text(t)) for s, t in hyps]) for tag, hyps in nbest.items()}
        references = None if references is None else {t: normalize_text(x) for t, x in references.items()}
    write_search_output(job.out_nbest.get_path(), nbest)
    if references is not None:
        write_text_dict(job.out_references.get_path(), references)
    job.out_num_seqs.set(len(nbest))


class KaldiNBestToSearchOutputJob(Job):
    """Kaldi n-best archives (``<utt>-<n> words`` text, optional ``lm_cost``/``ac_cost`` archives and
    ``words.txt`` for integer ids) to search output; first-pass score ``-(lm_cost + acoustic_scale *
    ac_cost)``. ``references``: an optional Kaldi ``text`` file (``data/<set>/text``), written as
    ``out_references``."""

    def __init__(
        self,
        text: tk.Path,
        *,
        lm_cost: tk.Path | None = None,
        ac_cost: tk.Path | None = None,
        acoustic_scale: float = 0.1,
        words: tk.Path | None = None,
        references: tk.Path | None = None,
        normalize: bool = False,
    ) -> None:
        self.text = text
        self.lm_cost = lm_cost
        self.ac_cost = ac_cost
        self.acoustic_scale = acoustic_scale
        self.words = words
        self.references = references
        self.normalize = normalize
        self.out_nbest = self.output_path("nbest.py.gz")
        self.out_references = self.output_path("references.py.gz") if references is not None else None
        self.out_num_seqs = self.output_var("num_seqs")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        def path(p):
            return None if p is None else p.get_path()

        nbest = read_kaldi_nbest(
            self.text.get_path(),
            lm_cost=path(self.lm_cost),
            ac_cost=path(self.ac_cost),
            acoustic_scale=self.acoustic_scale,
            words=path(self.words),
        )
        references = None if self.references is None else read_kaldi_text(self.references.get_path())
        _write(self, nbest, references)


class EspnetNBestToSearchOutputJob(Job):
    """ESPnet1's n-best ``data.json`` (``{"utts": {utt: {"output": [{"rec_text", "score", "text"}]}}}``)
    to search output and references."""

    def __init__(self, data_json: tk.Path, *, normalize: bool = False) -> None:
        self.data_json = data_json
        self.normalize = normalize
        self.out_nbest = self.output_path("nbest.py.gz")
        self.out_references = self.output_path("references.py.gz")
        self.out_num_seqs = self.output_var("num_seqs")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        _write(self, *read_espnet_json(self.data_json.get_path()))


class IcefallRecogsToSearchOutputJob(Job):
    """icefall's ``recogs-*.txt`` (1-best ``hyp=[...]`` and ``ref=[...]`` per cut) to search output
    (one-entry lists, score 0) and references."""

    def __init__(self, recogs: tk.Path, *, normalize: bool = False) -> None:
        self.recogs = recogs
        self.normalize = normalize
        self.out_nbest = self.output_path("nbest.py.gz")
        self.out_references = self.output_path("references.py.gz")
        self.out_num_seqs = self.output_var("num_seqs")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        _write(self, *read_icefall_recogs(self.recogs.get_path()))


class HyporadiseToSearchOutputJob(Job):
    """HyPoradise JSON (``[{"input": [hypotheses], "output": reference}, ...]``) to search output and
    references; tags from ``id`` or ``<prefix><index>``, first-pass score ``-rank_penalty * rank``."""

    def __init__(
        self,
        hyporadise_json: tk.Path,
        *,
        prefix: str = "",
        rank_penalty: float = 1.0,
        normalize: bool = False,
    ) -> None:
        self.hyporadise_json = hyporadise_json
        self.prefix = prefix
        self.rank_penalty = rank_penalty
        self.normalize = normalize
        self.out_nbest = self.output_path("nbest.py.gz")
        self.out_references = self.output_path("references.py.gz")
        self.out_num_seqs = self.output_var("num_seqs")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        nbest, references = read_hyporadise_json(
            self.hyporadise_json.get_path(), prefix=self.prefix, rank_penalty=self.rank_penalty
        )
        _write(self, nbest, references)
