"""bd3lms / MDLM checkpoints: the imported models compute what the official bd3lms code computed.

The reference numbers are ``../shared/fixtures/bd3lms_reference/`` (outputs of the unmodified bd3lms code
on a tiny random model; its README lists every tensor).  Sequences there are [BOS] + 14 tokens + [EOS]
(BOS = EOS = 49, [MASK] = 50); our batch holds the tokens after BOS (the model adds BOS itself).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from recipe.lm import bd3lms_checkpoints as bc
from recipe.lm.build import build_model
from recipe.lm.config import HASH_EXCLUDED_DEFAULTS, LmConfig

FIXTURE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "bd3lms_reference"
pytestmark = pytest.mark.skipif(
    not FIXTURE.is_dir(),
    reason=f"bd3lms reference fixture not found at {FIXTURE} (../shared is not part of a clone)",
)
TOL = 1e-5
CHECKPOINT_OF_CASE = {
    "mdlm": "mdlm",
    "bd3lm_bs4": "bd3lm_bs4",
    "ar": "ar",
    "bd3lm_bs16": "mdlm",
    "bd3lm_bs1": "mdlm",
    "mdlm_losscale": "mdlm",
}
BLOCK_OF_CASE = {"bd3lm_bs16": 16, "bd3lm_bs1": 1}


@pytest.fixture(scope="module")
def outputs() -> dict:
    return torch.load(FIXTURE / "outputs.pt", weights_only=True)


def imported(case: str, fmt: str = "lightning", **options):
    """(config, model in eval mode) for a fixture case; mdlm weights under a bd3lm config like bd3lms'
    fine-tuning (``load_from_checkpoint(config=<bd3lm cfg>, strict=False)``)."""
    name = CHECKPOINT_OF_CASE[case]
    path = FIXTURE / f"{name}.lightning.ckpt"
    config, state = bc.import_checkpoint(path, **options)
    if case in BLOCK_OF_CASE:
        config = dataclasses.replace(config, kind="bd3lm", block_size=BLOCK_OF_CASE[case])
    model = build_model(config)
    model.load_state_dict(state)
    return config, model.eval()


def batch(outputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Our batch contract: the tokens after BOS, all 15 real."""
    x0 = outputs["inputs"]["x0"]
    return x0[:, 1:].clone(), torch.full((x0.shape[0],), x0.shape[1] - 1)


def test_lightning_config_is_the_hydra_config() -> None:
    config, _ = bc.import_checkpoint(FIXTURE / "bd3lm_bs4.lightning.ckpt")
    assert (config.kind, config.vocab_size, config.eos_id, config.max_seq_len) == ("bd3lm", 50, 49, 15)
    assert (config.hidden, config.n_layers, config.n_heads, config.cond_dim, config.block_size) == (
        32,
        2,
        4,
        16,
        4,
    )
    assert config.bd3lms_layout and not config.time_conditioning and config.noise_range is None
    mdlm, _ = bc.import_checkpoint(FIXTURE / "mdlm.lightning.ckpt")
    assert (mdlm.kind, mdlm.block_size) == ("mdlm", None)


@pytest.mark.parametrize("case", ["mdlm", "bd3lm_bs4", "bd3lm_bs16", "bd3lm_bs1"])
def test_diffusion_logits_equal_reference(outputs: dict, case: str) -> None:
    """Backbone logits (all V + 1 rows) of the x_t pass (MDLM) / the x_t half of the x_t ⊕ x_0 pass."""
    _, model = imported(case)
    ref = outputs[case]
    tokens, lengths = batch(outputs)
    with torch.no_grad():
        logits = model.backbone.output_layer(model._states(tokens, lengths, ref["xt"][:, 1:], None))
    assert logits.shape == ref["backbone_logits"][:, 1:].shape
    assert (logits - ref["backbone_logits"][:, 1:]).abs().max() <= TOL
    # negative control: the raw (non-EMA) weights are far off, so the EMA choice is what matches
    _, raw = imported(case, use_ema=False)
    with torch.no_grad():
        raw_logits = raw.backbone.output_layer(raw._states(tokens, lengths, ref["xt"][:, 1:], None))
    assert (raw_logits - ref["backbone_logits_raw_weights"][:, 1:]).abs().max() <= TOL
    assert (raw_logits - ref["backbone_logits"][:, 1:]).abs().max() > 1e-2


