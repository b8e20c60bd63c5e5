"""ASR evaluation jobs: demo n-best lists from a real recognizer, WER scoring, and LM score combination.

Files are in the RETURNN search-output format (:mod:`recipe.asr.search_output`): hypotheses
``{tag: [(score, text), ...]}`` or ``{tag: text}``, references as i6 text dicts ``{tag: text}``. LM scores
come from ``jobs.lm_eval.RescoreNBestJob`` (same tags and hypothesis order as the n-best file). WERs are
computed on normalized text (:func:`recipe.data.text_normalization.normalize_text`) unless ``normalize=False``.
"""

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from recipe.asr.demo_recognizer import DEFAULT_SPEED, DEFAULT_VOICE, recognize_nbest
from recipe.asr.nbest import NBestList, oracle_texts, take_best
from recipe.asr.sclite import format_ctm, format_stm, run_sclite
from recipe.asr.score_combination import (
    DEFAULT_LENGTH_SCALES,
    DEFAULT_LM_SCALES,
    evaluate_combination,
    evaluate_rescoring,
    format_trace,
    format_tuning_grid,
    rescore_combination,
    tune_combination,
    tune_scales,
)
from recipe.asr.search_output import best_text, read_nbest, read_search_output, write_search_output
from recipe.asr.wer import compute_wer, format_alignment, format_report, format_summary
from recipe.data.text_dict import read_text_dict, read_text_lines, write_text_dict
from recipe.data.text_normalization import normalize_text
from sisyphus import Job, Task, tk


def _value(x: Any) -> Any:
    """A tk.Variable's value, or ``x`` itself."""
    return x.get() if isinstance(x, tk.Variable) else x


def _normalized_nbest(nbest: Mapping[str, NBestList], normalize: bool) -> dict[str, NBestList]:
    """Texts normalized in place (no deduplication, so positions still match the LM scores)."""
    if not normalize:
        return dict(nbest)
    return {tag: [(s, normalize_text(t)) for s, t in hyps] for tag, hyps in nbest.items()}


def _normalized_refs(references: Mapping[str, str], normalize: bool) -> dict[str, str]:
    return {tag: normalize_text(t) if normalize else t for tag, t in references.items()}


def _read_lm_scores(
    nbest_path: tk.Path, lm_path: tk.Path
) -> tuple[dict[str, NBestList], dict[str, list[float]]]:
    """The n-best lists and their LM scores; raises ValueError naming the tag if the texts disagree."""
    nbest = read_nbest(nbest_path)
    lm_nbest = read_nbest(lm_path)
    for tag, hyps in nbest.items():
        if tag not in lm_nbest:
            raise ValueError(f"{lm_path}: no LM scores for tag {tag!r} of {nbest_path}")
        if [t for _, t in lm_nbest[tag]] != [t for _, t in hyps]:
            raise ValueError(f"{lm_path}: tag {tag!r}: hypotheses differ from those in {nbest_path}")
    return nbest, {tag: [s for s, _ in lm_nbest[tag]] for tag in nbest}


