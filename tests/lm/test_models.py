"""Backbone, model building, checkpoint checks, EMA and overfitting of a tiny model of every kind."""

from __future__ import annotations

import pytest
import torch

from recipe.lm.ar_lm import ARLM
from recipe.lm.build import build_model, load_model, training_loss
from recipe.lm.config import LmConfig, preset_dims
from recipe.lm.dit import DiT, count_parameters
from recipe.lm.ema import ExponentialMovingAverage


def _config(kind: str, vocab_size: int, **fields) -> LmConfig:
    """A backbone-sized LmConfig: hidden 32, 4 heads, cond_dim 16, no dropout unless overridden."""
    sizes = {"hidden": 32, "n_heads": 4, "cond_dim": 16, "dropout": 0.0, **fields}
    return LmConfig(kind=kind, vocab_size=vocab_size, eos_id=0, max_seq_len=32, **sizes)


def test_tiny_preset_size_and_small_preset_dims() -> None:
    tiny = DiT(_config("mdlm", 1000, **preset_dims("tiny")))
    assert (tiny.input_size, tiny.output_size) == (1001, 1000)
    assert 100_000 < count_parameters(tiny) < 1_000_000
    cfg = build_model(LmConfig(kind="mdlm", vocab_size=100, eos_id=0, max_seq_len=8)).backbone.cfg
    assert (cfg.hidden, cfg.n_layers, cfg.n_heads, cfg.cond_dim) == (768, 12, 12, 128)


def test_causal_attention_and_kv_cache() -> None:
    torch.manual_seed(0)
    net = DiT(_config("ar", 20, n_layers=2)).eval()
    assert (net.input_size, net.output_size) == (20, 20)
    x = torch.randint(0, 20, (2, 9))
    with torch.no_grad():
        full = net(x, causal=True)
        y = x.clone()
        y[:, 6:] = (y[:, 6:] + 1) % 20
        assert torch.allclose(net(y, causal=True)[:, :6], full[:, :6], atol=1e-6)
        _, past = net.hidden(x[:, :5], causal=True)
        h_new, _ = net.hidden(x[:, 5:], attn_mask=torch.ones(4, 9, dtype=torch.bool).tril(5), past_kv=past)
        assert torch.allclose(net.logits(h_new), full[:, 5:], atol=1e-5)


def test_time_conditioning_and_tied_embeddings() -> None:
    torch.manual_seed(0)
    net = DiT(_config("mdlm", 20, n_layers=1, time_conditioning=True, tie_embeddings=True)).eval()
    assert net.out is None
    x = torch.randint(0, 21, (2, 6))
    with torch.no_grad():
        a = net(x, sigma=torch.tensor([0.1, 3.0]))
        b = net(x, sigma=torch.tensor([2.0, 0.5]))
        assert torch.allclose(a, b), "adaLN is zero-initialised: sigma has no effect at init"
        for name, p in net.named_parameters():
            if "ada" in name:
                p.normal_(0, 0.2)
        a = net(x, sigma=torch.tensor([0.1, 3.0]))
        b = net(x, sigma=torch.tensor([2.0, 0.5]))
        assert not torch.allclose(a, b, atol=1e-3)
        per_pos = net(x, sigma=torch.tensor([0.1, 3.0])[:, None].expand(2, 6))
        assert torch.allclose(per_pos, a, atol=1e-5)
        h, _ = net.hidden(x, sigma=torch.tensor([0.1, 3.0]))
        assert torch.allclose(a, h @ net.embed.weight[:20].T, atol=1e-5)
    with pytest.raises(ValueError, match="sigma"):
        net(x)


def test_partial_outputs_of_the_last_block() -> None:
    torch.manual_seed(0)
    net = DiT(_config("mdlm", 20, n_layers=2, time_conditioning=True)).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "ada" in name:
                p.normal_(0, 0.2)
        x = torch.randint(0, 21, (2, 7))
        mask = torch.rand(2, 1, 7, 7, generator=torch.Generator().manual_seed(0)) < 0.6
        mask |= torch.eye(7, dtype=torch.bool)
        sigma = torch.rand(2, 7)
        full, kv_full = net.hidden(x, attn_mask=mask, sigma=sigma)
        part, kv_part = net.hidden(x, attn_mask=mask, sigma=sigma, out_index=torch.arange(3))
        rows = torch.tensor([[4, 1, 6], [0, 2, 5]])
        picked, _ = net.hidden(x, attn_mask=mask, sigma=sigma, out_index=rows)
    assert part.shape == (2, 3, 32)
    assert torch.allclose(part, full[:, :3], atol=1e-6)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(kv_full, kv_part, strict=True))
    assert torch.allclose(picked, torch.stack([full[0, [4, 1, 6]], full[1, [0, 2, 5]]]), atol=1e-6)


@pytest.mark.parametrize("kind", ["ar", "mdlm", "bd3lm"])
def test_tiny_model_overfits_a_few_sentences(spm_data, kind: str) -> None:
    """Loss on fixed evaluation noise halves within 150 steps on 4 sentences (x4 copies per batch:
    MDLM's 1/t-weighted loss is too noisy to memorise from 4 rows at a time)."""
    torch.manual_seed(0)
    config = spm_data.lm_config(kind)
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    tokens, lengths = spm_data.batch([0, 1, 2, 3])
    tokens, lengths = tokens.repeat(4, 1), lengths.repeat(4)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            total, count = training_loss(model, tokens, lengths, False, torch.Generator().manual_seed(123))
        model.train()
        return total.item() / count.item()

    before = evaluate()
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        total, count = training_loss(model, tokens, lengths, True, gen)
        opt.zero_grad()
        (total / count).backward()
        opt.step()
    after = evaluate()
    assert before > 3.5
    assert after < 0.5 * before, (kind, before, after)