@pytest.mark.parametrize("case", ["mdlm", "bd3lm_bs4", "bd3lm_bs16", "bd3lm_bs1", "mdlm_losscale"])
def test_diffusion_loss_on_reference_noise(outputs: dict, case: str) -> None:
    """Per-token NELBO terms, SUBS log-probs and the NELBO (val/nll) on the reference's own t and x_t."""
    config, model = imported(case)
    ref = outputs[case]
    tokens, lengths = batch(outputs)
    assert bool((ref["xt"][:, 0] == 49).all()) and bool((ref["loss"][:, 0] == 0).all())  # ignore_bos
    mask = ref["xt"][:, 1:] == model.mask_id
    block = config.block_size or config.max_seq_len + 1
    t = ref["t"][:, ::block] if ref["t"].shape[1] > 1 else ref["t"]
    with torch.no_grad():
        terms = model.nelbo_terms(tokens, lengths, t, mask)
        logp = model.denoiser_log_probs(tokens, lengths, ref["xt"][:, 1:])
    assert (terms - ref["loss"][:, 1:]).abs().max() <= TOL
    nelbo = terms.sum() / lengths.sum()
    assert abs(float(nelbo) - float(ref["nelbo"])) <= TOL
    assert abs(float(nelbo) - float(ref["val_nll"])) <= TOL
    ref_logp = ref["log_probs"][:, 1:]
    finite = ref_logp > -1e5  # the reference writes -1e6 where SUBS gives probability 0
    assert bool((torch.isinf(logp) == ~finite).all())
    assert (logp[finite] - ref_logp[finite]).abs().max() <= TOL


def test_ar_logits_and_nll_equal_reference(outputs: dict) -> None:
    _, model = imported("ar")
    ref = outputs["ar"]
    tokens, lengths = batch(outputs)
    with torch.no_grad():
        h = model.backbone.hidden(ref["input_tokens"], causal=True)[0]
        logits = model.backbone.output_layer(h)
        logp = model.token_log_probs(tokens, lengths)
    assert (logits - ref["backbone_logits"]).abs().max() <= TOL
    assert (logp + ref["loss"]).abs().max() <= TOL
    assert abs(float(-logp.sum() / lengths.sum()) - float(ref["val_nll"])) <= TOL


def test_bd3lm_sampler_probs_equal_reference(outputs: dict) -> None:
    """The semi-AR sampler's denoiser for the current block given the clean earlier blocks (bd3lms: one
    pass over the prefix under the block-causal mask, rotary positions 0..len-1), with and without the
    key/value cache of the clean blocks; block 0 starts with BOS."""
    from recipe.lm.sampling import _block_probs

    _, model = imported("bd3lm_bs4")
    sample = outputs["sample_bd3lm_bs4"]
    for k in (0, 2, 5, 14):
        x = sample["forward_x"][k]
        context, block = x[:, :-4], x[:, -4:]
        blocks = torch.arange(context.shape[1]) // 4
        cache = (
            model.backbone.hidden(context, attn_mask=blocks[None, :] <= blocks[:, None])[1] if k > 2 else None
        )
        masked = block == model.mask_id
        ref = sample["forward_log_probs_last_block"][k][masked][:, :50]
        for kv in (None, cache):
            probs = _block_probs(model, context[:, 1:], block, None, kv, 1.0)
            assert (probs[masked].log() - ref).abs().max() <= TOL


def test_bd3lm_layout_sampling_runs_block_by_block(outputs: dict) -> None:
    """Generation in the bd3lms layout: BOS fills block 0's first slot, block 0 holds 3 tokens, then 4
    per block; the cache and no-cache runs give the same samples from the same generator.  MDLM samples
    after its BOS too."""
    from recipe.lm.sampling import sample_bd3lm, sample_mdlm

    _, model = imported("bd3lm_bs4")
    runs = [
        sample_bd3lm(
            model, 3, 11, generator=torch.Generator().manual_seed(1), use_kv_cache=cache, stop_at_eos=False
        )
        for cache in (True, False)
    ]
    assert runs[0].sequences == runs[1].sequences
    assert all(len(seq) == 11 for seq in runs[0].sequences)
    assert all(0 <= tok < 50 for seq in runs[0].sequences for tok in seq)
    assert runs[1].num_forward == 3 + 4 + 4  # first hitting: one call per masked token, 11 tokens
    mdlm = imported("mdlm")[1]
    samples = sample_mdlm(
        mdlm, 2, 15, num_steps=5, stop_at_eos=False, generator=torch.Generator().manual_seed(1)
    )
    assert all(len(seq) == 15 and all(0 <= tok < 50 for tok in seq) for seq in samples.sequences)


