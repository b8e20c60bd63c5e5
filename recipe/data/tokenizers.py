"""One tokenizer interface for every LM of the pipeline: the project's SentencePiece models and
Hugging Face ``tokenizers`` files read offline (GPT-2 byte-level BPE, BERT WordPiece, word-level).

A tokenizer maps text to ids (``encode``, without EOS; the LM data contract appends EOS), back to text
(``decode``), has ``vocab_size`` ids and the special ids ``eos_id``, ``bos_id``, ``mask_id``, ``unk_id``
(None where the tokenizer has none: GPT-2 has no [MASK] and no unknown token; a diffusion LM then uses
the extra id ``vocab_size`` as its mask). ``unknown_pieces(text)`` lists the parts of a text the
tokenizer can only encode as its unknown token (or drops): single characters for SentencePiece, the
covered span (e.g. a word for WordPiece) for ``tokenizers`` files. A ``tokenizers`` vocabulary without
an unknown token (e.g. the bd3lms fixture's word-level one) cannot encode such a word at all: ``encode``
leaves it out, and ``unknown_pieces`` reports it.

``TokenizerFiles`` says which files to load; it is what jobs take and hash (its paths may be workflow
paths, which then become job inputs). Supported layouts:

* ``sentencepiece``: ``<name>.model`` (ids as in :mod:`recipe.data.sentencepiece_model`);
* ``tokenizer.json``: one ``tokenizers`` file (any model: BPE, WordPiece, WordLevel, Unigram);
* ``pretrained_dir``: a ``save_pretrained`` directory (``tokenizer.json``; ``special_tokens_map.json``
  names the special tokens when present);
* ``gpt2_bpe``: ``vocab.json`` + ``merges.txt`` (byte-level BPE as GPT-2's, EOS ``<|endoftext|>``);
* ``wordpiece``: ``vocab.txt`` (BERT WordPiece; lowercasing as ``bert-base-uncased`` unless
  ``lowercase=False``).

Special tokens of ``tokenizers`` files, unless ``special_tokens_map.json`` names them: EOS is the first
of ``<|endoftext|>``, ``[SEP]``, ``</s>``, ``<eos>`` in the vocabulary; BOS the first of
``<|endoftext|>``, ``[CLS]``, ``<s>``, ``<bos>`` (else EOS); mask ``[MASK]`` or ``<mask>``; unknown the
model's ``unk_token``. Nothing loaded can run code: JSON and text files only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Protocol

KINDS = ("sentencepiece", "tokenizer.json", "pretrained_dir", "gpt2_bpe", "wordpiece")
EOS_CANDIDATES = ("<|endoftext|>", "[SEP]", "</s>", "<eos>")
BOS_CANDIDATES = ("<|endoftext|>", "[CLS]", "<s>", "<bos>")
MASK_CANDIDATES = ("[MASK]", "<mask>")


class TokenizerError(ValueError):
    """A tokenizer file that is missing or malformed, or that does not fit the LM (names the file)."""


@dataclass(frozen=True)
class TokenizerFiles:
    """Which tokenizer to load: ``kind`` (one of ``KINDS``) and its ``files`` (paths, in the order the
    module docstring lists them); ``lowercase`` only for ``wordpiece``. Validated on construction."""

    kind: str
    files: tuple[Any, ...]
    lowercase: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.files, list):
            object.__setattr__(self, "files", tuple(self.files))
        expected = {"gpt2_bpe": 2}.get(self.kind, 1)
        if self.kind not in KINDS:
            raise ValueError(f"TokenizerFiles.kind: must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.files, tuple) or len(self.files) != expected:
            raise ValueError(
                f"TokenizerFiles.files: kind {self.kind!r} needs {expected} file(s), got {self.files!r}"
            )

    @classmethod
    def sentencepiece(cls, model: Any) -> TokenizerFiles:
        return cls("sentencepiece", (model,))

    @classmethod
    def tokenizer_json(cls, path: Any) -> TokenizerFiles:
        return cls("tokenizer.json", (path,))

    @classmethod
    def pretrained_dir(cls, path: Any) -> TokenizerFiles:
        return cls("pretrained_dir", (path,))

    @classmethod
    def gpt2_bpe(cls, vocab_json: Any, merges_txt: Any) -> TokenizerFiles:
        return cls("gpt2_bpe", (vocab_json, merges_txt))

    @classmethod
    def wordpiece(cls, vocab_txt: Any, *, lowercase: bool = True) -> TokenizerFiles:
        return cls("wordpiece", (vocab_txt,), lowercase)

    @classmethod
    def detect(cls, path: str | os.PathLike) -> TokenizerFiles:
        """The files of a local path: a ``.model`` file, a ``.json`` file, ``vocab.txt``, or a directory
        holding ``tokenizer.json``, ``vocab.json`` + ``merges.txt`` or ``vocab.txt`` (first found)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            for name, make in (
                ("tokenizer.json", lambda: cls.pretrained_dir(path)),
                ("vocab.json", lambda: cls.gpt2_bpe(f"{path}/vocab.json", f"{path}/merges.txt")),
                ("vocab.txt", lambda: cls.wordpiece(f"{path}/vocab.txt")),
            ):
                if os.path.exists(os.path.join(path, name)):
                    return make()
            raise TokenizerError(
                f"{path}: no tokenizer.json, vocab.json + merges.txt or vocab.txt in this directory"
            )
        if path.endswith(".model"):
            return cls.sentencepiece(path)
        if path.endswith(".json"):
            return cls.tokenizer_json(path)
        if path.endswith(".txt"):
            return cls.wordpiece(path)
        raise TokenizerError(f"{path}: not a tokenizer file (.model, .json, vocab.txt) or directory")

    def describe(self) -> str:
        return f"{self.kind} tokenizer {', '.join(os.fspath(f) for f in self.files)}"


