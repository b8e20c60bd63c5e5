"""RETURNN forward pass that scores sequences with an LM (perplexity and n-best rescoring).

The RETURNN config defines ``lm_config`` (``LmConfig.as_dict()``) and ``scoring`` =
``{"num_samples", "noise_range", "shared_noise", "noise", "lattice", "stratified", "seed", "ignore_bos",
"output"}``, loads the checkpoint
with RETURNN's ``load`` (through the model's ``load_state_dict``, as every load in this project), and
imports ``get_model`` (``recipe.returnn_glue.train_step``), ``forward_step`` and ``forward_callback`` from
here. Two data layouts:

* ``data`` [B, T] (LmDataset, ogg zip): one score per sequence. The callback writes JSON lines
  ``{"tag", "score", "num_tokens"}`` to ``scoring["output"]``.
* ``data_flat`` + ``data_seq_lens`` (RETURNN's ``TextDictDataset`` over the n-best file
  ``scoring["nbest_file"]``): all hypotheses of one utterance form one sequence, so they are scored
  together and, with ``shared_noise``, under the same noise draws. The callback appends each
  utterance's scores to the ``recipe.asr.search_output.NBestScoreCheckpoint`` at ``scoring["output"]``.

Scores are ``recipe.lm.likelihood.sequence_log_likelihood``: exact log p for the AR LM, Monte-Carlo
−NELBO for diffusion LMs (nats, EOS included; with ``ignore_bos`` position 0 is neither scored nor
counted in ``num_tokens``, as in bd3lms' evaluation, see ``_score_without_bos``). Lines are flushed one by one, so a run that dies keeps
every finished utterance.

The Monte-Carlo noise of each sequence (perplexity) or n-best group (rescoring) comes from its own
generator, seeded from (``seed``, sequence tag) (``tag_generator``), and is drawn at the sequence's or
group's own length: a score does not depend on which sequences the process scored before, on the
batch it was in or on its padding, so any subset, order or resumed run gives the same scores.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from recipe.lm.build import use_averaged_weights
from recipe.lm.likelihood import sequence_log_likelihood


def _scoring() -> dict[str, Any]:
    from returnn.config import get_global_config

    return get_global_config().typed_value("scoring")


def tag_seed(seed: int, tag: str) -> int:
    """A 63-bit seed from the job seed and a sequence tag (SHA-256, stable across processes/platforms)."""
    digest = hashlib.sha256(f"{int(seed)}\0{tag}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def tag_generator(device: torch.device, seed: int, tag: str) -> torch.Generator:
    """The generator of one sequence's (or n-best group's) noise."""
    return torch.Generator(device=device).manual_seed(tag_seed(seed, tag))


def unflatten_hypotheses(flat: torch.Tensor, seq_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[T_flat] concatenated hypotheses with lengths [N] → (tokens [N, max len] zero-padded, lengths [N])."""
    n = seq_lens.shape[0]
    width = max(1, int(seq_lens.max())) if n else 1
    tokens = torch.zeros(n, width, dtype=torch.long, device=flat.device)
    offset = 0
    for i, length in enumerate(seq_lens.tolist()):
        tokens[i, :length] = flat[offset : offset + length]
        offset += length
    return tokens, seq_lens.long()


def _score(
    model: torch.nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, tags: list[str], group: bool
) -> torch.Tensor:
    """group: all rows are the hypotheses of one utterance (tags[0]) and share its noise (``noise``
    option, default "shared" unless ``shared_noise`` is off); else every row is its own sequence."""
    opts = _scoring()
    seed = int(opts.get("seed", 0))
    if group:
        noise = opts.get("noise") or ("shared" if opts.get("shared_noise", True) else "independent")
        generator: Any = tag_generator(tokens.device, seed, tags[0])
        if noise == "independent":  # one generator per hypothesis, from the tag and its index
            generator = [tag_generator(tokens.device, seed, f"{tags[0]}#{i}") for i in range(len(tokens))]
    else:
        noise, generator = "independent", [tag_generator(tokens.device, seed, tag) for tag in tags]
        if opts.get("ignore_bos", False):
            return _score_without_bos(model, tokens, lengths, generator, opts)
    return sequence_log_likelihood(
        model,
        tokens,
        lengths,
        num_samples=int(opts.get("num_samples", 10)),
        noise_range=tuple(opts.get("noise_range", (1e-3, 1.0))),
        noise=noise,
        lattice=bool(opts.get("lattice", False)),
        stratified=bool(opts.get("stratified", True)),
        generator=generator,
    )