def test_default_layout_is_unchanged() -> None:
    """bd3lms_layout=False keeps today's network (parameter names and shapes) and its hash."""
    base = dict(
        kind="mdlm", vocab_size=20, eos_id=0, max_seq_len=8, hidden=16, n_layers=1, n_heads=2, cond_dim=8
    )
    default = LmConfig(**base)
    assert default.__sis_state__() == {
        k: v for k, v in default.as_dict().items() if k not in HASH_EXCLUDED_DEFAULTS
    }
    names = {k: tuple(v.shape) for k, v in build_model(default).state_dict().items()}
    assert names["backbone.out.weight"] == (20, 16) and "backbone.out.bias" not in names
    assert "backbone.norm_out.bias" in names and not any(".ada." in k for k in names)
    layout = {
        k: tuple(v.shape) for k, v in build_model(LmConfig(**base, bd3lms_layout=True)).state_dict().items()
    }
    assert layout["backbone.out.weight"] == (21, 16) and layout["backbone.out.bias"] == (21,)
    assert "backbone.norm_out.bias" not in layout and "backbone.blocks.0.ada.weight" in layout
    assert "bd3lms_layout" in LmConfig(**base, bd3lms_layout=True).__sis_state__()


def test_layout_config_errors() -> None:
    base = dict(kind="bd3lm", vocab_size=20, eos_id=0, hidden=16, n_layers=1, n_heads=2, cond_dim=8)
    with pytest.raises(ValueError, match=r"block_size: 4 does not divide max_seq_len \+ 1"):
        LmConfig(**base, max_seq_len=8, block_size=4, bd3lms_layout=True)
    LmConfig(**base, max_seq_len=7, block_size=4, bd3lms_layout=True)
    with pytest.raises(ValueError, match="tie_embeddings"):
        LmConfig(**base, max_seq_len=7, block_size=4, bd3lms_layout=True, tie_embeddings=True)
    with pytest.raises(ValueError, match="bd3lms_layout: must be a bool"):
        LmConfig(**base, max_seq_len=7, block_size=4, bd3lms_layout="yes")


def test_layout_padding_is_hidden(outputs: dict) -> None:
    """A shorter sequence in a padded batch scores as it does alone (padding keys are masked)."""
    _, model = imported("bd3lm_bs4")
    tokens, lengths = batch(outputs)
    short = torch.tensor([9, 15, 15])
    xt = torch.where(torch.arange(15) % 3 == 0, model.mask_id, tokens)
    with torch.no_grad():
        padded = model.masked_nll(tokens, short, xt, None)
        alone = model.masked_nll(tokens[:1, :9], short[:1], xt[:1, :9], None)
    assert (padded[0, :9] - alone[0]).abs().max() <= 1e-6 and bool((padded[0, 9:] == 0).all())


# --- checkpoint files: both formats, export round trip, bad input -------------------------------------


