"""Shared fixtures for the LM science tests: a real SentencePiece model and batches encoded with it."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
import sentencepiece as spm
import torch

from recipe.lm.config import LmConfig, preset_dims

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

    def lm_config(self, kind: str, **extra) -> LmConfig:
        """A tiny LM config for this vocabulary (``block_size`` 4 for bd3lm unless given)."""
        cfg = {"vocab_size": self.vocab_size, "eos_id": self.eos_id, "max_seq_len": 32, **preset_dims("tiny")}
        cfg["dropout"] = 0.0
        if kind == "bd3lm":
            cfg["block_size"] = 4
        return LmConfig(kind=kind, **{**cfg, **extra})

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


def train_tiny(spm_data: SpmData, kind: str, steps: int = 100, **extra) -> torch.nn.Module:
    """A tiny model of ``kind`` trained on all SENTENCES (deterministic), returned in eval mode."""
    from recipe.lm.build import build_model, training_loss

    torch.manual_seed(0)
    config = spm_data.lm_config(kind, **extra)
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    rows = list(range(len(SENTENCES)))
    for _ in range(steps):
        total, count = training_loss(model, *spm_data.batch(rows), train=True, generator=gen)
        opt.zero_grad()
        (total / count).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained(spm_data: SpmData) -> dict[str, torch.nn.Module]:
    """Tiny AR, MDLM and BD3-LM (L' = 4) models trained for a few seconds on the test sentences."""
    torch.set_num_threads(1)
    return {
        "ar": train_tiny(spm_data, "ar"),
        "mdlm": train_tiny(spm_data, "mdlm"),
        "bd3lm": train_tiny(spm_data, "bd3lm", block_size=4),
    }