def _score_without_bos(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    generators: list[torch.Generator],
    opts: dict[str, Any],
) -> torch.Tensor:
    """bd3lms' ``ignore_bos``: position 0 of every sequence is context, never masked, never scored.
    A sequence that starts with the model's own BOS (the EOS id, e.g. GPT-2's <|endoftext|> of a
    wrapped chunk) is scored without it, so every layout sees exactly [BOS, x_1, ...]; any other first
    token stays as an unmasked, unscored token after the model's BOS (``ignore_first``)."""
    starts_with_bos = tokens[:, 0] == model.eos_id
    out = torch.empty(tokens.shape[0], dtype=torch.float64, device=tokens.device)
    for rows, drop in ((starts_with_bos, True), (~starts_with_bos, False)):
        if not bool(rows.any()):
            continue
        index = rows.nonzero()[:, 0]
        out[index] = sequence_log_likelihood(
            model,
            tokens[index, 1:] if drop else tokens[index],
            lengths[index] - 1 if drop else lengths[index],
            num_samples=int(opts.get("num_samples", 10)),
            noise_range=tuple(opts.get("noise_range", (1e-3, 1.0))),
            noise="independent",
            stratified=bool(opts.get("stratified", True)),
            generator=[generators[i] for i in index.tolist()],
            ignore_first=not drop,
        )
    return out


def _tags(extern_data: Any, batch: int) -> list[str]:
    raw = extern_data["seq_tag"].raw_tensor
    return [str(raw[b]) for b in range(batch)]


@torch.no_grad()
def forward_step(*, model: torch.nn.Module, extern_data: Any, **_: Any) -> None:
    """RETURNN entry point: mark per-sequence (or per-hypothesis) LM scores as outputs."""
    import returnn.frontend as rf

    model.eval()
    use_averaged_weights(model)
    ctx = rf.get_run_ctx()
    if "data_flat" in extern_data.data:
        flat = extern_data["data_flat"]
        seq_lens = extern_data["data_seq_lens"]
        flat_raw = flat.raw_tensor.long()
        flat_len = flat.dims[1].dyn_size_ext.raw_tensor
        lens_raw = seq_lens.raw_tensor.long()
        num_hyps = seq_lens.dims[1].dyn_size_ext.raw_tensor
        out = torch.zeros(lens_raw.shape, dtype=torch.float64, device=flat_raw.device)
        tags = _tags(extern_data, flat_raw.shape[0])
        for b in range(flat_raw.shape[0]):
            n = int(num_hyps[b])
            tokens, lengths = unflatten_hypotheses(flat_raw[b, : int(flat_len[b])], lens_raw[b, :n])
            out[b, :n] = _score(model, tokens, lengths, [tags[b]], group=True)
        ctx.mark_as_output(out, "lm_scores", dims=[seq_lens.dims[0], seq_lens.dims[1]])
        return
    data = extern_data["data"]
    tokens = data.raw_tensor.long()
    lengths = data.dims[1].dyn_size_ext.raw_tensor.to(tokens.device).long()
    scores = _score(model, tokens, lengths, _tags(extern_data, tokens.shape[0]), group=False)
    num_tokens = lengths - 1 if _scoring().get("ignore_bos", False) else lengths
    ctx.mark_as_output(scores, "score", dims=[data.dims[0]])
    ctx.mark_as_output(num_tokens, "num_tokens", dims=[data.dims[0]])


def forward_callback():
    """RETURNN entry point: writes one JSON line per sequence to ``scoring["output"]``."""
    from returnn.forward_iface import ForwardCallbackIface

    from recipe.asr.search_output import NBestScoreCheckpoint, read_nbest

    class ScoreWriter(ForwardCallbackIface):
        def init(self, *, model: torch.nn.Module) -> None:
            opts = _scoring()
            if opts.get("nbest_file"):
                self.texts = {
                    tag: [t for _, t in hyps] for tag, hyps in read_nbest(opts["nbest_file"]).items()
                }
                self.checkpoint = NBestScoreCheckpoint(opts["output"])
            else:
                self.file = open(opts["output"], "a", encoding="utf-8")

        def process_seq(self, *, seq_tag: str, outputs: Any) -> None:
            if "lm_scores" in outputs.data:
                self.checkpoint.add(seq_tag, self.texts[seq_tag], outputs["lm_scores"].raw_tensor.tolist())
                return
            entry = {
                "tag": seq_tag,
                "score": float(outputs["score"].raw_tensor),
                "num_tokens": int(outputs["num_tokens"].raw_tensor),
            }
            self.file.write(json.dumps(entry) + "\n")
            self.file.flush()

        def finish(self) -> None:
            (self.checkpoint if hasattr(self, "checkpoint") else self.file).close()

    return ScoreWriter()


def read_score_lines(path: str) -> dict[str, dict[str, Any]]:
    """{tag: entry} from the JSON lines a scoring run wrote (a torn last line of a killed run is skipped)."""
    entries: dict[str, dict[str, Any]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                entries[entry["tag"]] = entry
    except FileNotFoundError:
        pass
    return entries
