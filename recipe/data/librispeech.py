"""LibriSpeech: download locations, checksums and reading the transcriptions out of the subset tarballs.

A subset tarball ``<subset>.tar.gz`` (openslr resource 12) holds per chapter the file
``LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt`` with lines
``<speaker>-<chapter>-<utt> TRANSCRIPTION IN UPPER CASE``. Sequence tags follow i6_core's
``LibriSpeechCreateBlissCorpusJob``: ``<subset>/<utt-id>/<utt-id>``,
e.g. ``dev-other/116-288045-0000/116-288045-0000``.
"""

import os
import re
import tarfile

from recipe.data.text_dict import TextFormatError
from recipe.data.text_normalization import normalize_text

LIBRISPEECH_SUBSETS = (
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
)
SUBSET_URL = "https://www.openslr.org/resources/12/{subset}.tar.gz"
# sha256 of the openslr tarballs, as published in torchaudio's LibriSpeech dataset (pytorch/audio).
SUBSET_SHA256 = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}
# The normalized LM text (openslr resource 11, ~40M sentences, upper case); openslr publishes no sha256.
LM_CORPUS_URL = "https://www.openslr.org/resources/11/librispeech-lm-norm.txt.gz"

_TRANS_MEMBER = re.compile(
    r"^LibriSpeech/(?P<subset>[^/]+)/(?P<spk>\d+)/(?P<chapter>\d+)/(?P=spk)-(?P=chapter)\.trans\.txt$"
)


def read_transcriptions_from_tar(
    tar_path: str | os.PathLike, subset: str, *, lowercase: bool = True
) -> dict[str, str]:
    """All transcriptions of ``subset`` in a LibriSpeech tarball as ``{tag: normalized text}``, sorted by tag.

    The tarball is streamed (audio is skipped, nothing is extracted). Raises TextFormatError naming the
    tar member and line for a malformed line or an utterance id of another chapter, and ValueError if
    the tarball holds no transcription of ``subset``.
    """
    result: dict[str, str] = {}
    with tarfile.open(tar_path, mode="r|*") as tar:
        for member in tar:
            match = _TRANS_MEMBER.match(member.name)
            if not member.isfile() or not match or match["subset"] != subset:
                continue
            prefix = f"{match['spk']}-{match['chapter']}-"
            source = f"{tar_path}:{member.name}"
            content = tar.extractfile(member).read()
            try:
                lines = content.decode("utf-8").splitlines()
            except UnicodeDecodeError as exc:
                raise TextFormatError(f"{source}: not valid UTF-8: {exc}") from exc
            for line_number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                utt_id, _, text = line.strip().partition(" ")
                if not utt_id.startswith(prefix) or not utt_id[len(prefix) :].isdigit():
                    raise TextFormatError(
                        f"{source}:{line_number}: expected '{prefix}<nr> TEXT', got {line!r}"
                    )
                tag = f"{subset}/{utt_id}/{utt_id}"
                if tag in result:
                    raise TextFormatError(f"{source}:{line_number}: duplicate utterance {utt_id}")
                result[tag] = normalize_text(text, lowercase=lowercase)
    if not result:
        raise ValueError(f"{tar_path}: no LibriSpeech/{subset}/*/*/*.trans.txt in this tarball")
    return dict(sorted(result.items()))