class Tokenizer(Protocol):
    """What perplexity, sampling and rescoring need from a tokenizer (see the module docstring)."""

    name: str  # for messages, e.g. "SentencePiece model"
    vocabulary: str  # for messages: "outside the <vocabulary> vocabulary"
    unknown_effect: str  # for messages: what happens to unknown pieces
    source: str  # the file(s) it was loaded from
    vocab_size: int
    eos_id: int
    bos_id: int
    mask_id: int | None
    unk_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def unknown_pieces(self, text: str) -> list[str]: ...


class SentencePieceTokenizer:
    """The project's SentencePiece models (EOS = 0 also serves as BOS; no mask id: the LM adds it)."""

    name = "SentencePiece model"
    vocabulary = "SentencePiece"
    unknown_effect = "will be scored as <unk>"

    def __init__(self, model_file: str | os.PathLike) -> None:
        from recipe.data.sentencepiece_model import load_sentencepiece

        self.source = os.fspath(model_file)
        _check_exists(self.source)
        try:
            self._sp = load_sentencepiece(self.source)
        except (OSError, RuntimeError) as exc:
            raise TokenizerError(f"{self.source}: not a readable SentencePiece model ({exc})") from None
        self.vocab_size = self._sp.vocab_size()
        self.eos_id = self._sp.eos_id()
        self.bos_id = self.eos_id
        self.mask_id = None
        self.unk_id = self._sp.unk_id()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode(ids)

    def unknown_pieces(self, text: str) -> list[str]:
        """Non-space characters that SentencePiece can only encode as ``<unk>``."""
        return [c for c in dict.fromkeys(text) if not c.isspace() and self.unk_id in self._sp.encode(c)]


