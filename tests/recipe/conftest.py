"""Shared fixtures for the LM science tests: a real SentencePiece model and batches encoded with it."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
import sentencepiece as spm
import torch

SENTENCES = [
    "the cat sat on the mat",
    "a dog ran across the green field",
    "we went to the market in the morning",
    "the river flows slowly to the sea",
    "she reads a book every night",
    "the children played in the park",
    "rain fell on the quiet town",
    "he painted the old fence white",
    "birds sing at the break of day",
    "the train left the station on time",
    "my brother plays the piano well",
    "they built a small house near the lake",
    "the wind blew the leaves from the trees",
    "an old man walked along the road",
    "the stars shine brightly in the dark sky",
    "we ate bread and cheese for lunch",
    "the teacher wrote a word on the board",
    "snow covered the hills in the winter",
    "the ship sailed across the wide ocean",
    "a little girl found a red ball",
]


@dataclass
class SpmData:
    """A trained SentencePiece model and the corpus encoded as the LM batch contract."""

    processor: spm.SentencePieceProcessor
    vocab_size: int
    eos_id: int
    tokens: torch.Tensor
    lengths: torch.Tensor

    def batch(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = self.lengths[rows]
        return self.tokens[rows, : int(lengths.max())].clone(), lengths.clone()


@pytest.fixture(scope="session")
def spm_data() -> SpmData:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES),
        model_writer=model,
        vocab_size=60,
        model_type="unigram",
        character_coverage=1.0,
        minloglevel=2,
    )
    proc = spm.SentencePieceProcessor(model_proto=model.getvalue())
    eos = proc.eos_id()
    seqs = [proc.encode(s) + [eos] for s in SENTENCES]
    lengths = torch.tensor([len(s) for s in seqs])
    tokens = torch.full((len(seqs), int(lengths.max())), -1, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, : len(s)] = torch.tensor(s)
    return SpmData(proc, proc.get_piece_size(), eos, tokens, lengths)


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    torch.set_num_threads(1)
