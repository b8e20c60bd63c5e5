"""The ASR jobs through the Sisyphus worker: demo n-best -> WER -> tuning on dev -> applying to test."""

from pathlib import Path

import pytest

from jobs.asr import ApplyScoreCombinationJob, ComputeWerJob, DemoNBestJob, TuneScoreCombinationJob
from recipe.asr.search_output import read_nbest, read_search_output, write_search_output
from recipe.data.corpus import kjv_corpus
from recipe.data.text_dict import read_text_dict, write_text_dict, write_text_lines
from sisyphus import gs, tk
from tests.edit_distance import corpus_wer, edit_distance


@pytest.fixture
def base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(gs, "BASE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def oracle_like_lm_scores(nbest_path: str, refs: dict[str, str], path: Path) -> tk.Path:
    """A constructed LM-score file: -10 per word error against the reference (an 'LM' that knows the truth)."""
    nbest = read_nbest(nbest_path)
    scores = {
        tag: [(-10.0 * edit_distance(refs[tag].split(), text.split()), text) for _, text in hyps]
        for tag, hyps in nbest.items()
    }
    write_search_output(path, scores)
    return tk.Path(str(path))


def oracle_wer(nbest: dict, refs: dict[str, str]) -> float:
    """Corpus WER of the hypotheses with the fewest word errors (independent edit distance)."""
    return corpus_wer(
        refs,
        {
            tag: min((t for _, t in hyps), key=lambda t: edit_distance(refs[tag].split(), t.split()))
            for tag, hyps in nbest.items()
        },
    )


def test_demo_nbest_wer_tune_apply(base_dir: Path):
    genesis = kjv_corpus(verses="Gen1:1-Gen1:31")
    write_text_lines(base_dir / "lm.txt", genesis.values())
    dev_verses = {t: genesis[t] for t in ("kjv/Ge1:3", "kjv/Ge1:19")}
    test_verses = {t: genesis[t] for t in ("kjv/Ge1:8", "kjv/Ge1:23")}
    write_text_dict(base_dir / "dev.py", {**dev_verses, "kjv/long": " ".join(["and"] * 41)})
    write_text_dict(base_dir / "test.py", test_verses)

    dev = DemoNBestJob(tk.Path("dev.py"), 10)  # pocketsphinx's own LM: real errors
    test = DemoNBestJob(tk.Path("test.py"), 10, lm_text=tk.Path("lm.txt"))
    tk.run_job(dev)
    tk.run_job(test)
    assert dev.out_num_seqs.get() == 2  # the 41-word text is over max_words
    refs = read_text_dict(dev.out_references)
    assert refs == dev_verses
    nbest = read_nbest(dev.out_nbest)
    assert list(nbest) == list(dev_verses) and all(1 <= len(h) <= 10 for h in nbest.values())
    report = Path(dev.out_report.get_path()).read_text()
    assert "2 of 3 texts" in report and "s per utterance" in report and "oracle" in report

    wer = ComputeWerJob(dev.out_nbest, dev.out_references)
    tk.run_job(wer)
    first_best = {t: max(h, key=lambda x: x[0])[1] for t, h in nbest.items()}
    errors = sum(edit_distance(refs[t].split(), first_best[t].split()) for t in refs)
    ref_words = sum(len(r.split()) for r in refs.values())
    assert (wer.out_num_errors.get(), wer.out_ref_words.get()) == (errors, ref_words)
    assert wer.out_wer.get() == pytest.approx(100.0 * errors / ref_words)
    first_pass_wer = 100.0 * errors / ref_words
    assert "id: (kjv/Ge1:3)" in Path(wer.out_report.get_path()).read_text()

    test_refs = read_text_dict(test.out_references)
    dev_lm = oracle_like_lm_scores(dev.out_nbest.get_path(), refs, base_dir / "dev_lm.py.gz")
    test_lm = oracle_like_lm_scores(test.out_nbest.get_path(), test_refs, base_dir / "test_lm.py.gz")
    tune = TuneScoreCombinationJob(dev.out_nbest, dev_lm, dev.out_references, lm_scales=(0.0, 1.0, 3.0))
    tk.run_job(tune)
    dev_oracle = oracle_wer(nbest, refs)
    assert dev_oracle < first_pass_wer  # the n-best lists contain better hypotheses than the first-pass best
    assert tune.out_wer.get() == pytest.approx(dev_oracle)  # the truth-knowing LM finds them ...
    assert tune.out_lm_scale.get() > 0  # ... only with a positive LM scale
    assert "lm\\len" in Path(tune.out_grid.get_path()).read_text()

    apply = ApplyScoreCombinationJob(
        test.out_nbest, test_lm, test.out_references, tune.out_lm_scale, tune.out_length_scale
    )
    tk.run_job(apply)
    test_nbest = read_nbest(test.out_nbest)
    assert apply.out_oracle_wer.get() == pytest.approx(oracle_wer(test_nbest, test_refs))
    test_first_best = {t: max(h, key=lambda x: x[0])[1] for t, h in test_nbest.items()}
    assert apply.out_first_pass_wer.get() == pytest.approx(corpus_wer(test_refs, test_first_best))
    best = read_search_output(apply.out_search_results)
    assert set(best) == set(test_verses)
    assert all(best[t] in {h for _, h in test_nbest[t]} for t in best)
    assert apply.out_wer.get() == pytest.approx(corpus_wer(test_refs, best))
    # the truth-knowing LM helps on test too (scales tuned on dev: true for these verses, not a theorem)
    assert apply.out_oracle_wer.get() <= apply.out_wer.get() <= apply.out_first_pass_wer.get()
    assert "rescored" in Path(apply.out_report.get_path()).read_text()


def test_lm_scores_for_other_hypotheses_are_rejected(base_dir: Path):
    write_search_output(base_dir / "nbest.py", {"a": [(-1.0, "x y"), (-2.0, "x z")]})
    write_search_output(base_dir / "lm.py", {"a": [(-1.0, "x y"), (-2.0, "x w")]})
    write_text_dict(base_dir / "refs.py", {"a": "x y"})
    job = TuneScoreCombinationJob(tk.Path("nbest.py"), tk.Path("lm.py"), tk.Path("refs.py"))
    with pytest.raises(RuntimeError, match=r"lm.py: tag 'a': hypotheses differ from those in .*nbest.py"):
        tk.run_job(job)