class HfTokenizer:
    """A ``tokenizers.Tokenizer`` with resolved special ids (see the module docstring)."""

    name = "tokenizer"
    vocabulary = "tokenizer's"

    def __init__(self, tokenizer: Any, source: str, special: dict[str, str | None]) -> None:
        self._tok = tokenizer
        self.source = source
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        if sorted(vocab.values()) != list(range(self.vocab_size)):
            raise TokenizerError(f"{source}: token ids are not 0..{self.vocab_size - 1} without gaps")

        def lookup(key: str, candidates: tuple[str, ...]) -> int | None:
            if special.get(key):
                if special[key] not in vocab:
                    raise TokenizerError(f"{source}: {key} {special[key]!r} is not in the vocabulary")
                return vocab[special[key]]
            return next((vocab[c] for c in candidates if c in vocab), None)

        eos_id = lookup("eos_token", EOS_CANDIDATES)
        if eos_id is None:
            raise TokenizerError(
                f"{source}: no end-of-sequence token (none of {EOS_CANDIDATES} in the vocabulary and no"
                " eos_token in special_tokens_map.json)"
            )
        self.eos_id = eos_id
        bos_id = lookup("bos_token", BOS_CANDIDATES)
        self.bos_id = eos_id if bos_id is None else bos_id
        self.mask_id = lookup("mask_token", MASK_CANDIDATES)
        unk = special.get("unk_token") or getattr(tokenizer.model, "unk_token", None)
        self.unk_id = vocab.get(unk) if unk else None
        self.unknown_effect = f"will be scored as {unk}" if self.unk_id is not None else "are left out"

    def _encodes(self, text: str) -> bool:
        try:
            self._tok.encode(text, add_special_tokens=False)
        except Exception:  # e.g. a word-level vocabulary without its unknown token
            return False
        return True

    def encode(self, text: str) -> list[int]:
        """Ids of the text; a tokenizer that has no id for a word (no unknown token in its vocabulary)
        leaves that word out (``unknown_pieces`` reports it)."""
        if self._encodes(text):
            return self._tok.encode(text, add_special_tokens=False).ids
        words = [w for w in text.split() if self._encodes(w)]
        return self._tok.encode(" ".join(words), add_special_tokens=False).ids if words else []

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def unknown_pieces(self, text: str) -> list[str]:
        """Text spans encoded as the unknown token, non-space characters that vanish in encoding, and
        words that cannot be encoded at all (a vocabulary without its unknown token)."""
        if not self._encodes(text):
            return list(dict.fromkeys(w for w in text.split() if not self._encodes(w)))
        encoding = self._tok.encode(text, add_special_tokens=False)
        pieces = [
            text[a:b] for i, (a, b) in zip(encoding.ids, encoding.offsets, strict=True) if i == self.unk_id
        ]
        covered = [False] * len(text)
        for a, b in encoding.offsets:
            covered[a:b] = [True] * (b - a)
        dropped = [c for c, cov in zip(text, covered, strict=True) if not cov and not c.isspace()]
        return list(dict.fromkeys(pieces + dropped))


def _check_exists(path: str) -> None:
    if not os.path.exists(path):
        raise TokenizerError(f"{path}: tokenizer file not found")


