"""Tokenizers beside SentencePiece: tiny GPT-2-style byte-level BPE and BERT WordPiece models trained
here with the real ``tokenizers`` package, read back from every supported file layout; the bd3lms
fixture's word-level tokenizer; malformed files; bd3lms' chunk wrapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from recipe.data.tokenizers import (
    TokenizerError,
    TokenizerFiles,
    check_lm_tokenizer,
    load_tokenizer,
    tokenizer_files,
    wrap_chunks,
)

SENTENCES = [
    "the lord said unto moses",
    "and aaron went to the land of egypt",
    "in the beginning god created the heaven and the earth",
    "let there be light and there was light",
] * 5
FIXTURE_TOKENIZER = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "bd3lms_reference" / "tokenizer"
)


def train_byte_level_bpe(directory: Path, vocab_size: int = 300) -> Path:
    """A GPT-2-style byte-level BPE with ``<|endoftext|>``, saved as tokenizer.json and vocab.json +
    merges.txt in ``directory``; returns the tokenizer.json path."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SENTENCES, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    tok.model.save(str(directory))
    return directory / "tokenizer.json"


def train_wordpiece(directory: Path) -> Path:
    """A BERT-style WordPiece (lowercasing), its vocab.txt in ``directory``; returns that path."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=80, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False
    )
    tok.train_from_iterator(SENTENCES, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(directory))
    return directory / "vocab.txt"


def test_byte_level_bpe_from_tokenizer_json_and_from_vocab_and_merges(tmp_path):
    path = train_byte_level_bpe(tmp_path / "bpe")
    from_json = load_tokenizer(TokenizerFiles.tokenizer_json(path))
    from_files = load_tokenizer(
        TokenizerFiles.gpt2_bpe(tmp_path / "bpe/vocab.json", tmp_path / "bpe/merges.txt")
    )
    text = "the lord said unto aaron: ïž 7"
    ids = from_json.encode(text)
    assert from_files.encode(text) == ids
    assert from_json.decode(ids) == text == from_files.decode(ids)
    assert len(ids) < len(text.encode())  # merges were applied
    assert from_json.vocab_size == from_files.vocab_size == 300
    assert from_json.eos_id == from_json.bos_id == 0 == from_files.eos_id  # <|endoftext|>
    assert from_json.mask_id is None and from_json.unk_id is None
    assert from_json.unknown_pieces(text) == []  # bytes cover every character
    assert TokenizerFiles.detect(tmp_path / "bpe") == TokenizerFiles.pretrained_dir(str(tmp_path / "bpe"))


def test_wordpiece_special_ids_and_unknown_words(tmp_path):
    vocab_txt = train_wordpiece(tmp_path / "wp")
    tok = load_tokenizer(TokenizerFiles.wordpiece(vocab_txt))
    tokens = vocab_txt.read_text().splitlines()
    assert (tok.eos_id, tok.bos_id, tok.mask_id, tok.unk_id) == tuple(
        tokens.index(t) for t in ("[SEP]", "[CLS]", "[MASK]", "[UNK]")
    )
    ids = tok.encode("The Lord said")
    assert tok.decode(ids) == "the lord said"
    assert tok.unknown_pieces("the lord ж said qz") == ["ж", "qz"]
    assert TokenizerFiles.detect(vocab_txt) == TokenizerFiles.wordpiece(str(vocab_txt))


def test_the_bd3lms_fixture_tokenizer_directory():
    if not FIXTURE_TOKENIZER.is_dir():
        pytest.skip(f"{FIXTURE_TOKENIZER} is absent (the ../shared folder is not part of a clone)")
    tok = load_tokenizer(TokenizerFiles.detect(FIXTURE_TOKENIZER))
    assert (tok.vocab_size, tok.eos_id, tok.bos_id, tok.mask_id) == (50, 49, 49, None)
    assert tok.encode("t3 <|endoftext|> t17") == [3, 49, 17]
    assert tok.unknown_pieces("t3 hello t17") == ["hello"]
    assert tok.encode("t3 hello t17") == [3, 17]  # no unknown token in this vocabulary: left out


def test_malformed_files_name_the_file(tmp_path):
    with pytest.raises(TokenizerError, match=r"missing\.json: tokenizer file not found"):
        load_tokenizer(TokenizerFiles.tokenizer_json(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": ')
    with pytest.raises(TokenizerError, match=r"broken\.json: not valid JSON"):
        load_tokenizer(TokenizerFiles.tokenizer_json(broken))
    other = tmp_path / "other.json"
    other.write_text('{"version": "1.0", "model": {"type": "NoSuchModel"}}')
    with pytest.raises(TokenizerError, match=r"other\.json: not a tokenizers file"):
        load_tokenizer(TokenizerFiles.tokenizer_json(other))
    train_byte_level_bpe(tmp_path / "bpe")
    merges = tmp_path / "bpe" / "merges.txt"
    merges.write_text(merges.read_text() + "zzqq yyxx\n")
    with pytest.raises(
        TokenizerError, match=r"merges\.txt:\d+: merge 'zzqq yyxx' uses tokens not in .*vocab\.json"
    ):
        load_tokenizer(TokenizerFiles.gpt2_bpe(tmp_path / "bpe/vocab.json", merges))
    no_unk = tmp_path / "vocab.txt"
    no_unk.write_text("[CLS]\n[SEP]\nthe\n")
    with pytest.raises(TokenizerError, match=r"vocab\.txt: a WordPiece vocabulary needs \[UNK\]"):
        load_tokenizer(TokenizerFiles.wordpiece(no_unk))
    with pytest.raises(TokenizerError, match=r"nothing_here: no tokenizer\.json"):
        (tmp_path / "nothing_here").mkdir()
        TokenizerFiles.detect(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match=r"TokenizerFiles\.kind: must be one of"):
        TokenizerFiles("bpe", ("x",))
    with pytest.raises(ValueError, match=r"SampleLmJob: give either spm_model or tokenizer"):
        tokenizer_files(None, None, "SampleLmJob")


def test_vocabulary_that_does_not_fit_the_lm_names_the_file(tmp_path):
    path = train_byte_level_bpe(tmp_path / "bpe")
    tok = load_tokenizer(TokenizerFiles.tokenizer_json(path))
    check_lm_tokenizer(tok, 300, 0)
    with pytest.raises(
        TokenizerError, match=r"tokenizer .*tokenizer\.json has vocab_size=300, eos_id=0; the LM"
    ):
        check_lm_tokenizer(tok, 50258, 0)


def test_special_tokens_map_names_the_special_tokens(tmp_path):
    train_byte_level_bpe(tmp_path / "bpe")
    (tmp_path / "bpe" / "special_tokens_map.json").write_text(json.dumps({"eos_token": {"content": "the"}}))
    tok = load_tokenizer(TokenizerFiles.pretrained_dir(tmp_path / "bpe"))
    assert tok.eos_id == tok.encode("the")[0]
    (tmp_path / "bpe" / "special_tokens_map.json").write_text(json.dumps({"mask_token": "[NOPE]"}))
    with pytest.raises(TokenizerError, match=r"mask_token '\[NOPE\]' is not in the vocabulary"):
        load_tokenizer(TokenizerFiles.pretrained_dir(tmp_path / "bpe"))


def test_wrap_chunks_follows_bd3lms_wrapped_layout():
    docs = [[1, 2, 3], [4, 5], [6]]
    # stream 1 2 3 E 4 5 E 6 E; bodies of 3 with BOS/EOS around, the incomplete rest dropped
    assert wrap_chunks(docs, 5, bos_id=9, eos_id=8) == [[9, 1, 2, 3, 8], [9, 8, 4, 5, 8], [9, 8, 6, 8, 8]]
    assert wrap_chunks(docs, 4, 9, 8, insert_special=False) == [[1, 2, 3, 8], [4, 5, 8, 6]]
    assert wrap_chunks([[1]], 5, 9, 8) == []
    with pytest.raises(ValueError, match="no room"):
        wrap_chunks(docs, 2, 9, 8)


def test_tokenize_text_job_writes_ids_for_returnn_and_reports_unknown_words(fresh_graph, tmp_path):
    from jobs.text import TokenizeTextJob
    from recipe.data.text_dict import read_text_dict, write_text_dict
    from sisyphus import tk

    vocab_txt = train_wordpiece(tmp_path / "wp")
    files = TokenizerFiles.wordpiece(tk.Path(str(vocab_txt)))
    tok = load_tokenizer(files)
    texts = {"a/1": "The lord said", "a/2": "let there be light ж"}
    write_text_dict(tmp_path / "texts.py", texts)
    job = TokenizeTextJob(tk.Path(str(tmp_path / "texts.py")), files)
    tk.run_job(job)
    ids = read_text_dict(job.out_text_dict.get_path())
    assert ids == {tag: " ".join(map(str, [*tok.encode(t), tok.eos_id])) for tag, t in texts.items()}
    vocab = Path(job.out_vocab.get_path()).read_text().splitlines()
    assert vocab == [str(i) for i in range(tok.vocab_size)]
    report = Path(job.out_report.get_path()).read_text()
    assert "1 characters are outside the tokenizer's vocabulary and will be scored as [UNK]: 'ж'" in report
    assert job.out_num_tokens.get() == sum(len(v.split()) for v in ids.values())

    (tmp_path / "lines.txt").write_text("the lord said\n\nlet there be light\n")
    wrapped = TokenizeTextJob(tk.Path(str(tmp_path / "lines.txt")), files, wrap_length=4)
    tk.run_job(wrapped)
    docs = [tok.encode("the lord said"), tok.encode("let there be light")]
    want = wrap_chunks(docs, 4, tok.bos_id, tok.eos_id)
    assert read_text_dict(wrapped.out_text_dict.get_path()) == {
        f"chunk-{i}": " ".join(map(str, c)) for i, c in enumerate(want)
    }
    too_short = TokenizeTextJob(tk.Path(str(tmp_path / "lines.txt")), files, wrap_length=200)
    with pytest.raises(RuntimeError, match=r"lines\.txt: \d+ tokens give no complete chunk of 200 tokens"):
        tk.run_job(too_short)
    assert not too_short._sis_finished()