def test_lm_config_rejects_bad_fields_by_name(spm_data) -> None:
    with pytest.raises(ValueError, match=r"LmConfig\.block_size: only BD3-LM"):
        spm_data.lm_config("ar", block_size=4)
    with pytest.raises(ValueError, match=r"LmConfig\.kind: must be one of"):
        spm_data.lm_config("gpt")
    with pytest.raises(ValueError, match=r"LmConfig\.block_size: BD3-LM needs"):
        spm_data.lm_config("bd3lm", block_size=None)
    with pytest.raises(ValueError, match=r"LmConfig\.block_size: 5 does not divide max_seq_len=32"):
        spm_data.lm_config("bd3lm", block_size=5)
    with pytest.raises(ValueError, match=r"LmConfig\.eos_id"):
        spm_data.lm_config("mdlm", eos_id=spm_data.vocab_size)
    with pytest.raises(ValueError, match=r"LmConfig\.n_heads"):
        spm_data.lm_config("mdlm", n_heads=3)
    with pytest.raises(ValueError, match=r"LmConfig\.noise_range"):
        spm_data.lm_config("mdlm", noise_range=(0.6, 0.2))
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset_dims("huge")
    with pytest.raises(TypeError, match="n_blocks"):
        spm_data.lm_config("mdlm", n_blocks=3)
    with pytest.raises(TypeError, match="expected an LmConfig"):
        build_model(spm_data.lm_config("mdlm").as_dict())


def test_batch_contract_errors(spm_data) -> None:
    model = build_model(spm_data.lm_config("mdlm"))
    tokens, lengths = spm_data.batch([0, 1])
    with pytest.raises(ValueError, match="lengths"):
        model.loss(tokens, lengths + 100)
    bad = tokens.clone()
    bad[0, 0] = spm_data.vocab_size
    with pytest.raises(ValueError, match="vocab_size"):
        model.loss(bad, lengths)
    long = torch.zeros(2, 40, dtype=torch.long)
    with pytest.raises(ValueError, match="max_seq_len"):
        model.loss(long, torch.tensor([40, 3]))


def test_checkpoint_config_mismatch_names_both(spm_data, tmp_path) -> None:
    model = build_model(spm_data.lm_config("bd3lm"))
    path = tmp_path / "epoch.001.pt"
    torch.save({"model": model.state_dict(), "epoch": 1}, path)
    with pytest.raises(ValueError, match="epoch.001.pt") as err:
        load_model(spm_data.lm_config("bd3lm", vocab_size=70), path)
    assert "61" in str(err.value) and "71" in str(err.value) and "vocab_size=70" in str(err.value)
    with pytest.raises(ValueError, match=r"n_layers=2 \(checkpoint\) vs 1 \(config\)"):
        load_model(spm_data.lm_config("bd3lm", n_layers=1), path)
    deeper = build_model(spm_data.lm_config("bd3lm", n_layers=3))
    with pytest.raises(ValueError, match=r"n_layers=3 \(checkpoint\) vs 2 \(config\)"):
        build_model(spm_data.lm_config("bd3lm")).load_state_dict(deeper.state_dict(), strict=False)


def test_mdlm_checkpoint_initialises_bd3lm(spm_data, tmp_path) -> None:
    mdlm = build_model(spm_data.lm_config("mdlm", ema_decay=0.9))
    path = tmp_path / "mdlm.pt"
    torch.save({"model": mdlm.state_dict()}, path)
    bd3 = load_model(spm_data.lm_config("bd3lm", ema_decay=0.9), path, use_ema=False)
    for key, value in mdlm.state_dict().items():
        assert torch.equal(bd3.state_dict()[key], value), key


def test_ema_math_state_dict_and_use_in_loading(spm_data, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(spm_data.lm_config("ar", ema_decay=0.5))
    assert isinstance(model, ARLM) and isinstance(model.ema, ExponentialMovingAverage)
    w = model.backbone.embed.weight
    w0 = w.detach().clone()
    with torch.no_grad():
        w.add_(1.0)
    model.ema.update(model)
    decay = min(0.5, 2 / 11)
    shadow = model.ema.shadow__backbone__embed__weight
    assert torch.allclose(shadow, decay * w0 + (1 - decay) * (w0 + 1.0))
    assert torch.allclose(model.backbone.embed.weight, w0 + 1.0)
    assert "ema.shadow__backbone__embed__weight" in model.state_dict()
    assert not any(n.startswith("ema.") for n, _ in model.named_parameters())
    path = tmp_path / "ar.pt"
    torch.save({"model": model.state_dict()}, path)
    loaded = load_model(spm_data.lm_config("ar"), path, use_ema=True)
    assert torch.allclose(loaded.backbone.embed.weight, shadow)
    raw = load_model(spm_data.lm_config("ar"), path, use_ema=False)
    assert torch.allclose(raw.backbone.embed.weight, w0 + 1.0)


@pytest.mark.parametrize("kind", ["ar", "mdlm", "bd3lm"])
def test_losses_are_float32_under_bf16_autocast(spm_data, kind: str) -> None:
    config = spm_data.lm_config(kind, time_conditioning=kind != "ar")
    model = build_model(config)
    tokens, lengths = spm_data.batch([0, 1, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, count = training_loss(model, tokens, lengths, True, torch.Generator().manual_seed(0))
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    assert int(count) == int(lengths.sum())
