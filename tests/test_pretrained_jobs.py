"""ImportBd3lmsCheckpointJob / ExportHfCheckpointJob through the real ``sis manager``, with a downstream
RETURNN job on the imported checkpoints.

The fixture (``../shared/fixtures/bd3lms_reference``) holds real bd3lms Lightning checkpoints of a tiny
model with a word-level vocabulary (t0..t48, ``<|endoftext|>`` = 49).  The AR model's perplexity from
``ComputePerplexityJob`` must be bd3lms' own ``val/ppl`` on the same three sequences (the AR score is
exact, no Monte-Carlo), and so must the MDLM weights scored as a BD3-LM with L' = 1 (every Monte-Carlo
sample is then the exact NLL, bd3lms' deterministic bd3lm_bs1 case); the imported BD3-LM checkpoint must give the reference logits, and the exported
Hugging Face directories must import to the same weights.
"""

from __future__ import annotations

import ast
import json
import os
import textwrap
from pathlib import Path

import pytest
import torch

from recipe.lm.bd3lms_checkpoints import import_checkpoint
from recipe.lm.build import load_model
from recipe.lm.checkpoints import read_checkpoint
from recipe.lm.config import LmConfig
from tests.pipeline_run import REPO, run_manager_to_completion

FIXTURE = REPO.parent / "shared" / "fixtures" / "bd3lms_reference"
pytestmark = pytest.mark.skipif(
    not FIXTURE.is_dir(),
    reason=f"bd3lms reference fixture not found at {FIXTURE} (../shared is not part of a clone)",
)

CONFIG = """
import dataclasses

from sisyphus import tk

from jobs.lm_eval import ComputePerplexityJob
from jobs.pretrained import ExportHfCheckpointJob, ImportBd3lmsCheckpointJob, bd3lms_lm_config


def py():
    imported = {{}}
    for name in ("bd3lm_bs4", "ar", "mdlm"):
        ckpt = tk.Path("{fixture}/" + name + ".lightning.ckpt")
        lm_config = bd3lms_lm_config(ckpt)
        imported[name] = job = ImportBd3lmsCheckpointJob(ckpt, lm_config)
        tk.register_output(name + "/model.pt", job.out_checkpoint.path)
        tk.register_output(name + "/lm_config.json", job.out_lm_config)
        if name != "mdlm":
            tk.register_output(name + "/hf", ExportHfCheckpointJob(job.out_checkpoint, lm_config).out_dir)
    dataset = {{
        "class": "LmDataset",
        "corpus_file": "{root}/text.txt",
        "orth_vocab": {{"vocab_file": "{root}/vocab.txt", "unknown_label": None}},
        "seq_end_symbol": None,
        "unknown_symbol": None,
        "dtype": "int32",
    }}
    ar = imported["ar"]
    ppl = ComputePerplexityJob(ar.out_checkpoint, ar.lm_config, dataset, device="cpu")
    tk.register_output("ar/perplexity", ppl.out_perplexity)
    # the MDLM weights as a BD3-LM with L' = 1 (as bd3lms finetunes): the NELBO is the exact NLL
    bs1 = dataclasses.replace(imported["mdlm"].lm_config, kind="bd3lm", block_size=1)
    ppl = ComputePerplexityJob(imported["mdlm"].out_checkpoint, bs1, dataset, num_samples=2, device="cpu")
    tk.register_output("bd3lm_bs1/perplexity", ppl.out_perplexity)
"""


