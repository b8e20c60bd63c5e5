"""The demo recognizer with the real espeak-ng and pocketsphinx on two short sentences."""

import math
import wave

import pytest

from recipe.asr.demo_recognizer import SAMPLE_RATE, espeak_pronunciations, recognize_nbest, synthesize
from recipe.data.corpus import kjv_corpus
from recipe.data.text_normalization import normalize_text

SENTENCES = {
    "kjv/Ge1:3": "and god said let there be light and there was light",
    "x/moses": "thus saith the lord",
}


def test_synthesize_writes_16khz_mono_pcm(tmp_path):
    pcm = synthesize("in the beginning", tmp_path / "a.wav")
    with wave.open(str(tmp_path / "a.wav")) as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        assert f.readframes(f.getnframes()) == pcm
    assert 0.5 < len(pcm) / 2 / SAMPLE_RATE < 3.0  # seconds of speech for three words
    with pytest.raises(RuntimeError, match="synthesize 'x'"):
        synthesize("x", tmp_path / "b.wav", voice="nonexistent")


def test_espeak_pronunciations_in_arpabet():
    assert espeak_pronunciations(["saith", "smote", "saith", ""]) == {"saith": "S EY TH", "smote": "S M OW T"}


def _check_nbest(hyps, nbest_size):
    texts = [text for _, text in hyps]
    scores = [score for score, _ in hyps]
    assert 1 <= len(hyps) <= nbest_size
    assert len(set(texts)) == len(texts)  # deduplicated
    assert all(text == normalize_text(text) for text in texts)
    assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)


def test_recognize_with_bundled_lm_gives_rich_nbest_lists(tmp_path):
    nbest = recognize_nbest(SENTENCES, 20, tmp_path, progress=False)
    assert list(nbest) == list(SENTENCES)
    for hyps in nbest.values():
        _check_nbest(hyps, 20)
        assert len(hyps) >= 10


def test_recognize_with_in_domain_lm_and_espeak_lexicon(tmp_path):
    lm_text = list(kjv_corpus(verses="Gen1:1-Gen1:31").values()) + ["thus saith the lord unto moses"]
    nbest = recognize_nbest(SENTENCES, 12, tmp_path, lm_sentences=lm_text, progress=False)
    for tag, hyps in nbest.items():
        _check_nbest(hyps, 12)
        assert hyps[0][1] == SENTENCES[tag]  # 'saith' is not in CMUdict: its espeak pronunciation was added
    assert "saith S EY TH\n" in (tmp_path / "lexicon.dict").read_text()
    with pytest.raises(ValueError, match="nbest_size must be positive"):
        recognize_nbest(SENTENCES, 0, tmp_path)