class DemoNBestJob(Job):
    """Demo n-best lists from a real recognizer: espeak-ng speech of each text, decoded by pocketsphinx.

    Texts of ``text_dict`` with at most ``max_words`` words are used, the first ``max_seqs`` of them
    (all if None). With ``lm_text`` (a text-lines file, e.g. the training text) pocketsphinx decodes with
    a trigram LM estimated on it instead of its bundled English LM. See :mod:`recipe.asr.demo_recognizer`
    for the first-pass score scale. Outputs: ``out_nbest`` (``nbest.py.gz``, deduplicated,
    ``nbest_size`` entries or fewer), ``out_references`` (text dict of the same tags), ``out_report``
    (first-pass and oracle WER, seconds per utterance), ``out_num_seqs``.
    """

    def __init__(
        self,
        text_dict: tk.Path,
        nbest_size: int = 20,
        *,
        lm_text: tk.Path | None = None,
        max_seqs: int | None = None,
        max_words: int | None = 40,
        voice: str = DEFAULT_VOICE,
        speed: int = DEFAULT_SPEED,
    ) -> None:
        self.text_dict = text_dict
        self.nbest_size = nbest_size
        self.lm_text = lm_text
        self.max_seqs = max_seqs
        self.max_words = max_words
        self.voice = voice
        self.speed = speed
        self.out_nbest = self.output_path("nbest.py.gz")
        self.out_references = self.output_path("references.py.gz")
        self.out_report = self.output_path("report.txt")
        self.out_num_seqs = self.output_var("num_seqs")

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 4, "time": 4})

    def run(self) -> None:
        corpus = read_text_dict(self.text_dict)
        texts = {
            t: x for t, x in corpus.items() if self.max_words is None or len(x.split()) <= self.max_words
        }
        texts = dict(list(texts.items())[: self.max_seqs])
        if not texts:
            raise ValueError(f"{self.text_dict}: no text with at most {self.max_words} words")
        lm_sentences = read_text_lines(self.lm_text) if self.lm_text is not None else None
        start = time.monotonic()
        nbest = recognize_nbest(
            texts,
            self.nbest_size,
            "recognizer",
            lm_sentences=lm_sentences,
            voice=self.voice,
            speed=self.speed,
        )
        seconds = time.monotonic() - start
        references = _normalized_refs(texts, True)
        write_search_output(self.out_nbest.get_path(), nbest)
        write_text_dict(self.out_references.get_path(), references)
        results = {
            "first-pass": compute_wer(references, take_best(nbest)),
            "oracle": compute_wer(references, oracle_texts(nbest, references)),
        }
        sizes = [len(h) for h in nbest.values()]
        with open(self.out_report.get_path(), "w", encoding="utf-8") as f:
            f.write(
                f"{len(texts)} of {len(corpus)} texts (at most {self.max_words} words), LM:"
                f" {'trigram on ' + str(self.lm_text) if self.lm_text else 'pocketsphinx en-us'}\n"
                f"{seconds:.1f} s in total, {seconds / len(texts):.2f} s per utterance (with setup)\n"
                f"n-best sizes: min {min(sizes)}, mean {sum(sizes) / len(sizes):.1f}, max {max(sizes)}\n\n"
                + format_summary(results)
                + "\n"
            )
        self.out_num_seqs.set(len(nbest))


class ComputeWerJob(Job):
    """WER of hypotheses (search output; n-best lists are reduced to their best-scoring entry).

    ``references`` is a text dict. Outputs: ``out_wer`` (percent), ``out_num_errors``, ``out_ref_words``,
    ``out_report`` (summary, warnings and an sclite-like per-utterance alignment).
    """

    def __init__(
        self, hypotheses: tk.Path, references: tk.Path, *, normalize: bool = True, expect_full: bool = True
    ) -> None:
        self.hypotheses = hypotheses
        self.references = references
        self.normalize = normalize
        self.expect_full = expect_full
        self.out_wer = self.output_var("wer")
        self.out_num_errors = self.output_var("num_errors")
        self.out_ref_words = self.output_var("ref_words")
        self.out_report = self.output_path("report.txt")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        references = _normalized_refs(read_text_dict(self.references), self.normalize)
        hypotheses: dict[str, str | None] = {}
        for tag, value in read_search_output(self.hypotheses).items():
            text = best_text(value)
            hypotheses[tag] = normalize_text(text) if self.normalize and text is not None else text
        result = compute_wer(references, hypotheses, expect_full=self.expect_full)
        with open(self.out_report.get_path(), "w", encoding="utf-8") as f:
            f.write(format_report(result, str(self.hypotheses)))
        self.out_num_errors.set(result.num_errors)
        self.out_ref_words.set(result.num_ref_words)
        self.out_wer.set(result.wer)


