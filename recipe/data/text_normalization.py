"""ASR-style text normalization for LM corpora.

``normalize_text`` maps a raw sentence to the form ASR references use (LibriSpeech style):

1. Unicode NFKC, typographic apostrophes (’ ‘ ʼ ` ´) become ``'``;
2. lowercase (unless ``lowercase=False``, which keeps the case);
3. every character that is not a letter, digit, apostrophe or whitespace becomes a space
   (so ``loving-kindness`` -> ``loving kindness``);
4. an apostrophe survives only inside a word, between two letters/digits
   (``brother's`` stays, ``sons'`` -> ``sons``, ``'tis`` -> ``tis``);
5. runs of whitespace become one space, leading/trailing whitespace is removed.

The result may be empty (a line of pure punctuation); callers decide what to do with it.
"""

import re
import unicodedata

_APOSTROPHE_VARIANTS = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_NOT_WORD_OR_APOSTROPHE = re.compile(r"[^\w\s']|_")
_APOSTROPHE_NOT_IN_WORD = re.compile(r"(?<![^\W_])'|'(?![^\W_])")


def normalize_text(text: str, *, lowercase: bool = True) -> str:
    """Normalize one sentence as described in the module docstring."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHE_VARIANTS)
    if lowercase:
        text = text.lower()
    text = _NOT_WORD_OR_APOSTROPHE.sub(" ", text)
    text = _APOSTROPHE_NOT_IN_WORD.sub(" ", text)
    return " ".join(text.split())
