"""The experiment report: markdown tables and plots of perplexities, training curves and WERs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from recipe.returnn_glue.learning_rates import read_learning_rates, score_series


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return "n/a" if value is None else str(value)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def perplexity_section(perplexities: Mapping[str, Mapping[str, Any]]) -> str:
    """Test perplexity (exact for AR, NELBO bound for diffusion LMs) and generative perplexity."""
    rows = [
        [name, p.get("test_ppl"), p.get("test_nats_per_token"), p.get("gen_ppl_under_ar")]
        for name, p in perplexities.items()
    ]
    return (
        "## Perplexity (test, SentencePiece tokens incl. EOS; diffusion LMs: upper bound)\n\n"
        + markdown_table(["model", "PPL", "nats/token", "gen. PPL of samples under AR"], rows)
    )


def wer_section(wers: Mapping[str, Mapping[str, Any]]) -> str:
    """WER per system and corpus part; ``wers[system] = {"dev": WER %, "test": WER %, ...}``."""
    parts = sorted({k for w in wers.values() for k in w})
    rows = [[system, *(w.get(p) for p in parts)] for system, w in wers.items()]
    return "## ASR n-best rescoring (WER %)\n\n" + markdown_table(["system", *parts], rows)


def rescoring_details_section(details: Mapping[str, Mapping[str, Any]]) -> str:
    """NIST sclite's WERs per system (``details[system]["dev_sclite"/"test_sclite"]``) and the dev search
    traces of the multi-LM combinations (``details[system]["trace"]``: a file)."""
    parts = [p for p in ("dev", "test") if any(f"{p}_sclite" in d for d in details.values())]
    rows = [[system, *(d.get(f"{p}_sclite") for p in parts)] for system, d in details.items()]
    lines = [
        "## NIST sclite (WER %, same outputs; reports in output/asr/<system>/<part>_sclite/)",
        "",
        markdown_table(["system", *parts], rows),
    ]
    for system, d in details.items():
        if d.get("trace"):
            with open(d["trace"], encoding="utf-8") as f:
                trace = f.read().rstrip("\n")
            lines += ["", f"### Tuning on dev: {system}", "", "```", trace, "```"]
    return "\n".join(lines)


def plot_report(
    perplexities: Mapping[str, Mapping[str, Any]],
    learning_rates: Mapping[str, Sequence[str]],
    wers: Mapping[str, Mapping[str, Any]],
    png: str,
) -> None:
    """Three panels: dev score per epoch over all of a model's training stages (``learning_rates``:
    {model: [learning-rate file per stage]}), test perplexity per model, test WER per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    # longer histories first, so that a pretraining curve stays visible on top of its continuations
    for name, stages in sorted(learning_rates.items(), key=lambda kv: -len(kv[1])):
        series, offset = [], 0
        for path in stages:  # stages continue each other's epochs (BD3-LM after its MDLM pretraining)
            epochs = read_learning_rates(path)
            stage = score_series(epochs, "dev_loss_nelbo") or score_series(epochs, "dev_loss_nll")
            series += [(offset + e, v) for e, v in stage]
            offset += max((e for e, _ in stage), default=0)
        axes[0].plot([e for e, _ in series], [v for _, v in series], marker="o", label=name)
    axes[0].set(
        title="dev NELBO / NLL per epoch (all training stages)", xlabel="epoch", ylabel="nats per token"
    )
    axes[0].legend(fontsize=8)
    names = list(perplexities)
    axes[1].bar(names, [perplexities[n].get("test_ppl") or 0.0 for n in names], color="tab:blue")
    axes[1].set(title="test perplexity (diffusion: bound)", ylabel="PPL")
    axes[1].tick_params(axis="x", rotation=30)
    systems = list(wers)
    axes[2].bar(systems, [wers[s].get("test") or 0.0 for s in systems], color="tab:green")
    axes[2].set(title="test WER", ylabel="WER %")
    axes[2].tick_params(axis="x", rotation=30)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
