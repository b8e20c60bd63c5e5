"""N-best lists of other toolkits, read into (and written from) the RETURNN search-output form
``{tag: [(score, text), ...]}`` (scores: log-probabilities, higher is better), with references where the
format carries them. Every reading error names the file and line (``path:line: ...``).

**Kaldi** (``lattice-to-nbest`` | ``nbest-to-linear``, then ``utils/int2sym.pl -f 2-`` for the words, as
in ``steps/rnnlmrescore.sh``): a text archive of hypotheses, one per line, ``<utt>-<n> word word ...``
(``n`` = 1, 2, ... the rank; the utterance id itself may contain ``-``, the rank is after the last one),
and optional cost archives ``<utt>-<n> <cost>``: ``lm_cost`` (graph/LM cost) and ``ac_cost`` (acoustic
cost, unscaled), both negated log-likelihoods. First-pass score = ``-(lm_cost + acoustic_scale * ac_cost)``
(a missing file counts 0). With a symbol table (``words.txt``, ``<word> <id>``) the hypotheses may be
integer ids (the raw ``nbest-to-linear`` ``words`` archive). Hypotheses are ordered by rank. Written
back as ``text`` and ``lm_cost`` (= -score) with ``ac_cost`` 0.

The writers keep each list's order (rank = position), so reading what they wrote gives the same lists
(HyPoradise: the same texts, and the scores when they were the rank scores).

**ESPnet** (ESPnet1 ``asr_recog.py --nbest N`` result ``data.json``): ``{"utts": {<utt>: {"output":
[{"name": "target1[1]", "rec_text": "...<eos>", "score": <float>, "text": <reference>, ...}, ...]}}}``;
``rec_text`` loses ``<eos>``/``<sos/eos>`` and SentencePiece's ``▁`` becomes a space; the reference is
``text`` of the first entry if present; hypotheses are ordered by the ``[n]`` of ``name``.

**icefall** (``recogs-<set>-<key>.txt`` of ``store_transcripts``): pairs of lines ``<cut>:\tref=[words]``
and ``<cut>:\thyp=[words]`` (Python lists). icefall writes only the 1-best there, so each n-best list has
one entry of score 0; references come along.

**HyPoradise** (Chen et al. 2023, the LibriSpeech/CHiME/... 5-best lists): a JSON list of utterances
``{"input": [hyp_1, ..., hyp_n], "output": <reference>}`` (``input`` may also be one string with one
hypothesis per line), or an object ``{<id>: {...}}``, or JSON lines. Tags: the entry's ``id`` (or
``utt_id``/``key``) if present, else ``<prefix><index>``. The lists carry no scores, only the rank, so the
first-pass score of the hypothesis of rank r (0-based) is ``-rank_penalty * r``.
"""

import ast
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from recipe.data.text_dict import TextFormatError, open_for_writing, read_lines

PathLike = str | os.PathLike
NBestList = list[tuple[float, str]]


class NBestFormatError(TextFormatError):
    """An n-best file that cannot be read in the expected format; the message names file and line."""


# --- Kaldi ---------------------------------------------------------------------------------------


def _kaldi_key(key: str, where: str) -> tuple[str, int]:
    utt, sep, rank = key.rpartition("-")
    if not sep or not utt or not rank.isdigit() or int(rank) < 1:
        raise NBestFormatError(f"{where}: key {key!r} is not <utterance>-<rank> with rank 1, 2, ...")
    return utt, int(rank)


def _read_kaldi_costs(path: PathLike) -> dict[str, tuple[float, str]]:
    costs: dict[str, tuple[float, str]] = {}
    for number, line in read_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) != 2:
            raise NBestFormatError(f"{where}: expected '<utt>-<n> <cost>', got {line[:80]!r}")
        try:
            cost = float(fields[1])
        except ValueError:
            raise NBestFormatError(f"{where}: cost {fields[1]!r} is not a number") from None
        if fields[0] in costs:
            raise NBestFormatError(f"{where}: duplicate key {fields[0]!r} (first at {costs[fields[0]][1]})")
        costs[fields[0]] = (cost, where)
    return costs


