"""bd3lms checkpoints whose tokenizer has its own [MASK] (the LM1B models: bert-base-uncased, V = 30522,
[MASK] = 103 inside the vocabulary, BOS = [CLS] = 101, EOS = [SEP] = 102): ``LmConfig.mask_id`` /
``bos_id``.  No reference outputs exist for this case, so the model is checked against the reference's
conventions computed here step by step from the backbone (bd3lms' ``forward`` + ``_subs_parameterization``:
the [MASK] logit += -1e6, log-softmax, loss at masked positions; BOS as token 0 of block 0), plus the
invariants (the [MASK] id never gets probability or is sampled, BOS is context, EOS is scored) and the
exact export -> import round trip, from config.json, a hydra config and a WordPiece tokenizer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from jobs.pretrained import bd3lms_lm_config
from recipe.data.tokenizers import TokenizerError, TokenizerFiles, check_lm_tokenizer, load_tokenizer
from recipe.lm import bd3lms_checkpoints as bc
from recipe.lm.block_diffusion import bd3_attention_mask
from recipe.lm.build import build_model
from recipe.lm.config import LmConfig
from recipe.lm.sampling import sample_ar, sample_bd3lm, sample_mdlm
from tests.data.test_tokenizers import train_byte_level_bpe, train_wordpiece

CLS, SEP, MASK = 2, 3, 4  # as train_wordpiece's special tokens [PAD] [UNK] [CLS] [SEP] [MASK]
DIMS = {"hidden": 16, "n_layers": 2, "n_heads": 2, "cond_dim": 8, "dropout": 0.0}


def bert_config(kind: str = "bd3lm", vocab_size: int = 40, **extra) -> LmConfig:
    block = {"block_size": 4} if kind == "bd3lm" else {}
    fields = {"eos_id": SEP, "bos_id": CLS, "mask_id": MASK, "max_seq_len": 7, "bd3lms_layout": True} | extra
    return LmConfig(kind=kind, vocab_size=vocab_size, **DIMS, **block, **fields)


def random_model(config: LmConfig, mask_bias: float = 0.0) -> torch.nn.Module:
    """Random weights, output bias included; ``mask_bias`` on the [MASK] row would make it the likeliest
    token if it were not excluded."""
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
        model.backbone.out.bias[config.mask_index] += mask_bias
    return model.eval()


def reference_log_probs(model: torch.nn.Module, x0: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
    """bd3lms' forward on s = [BOS ; x]: backbone over s_t (MDLM, bidirectional), [s_t ; s_0] under
    block_diff_mask with positions 0..P-1 in each half (BD3-LM) or s causally (AR, input shifted), then
    logits[..., mask] += -1e6 and log-softmax; rows of x (BOS dropped), float32 [B, T, V]."""
    net, cfg = model.backbone, model.config
    bos = torch.full_like(x0[:, :1], CLS)
    if cfg.kind == "ar":
        h = net.hidden(torch.cat((bos, x0[:, :-1]), dim=1), causal=True)[0]
    elif cfg.kind == "mdlm":
        h = net.hidden(torch.cat((bos, xt), dim=1))[0][:, 1:]
    else:
        st, s0 = torch.cat((bos, xt), dim=1), torch.cat((bos, x0), dim=1)
        n = st.shape[1]
        mask = bd3_attention_mask(n, cfg.block_size)
        h = net.hidden(torch.cat((st, s0), dim=1), torch.arange(n).repeat(2), mask)[0][:, 1:n]
    logits = net.output_layer(h).float()
    logits[..., cfg.mask_id] += -1e6
    return F.log_softmax(logits, dim=-1)


def test_config_mask_and_bos_ids() -> None:
    config = bert_config()
    assert (config.mask_index, config.bos_index, config.eos_id) == (MASK, CLS, SEP)
    assert {"mask_id", "bos_id"} <= set(config.__sis_state__())
    default = dataclasses.replace(config, mask_id=None, bos_id=None)
    assert (default.mask_index, default.bos_index) == (40, SEP)
    assert not {"mask_id", "bos_id"} & set(default.__sis_state__())  # existing job ids stay
    assert bert_config(bos_id=SEP).bos_id is None  # BOS = EOS is the default: one config per model
    for changes, message in [
        ({"mask_id": 40}, r"LmConfig.mask_id: must be None or an id in \[0, vocab_size=40\)"),
        ({"bos_id": -1}, "LmConfig.bos_id: must be None or an id"),
        ({"mask_id": SEP}, "LmConfig.mask_id: 3 is also the EOS or BOS id"),
        ({"mask_id": CLS}, "LmConfig.mask_id: 2 is also the EOS or BOS id"),
        (
            {"bd3lms_layout": False, "max_seq_len": 8},
            "LmConfig.mask_id: a .MASK. inside the vocabulary needs",
        ),
    ]:
        with pytest.raises(ValueError, match=message):
            bert_config(**changes)


@pytest.mark.parametrize("kind", ["ar", "mdlm", "bd3lm"])
def test_mask_inside_vocabulary_scores_as_the_reference(kind: str) -> None:
    """V embedding and output rows (no extra [MASK] row); the [MASK] logit is -inf, BOS = [CLS] is the
    context at position 0, every token up to EOS is scored: the SUBS / AR terms equal the reference's."""
    config = bert_config(kind)
    model = random_model(config)
    assert model.backbone.embed.weight.shape[0] == 40 == model.backbone.out.weight.shape[0]
    x0 = torch.tensor([[7, 8, 9, 10, 11, 12, SEP], [13, 14, SEP, 15, 16, 17, SEP]])
    lengths = torch.tensor([7, 7])
    masked = torch.tensor([[1, 0, 1, 1, 0, 1, 1], [1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    xt = torch.where(masked, MASK, x0)
    ref = reference_log_probs(model, x0, xt)
    want = -torch.gather(ref, -1, x0[..., None])[..., 0]
    with torch.no_grad():
        if kind == "ar":
            got = -model.token_log_probs(x0, lengths)
        else:
            got = model.masked_nll(x0, lengths, xt, None)
            want = want * masked
            log_probs = model.denoiser_log_probs(x0, lengths, xt)
            assert log_probs.shape == (2, 7, 40) and bool((log_probs[..., MASK] == -torch.inf).all())
            assert torch.allclose(log_probs[masked].exp().sum(-1), torch.ones(int(masked.sum())))
    assert got.shape == x0.shape and bool((got[:, -1] > 0).all())  # EOS scored
    assert (got - want).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="token id 4 is the model's .MASK. id"):
        model.loss(torch.where(masked, MASK, x0), lengths)


def test_samplers_never_draw_the_mask_and_start_from_cls() -> None:
    """Even with a +50 bias on its output row, the in-vocabulary [MASK] is never sampled; BD3-LM's
    block 0 starts with [CLS] (not returned), so its first block holds L' - 1 tokens."""
    gen = torch.Generator().manual_seed(0)
    bd3 = random_model(bert_config("bd3lm", max_seq_len=11), mask_bias=50.0)
    drawn = sample_bd3lm(bd3, 3, 11, stop_at_eos=False, generator=gen)
    mdlm = random_model(bert_config("mdlm"), mask_bias=50.0)
    ar = random_model(bert_config("ar"), mask_bias=50.0)
    for samples in (
        drawn,
        sample_mdlm(mdlm, 3, 7, num_steps=4, generator=gen),
        sample_ar(ar, 3, 7, generator=gen),
    ):
        assert samples.sequences and all(MASK not in s for s in samples.sequences)
    assert [len(s) for s in drawn.sequences] == [11, 11, 11]


def test_export_import_round_trip_with_wordpiece_tokenizer(tmp_path: Path) -> None:
    """A BERT-layout BD3-LM for a WordPiece vocab.txt: exported config.json says V rows and the special
    ids; importing it (with or without those keys, given the tokenizer) is exact; a tokenizer without
    [MASK] of the same size does not fit."""
    tokenizer = load_tokenizer(TokenizerFiles.wordpiece(train_wordpiece(tmp_path / "wp")))
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.mask_id) == (CLS, SEP, MASK)
    config = bert_config(vocab_size=tokenizer.vocab_size)
    check_lm_tokenizer(tokenizer, config.vocab_size, config.eos_id, config.mask_id)
    with pytest.raises(
        TokenizerError, match=r"wp/vocab.txt has mask_id=4; the LM config's .MASK. is its id 5"
    ):
        check_lm_tokenizer(tokenizer, config.vocab_size, config.eos_id, 5)
    model = random_model(config)
    state = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    bc.export_huggingface_dir(config, state, tmp_path / "hf")
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (hf["vocab_size"], hf["mask_token_id"], hf["bos_token_id"], hf["eos_token_id"]) == (
        tokenizer.vocab_size,
        MASK,
        CLS,
        SEP,
    )
    assert load_file(tmp_path / "hf" / "model.safetensors")["backbone.vocab_embed.embedding"].shape[0] == (
        tokenizer.vocab_size
    )
    imported, imported_state = bc.import_checkpoint(tmp_path / "hf")
    assert imported == config
    assert imported_state.keys() == state.keys() and all(
        torch.equal(imported_state[k], state[k]) for k in state
    )
    # bd3lms' own config.json has no special ids: the tokenizer supplies them
    for key in ("mask_token_id", "bos_token_id", "eos_token_id"):
        hf.pop(key)
    (tmp_path / "hf" / "config.json").write_text(json.dumps(hf))
    files = TokenizerFiles.wordpiece(tmp_path / "wp" / "vocab.txt")
    assert bd3lms_lm_config(tmp_path / "hf", tokenizer=files) == config
    assert bd3lms_lm_config(tmp_path / "hf").vocab_size == tokenizer.vocab_size - 1  # GPT-2 convention
    bpe = TokenizerFiles.tokenizer_json(train_byte_level_bpe(tmp_path / "bpe", tokenizer.vocab_size))
    with pytest.raises(ValueError, match=rf"hf: .* has {tokenizer.vocab_size} rows, but the tokenizer .*bpe"):
        bd3lms_lm_config(tmp_path / "hf", tokenizer=bpe)


def test_lm1b_lightning_checkpoint_takes_bert_ids_from_its_hydra_config(tmp_path: Path) -> None:
    """A bd3lms Lightning checkpoint trained on lm1b-wrap (``data.tokenizer_name_or_path:
    bert-base-uncased``, model.length 128): V = 30522 rows, [MASK] = 103, BOS [CLS] = 101, EOS
    [SEP] = 102, read from the hydra config; a row count that is not bert-base-uncased's is an error."""
    config = LmConfig(
        kind="bd3lm",
        vocab_size=30522,
        eos_id=102,
        bos_id=101,
        mask_id=103,
        max_seq_len=127,
        block_size=4,
        bd3lms_layout=True,
        hidden=8,
        n_layers=1,
        n_heads=2,
        cond_dim=8,
    )
    model = build_model(config)
    state = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    bc.export_huggingface_dir(config, state, tmp_path / "hf")
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    hydra = {
        "algo": {
            "name": "bd3lm",
            "parameterization": "subs",
            "ignore_bos": True,
            "cross_attn": True,
            "time_conditioning": False,
        },
        "noise": {"type": "loglinear"},
        "model": {
            "length": 128,
            "hidden_size": 8,
            "cond_dim": 8,
            "n_blocks": 1,
            "n_heads": 2,
            "dropout": 0.1,
        },
        "block_size": 4,
        "training": {"sampling_eps": 1e-3, "antithetic_sampling": True},
        "data": {"tokenizer_name_or_path": "bert-base-uncased"},
    }
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": weights, "hyper_parameters": {"config": hydra}}, path)
    imported, imported_state = bc.import_checkpoint(path)
    assert imported == config
    assert all(torch.equal(imported_state[k], state[k]) for k in state)
    weights["backbone.vocab_embed.embedding"] = weights["backbone.vocab_embed.embedding"][:-1]
    torch.save({"state_dict": weights, "hyper_parameters": {"config": hydra}}, path)
    with pytest.raises(
        ValueError, match=f"{path}: config vocab_size=30522 but backbone.vocab_embed.embedding"
    ):
        bc.import_checkpoint(path)


def test_layout_masks_with_probability_t_as_bd3lms() -> None:
    """bd3lms' LogLinearNoise masks with probability t (training's q_xt, the sampler's move chance) and
    conditions on min(-log(1 - t), sigma_max); the project's own models keep (1 - eps) t.  Same uniforms
    u: the layout masks u < t, the default u < (1 - eps) t (eps = 0.5 makes them differ)."""
    from recipe.lm.noise_schedule import uniform

    t = torch.tensor([[0.6], [0.9]])
    lengths = torch.tensor([7, 7])
    u = uniform((2, 7), torch.Generator().manual_seed(0))
    for layout, move in ((True, t), (False, 0.5 * t)):
        model = build_model(
            bert_config(
                "mdlm", sampling_eps=0.5, **({} if layout else {"mask_id": None, "bd3lms_layout": False})
            )
        )
        mask = model.draw_mask(t, lengths, 7, torch.Generator().manual_seed(0), (0.5, 1.0))
        assert torch.equal(mask, u < move), layout
    schedule = build_model(bert_config("mdlm")).schedule
    sigma_max = -torch.log1p(-(1 - torch.tensor(1e-3)))
    want = torch.minimum(-torch.log(1 - torch.tensor([0.0, 0.5, 1.0])), sigma_max)
    assert torch.allclose(schedule.sigma(torch.tensor([0.0, 0.5, 1.0])), want)