def hf_dir_from_backbone_state(tmp_path: Path, case: str) -> Path:
    """A Hugging Face directory as kuleshov-group publishes them, built from the fixture's plain backbone
    state dict (EMA weights baked in) and a hand-written config.json."""
    state = torch.load(FIXTURE / f"{case}.backbone_state_dict.pt", weights_only=True)
    directory = tmp_path / f"{case}_hf"
    directory.mkdir()
    tensors = {f"backbone.{k}": v.contiguous() for k, v in state.items()}
    config = {
        "model_type": case.split("_")[0],
        "model_length": 16,
        "vocab_size": 51,
        "hidden_dim": 32,
        "cond_dim": 16,
        "n_blocks": 2,
        "n_heads": 4,
        "dropout": 0.1,
        "time_conditioning": False,
    }
    if case == "bd3lm_bs4":
        config |= {
            "block_size": 4,
            "cross_attn": True,
            "var_min": True,
            "sampling_eps_min": 1e-3,
            "sampling_eps_max": 1.0,
        }
        tensors |= {"sampling_eps_min": torch.tensor(1e-3), "sampling_eps_max": torch.tensor(1.0)}
    save_file(tensors, directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize("case", ["mdlm", "bd3lm_bs4"])
def test_huggingface_dir_equals_lightning(tmp_path: Path, case: str) -> None:
    hf_config, hf_state = bc.import_checkpoint(hf_dir_from_backbone_state(tmp_path, case))
    ckpt_config, ckpt_state = bc.import_checkpoint(FIXTURE / f"{case}.lightning.ckpt")
    assert dataclasses.replace(hf_config, dropout=ckpt_config.dropout) == ckpt_config
    assert hf_state.keys() == ckpt_state.keys()
    assert all(torch.equal(hf_state[k], ckpt_state[k]) for k in hf_state)  # EMA shadows == baked-in weights


@pytest.mark.parametrize("case", ["mdlm", "bd3lm_bs4", "ar"])
def test_export_import_round_trip_is_exact(tmp_path: Path, outputs: dict, case: str) -> None:
    config, state = bc.import_checkpoint(FIXTURE / f"{case}.lightning.ckpt")
    bc.export_huggingface_dir(config, state, tmp_path / "export")
    config2, state2 = bc.import_checkpoint(tmp_path / "export")
    assert config2 == config
    assert state2.keys() == state.keys() and all(torch.equal(state[k], state2[k]) for k in state)
    exported = json.loads((tmp_path / "export" / "config.json").read_text())
    assert (exported["model_type"], exported["model_length"], exported["vocab_size"]) == (config.kind, 16, 51)
    # the exported tensors are the reference's own names and values (the fixture's plain state dict)
    reference = torch.load(FIXTURE / f"{case}.backbone_state_dict.pt", weights_only=True)
    written = load_file(tmp_path / "export" / "model.safetensors")
    for key, value in reference.items():
        assert torch.allclose(written[f"backbone.{key}"], value, rtol=1e-7, atol=0), key


def test_export_refuses_default_layout(tmp_path: Path) -> None:
    config = LmConfig(
        kind="mdlm", vocab_size=20, eos_id=0, max_seq_len=8, hidden=16, n_layers=1, n_heads=2, cond_dim=8
    )
    with pytest.raises(ValueError, match="not in the bd3lms layout"):
        bc.export_huggingface_dir(config, build_model(config).state_dict(), tmp_path / "x")


def test_bad_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    good = FIXTURE / "mdlm.lightning.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{truncated}.*truncated or not a torch checkpoint"):
        bc.import_checkpoint(truncated)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bc.import_checkpoint(tmp_path / "nothing.ckpt")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, other)
    with pytest.raises(ValueError, match=f"{other}.*no 'backbone.\\*' weights"):
        bc.import_checkpoint(other)
    hf = hf_dir_from_backbone_state(tmp_path, "mdlm")
    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps(config | {"model_type": "llama"}))
    with pytest.raises(ValueError, match="config.json: model_type 'llama'"):
        bc.import_checkpoint(hf)
    (hf / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "n_heads"}))
    with pytest.raises(KeyError, match="config.json: missing key 'n_heads'"):
        bc.import_checkpoint(hf)
    (hf / "config.json").write_text(json.dumps(config | {"hidden_dim": 64}))
    with pytest.raises(ValueError, match="config hidden size 64"):
        bc.import_checkpoint(hf)
    (hf / "config.json").write_text(json.dumps(config | {"n_blocks": 3}))
    with pytest.raises(ValueError, match=r"missing backbone\.blocks\.2\."):
        bc.import_checkpoint(hf)
    (hf / "config.json").write_text(json.dumps(config | {"model_type": "ar"}))
    with pytest.raises(ValueError, match=r"unexpected backbone\.(sigma_map|blocks\.0\.adaLN)"):
        bc.import_checkpoint(hf)
    (hf / "config.json").write_text(json.dumps(config))
    (hf / "model.safetensors").write_bytes((hf / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(ValueError, match="model.safetensors is truncated"):
        bc.import_checkpoint(hf)
    shutil.rmtree(hf)
    hf.mkdir()
    (hf / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        bc.import_checkpoint(hf)


def test_layout_scores_equal_reference(outputs: dict) -> None:
    """The Monte-Carlo scorer of perplexity and rescoring on imported models: with L' = 1 (BOS alone in
    block 0, one token per block) every sample is the exact -log p(x_i | x_<i), so the per-token score is
    bd3lms' deterministic bd3lm_bs1 val/nll; an MDLM's one-token sequence scores exactly -log p(x | MASK)."""
    from recipe.lm.likelihood import nelbo_samples

    _, model = imported("bd3lm_bs1")
    tokens, lengths = batch(outputs)
    generator = torch.Generator().manual_seed(0)
    for cache in (True, False):
        samples = nelbo_samples(model, tokens, lengths, num_samples=3, generator=generator, cache=cache)
        assert (samples - samples[:, :1]).abs().max() <= 1e-5
        assert abs(float(samples[:, 0].sum() / lengths.sum()) - float(outputs["bd3lm_bs1"]["val_nll"])) <= TOL
    _, mdlm = imported("mdlm")
    one, one_len = torch.tensor([[49]]), torch.tensor([1])
    samples = nelbo_samples(mdlm, one, one_len, num_samples=4, generator=generator)
    with torch.no_grad():
        exact = -mdlm.denoiser_log_probs(one, one_len, torch.tensor([[mdlm.mask_id]]))[0, 0, 49]
    assert torch.allclose(samples, exact.double().expand_as(samples), atol=1e-6)


def test_compiled_prefix_and_ema_order(tmp_path: Path) -> None:
    """torch.compile's ``_orig_mod.`` inside the keys is stripped; an EMA list that does not follow the
    parameter order is an error, not a silent mix-up."""
    hf = hf_dir_from_backbone_state(tmp_path, "mdlm")
    state = load_file(hf / "model.safetensors")
    save_file(
        {k.replace("backbone.", "backbone._orig_mod."): v for k, v in state.items()}, hf / "model.safetensors"
    )
    _, compiled = bc.import_checkpoint(hf)
    _, lightning = bc.import_checkpoint(FIXTURE / "mdlm.lightning.ckpt")
    assert all(torch.equal(compiled[k], lightning[k]) for k in lightning)
    ckpt = bc.read_lightning_checkpoint(FIXTURE / "mdlm.lightning.ckpt")
    assert all(
        torch.equal(ckpt.ema[k], v)
        for k, v in torch.load(FIXTURE / "mdlm.backbone_state_dict.pt", weights_only=True).items()
        if k in ckpt.ema
    )


def test_layout_time_conditioning_uses_block_0_sigma(outputs: dict) -> None:
    """With time conditioning on, every position (x_0 half included) is conditioned on block 0's noise
    level, as in bd3lms: the t of the other blocks does not change any output."""
    config, _ = imported("bd3lm_bs4")
    model = build_model(dataclasses.replace(config, time_conditioning=True)).eval()
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "ada" in name:
            torch.nn.init.normal_(p, std=0.3)
    tokens, lengths = batch(outputs)
    mask = outputs["bd3lm_bs4"]["xt"][:, 1:] == model.mask_id
    t = torch.tensor([[0.2, 0.5, 0.7, 0.9]]).expand(3, -1)
    with torch.no_grad():
        base = model.nelbo_terms(tokens, lengths, t, mask) * t.repeat_interleave(4, dim=1)[:, 1:]
        later = t.clone()
        later[:, 1:] = 0.05
        same = model.nelbo_terms(tokens, lengths, later, mask) * later.repeat_interleave(4, dim=1)[:, 1:]
        first = t.clone()
        first[:, 0] = 0.6
        other = model.nelbo_terms(tokens, lengths, first, mask) * first.repeat_interleave(4, dim=1)[:, 1:]
    assert torch.allclose(base, same, atol=1e-6) and not torch.allclose(base, other, atol=1e-3)


def test_pytorch_model_bin_and_training_loss(tmp_path: Path, outputs: dict) -> None:
    """A Hugging Face directory with pytorch_model.bin imports like safetensors, and the imported model
    trains on: its loss draws t per block of [BOS ; x] and never masks BOS."""
    hf = hf_dir_from_backbone_state(tmp_path, "bd3lm_bs4")
    torch.save(load_file(hf / "model.safetensors"), hf / "pytorch_model.bin")
    _, from_safetensors = bc.import_checkpoint(hf)
    (hf / "model.safetensors").unlink()
    config, from_bin = bc.import_checkpoint(hf)
    assert all(torch.equal(from_bin[k], from_safetensors[k]) for k in from_safetensors)
    model = build_model(config)
    model.load_state_dict(from_bin)
    tokens, lengths = batch(outputs)
    nelbo, count = model.loss(tokens, lengths, generator=torch.Generator().manual_seed(0))
    nelbo.backward()
    assert int(count) == 45 and torch.isfinite(nelbo) and model.backbone.out.bias.grad.abs().sum() > 0
    assert model.num_blocks(15) == 4 and model.expand_t(torch.arange(4.0)[None], 15).tolist() == [
        [0.0] * 3 + [1.0] * 4 + [2.0] * 4 + [3.0] * 4
    ]


def test_lightning_config_errors_name_the_file_and_key(tmp_path: Path) -> None:
    """A Lightning checkpoint whose hydra config (here a plain dict, as OmegaConf.to_container saves it)
    names another algorithm, lacks a key, disagrees with the weights' shapes, or whose EMA list does not
    follow the parameters: each is an error naming the file and the key."""
    resolved = json.loads((FIXTURE / "config.json").read_text())["cases"]["mdlm"]["resolved_config"]
    state = torch.load(FIXTURE / "mdlm.backbone_state_dict.pt", weights_only=True)
    weights = {f"backbone._orig_mod.{k}": v for k, v in state.items()}
    params = [v for k, v in state.items() if k != "rotary_emb.inv_freq"]

    def write(config: dict, ema: list | None = params) -> Path:
        path = tmp_path / "last.ckpt"
        torch.save(
            {"state_dict": weights, "hyper_parameters": {"config": config}, "ema": {"shadow_params": ema}},
            path,
        )
        return path

    config, imported_state = bc.import_checkpoint(write(resolved))
    assert config == bc.import_checkpoint(FIXTURE / "mdlm.lightning.ckpt")[0]
    _, fixture_state = bc.import_checkpoint(FIXTURE / "mdlm.lightning.ckpt")
    assert all(torch.equal(imported_state[k], fixture_state[k]) for k in fixture_state)
    cases = [
        (resolved | {"algo": resolved["algo"] | {"name": "sedd"}}, "algo.name 'sedd' is not one of"),
        (
            resolved | {"algo": resolved["algo"] | {"parameterization": "d3pm"}},
            "algo.parameterization 'd3pm'",
        ),
        (resolved | {"noise": {"type": "cosine"}}, "noise.type 'cosine'"),
        (resolved | {"algo": resolved["algo"] | {"ignore_bos": False}}, "algo.ignore_bos must be true"),
        ({k: v for k, v in resolved.items() if k != "model"}, "the config has no key 'model.length'"),
        (
            resolved | {"model": resolved["model"] | {"cond_dim": 8}},
            r"backbone\.sigma_map\.mlp\.0\.weight has shape",
        ),
        (
            resolved | {"model": resolved["model"] | {"n_heads": 3}},
            "its config gives no valid LM: LmConfig.n_heads",
        ),
    ]
    for config, message in cases:
        with pytest.raises((ValueError, KeyError), match=message) as error:
            bc.import_checkpoint(write(config))
        assert str(tmp_path / "last.ckpt") in str(error.value)
    with pytest.raises(ValueError, match=f"{tmp_path / 'last.ckpt'}.*ema.shadow_params has 29 tensors"):
        bc.import_checkpoint(write(resolved, params[:-1]))
    with pytest.raises(ValueError, match=r"EMA shadow of vocab_embed.embedding has shape \(32, 51\)"):
        bc.import_checkpoint(write(resolved, [params[0].T, *params[1:]]))


@pytest.mark.parametrize("case", ["bd3lm_bs4", "bd3lm_bs16", "bd3lm_bs1"])
def test_full_xt_x0_pass_and_mask_equal_reference(outputs: dict, case: str) -> None:
    """The block-diffusion mask is bd3lms' block_diff_mask, and the whole x_t ⊕ x_0 pass (both halves,
    rotary positions 0..L-1 in each) gives the reference's output layer on all 2L positions."""
    from recipe.lm.block_diffusion import bd3_attention_mask

    config, model = imported(case)
    ref = outputs[case]
    assert torch.equal(bd3_attention_mask(16, config.block_size), ref["attn_mask"])
    with torch.no_grad():
        h = model.backbone.hidden(ref["x_input"], torch.arange(16).repeat(2), ref["attn_mask"])[0]
        logits = model.backbone.output_layer(h)
    assert (logits - ref["output_layer_logits_full"]).abs().max() <= TOL