def read_kaldi_nbest(
    text: PathLike,
    *,
    lm_cost: PathLike | None = None,
    ac_cost: PathLike | None = None,
    acoustic_scale: float = 0.1,
    words: PathLike | None = None,
) -> dict[str, NBestList]:
    """Read a Kaldi n-best text archive and its cost archives (module docstring)."""
    symbols: dict[str, str] | None = None
    if words is not None:
        symbols = {}
        for number, line in read_lines(words):
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit():
                raise NBestFormatError(f"{words}:{number}: expected '<word> <integer id>', got {line[:80]!r}")
            symbols[fields[1]] = fields[0]
    costs = {
        name: _read_kaldi_costs(path) for name, path in (("lm", lm_cost), ("ac", ac_cost)) if path is not None
    }
    entries: dict[str, dict[int, tuple[str, str]]] = {}
    seen: dict[str, str] = {}
    for number, line in read_lines(text):
        if not line.strip():
            continue
        where = f"{text}:{number}"
        key, *tokens = line.split()
        if key in seen:
            raise NBestFormatError(f"{where}: duplicate key {key!r} (first at {seen[key]})")
        seen[key] = where
        utt, rank = _kaldi_key(key, where)
        if symbols is not None:
            unknown = [t for t in tokens if t not in symbols]
            if unknown:
                raise NBestFormatError(f"{where}: word ids {unknown[:5]} are not in {words}")
            tokens = [symbols[t] for t in tokens]
        entries.setdefault(utt, {})[rank] = (" ".join(tokens), where)
    for name, table in costs.items():
        path = lm_cost if name == "lm" else ac_cost
        for key, where in seen.items():
            if key not in table:
                raise NBestFormatError(f"{path}: no {name} cost for {key!r} ({where})")
        for key, (_, where) in table.items():
            if key not in seen:
                raise NBestFormatError(f"{where}: key {key!r} is not in {text}")
    result: dict[str, NBestList] = {}
    for utt, ranks in entries.items():
        hyps = []
        for rank in sorted(ranks):
            hyp_text, _ = ranks[rank]
            key = f"{utt}-{rank}"
            lm = costs["lm"][key][0] if "lm" in costs else 0.0
            ac = costs["ac"][key][0] if "ac" in costs else 0.0
            hyps.append((-(lm + acoustic_scale * ac), hyp_text))
        result[utt] = hyps
    return result


def read_kaldi_text(path: PathLike) -> dict[str, str]:
    """A Kaldi ``text`` file (``data/<set>/text``: ``<utt> word word ...``) as ``{utt: text}``."""
    result: dict[str, str] = {}
    for number, line in read_lines(path):
        if not line.strip():
            continue
        key, *words = line.split()
        if key in result:
            raise NBestFormatError(f"{path}:{number}: duplicate utterance {key!r}")
        result[key] = " ".join(words)
    return result


def write_kaldi_nbest(
    nbest: Mapping[str, Sequence[tuple[float, str]]], directory: PathLike
) -> dict[str, str]:
    """Write ``text``, ``lm_cost`` (= -score) and ``ac_cost`` (0) archives into ``directory``, rank n =
    position n in the list; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = {name: os.path.join(directory, name) for name in ("text", "lm_cost", "ac_cost")}
    with (
        open(paths["text"], "w", encoding="utf-8") as text,
        open(paths["lm_cost"], "w", encoding="utf-8") as lm,
        open(paths["ac_cost"], "w", encoding="utf-8") as ac,
    ):
        for utt, hyps in nbest.items():
            for rank, (score, hyp_text) in enumerate(hyps, start=1):
                text.write(f"{utt}-{rank} {hyp_text}".rstrip() + "\n")
                lm.write(f"{utt}-{rank} {-score!r}\n")
                ac.write(f"{utt}-{rank} 0.0\n")
    return paths


# --- JSON helpers ----------------------------------------------------------------------------------


def _json_text(path: PathLike) -> str:
    return "\n".join(line for _, line in read_lines(path))


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


_WS = re.compile(r"\s*")


def _iter_container(
    text: str, start: int, path: PathLike
) -> tuple[Iterator[tuple[int, Any, Any, int]], list[int]]:
    """Iterate over the array or object starting at ``text[start]``: ``(line, key or index, value,
    offset of the value)``; the second return value gets the end offset once the iteration is complete."""
    decoder = json.JSONDecoder()
    end: list[int] = []

    def fail(offset: int, message: str) -> NBestFormatError:
        return NBestFormatError(f"{path}:{_line(text, offset)}: {message}")

    def decode(offset: int) -> tuple[Any, int]:
        try:
            return decoder.raw_decode(text, offset)
        except json.JSONDecodeError as exc:
            raise NBestFormatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None

    def generate() -> Iterator[tuple[int, Any, Any, int]]:
        opening = text[start]
        closing = "]" if opening == "[" else "}"
        pos = _WS.match(text, start + 1).end()
        index = 0
        if text.startswith(closing, pos):
            end.append(pos + 1)
            return
        while True:
            item_start = pos
            if opening == "{":
                key, pos = decode(pos)
                if not isinstance(key, str):
                    raise fail(item_start, "expected a string key")
                pos = _WS.match(text, pos).end()
                if not text.startswith(":", pos):
                    raise fail(pos, "expected ':' after a key")
                pos = _WS.match(text, pos + 1).end()
            else:
                key = index
            value_start = pos
            value, pos = decode(pos)
            yield _line(text, item_start), key, value, value_start
            index += 1
            pos = _WS.match(text, pos).end()
            if text.startswith(",", pos):
                pos = _WS.match(text, pos + 1).end()
            elif text.startswith(closing, pos):
                end.append(pos + 1)
                return
            else:
                raise fail(pos, f"expected ',' or {closing!r}")

    return generate(), end


def _top_level(text: str, path: PathLike, expected: str) -> int:
    pos = _WS.match(text).end()
    if pos == len(text):
        raise NBestFormatError(f"{path}:1: empty file, expected {expected}")
    if text[pos] not in "[{":
        raise NBestFormatError(f"{path}:{_line(text, pos)}: expected {expected}")
    return pos


# --- ESPnet ----------------------------------------------------------------------------------------

_ESPNET_SPECIAL = re.compile(r"<sos/eos>|<eos>|<sos>|<blank>")


def espnet_text(rec_text: str) -> str:
    """ESPnet's ``rec_text`` as words: special symbols removed, ``▁`` and ``<space>`` as spaces."""
    text = _ESPNET_SPECIAL.sub(" ", rec_text).replace("<space>", " ").replace("\u2581", " ")
    return " ".join(text.split())