class TuneScoreCombinationJob(Job):
    """Grid search of ``lm_scale`` and ``length_scale`` in ``first_pass + lm_scale*lm + length_scale*words``.

    Chooses the pair with the lowest WER on this (dev) n-best list, the first in grid order on ties (see
    :mod:`recipe.asr.score_combination`). Outputs: ``out_lm_scale``, ``out_length_scale``, ``out_wer``
    (dev WER at the choice), ``out_grid`` (WER table over the grid), ``out_report``.
    """

    def __init__(
        self,
        nbest: tk.Path,
        lm_scores: tk.Path,
        references: tk.Path,
        *,
        lm_scales: Sequence[float] = DEFAULT_LM_SCALES,
        length_scales: Sequence[float] = DEFAULT_LENGTH_SCALES,
        normalize: bool = True,
    ) -> None:
        self.nbest = nbest
        self.lm_scores = lm_scores
        self.references = references
        self.lm_scales = tuple(lm_scales)
        self.length_scales = tuple(length_scales)
        self.normalize = normalize
        self.out_lm_scale = self.output_var("lm_scale")
        self.out_length_scale = self.output_var("length_scale")
        self.out_wer = self.output_var("wer")
        self.out_grid = self.output_path("grid.txt")
        self.out_report = self.output_path("report.txt")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        nbest, lm_scores = _read_lm_scores(self.nbest, self.lm_scores)
        nbest = _normalized_nbest(nbest, self.normalize)
        references = _normalized_refs(read_text_dict(self.references), self.normalize)
        result = tune_scales(
            nbest, lm_scores, references, lm_scales=self.lm_scales, length_scales=self.length_scales
        )
        with open(self.out_grid.get_path(), "w", encoding="utf-8") as f:
            f.write(format_tuning_grid(result) + "\n")
        results = evaluate_rescoring(nbest, lm_scores, references, result.lm_scale, result.length_scale)
        with open(self.out_report.get_path(), "w", encoding="utf-8") as f:
            f.write(
                f"lm_scale {result.lm_scale:g}, length_scale {result.length_scale:g}: dev WER {result.wer:.2f}\n\n"
                + format_summary(results)
                + "\n"
            )
        self.out_lm_scale.set(result.lm_scale)
        self.out_length_scale.set(result.length_scale)
        self.out_wer.set(result.wer)


class ApplyScoreCombinationJob(Job):
    """Rescore an n-best list with given (e.g. dev-tuned) scales; WERs side by side.

    ``lm_scale``/``length_scale`` may be numbers or tk.Variables (``TuneScoreCombinationJob`` outputs).
    Outputs: ``out_search_results`` (``{tag: best text}``, gzipped), ``out_wer`` (rescored),
    ``out_first_pass_wer``, ``out_oracle_wer`` (percent), ``out_report`` (summary table and the
    per-utterance alignment of the rescored output).
    """

    def __init__(
        self,
        nbest: tk.Path,
        lm_scores: tk.Path,
        references: tk.Path,
        lm_scale: float | tk.Variable,
        length_scale: float | tk.Variable,
        *,
        normalize: bool = True,
    ) -> None:
        self.nbest = nbest
        self.lm_scores = lm_scores
        self.references = references
        self.lm_scale = lm_scale
        self.length_scale = length_scale
        self.normalize = normalize
        self.out_search_results = self.output_path("search_results.py.gz")
        self.out_wer = self.output_var("wer")
        self.out_first_pass_wer = self.output_var("first_pass_wer")
        self.out_oracle_wer = self.output_var("oracle_wer")
        self.out_report = self.output_path("report.txt")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        lm_scale, length_scale = float(_value(self.lm_scale)), float(_value(self.length_scale))
        _apply_combination(self, [self.lm_scores], [lm_scale], length_scale, f"lm_scale {lm_scale:g}")


def _read_all_lm_scores(
    nbest_path: tk.Path, lm_paths: Sequence[tk.Path]
) -> tuple[dict[str, NBestList], list[dict[str, list[float]]]]:
    nbest: dict[str, NBestList] = {}
    scores = []
    for lm_path in lm_paths:
        nbest, lm_scores = _read_lm_scores(nbest_path, lm_path)
        scores.append(lm_scores)
    return nbest, scores


def _lm_names(names: Sequence[str] | None, lm_scores: Sequence[tk.Path]) -> list[str]:
    if names is None:
        return [f"lm{k + 1}" for k in range(len(lm_scores))]
    if len(names) != len(lm_scores):
        raise ValueError(f"{len(names)} names for {len(lm_scores)} LM score files")
    return list(names)


