"""``config/pretrained.py``: the graph for the bd3lms reference fixture (import, bd3lms-protocol
perplexities on the KJV test text and a user text, samples, rescoring with the checkpoint's tokenizer)
and its errors when the graph is built: a missing checkpoint or text, a tokenizer that does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline_run import REPO

FIXTURE = REPO.parent / "shared" / "fixtures" / "bd3lms_reference"
pytestmark = pytest.mark.skipif(
    not FIXTURE.is_dir(),
    reason=f"bd3lms reference fixture not found at {FIXTURE} (../shared is not part of a clone)",
)


def _jobs(kind: type) -> list:
    from sisyphus.job import created_jobs

    return [job for job in created_jobs.values() if type(job) is kind]


def test_graph_for_the_fixture_checkpoint(fresh_graph, tmp_path: Path):
    from config.pretrained import PRETRAINED_CHECKPOINT, TOKENIZER, pretrained_experiment
    from config.tiny import TINY
    from jobs.diffusion import SampleLmJob
    from jobs.lm_eval import ComputePerplexityJob, RescoreNBestJob
    from jobs.pretrained import ImportBd3lmsCheckpointJob
    from jobs.text import TokenizeTextJob
    from recipe.data.tokenizers import TokenizerFiles

    assert Path(PRETRAINED_CHECKPOINT) == FIXTURE / "mdlm.lightning.ckpt"  # the defaults
    assert Path(TOKENIZER) == FIXTURE / "tokenizer"
    (tmp_path / "mine.txt").write_text("t3 t17 t8\n")
    results = pretrained_experiment(PRETRAINED_CHECKPOINT, TOKENIZER, str(tmp_path / "mine.txt"), TINY)
    assert sorted(results["perplexity"]) == ["kjv_test", "user_text"]
    (imported,) = _jobs(ImportBd3lmsCheckpointJob)
    config = imported.lm_config
    assert (config.kind, config.vocab_size, config.eos_id, config.bd3lms_layout) == ("mdlm", 50, 49, True)
    files = TokenizerFiles.pretrained_dir(str(FIXTURE / "tokenizer"))
    chunks = _jobs(TokenizeTextJob)
    assert len(chunks) == 2 and all(j.wrap_length == 16 and j.tokenizer == files for j in chunks)
    ppl = _jobs(ComputePerplexityJob)
    assert len(ppl) == 2 and all(
        j.protocol == "bd3lms" and j.checkpoint.path == imported.out_checkpoint.path for j in ppl
    )
    rescore = _jobs(RescoreNBestJob)
    assert len(rescore) == 2 and all(j.tokenizer == files and j.lm_config == config for j in rescore)
    (samples,) = _jobs(SampleLmJob)
    assert (samples.tokenizer, samples.nucleus_rule) == (files, "bd3lms")


def test_missing_inputs_and_a_tokenizer_that_does_not_fit(fresh_graph, tmp_path: Path):
    from config.pretrained import TOKENIZER, pretrained_experiment
    from config.tiny import TINY
    from recipe.data.tokenizers import TokenizerError
    from tests.data.test_tokenizers import train_byte_level_bpe

    ckpt = str(FIXTURE / "mdlm.lightning.ckpt")
    with pytest.raises(
        FileNotFoundError, match=r"checkpoint '/nowhere.ckpt' does not exist; set DLM_PRETRAINED"
    ):
        pretrained_experiment("/nowhere.ckpt", TOKENIZER, "", TINY)
    with pytest.raises(FileNotFoundError, match=r"text file '/nowhere.txt' does not exist; set DLM_TEXT"):
        pretrained_experiment(ckpt, TOKENIZER, "/nowhere.txt", TINY)
    bpe = train_byte_level_bpe(tmp_path / "bpe")
    with pytest.raises(
        TokenizerError,
        match=r"mdlm.lightning.ckpt: .* has 51 rows, but the tokenizer .*bpe/tokenizer\.json has 300",
    ):
        pretrained_experiment(ckpt, str(bpe), "", TINY)


def test_bd3lms_protocol_reproduces_the_reference_val_nll_of_the_deterministic_cases() -> None:
    """bd3lms' own val/nll on the fixture's three wrapped chunks ([BOS] + 14 tokens + [EOS]): the AR
    model's (exact) and the L' = 1 BD3-LM's (mdlm weights; every block a single token, so the NELBO is
    the exact NLL for every t), through the perplexity job's ``ignore_bos`` scoring of whole chunks."""
    import dataclasses

    import torch

    from recipe.lm.bd3lms_checkpoints import import_checkpoint
    from recipe.lm.build import build_model
    from recipe.returnn_glue.forward import _score_without_bos

    outputs = torch.load(FIXTURE / "outputs.pt", weights_only=True)
    chunks = outputs["inputs"]["x0"]
    lengths = torch.full((chunks.shape[0],), chunks.shape[1])
    for case, name in (("ar", "ar"), ("bd3lm_bs1", "mdlm")):
        config, state = import_checkpoint(FIXTURE / f"{name}.lightning.ckpt")
        if case == "bd3lm_bs1":
            config = dataclasses.replace(config, kind="bd3lm", block_size=1)
        model = build_model(config)
        model.load_state_dict(state)
        generators = [torch.Generator().manual_seed(i) for i in range(len(chunks))]
        scores = _score_without_bos(model.eval(), chunks, lengths, generators, {"num_samples": 2})
        val_nll = -float(scores.sum()) / float((lengths - 1).sum())
        assert val_nll == pytest.approx(float(outputs[case]["val_nll"]), abs=1e-5), case
