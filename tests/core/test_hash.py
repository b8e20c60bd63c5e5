"""Job ids and hashes must equal the real Sisyphus' (golden values computed with rwth-i6/sisyphus)."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from sisyphus import tk
from sisyphus.hash import short_hash, sis_hash_helper

HERE = Path(__file__).parent


@pytest.fixture
def golden(fresh_graph):
    spec = importlib.util.spec_from_file_location("recipe.golden", HERE / "golden_jobs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["recipe.golden"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["recipe.golden"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "GrNNX0NaadXt"),
        ("abc", "TmLmRrLma9wV"),
        (None, "ofRJhp5ks8fN"),
        ([1, 2], "8V10PA2kgV0r"),
        ({"a": 1}, "SCOVuig6yvRq"),
        ({"text": "input_text.gz"}, "ac5pHpOn704c"),
    ],
)
def test_short_hash_vectors(value, expected):
    assert short_hash(value) == expected


def md5_hash(obj) -> str:
    """md5 hex digest of the hash serialisation (the design note's test vectors use it)."""
    return hashlib.md5(sis_hash_helper(obj)).hexdigest()


def test_serialisation_vector():
    ser = sis_hash_helper({"text": "input_text.gz"})
    assert ser == b"(dict, (tuple, (str, 'text'), (str, 'input_text.gz')))"
    assert md5_hash({"text": "input_text.gz"}) == "f744898e46ca9452ff1889edc988d045"


GOLDEN = [
    ("EchoJob(1)", "golden/EchoJob.NDJVIo7caoOW"),
    ("EchoJob(1.5)", "golden/EchoJob.Mj8j1SvpfdHd"),
    ("EchoJob('abc')", "golden/EchoJob.umYawCUlKZdl"),
    ("EchoJob(None)", "golden/EchoJob.bNs3357lRvQ6"),
    ("EchoJob(True)", "golden/EchoJob.I5zNR0ALalO1"),
    ("EchoJob([1, 2, 3])", "golden/EchoJob.YEGFmRPIyPpY"),
    ("EchoJob((1, 'a'))", "golden/EchoJob.oDq0eV9FDZIg"),
    ("EchoJob({'b': 2, 'a': 1})", "golden/EchoJob.EY0RxW3hSG44"),
    ("EchoJob({3, 1, 2})", "golden/EchoJob.Vizgyl7onB80"),
    ("EchoJob(b'bytes')", "golden/EchoJob.PbWzdey34Bjy"),
    ("EchoJob(tk.Path('data/corpus.txt'))", "golden/EchoJob.zOyxMMb63OYu"),
    ("EchoJob(EchoJob(1).out)", "golden/EchoJob.UBc4d3MBYW77"),
    ("EchoJob('x', other={'nested': [1, (2, 3)], 'f': 0.1})", "golden/EchoJob.y9T9tIaBKCGs"),
    ("DefaultsJob('t')", "golden/DefaultsJob.EQ6bqJrzOJ0o"),
    ("DefaultsJob('t', verbose=False)", "golden/DefaultsJob.EQ6bqJrzOJ0o"),
    ("DefaultsJob('t', verbose=True)", "golden/DefaultsJob.VW09fZjRltZ3"),
    ("DefaultsJob('t', size=10)", "golden/DefaultsJob.EQ6bqJrzOJ0o"),
    ("DefaultsJob('t', size=11)", "golden/DefaultsJob.J2JkwAyQ0fF1"),
    ("EchoJob(DefaultsJob('t').out_var)", "golden/EchoJob.mZvXz0E3C00i"),
    ("VersionedJob(1)", "golden/VersionedJob.aaup3FNx6JzN"),
    ("EchoJob(Color.RED)", "golden/EchoJob.2Rs3pmOZE8aB"),
]


@pytest.mark.parametrize(("expr", "expected"), GOLDEN)
def test_golden_job_ids(golden, expr, expected):
    namespace = {
        "tk": tk,
        **{k: getattr(golden, k) for k in ("EchoJob", "DefaultsJob", "VersionedJob", "Color")},
    }
    assert eval(expr, namespace)._sis_id() == expected


def test_same_definition_same_instance_and_argument_change_changes_id(golden):
    a = golden.EchoJob("abc")
    assert golden.EchoJob(value="abc") is a
    assert golden.EchoJob("abd")._sis_id() != a._sis_id()
    assert golden.EchoJob("abc", other=0)._sis_id() != a._sis_id()


def test_ids_stable_across_processes(golden):
    """A fresh interpreter (new hash seed) computes the same ids."""
    code = (
        "import importlib.util, sys; from sisyphus import tk\n"
        f"spec = importlib.util.spec_from_file_location('recipe.golden', {str(HERE / 'golden_jobs.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['recipe.golden'] = m; spec.loader.exec_module(m)\n"
        "print(m.EchoJob({3, 1, 2})._sis_id(), m.EchoJob({'b': 2, 'a': 1})._sis_id())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin"},
    ).stdout.split()
    assert out == ["golden/EchoJob.Vizgyl7onB80", "golden/EchoJob.EY0RxW3hSG44"]


def test_lambda_is_rejected():
    with pytest.raises(ValueError, match="Lambdas"):
        sis_hash_helper(lambda x: x)


def test_setup_path_hash_is_location_independent(fresh_graph, tmp_path):
    from sisyphus.job_path import Path as SisPath

    make = tk.setup_path("config")
    p = make("data/x.txt")
    q = SisPath("/somewhere/else/config/data/x.txt", hash_overwrite=(None, "config/data/x.txt"))
    assert sis_hash_helper(p) == sis_hash_helper(q)