class TuneLmCombinationJob(Job):
    """Tune ``first_pass + sum_k lm_scales[k] * lm_k + length_scale * words`` on a dev n-best list by WER,
    for any number of LM score files (``jobs.lm_eval.RescoreNBestJob`` outputs of the same n-best file).

    One LM: the grid search of :class:`TuneScoreCombinationJob`; several: block coordinate descent over
    the same grids with at most ``max_evaluations`` WER evaluations (:func:`recipe.asr.score_combination.
    tune_combination`). ``names`` label the LMs in the trace. Outputs: ``out_lm_scales`` (list, one per LM),
    ``out_length_scale``, ``out_wer`` (dev WER at the choice), ``out_trace`` (every search step),
    ``out_report`` (trace and first-pass/oracle/rescored summary).
    """

    def __init__(
        self,
        nbest: tk.Path,
        lm_scores: Sequence[tk.Path],
        references: tk.Path,
        *,
        names: Sequence[str] | None = None,
        lm_scales: Sequence[float] = DEFAULT_LM_SCALES,
        length_scales: Sequence[float] = DEFAULT_LENGTH_SCALES,
        max_evaluations: int = 10_000,
        normalize: bool = True,
    ) -> None:
        self.nbest = nbest
        self.lm_scores = list(lm_scores)
        self.references = references
        self.names = _lm_names(names, self.lm_scores)
        self.lm_scales = tuple(lm_scales)
        self.length_scales = tuple(length_scales)
        self.max_evaluations = max_evaluations
        self.normalize = normalize
        self.out_lm_scales = self.output_var("lm_scales")
        self.out_length_scale = self.output_var("length_scale")
        self.out_wer = self.output_var("wer")
        self.out_trace = self.output_path("trace.txt")
        self.out_report = self.output_path("report.txt")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        nbest, lm_scores = _read_all_lm_scores(self.nbest, self.lm_scores)
        nbest = _normalized_nbest(nbest, self.normalize)
        references = _normalized_refs(read_text_dict(self.references), self.normalize)
        result = tune_combination(
            nbest,
            lm_scores,
            references,
            lm_scales=self.lm_scales,
            length_scales=self.length_scales,
            max_evaluations=self.max_evaluations,
        )
        trace = format_trace(result, self.names)
        with open(self.out_trace.get_path(), "w", encoding="utf-8") as f:
            f.write(trace + "\n")
        results = evaluate_combination(nbest, lm_scores, references, result.lm_scales, result.length_scale)
        with open(self.out_report.get_path(), "w", encoding="utf-8") as f:
            f.write(trace + "\n\n" + format_summary(results) + "\n")
        self.out_lm_scales.set(list(result.lm_scales))
        self.out_length_scale.set(result.length_scale)
        self.out_wer.set(result.wer)


class ApplyLmCombinationJob(Job):
    """Rescore an n-best list with several LMs and given (e.g. dev-tuned) scales; WERs side by side.

    ``lm_scales`` is a list (one per LM score file) or a tk.Variable holding one
    (``TuneLmCombinationJob.out_lm_scales``); ``length_scale`` a number or tk.Variable. Outputs as
    :class:`ApplyScoreCombinationJob`: ``out_search_results``, ``out_wer``, ``out_first_pass_wer``,
    ``out_oracle_wer``, ``out_report``.
    """

    def __init__(
        self,
        nbest: tk.Path,
        lm_scores: Sequence[tk.Path],
        references: tk.Path,
        lm_scales: Sequence[float] | tk.Variable,
        length_scale: float | tk.Variable,
        *,
        normalize: bool = True,
    ) -> None:
        self.nbest = nbest
        self.lm_scores = list(lm_scores)
        self.references = references
        self.lm_scales = lm_scales if isinstance(lm_scales, tk.Variable) else [float(x) for x in lm_scales]
        self.length_scale = length_scale
        self.normalize = normalize
        self.out_search_results = self.output_path("search_results.py.gz")
        self.out_wer = self.output_var("wer")
        self.out_first_pass_wer = self.output_var("first_pass_wer")
        self.out_oracle_wer = self.output_var("oracle_wer")
        self.out_report = self.output_path("report.txt")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        lm_scales = [float(x) for x in _value(self.lm_scales)]
        length_scale = float(_value(self.length_scale))
        scales = f"lm_scales {', '.join(f'{x:g}' for x in lm_scales)}"
        _apply_combination(self, self.lm_scores, lm_scales, length_scale, scales)


