"""SentencePiece jobs (names and outputs as in i6_core's ``text/label/sentencepiece``).

Models use the fixed id layout of :mod:`recipe.data.sentencepiece_model`: ``</s>`` = 0, ``<s>`` = 1, ``<unk>`` = 2.
"""

from typing import Any

from recipe.data.sentencepiece_model import (
    SentencePieceType,
    apply_sentencepiece,
    sentencepiece_vocab,
    train_sentencepiece,
)
from sisyphus import Job, Task, tk
from sisyphus.hash import sis_hash_helper

__all__ = [
    "SentencePieceType",
    "TrainSentencePieceJob",
    "ApplySentencePieceToTextJob",
    "ExtractSentencePieceVocabJob",
]


class _LegacyModuleHash:
    """Hashes an enum member as if its class were defined in ``module``."""

    def __init__(self, member: SentencePieceType, module: str) -> None:
        self.member, self.module = member, module

    def _sis_hash(self) -> bytes:
        own = repr(type(self.member).__module__).encode()
        return sis_hash_helper(self.member).replace(own, repr(self.module).encode())


class TrainSentencePieceJob(Job):
    """Train a SentencePiece model on a text-lines file (optionally gzipped); deterministic.

    ``additional_options`` go to ``SentencePieceTrainer`` and override the defaults
    (``eos_id=0, bos_id=1, unk_id=2, pad_id=-1, num_threads=1``).
    Outputs: ``out_model`` (``spm_out.model``), ``out_vocab`` (``spm_out.vocab``, ``piece<TAB>score`` lines).
    """

    __sis_hash_exclude__ = {"normalization_rule_name": "nmt_nfkc"}

    def __init__(
        self,
        training_text: tk.Path,
        vocab_size: int,
        model_type: SentencePieceType = SentencePieceType.UNIGRAM,
        character_coverage: float = 1.0,
        additional_options: dict[str, Any] | None = None,
        normalization_rule_name: str = "nmt_nfkc",
    ) -> None:
        self.training_text = training_text
        self.vocab_size = vocab_size
        self.model_type = model_type
        self.character_coverage = character_coverage
        self.additional_options = additional_options
        self.normalization_rule_name = normalization_rule_name
        self.out_model = self.output_path("spm_out.model")
        self.out_vocab = self.output_path("spm_out.vocab")
        self.rqmt = {"cpu": 1, "mem": 2, "time": 4}

    @classmethod
    def hash(cls, parsed_args: dict[str, Any]) -> str:
        """As i6_core's, except that ``model_type`` is hashed as the ``SentencePieceType`` of the module
        it lived in before recipe/ was split by domain (``recipe.sentencepiece_model``): ids stay."""
        args = dict(parsed_args)
        args["model_type"] = _LegacyModuleHash(args["model_type"], "recipe.sentencepiece_model")
        return super().hash(args)

    def tasks(self):
        yield Task("run", rqmt=self.rqmt)

    def run(self) -> None:
        train_sentencepiece(
            self.training_text,
            self.out_model.get_path().removesuffix(".model"),
            vocab_size=self.vocab_size,
            model_type=self.model_type,
            character_coverage=self.character_coverage,
            normalization_rule_name=self.normalization_rule_name,
            additional_options=self.additional_options,
        )


class ApplySentencePieceToTextJob(Job):
    """Segment a text-lines file into space-joined pieces, one output line per input line.

    ``enable_unk``: pieces unknown to the model become ``<unk>`` (else their surface string is kept).
    Output: ``out_sentencepiece_text`` (``sentencepiece.txt.gz``, or ``.txt`` without ``gzip_output``).
    """

    def __init__(
        self,
        text_file: tk.Path,
        sentencepiece_model: tk.Path,
        enable_unk: bool = True,
        gzip_output: bool = True,
    ) -> None:
        self.text_file = text_file
        self.sentencepiece_model = sentencepiece_model
        self.enable_unk = enable_unk
        self.gzip_output = gzip_output
        self.out_sentencepiece_text = self.output_path(
            "sentencepiece.txt.gz" if gzip_output else "sentencepiece.txt"
        )

    def tasks(self):
        yield Task("run", rqmt={"cpu": 1, "mem": 2, "time": 2})

    def run(self) -> None:
        apply_sentencepiece(
            self.text_file, self.sentencepiece_model, self.out_sentencepiece_text, enable_unk=self.enable_unk
        )


class ExtractSentencePieceVocabJob(Job):
    """The vocabulary of a SentencePiece model.

    Outputs: ``out_vocab`` (``spm.vocab``, a dict literal ``{piece: id}``), ``out_vocab_size``.
    """

    def __init__(self, model: tk.Path) -> None:
        self.model = model
        self.out_vocab = self.output_path("spm.vocab")
        self.out_vocab_size = self.output_var("vocab_size")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        vocab = sentencepiece_vocab(self.model)
        with open(self.out_vocab, "w", encoding="utf-8") as f:
            f.write("{\n" + "".join(f"{piece!r}: {index},\n" for piece, index in vocab.items()) + "}\n")
        self.out_vocab_size.set(len(vocab))
