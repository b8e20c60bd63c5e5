"""NIST sclite (Debian sctk): the STM/CTM we write, the jobs, and agreement of our WER with sclite's."""

import random
from pathlib import Path

import pytest

from jobs.asr import ComputeWerJob, DemoNBestJob, ScliteJob, SearchOutputToCtmJob, TextDictToStmJob
from recipe.asr.sclite import find_sclite, format_ctm, format_stm, parse_dtl, parse_pra_scores, run_sclite
from recipe.asr.search_output import read_nbest, write_search_output
from recipe.asr.wer import word_errors
from recipe.data.corpus import kjv_corpus
from recipe.data.text_dict import read_text_dict, write_text_dict, write_text_lines
from sisyphus import gs, tk

try:
    find_sclite()
except FileNotFoundError:  # pragma: no cover - scripts/setup.sh installs sctk
    pytest.skip(
        "sclite is not installed (Debian package sctk; make setup installs it)", allow_module_level=True
    )


@pytest.fixture
def base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(gs, "BASE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def sclite_errors(tmp_path: Path, refs: dict[str, str], hyps: dict[str, str | None]) -> tuple[dict, dict]:
    """sclite's totals and per-utterance (C, S, D, I) for these texts."""
    (tmp_path / "ref.stm").write_text(format_stm(refs))
    (tmp_path / "hyp.ctm").write_text(format_ctm(hyps))
    out = tmp_path / "sclite"
    out.mkdir(exist_ok=True)
    totals = run_sclite(str(tmp_path / "ref.stm"), str(tmp_path / "hyp.ctm"), str(out))
    return totals, parse_pra_scores((out / "sclite.pra").read_text())


def test_stm_and_ctm_layout():
    assert format_stm({"b/2": "x  y", "A/1": ""}).splitlines()[1:] == [
        "A/1 1 A/1 0.000 999999.000",
        "b/2 1 b/2 0.000 999999.000 x y",
    ]
    assert format_ctm({"b/2": "x y", "A/1": None}).splitlines()[1:] == [
        "b/2 1 0.000 1.000 x",
        "b/2 1 1.000 1.000 y",
    ]
    for bad in ("a b", "", ";;x"):
        with pytest.raises(ValueError, match="cannot be an STM/CTM file id"):
            format_stm({bad: "x"})


def test_sclite_counts_edge_cases_like_our_wer(tmp_path: Path):
    refs = {"A/1": "a b c d e", "b/2": "x y z", "c/3": "let's go", "d/4": "", "E/5": "Go"}
    hyps = {"A/1": "c d e f g", "b/2": None, "c/3": "lets go", "d/4": "go", "E/5": "go"}
    totals, per_utt = sclite_errors(tmp_path, refs, hyps)
    ours = {t: word_errors(refs[t].split(), (hyps[t] or "").split()) for t in refs}
    assert {t: s + d + i for t, (_, s, d, i) in per_utt.items()} == ours  # case-sensitive: Go != go
    assert (totals["errors"], totals["ref_words"], totals["sentences"]) == (sum(ours.values()), 11, 5)
    assert totals["wer"] == pytest.approx(100.0 * sum(ours.values()) / 11)
    assert {p.name for p in (tmp_path / "sclite").iterdir()} >= {"sclite.sys", "sclite.pra", "sclite.dtl"}


def test_sclite_weighted_alignment_can_count_one_error_more(tmp_path: Path):
    """sclite minimises 4*S + 3*(D + I), we minimise S + D + I: ours is never larger, and differs here."""
    ref, hyp = "b c c c c a b a".split(), "b a d b a a".split()
    assert word_errors(ref, hyp) == 5
    totals, _ = sclite_errors(tmp_path, {"u": " ".join(ref)}, {"u": " ".join(hyp)})
    assert totals["errors"] == 6
    rng = random.Random(0)
    refs = {f"u{i:04d}": " ".join(rng.choices("abcd", k=rng.randint(1, 8))) for i in range(500)}
    hyps = {t: " ".join(rng.choices("abcd", k=rng.randint(0, 8))) for t in refs}
    _, per_utt = sclite_errors(tmp_path, refs, hyps)
    assert len(per_utt) == len(refs)
    for tag, (_, s, d, i) in per_utt.items():
        assert word_errors(refs[tag].split(), hyps[tag].split()) <= s + d + i


def test_parse_dtl_names_the_file_on_garbage():
    with pytest.raises(ValueError, match=r"x.dtl: no 'errors' line"):
        parse_dtl("nothing here", "x.dtl")


@pytest.mark.slow
def test_our_wer_equals_sclite_on_demo_nbest_lists(base_dir: Path):
    """Every hypothesis of real pocketsphinx n-best lists, and the 1-best through the jobs."""
    genesis = kjv_corpus(verses="Gen1:1-Gen1:31")
    write_text_lines(base_dir / "lm.txt", genesis.values())
    write_text_dict(base_dir / "dev.py", {t: genesis[t] for t in ("kjv/Ge1:3", "kjv/Ge1:8", "kjv/Ge1:19")})
    demo = DemoNBestJob(tk.Path("dev.py"), 10, lm_text=tk.Path("lm.txt"))
    tk.run_job(demo)
    refs = read_text_dict(demo.out_references)
    nbest = read_nbest(demo.out_nbest)

    # every hypothesis as its own utterance
    all_refs = {f"{t}#{n}": refs[t] for t, hyps in nbest.items() for n in range(len(hyps))}
    all_hyps = {f"{t}#{n}": text for t, hyps in nbest.items() for n, (_, text) in enumerate(hyps)}
    assert len(all_hyps) > 10
    totals, per_utt = sclite_errors(base_dir, all_refs, all_hyps)
    ours = {t: word_errors(all_refs[t].split(), all_hyps[t].split()) for t in all_refs}
    assert {t: s + d + i for t, (_, s, d, i) in per_utt.items()} == ours
    assert totals["errors"] == sum(ours.values())

    # the 1-best through the jobs: STM, CTM, sclite vs ComputeWerJob
    stm, ctm = TextDictToStmJob(demo.out_references), SearchOutputToCtmJob(demo.out_nbest)
    sclite = ScliteJob(stm.out_stm, ctm.out_ctm)
    wer = ComputeWerJob(demo.out_nbest, demo.out_references)
    for job in (stm, ctm, sclite, wer):
        tk.run_job(job)
    assert (sclite.out_num_errors.get(), sclite.out_ref_words.get()) == (
        wer.out_num_errors.get(),
        wer.out_ref_words.get(),
    )
    assert sclite.out_wer.get() == pytest.approx(wer.out_wer.get(), abs=1e-12)
    reports = Path(sclite.out_report_dir.get_path())
    assert {"sclite.sys", "sclite.pra", "sclite.dtl"} <= {p.name for p in reports.iterdir()}
    assert "kjv/Ge1:8" in (reports / "sclite.pra").read_text()


def test_sclite_job_on_written_files(base_dir: Path):
    write_text_dict(base_dir / "refs.py", {"a/1": "In the beginning", "a/2": "god created"})
    write_search_output(base_dir / "hyp.py", {"a/1": [(-2.0, "in a beginning"), (-1.0, "in the beginning")]})
    stm, ctm = TextDictToStmJob(tk.Path("refs.py")), SearchOutputToCtmJob(tk.Path("hyp.py"))
    sclite = ScliteJob(stm.out_stm, ctm.out_ctm)
    for job in (stm, ctm, sclite):
        tk.run_job(job)
    # normalised like our WER: 'In' -> 'in'; a/2 has no hypothesis: 2 deletions
    assert (sclite.out_num_errors.get(), sclite.out_ref_words.get(), sclite.out_num_deletions.get()) == (
        2,
        5,
        2,
    )
    assert sclite.out_wer.get() == pytest.approx(40.0)