def _apply_combination(
    job: ApplyScoreCombinationJob | ApplyLmCombinationJob,
    lm_paths: Sequence[tk.Path],
    lm_scales: Sequence[float],
    length_scale: float,
    scales_text: str,
) -> None:
    """The run of both apply jobs: rescore ``job.nbest`` with the LM score files, write the search
    results, the report (``scales_text`` heads it) and the first-pass / oracle / rescored WERs."""
    nbest, lm_scores = _read_all_lm_scores(job.nbest, lm_paths)
    nbest = _normalized_nbest(nbest, job.normalize)
    references = _normalized_refs(read_text_dict(job.references), job.normalize)
    results = evaluate_combination(nbest, lm_scores, references, lm_scales, length_scale)
    best = rescore_combination(nbest, lm_scores, lm_scales, length_scale)
    write_search_output(job.out_search_results.get_path(), {t: x or "" for t, x in best.items()})
    rescored = results["rescored"]
    with open(job.out_report.get_path(), "w", encoding="utf-8") as f:
        f.write(f"{scales_text}, length_scale {length_scale:g}\n\n" + format_summary(results) + "\n\n")
        f.writelines(f"WARNING: {w}\n" for w in rescored.warnings)
        f.write("\n".join(format_alignment(t, a) for t, a in rescored.alignments.items()))
    job.out_first_pass_wer.set(results["first-pass"].wer)
    job.out_oracle_wer.set(results["oracle"].wer)
    job.out_wer.set(rescored.wer)


class TextDictToStmJob(Job):
    """References (text dict) as an STM file for sclite: one untimed segment per tag
    (:mod:`recipe.asr.sclite`), normalized like our WER's references unless ``normalize=False``."""

    def __init__(self, references: tk.Path, *, normalize: bool = True) -> None:
        self.references = references
        self.normalize = normalize
        self.out_stm = self.output_path("references.stm")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        references = _normalized_refs(read_text_dict(self.references), self.normalize)
        with open(self.out_stm.get_path(), "w", encoding="utf-8") as f:
            f.write(format_stm(references))


class SearchOutputToCtmJob(Job):
    """Hypotheses (search output; an n-best list gives its best-scoring entry, as in
    :class:`ComputeWerJob`) as a CTM file for sclite, normalized unless ``normalize=False``."""

    def __init__(self, hypotheses: tk.Path, *, normalize: bool = True) -> None:
        self.hypotheses = hypotheses
        self.normalize = normalize
        self.out_ctm = self.output_path("hypotheses.ctm")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        hypotheses: dict[str, str | None] = {}
        for tag, value in read_search_output(self.hypotheses).items():
            text = best_text(value)
            hypotheses[tag] = normalize_text(text) if self.normalize and text is not None else text
        with open(self.out_ctm.get_path(), "w", encoding="utf-8") as f:
            f.write(format_ctm(hypotheses))


class ScliteJob(Job):
    """Score a CTM against an STM with NIST sclite (Debian ``sctk``), as i6_core's ``ScliteJob``.

    Call: ``sclite -r <stm> stm -h <ctm> ctm -e utf-8 -s -o all -o dtl -n sclite -O <reports>`` plus
    ``additional_args`` (:mod:`recipe.asr.sclite`). ``sctk_path``: the directory of the sclite binary
    (default: the PATH, then ``/usr/lib/sctk/bin``); not hashed. Outputs: ``out_report_dir`` (``sclite.sys``,
    ``.pra``, ``.dtl``, ``.raw``), ``out_wer`` (percent, from the counts), ``out_num_errors``,
    ``out_ref_words``, ``out_num_substitutions``, ``out_num_deletions``, ``out_num_insertions``.
    """

    __sis_hash_exclude__ = {"sctk_path": None}

    def __init__(
        self,
        ref: tk.Path,
        hyp: tk.Path,
        *,
        additional_args: Sequence[str] = (),
        sctk_path: str | None = None,
    ) -> None:
        self.ref = ref
        self.hyp = hyp
        self.additional_args = tuple(additional_args)
        self.sctk_path = sctk_path
        self.out_report_dir = self.output_path("reports", directory=True)
        self.out_wer = self.output_var("wer")
        self.out_num_errors = self.output_var("num_errors")
        self.out_ref_words = self.output_var("ref_words")
        self.out_num_substitutions = self.output_var("num_substitutions")
        self.out_num_deletions = self.output_var("num_deletions")
        self.out_num_insertions = self.output_var("num_insertions")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        report_dir = self.out_report_dir.get_path()
        os.makedirs(report_dir, exist_ok=True)
        counts = run_sclite(
            self.ref.get_path(),
            self.hyp.get_path(),
            report_dir,
            sctk_path=self.sctk_path,
            extra_args=self.additional_args,
        )
        self.out_num_errors.set(counts["errors"])
        self.out_ref_words.set(counts["ref_words"])
        self.out_num_substitutions.set(counts["substitutions"])
        self.out_num_deletions.set(counts["deletions"])
        self.out_num_insertions.set(counts["insertions"])
        self.out_wer.set(counts["wer"])
