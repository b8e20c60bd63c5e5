"""A small real recognizer for demo n-best lists: espeak-ng speech synthesis + pocketsphinx decoding.

Per utterance:

1. ``espeak-ng -v en-us+f5 -s 150 --stdin -w <tmp>.wav`` synthesizes the text (22.05 kHz); ``sox``
   converts it to 16 kHz mono 16-bit signed PCM. (The en-us voice with the ``f5`` variant at 150 words
   per minute gave by far the lowest WER with pocketsphinx's acoustic model among the espeak variants.)
2. ``pocketsphinx.Decoder`` (its bundled en-us acoustic model and CMUdict) decodes the audio with either
   its bundled general English LM or an in-domain trigram LM built from training sentences with
   pocketsphinx's ``ArpaBoLM`` (fixed back-off, discount mass 0.5). For an in-domain LM, words missing
   from CMUdict get pronunciations from espeak-ng (see :func:`espeak_pronunciations`), as the
   recognizer's lexicon would contain them.
3. The n-best list comes from pocketsphinx's A* search over the word lattice (``Decoder.nbest()``), which
   repeats texts (different segmentations, fillers); texts are normalized
   (:func:`recipe.data.text_normalization.normalize_text`), deduplicated keeping the best score, and the
   first ``nbest_size`` distinct ones are kept.

First-pass score scale: pocketsphinx reports a path score ``Hypothesis.score = 1.0001**n`` for an integer
n in units of 2**10 log-base-1.0001 steps (its search shifts all scores right by ``SENSCR_SHIFT`` = 10
bits). The natural-log path score is therefore ``ln P = 1024 * ln(Hypothesis.score)`` (acoustic
log-likelihood + ``bestpathlw`` * n-gram log-probability + insertion penalties). We write
``ln P / bestpathlw`` (``bestpathlw`` = 9.5 by default): the n-gram LM then has weight 1, so an LM added
in rescoring gets a scale relative to it. A path so unlikely that ``Hypothesis.score`` underflows to 0
(``ln P < -745 * 1024``; seen with the bundled LM for utterances over about 25 s, never with an in-domain
LM) gets ``-inf`` and a logged warning.

Speed (2-core machine shared with other jobs, in-domain LM from 30k KJV verses): about 16 s setup (LM,
lexicon), then 0.06 s synthesis and 0.7-2 s decoding per verse of 7.5 s audio; first-pass WER 31%,
20-best oracle WER 26% on 100 held-out verses.
"""

import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterable, Mapping

import pocketsphinx
from tqdm import tqdm

from recipe.asr.nbest import NBestList, deduplicate
from recipe.data.text_normalization import normalize_text

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
DEFAULT_VOICE = "en-us+f5"
DEFAULT_SPEED = 150
SENSCR_SHIFT = 10
RAW_PATHS_PER_ENTRY = 100  # A* paths examined per wanted n-best entry (many are repeats)

# espeak-ng's en-us phoneme mnemonics (``espeak-ng -x``) -> CMUdict/ARPAbet phones ("" = dropped)
_ESPEAK_TO_ARPABET = {
    "a": "AE", "a#": "AH", "aa": "AE", "A:": "AA", "A@": "AA R", "aI": "AY", "aI@": "AY ER", "aI3": "AY ER",
    "aU": "AW", "@": "AH", "@-": "AH", "@2": "AH", "@L": "AH L", "3": "ER", "3:": "ER", "e": "EH", "E": "EH",
    "e@": "EH R", "eI": "EY", "i": "IY", "i:": "IY", "i@": "IY AH", "i@3": "IH R", "I": "IH", "I2": "IH",
    "I#": "IH", "0": "AA", "O": "AO", "O:": "AO", "O2": "AO", "O@": "AO R", "o@": "AO R", "OI": "OY",
    "oU": "OW", "u": "UW", "u:": "UW", "U": "UH", "U@": "UH R", "V": "AH",
    "b": "B", "d": "D", "D": "DH", "dZ": "JH", "f": "F", "g": "G", "h": "HH", "j": "Y", "k": "K", "l": "L",
    "m": "M", "n": "N", "n-": "N", "N": "NG", "p": "P", "r": "R", "r-": "R", "s": "S", "S": "SH", "t": "T",
    "t#": "T", "t2": "T", "T": "TH", "tS": "CH", "v": "V", "w": "W", "x": "K", "z": "Z", "Z": "ZH",
    "?": "", ";": "",
}  # fmt: skip