def read_espnet_json(path: PathLike) -> tuple[dict[str, NBestList], dict[str, str]]:
    """Read an ESPnet1 n-best ``data.json`` (module docstring): (n-best lists, references)."""
    text = _json_text(path)
    pos = _top_level(text, path, '{"utts": {...}}')
    utts_start = None
    items, _ = _iter_container(text, pos, path)
    if text[pos] != "{":
        raise NBestFormatError(f'{path}:{_line(text, pos)}: expected an object {{"utts": ...}}')
    for line, key, value, offset in items:
        if key == "utts":
            if not isinstance(value, dict):
                raise NBestFormatError(f"{path}:{line}: 'utts' must be an object")
            utts_start = offset
    if utts_start is None:
        raise NBestFormatError(f"{path}:1: no 'utts' object (an ESPnet1 data.json has {{\"utts\": {{...}}}})")
    nbest: dict[str, NBestList] = {}
    references: dict[str, str] = {}
    items, _ = _iter_container(text, utts_start, path)
    for line, utt, entry, _ in items:
        where = f"{path}:{line}: utterance {utt!r}"
        outputs = entry.get("output") if isinstance(entry, dict) else None
        if not isinstance(outputs, list):
            raise NBestFormatError(
                f'{where}: expected {{"output": [{{"rec_text": ..., "score": ...}}, ...]}}'
            )
        ranked = []
        for position, out in enumerate(outputs):
            if not isinstance(out, dict) or "rec_text" not in out or "score" not in out:
                raise NBestFormatError(f"{where}, output {position}: no 'rec_text' and 'score'")
            score = out["score"]
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise NBestFormatError(f"{where}, output {position}: score {score!r} is not a number")
            match = re.search(r"\[(\d+)\]$", str(out.get("name", "")))
            rank = int(match.group(1)) if match else position + 1
            ranked.append((rank, position, float(score), espnet_text(str(out["rec_text"]))))
        nbest[utt] = [(score, hyp) for _, _, score, hyp in sorted(ranked)]
        if outputs and isinstance(outputs[0], dict) and isinstance(outputs[0].get("text"), str):
            references[utt] = outputs[0]["text"]
    return nbest, references


def write_espnet_json(
    nbest: Mapping[str, Sequence[tuple[float, str]]], references: Mapping[str, str], path: PathLike
) -> None:
    """Write ESPnet1's n-best ``data.json`` layout (rank = list position; ``rec_text`` ends in ``<eos>``)."""
    utts = {}
    for utt, hyps in nbest.items():
        outputs = []
        for rank, (score, text) in enumerate(hyps, start=1):
            out = {"name": f"target1[{rank}]", "rec_text": f"{text}<eos>", "score": score}
            if utt in references:
                out["text"] = references[utt]
            outputs.append(out)
        utts[utt] = {"output": outputs}
    with open_for_writing(path) as f:
        f.write(json.dumps({"utts": utts}, indent=2, ensure_ascii=False).encode("utf-8") + b"\n")


# --- icefall ---------------------------------------------------------------------------------------

_ICEFALL_LINE = re.compile(r"^(?P<cut>.+?):\t(?P<kind>ref|hyp)=(?P<words>.*)$")


