"""RETURNN's learning-rate file: reading it and plotting score curves.

Format (a Python expression; read without evaluating code: only literals, the names ``nan``/``inf``
and ``EpochData(...)`` calls with literal keyword arguments are accepted)::

    {1: EpochData(learningRate=0.001, error={'dev_loss_nelbo': 5.1, 'train_loss_nelbo': 5.6}), ...}
"""

from __future__ import annotations

import ast
import math
from typing import Any

_NAMES = {"nan": math.nan, "inf": math.inf}


def _value(node: ast.AST, path: str) -> Any:
    """The value of a literal expression node, with ``nan``, ``inf`` and ``EpochData(**literals)``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "EpochData":
        if node.args or any(k.arg is None for k in node.keywords):
            raise ValueError(f"{path}:{node.lineno}: EpochData takes keyword arguments only")
        return _epoch_data(**{k.arg: _value(k.value, path) for k in node.keywords})
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _value(node.operand, path)
        if isinstance(operand, int | float):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_value(k, path): _value(v, path) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.List | ast.Tuple):
        values = [_value(e, path) for e in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Constant):
        return node.value
    raise ValueError(
        f"{path}:{getattr(node, 'lineno', '?')}: not allowed in a learning-rate file: {ast.dump(node)[:80]}"
    )


def _epoch_data(learningRate: float, error: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: N803
    error = dict(error or {})
    meta = {k[len(":meta:") :]: v for k, v in error.items() if k.startswith(":meta:")}
    scores = {k: v for k, v in error.items() if not k.startswith(":meta:")}
    return {"learning_rate": learningRate, "error": scores, "meta": meta}


def read_learning_rates(path: str) -> dict[int, dict[str, Any]]:
    """{epoch: {"learning_rate": lr, "error": {score: value}, "meta": {...}}} from a learning-rate file.

    RETURNN's ``:meta:`` entries (device, steps, time) are moved from ``error`` to ``meta``."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = _value(ast.parse(text, mode="eval").body, path)
    except (SyntaxError, TypeError) as e:
        raise ValueError(f"{path}: not a RETURNN learning-rate file ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict of epochs, got {type(data).__name__}")
    return {int(k): v for k, v in sorted(data.items())}


def score_series(epochs: dict[int, dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(epoch, value) for every epoch that has score ``key``."""
    return [(e, d["error"][key]) for e, d in epochs.items() if key in d["error"]]


def plot_learning_rates(epochs: dict[int, dict[str, Any]], scores_png: str, lr_png: str) -> None:
    """Score curves (one line per score name; nats/token for losses) and the learning-rate curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for d in epochs.values() for k in d["error"] if not k.endswith(":exp")})
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        series = score_series(epochs, key)
        ax.plot([e for e, _ in series], [v for _, v in series], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("score (nats per token)")
    ax.grid(alpha=0.3)
    if keys:
        ax.legend()
    fig.tight_layout()
    fig.savefig(scores_png, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3))
    lrs = [(e, d["learning_rate"]) for e, d in epochs.items() if d["learning_rate"] is not None]
    ax.plot([e for e, _ in lrs], [lr for _, lr in lrs], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(lr_png, dpi=100)
    plt.close(fig)