def _read_json(path: str) -> Any:
    _check_exists(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TokenizerError(f"{path}: not valid JSON ({exc})") from None


def _from_json_file(path: str) -> Any:
    from tokenizers import Tokenizer as RawTokenizer

    _read_json(path)  # a clear error for a missing file or broken JSON
    try:
        return RawTokenizer.from_file(path)
    except Exception as exc:  # tokenizers raises plain Exception for a wrong layout
        raise TokenizerError(f"{path}: not a tokenizers file ({exc})") from None


def _special_tokens_map(directory: str) -> dict[str, str | None]:
    path = os.path.join(directory, "special_tokens_map.json")
    if not os.path.exists(path):
        return {}
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise TokenizerError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    special = {}
    for key, value in raw.items():
        if isinstance(value, dict):  # AddedToken form {"content": ...}
            value = value.get("content")
        if isinstance(value, str):
            special[key] = value
    return special


def _gpt2_bpe(vocab_json: str, merges_txt: str) -> Any:
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    vocab = _read_json(vocab_json)
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise TokenizerError(f"{vocab_json}: expected a JSON object {{token: id}}")
    _check_exists(merges_txt)
    merges = []
    with open(merges_txt, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.startswith("#version") or not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise TokenizerError(f"{merges_txt}:{number}: expected two tokens per merge, got {line!r}")
            if parts[0] not in vocab or parts[1] not in vocab or "".join(parts) not in vocab:
                raise TokenizerError(
                    f"{merges_txt}:{number}: merge {line.strip()!r} uses tokens not in {vocab_json}"
                )
            merges.append((parts[0], parts[1]))
    tok = RawTokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def _wordpiece(vocab_txt: str, lowercase: bool) -> Any:
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers

    _check_exists(vocab_txt)
    with open(vocab_txt, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    if not tokens or len(set(tokens)) != len(tokens):
        raise TokenizerError(f"{vocab_txt}: expected one distinct token per line")
    if "[UNK]" not in tokens:
        raise TokenizerError(f"{vocab_txt}: a WordPiece vocabulary needs [UNK]")
    tok = RawTokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return tok


def load_tokenizer(files: TokenizerFiles) -> Tokenizer:
    """The tokenizer described by ``files``; TokenizerError naming the file if it is missing or malformed."""
    paths = [os.fspath(p) for p in files.files]
    source = ", ".join(paths)
    if files.kind == "sentencepiece":
        return SentencePieceTokenizer(paths[0])
    if files.kind == "tokenizer.json":
        return HfTokenizer(_from_json_file(paths[0]), source, {})
    if files.kind == "pretrained_dir":
        if not os.path.isdir(paths[0]):
            raise TokenizerError(f"{paths[0]}: not a directory (expected a save_pretrained tokenizer)")
        raw = _from_json_file(os.path.join(paths[0], "tokenizer.json"))
        return HfTokenizer(raw, source, _special_tokens_map(paths[0]))
    if files.kind == "gpt2_bpe":
        return HfTokenizer(_gpt2_bpe(*paths), source, {"eos_token": "<|endoftext|>"})
    return HfTokenizer(_wordpiece(paths[0], files.lowercase), source, {})


def check_lm_tokenizer(tokenizer: Tokenizer, vocab_size: int, eos_id: int) -> None:
    """TokenizerError naming the tokenizer's files unless an LM with ``vocab_size`` and ``eos_id`` fits it."""
    if (tokenizer.vocab_size, tokenizer.eos_id) != (vocab_size, eos_id):
        raise TokenizerError(
            f"{tokenizer.name} {tokenizer.source} has vocab_size={tokenizer.vocab_size},"
            f" eos_id={tokenizer.eos_id}; the LM config has vocab_size={vocab_size}, eos_id={eos_id}"
        )


def tokenizer_files(spm_model: Any, tokenizer: TokenizerFiles | None, who: str) -> TokenizerFiles:
    """The tokenizer of a job that takes either a SentencePiece model (its older argument) or
    ``TokenizerFiles``; ValueError naming the job unless exactly one is given."""
    if (spm_model is None) == (tokenizer is None):
        raise ValueError(f"{who}: give either spm_model or tokenizer (exactly one)")
    if tokenizer is not None and not isinstance(tokenizer, TokenizerFiles):
        raise ValueError(f"{who}: tokenizer must be TokenizerFiles, got {type(tokenizer).__name__}")
    return tokenizer if tokenizer is not None else TokenizerFiles.sentencepiece(spm_model)


def wrap_chunks(
    documents: list[list[int]], length: int, bos_id: int, eos_id: int, *, insert_special: bool = True
) -> list[list[int]]:
    """bd3lms' wrapped evaluation data (its ``wrap`` datasets): every document's ids followed by EOS,
    all concatenated, cut into chunks; with ``insert_special`` a chunk is [BOS] + ``length`` - 2 ids +
    [EOS], else ``length`` ids. The incomplete last chunk is dropped, as bd3lms does."""
    body = length - 2 if insert_special else length
    if body < 1:
        raise ValueError(f"wrap_chunks: length {length} leaves no room for tokens")
    stream = [i for doc in documents for i in (*doc, eos_id)]
    chunks = [stream[i : i + body] for i in range(0, len(stream) - body + 1, body)]
    return [[bos_id, *c, eos_id] for c in chunks] if insert_special else chunks


def write_id_vocabulary(path: str | os.PathLike, vocab_size: int) -> None:
    """RETURNN ``Vocabulary`` file whose labels are the ids themselves ("0" .. "V-1", one per line), so
    that RETURNN's text datasets read space-joined id strings written by any tokenizer."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{i}\n" for i in range(vocab_size))