def read_icefall_recogs(path: PathLike) -> tuple[dict[str, NBestList], dict[str, str]]:
    """Read icefall's ``recogs-*.txt`` (module docstring): 1-best lists of score 0, and references."""
    hyps: dict[str, str] = {}
    refs: dict[str, str] = {}
    for number, line in read_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        match = _ICEFALL_LINE.match(line)
        if match is None:
            raise NBestFormatError(f"{where}: expected '<cut>:\\tref=[...]' or '<cut>:\\thyp=[...]'")
        try:
            words = ast.literal_eval(match["words"])
        except (SyntaxError, ValueError):
            words = None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise NBestFormatError(
                f"{where}: {match['kind']} is not a list of words: {match['words'][:80]!r}"
            )
        target = refs if match["kind"] == "ref" else hyps
        if match["cut"] in target:
            raise NBestFormatError(f"{where}: second {match['kind']} for {match['cut']!r}")
        target[match["cut"]] = " ".join(words)
    no_hyp = [cut for cut in refs if cut not in hyps]
    if no_hyp:
        raise NBestFormatError(f"{path}: {len(no_hyp)} cuts have a ref but no hyp line, e.g. {no_hyp[:3]}")
    return {cut: [(0.0, text)] for cut, text in hyps.items()}, refs


def write_icefall_recogs(
    nbest: Mapping[str, Sequence[tuple[float, str]]], references: Mapping[str, str], path: PathLike
) -> None:
    """Write the first hypothesis of each list (and its reference) in icefall's ``recogs`` layout."""
    with open(path, "w", encoding="utf-8") as f:
        for cut, hyps in nbest.items():
            if cut in references:
                f.write(f"{cut}:\tref={references[cut].split()!r}\n")
            f.write(f"{cut}:\thyp={(hyps[0][1] if hyps else '').split()!r}\n")


# --- HyPoradise ------------------------------------------------------------------------------------


def _hyporadise_entry(
    line: int, key: Any, entry: Any, path: PathLike, prefix: str, rank_penalty: float
) -> tuple[str, NBestList, str | None]:
    where = f"{path}:{line}"
    if not isinstance(entry, dict) or "input" not in entry:
        raise NBestFormatError(f'{where}: expected {{"input": [hypotheses], "output": reference}}')
    tag = next((entry[k] for k in ("id", "utt_id", "key") if isinstance(entry.get(k), str)), None)
    if tag is None:
        tag = key if isinstance(key, str) else f"{prefix}{key}"
    hyps = entry["input"]
    if isinstance(hyps, str):
        hyps = [h for h in hyps.splitlines() if h.strip()]
    if not isinstance(hyps, list) or not all(isinstance(h, str) for h in hyps):
        raise NBestFormatError(f"{where}: 'input' of {tag!r} must be a list of hypothesis texts")
    reference = entry.get("output")
    if reference is not None and not isinstance(reference, str):
        raise NBestFormatError(f"{where}: 'output' of {tag!r} must be the reference text")
    return tag, [(-rank_penalty * r if r else 0.0, h) for r, h in enumerate(hyps)], reference


def read_hyporadise_json(
    path: PathLike, *, prefix: str = "", rank_penalty: float = 1.0
) -> tuple[dict[str, NBestList], dict[str, str]]:
    """Read HyPoradise n-best lists (module docstring): (n-best lists, references)."""
    text = _json_text(path)
    pos = _top_level(text, path, 'a JSON list of {"input": [...], "output": ...}')
    entries: list[tuple[int, Any, Any]] = []
    items, end = _iter_container(text, pos, path)
    first = [(line, key, value) for line, key, value, _ in items]
    rest = _WS.match(text, end[0]).end() if end else len(text)
    if rest < len(text) or (text[pos] == "{" and any(k in ("input", "output") for _, k, _ in first)):
        # JSON lines: one object per line
        decoder = json.JSONDecoder()
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                value = decoder.decode(line)
            except json.JSONDecodeError as exc:
                raise NBestFormatError(f"{path}:{number}: not a JSON object per line ({exc.msg})") from None
            entries.append((number, len(entries), value))
    else:
        entries = first
    nbest: dict[str, NBestList] = {}
    references: dict[str, str] = {}
    for line, key, entry in entries:
        tag, hyps, reference = _hyporadise_entry(line, key, entry, path, prefix, rank_penalty)
        if tag in nbest:
            raise NBestFormatError(f"{path}:{line}: duplicate utterance {tag!r}")
        nbest[tag] = hyps
        if reference is not None:
            references[tag] = reference
    return nbest, references


def write_hyporadise_json(
    nbest: Mapping[str, Sequence[tuple[float, str]]], references: Mapping[str, str], path: PathLike
) -> None:
    """Write a HyPoradise-style JSON list ``[{"id", "input": [hypotheses in list order], "output"}]``."""
    entries = []
    for tag, hyps in nbest.items():
        entry: dict[str, Any] = {"id": tag, "input": [text for _, text in hyps]}
        if tag in references:
            entry["output"] = references[tag]
        entries.append(entry)
    with open_for_writing(path) as f:
        f.write(json.dumps(entries, indent=1, ensure_ascii=False).encode("utf-8") + b"\n")


READERS = ("kaldi", "espnet", "icefall", "hyporadise")