@pytest.mark.slow
def test_import_export_and_perplexity_through_sis_manager(tmp_path: Path) -> None:
    outputs = torch.load(FIXTURE / "outputs.pt", weights_only=True)
    x0 = outputs["inputs"]["x0"]
    words = [f"t{i}" for i in range(49)] + ["<|endoftext|>"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    # our data contract: the tokens after BOS (the model puts BOS = EOS in front), EOS included
    (tmp_path / "text.txt").write_text(
        "\n".join(" ".join(words[i] for i in row[1:]) for row in x0.tolist()) + "\n"
    )
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "__init__.py").write_text("")
    (tmp_path / "config" / "imp.py").write_text(
        textwrap.dedent(CONFIG.format(fixture=FIXTURE, root=tmp_path))
    )
    for name in ("recipe", "jobs", "settings.py"):
        os.symlink(REPO / name, tmp_path / name)
    run_manager_to_completion(tmp_path, "config/imp.py", timeout=600)

    out = tmp_path / "output"
    for case in ("ar", "bd3lm_bs1"):
        ppl = float(ast.literal_eval((out / case / "perplexity").read_text()))
        assert abs(ppl - float(outputs[case]["val_ppl"])) <= 1e-4 * ppl, case
    config = LmConfig(**json.loads((out / "bd3lm_bs4" / "lm_config.json").read_text()))
    assert config.bd3lms_layout and (config.kind, config.block_size) == ("bd3lm", 4)
    model = load_model(config, out / "bd3lm_bs4" / "model.pt")
    ref = outputs["bd3lm_bs4"]
    with torch.no_grad():
        logits = model.backbone.output_layer(
            model._states(x0[:, 1:], torch.full((3,), 15), ref["xt"][:, 1:], None)
        )
    assert (logits - ref["backbone_logits"][:, 1:]).abs().max() <= 1e-5
    for case in ("bd3lm_bs4", "ar"):
        config, state = import_checkpoint(out / case / "hf")
        imported = read_checkpoint(out / case / "model.pt")
        assert config == LmConfig(**json.loads((out / case / "lm_config.json").read_text()))
        assert state.keys() == imported.keys() and all(torch.equal(state[k], imported[k]) for k in state)
    assert not list(tmp_path.glob("work/**/*.tmp"))


def test_failed_import_leaves_nothing_finished(fresh_graph: Path) -> None:
    """A checkpoint that is damaged after the graph was built (or no longer gives the job's config) fails
    the run with the file's name; no output file and no finished marker are left."""
    from jobs.pretrained import ExportHfCheckpointJob, ImportBd3lmsCheckpointJob, bd3lms_lm_config
    from sisyphus import tk

    ckpt = fresh_graph / "model.ckpt"
    ckpt.write_bytes((FIXTURE / "mdlm.lightning.ckpt").read_bytes())
    lm_config = bd3lms_lm_config(tk.Path(str(ckpt)))
    job = ImportBd3lmsCheckpointJob(tk.Path(str(ckpt)), lm_config)
    ckpt.write_bytes((FIXTURE / "mdlm.lightning.ckpt").read_bytes()[:100_000])
    with pytest.raises(RuntimeError, match=f"{ckpt} is truncated or not a torch checkpoint"):
        tk.run_job(job)
    other = ImportBd3lmsCheckpointJob(tk.Path(str(FIXTURE / "ar.lightning.ckpt")), lm_config)
    with pytest.raises(RuntimeError, match="no longer gives the job's lm_config: kind='ar' .file. vs 'mdlm'"):
        tk.run_job(other)
    for failed in (job, other):
        assert not os.path.exists(failed.out_checkpoint.path.get_path())
        assert not os.path.exists(failed.out_lm_config.get_path())
        assert not failed._sis_finished()
    default = LmConfig(
        kind="mdlm", vocab_size=50, eos_id=49, max_seq_len=15, hidden=32, n_layers=2, n_heads=4
    )
    with pytest.raises(ValueError, match="bd3lms_layout"):
        ExportHfCheckpointJob(job.out_checkpoint, default)


def test_export_job_resolves_a_searched_noise_range(fresh_graph: Path) -> None:
    """A BD3-LM whose noise range is a Variable (e.g. SearchNoiseRangeJob's output) exports the searched
    range as config.json's sampling_eps_min/max and the sampling_eps buffers."""
    import dataclasses

    from safetensors.torch import load_file

    from jobs.pretrained import ExportHfCheckpointJob, ImportBd3lmsCheckpointJob, bd3lms_lm_config
    from sisyphus import tk

    ckpt = tk.Path(str(FIXTURE / "bd3lm_bs4.lightning.ckpt"))
    imported = ImportBd3lmsCheckpointJob(ckpt, bd3lms_lm_config(ckpt))
    tk.run_job(imported)
    searched = tk.Variable(str(fresh_graph / "noise_range"))
    searched.set((0.3, 0.8))
    clipped = dataclasses.replace(imported.lm_config, noise_range=searched)
    export = ExportHfCheckpointJob(imported.out_checkpoint, clipped)
    tk.run_job(export)
    directory = Path(export.out_dir.get_path())
    config = json.loads((directory / "config.json").read_text())
    assert (config["sampling_eps_min"], config["sampling_eps_max"]) == (0.3, 0.8)
    assert float(load_file(directory / "model.safetensors")["sampling_eps_min"]) == pytest.approx(0.3)
    assert sorted(p.name for p in directory.parent.iterdir()) == ["hf"]  # no .tmp left behind