def _run(cmd: list[str], what: str, stdin: str | None = None) -> str:
    """Run a command, turning a missing program or a failure into an error that says what was done."""
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, check=True, text=True, encoding="utf-8")
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{cmd[0]!r} not found (needed to {what}); install the Debian package"
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"{what}: '{' '.join(cmd[:4])} ...' failed ({exc.returncode}): {exc.stderr}"
        ) from exc
    return proc.stdout


def synthesize(
    text: str, wav_path: str | os.PathLike, *, voice: str = DEFAULT_VOICE, speed: int = DEFAULT_SPEED
) -> bytes:
    """Speak ``text`` with espeak-ng, write it as 16 kHz mono 16-bit WAV and return the raw PCM samples."""
    wav_path = os.fspath(wav_path)
    raw_path = wav_path + ".espeak.wav"
    try:
        _run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "--stdin", "-w", raw_path],
            f"synthesize {text!r}",
            text,
        )
        _run(
            [
                "sox",
                raw_path,
                "-r",
                str(SAMPLE_RATE),
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
                wav_path,
            ],
            f"resample the speech of {text!r}",
        )
    finally:
        if os.path.exists(raw_path):
            os.remove(raw_path)
    with wave.open(wav_path, "rb") as f:
        if (f.getframerate(), f.getnchannels(), f.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise RuntimeError(f"{wav_path}: expected 16 kHz mono 16-bit audio from sox")
        return f.readframes(f.getnframes())


def espeak_pronunciations(words: Iterable[str], *, voice: str = "en-us") -> dict[str, str]:
    """ARPAbet pronunciations from espeak-ng's phonemes, e.g. ``saith`` -> ``S EY TH``.

    Stress marks are dropped and each espeak phoneme is mapped by a fixed table. Words whose phonemes
    fall outside the table are left out (and logged).
    """
    words = [w for w in dict.fromkeys(words) if w]
    if not words:
        return {}
    output = _run(
        ["espeak-ng", "-v", voice, "-q", "-x", "--sep=_", "--stdin"],
        "get pronunciations",
        "".join(f"{w}.\n" for w in words),
    ).splitlines()
    output = [line for line in output if line.strip()]
    if len(output) != len(words):
        output = [
            _run(["espeak-ng", "-v", voice, "-q", "-x", "--sep=_", w], f"pronounce {w!r}") for w in words
        ]
    result: dict[str, str] = {}
    for word, phonemes in zip(words, output, strict=True):
        phones = []
        for token in re.split(r"[_\s]+", phonemes.strip()):
            token = token.lstrip("',").replace("'", "").replace(",", "").replace("=", "")
            if token:
                phones.append(_ESPEAK_TO_ARPABET.get(token))
        if None in phones or not any(phones):
            logger.warning("no pronunciation for %r from espeak phonemes %r", word, phonemes.strip())
            continue
        result[word] = " ".join(p for p in phones if p)
    return result


def build_trigram_lm(sentences: Iterable[str], arpa_path: str | os.PathLike) -> int:
    """Estimate a trigram ARPA LM (pocketsphinx ``ArpaBoLM``, sentences wrapped in <s> ... </s>).

    Returns the number of sentences used; raises ValueError when there is none.
    """
    from pocketsphinx.lm import ArpaBoLM

    text = [s.strip() for s in sentences if s.strip()]
    if not text:
        raise ValueError(f"{arpa_path}: no training sentences for the n-gram LM")
    lm = ArpaBoLM(text="\n".join(text), add_start=True)
    lm.compute()
    with open(arpa_path, "w", encoding="utf-8") as f:
        lm.write(f)
    return len(text)


def _read_dictionary_words(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        return {line.split(maxsplit=1)[0].split("(")[0] for line in f if line.strip()}


class DemoRecognizer:
    """A pocketsphinx decoder; ``lm_sentences`` (if given) replace the bundled LM by an in-domain trigram.

    ``workdir`` receives the LM, the extended lexicon and the decoder log (``pocketsphinx.log``).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        lm_sentences: Iterable[str] | None = None,
        voice: str = DEFAULT_VOICE,
        speed: int = DEFAULT_SPEED,
    ) -> None:
        self.workdir = os.fspath(workdir)
        self.voice, self.speed = voice, speed
        os.makedirs(self.workdir, exist_ok=True)
        options = {"samprate": SAMPLE_RATE, "logfn": os.path.join(self.workdir, "pocketsphinx.log")}
        self.added_words: dict[str, str] = {}
        if lm_sentences is not None:
            sentences = [normalize_text(s) for s in lm_sentences]
            options["lm"] = os.path.join(self.workdir, "lm.arpa")
            build_trigram_lm(sentences, options["lm"])
            base_dict = pocketsphinx.get_model_path("en-us/cmudict-en-us.dict")
            known = _read_dictionary_words(base_dict)
            missing = sorted({w for s in sentences for w in s.split()} - known)
            self.added_words = espeak_pronunciations(missing)
            options["dict"] = os.path.join(self.workdir, "lexicon.dict")
            shutil.copyfile(base_dict, options["dict"])
            with open(options["dict"], "a", encoding="utf-8") as f:
                f.writelines(f"{w} {p}\n" for w, p in self.added_words.items())
        self.decoder = pocketsphinx.Decoder(**options)
        self.score_scale = 2**SENSCR_SHIFT / float(self.decoder.config["bestpathlw"])

    def decode(self, pcm: bytes, nbest_size: int) -> NBestList:
        """Decode 16 kHz 16-bit PCM; the ``nbest_size`` best distinct normalized texts, best first.

        Returns an empty list when the decoder finds no hypothesis.
        """
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        raw: NBestList = []
        distinct: set[str] = set()
        paths = self.decoder.nbest()
        for count, hyp in enumerate(paths or ()):
            if count >= RAW_PATHS_PER_ENTRY * nbest_size:
                break
            text = normalize_text(hyp.hypstr)
            score = self.score_scale * math.log(hyp.score) if hyp.score > 0 else -math.inf
            raw.append((score, text))
            distinct.add(text)
            if len(distinct) >= nbest_size:
                break
        return deduplicate(raw)[:nbest_size]


def recognize_nbest(
    texts: Mapping[str, str],
    nbest_size: int,
    workdir: str | os.PathLike,
    *,
    lm_sentences: Iterable[str] | None = None,
    voice: str = DEFAULT_VOICE,
    speed: int = DEFAULT_SPEED,
    progress: bool = True,
) -> dict[str, NBestList]:
    """Synthesize and decode every text: ``{tag: [(first-pass score, text), ...]}`` (module docstring).

    An utterance without any hypothesis gets an empty list; it and underflowing scores are logged.
    """
    if nbest_size < 1:
        raise ValueError(f"nbest_size must be positive, got {nbest_size}")
    recognizer = DemoRecognizer(workdir, lm_sentences=lm_sentences, voice=voice, speed=speed)
    result: dict[str, NBestList] = {}
    with tempfile.TemporaryDirectory(dir=recognizer.workdir) as tmp:
        for index, (tag, text) in enumerate(
            tqdm(texts.items(), desc="recognize", unit="utt", disable=not progress)
        ):
            pcm = synthesize(text, os.path.join(tmp, f"{index}.wav"), voice=voice, speed=speed)
            os.remove(os.path.join(tmp, f"{index}.wav"))
            hyps = recognizer.decode(pcm, nbest_size)
            if not hyps:
                logger.warning("%s: the decoder found no hypothesis", tag)
            elif math.isinf(hyps[0][0]):
                logger.warning("%s: first-pass scores underflowed to -inf", tag)
            result[tag] = hyps
    return result
