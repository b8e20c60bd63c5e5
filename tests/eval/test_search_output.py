"""Search-output reader/writer round trips, bad input, and the resumable score checkpoint."""

import gzip
import math
import os

import numpy as np
import pytest

from recipe.asr.search_output import (
    NBestScoreCheckpoint,
    SearchOutputError,
    best_text,
    nbest_with_scores,
    read_nbest,
    read_search_output,
    write_search_output,
)
from recipe.data.text_dict import TextFormatError

NBEST = {
    "kjv/Ge1:1": [(-12.5, "in the beginning"), (-13.25, "in the beginnings"), (math.nan, "nan score")],
    "kjv/Ge1:2": [(-math.inf, "it's \"quoted\" and 'single'"), (math.inf, "ünïcödé")],
    "kjv/Ge1:3": [(0.1 + 0.2, "")],
    "empty/list": [],
}


def _same(a: dict, b: dict) -> bool:
    """Equality that treats NaN scores as equal."""
    if list(a) != list(b):
        return False
    for tag in a:
        if isinstance(a[tag], str) or isinstance(b[tag], str):
            if a[tag] != b[tag]:
                return False
            continue
        if len(a[tag]) != len(b[tag]):
            return False
        for (sa, ta), (sb, tb) in zip(a[tag], b[tag], strict=True):
            if ta != tb or not (sa == sb or (math.isnan(sa) and math.isnan(sb))):
                return False
    return True


@pytest.mark.parametrize("name", ["search_out.py", "search_out.py.gz"])
def test_round_trip_nbest_is_exact(tmp_path, name):
    path = tmp_path / name
    write_search_output(path, NBEST)
    assert _same(read_search_output(path), NBEST)
    with open(path, "rb") as f:
        assert (f.read(2) == b"\x1f\x8b") == name.endswith(".gz")
    assert os.listdir(tmp_path) == [name]  # no temporary file left behind


def test_round_trip_single_texts_and_numpy_scores(tmp_path):
    path = tmp_path / "out.py"
    write_search_output(path, {"a": "hello world", "b": [(np.float64(-1.5), "x"), (np.float32(2), "y")]})
    assert read_search_output(path) == {"a": "hello world", "b": [(-1.5, "x"), (2.0, "y")]}
    assert read_nbest(path) == {"a": [(0.0, "hello world")], "b": [(-1.5, "x"), (2.0, "y")]}
    assert path.read_text().splitlines()[1] == "'a': 'hello world',"


def test_gzip_output_is_deterministic(tmp_path):
    write_search_output(tmp_path / "a.py.gz", NBEST)
    write_search_output(tmp_path / "b.py.gz", NBEST)
    assert (tmp_path / "a.py.gz").read_bytes() == (tmp_path / "b.py.gz").read_bytes()


def test_reads_returnn_and_i6_multiline_layout_with_nan_inf(tmp_path):
    path = tmp_path / "search_out.gz"
    text = (
        "{\n"
        "'dev/1': [\n"
        "(-1.000000, 'a b'),\n"
        "(nan, 'a c'),\n"
        "(-inf, 'a d'),\n"
        "],\n"
        "'dev/2': [(-3, 'x'), (+2.5e1, 'y')],\n"
        "'dev/3': 'single best',\n"
        "}\n"
    )
    with gzip.open(path, "wt") as f:
        f.write(text)
    result = read_search_output(path)
    assert result["dev/1"][0] == (-1.0, "a b")
    assert math.isnan(result["dev/1"][1][0]) and result["dev/1"][2][0] == -math.inf
    assert result["dev/2"] == [(-3.0, "x"), (25.0, "y")]
    assert result["dev/3"] == "single best"


@pytest.mark.parametrize(
    "content, line, message",
    [
        ("{\n'a': [(-1.0, 'x')],\n'b': [(-1.0, 'y'),\n}\n", 4, "not a Python dict literal"),
        ("[(-1.0, 'x')]\n", 1, "expected a dict"),
        ("{\n'a': [(-1.0, 'x')],\n3: 'y',\n}\n", 3, "sequence tag must be a string"),
        ("{\n'a': 'x',\n\n'a': 'y',\n}\n", 4, "duplicate sequence tag 'a'"),
        ("{\n'a': [('-1.0', 'x')],\n}\n", 2, "score must be a number"),
        ("{\n'a': [(-1.0, 'x', 3)],\n}\n", 2, "expected (score, text)"),
        ("{\n'a': 5,\n}\n", 2, "expected a text or a list"),
        ("{\n'a': [(__import__('os').getpid(), 'x')],\n}\n", 2, "not a literal"),
        ("{\n'a': [(foo, 'x')],\n}\n", 2, "not a literal"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, content, line, message):
    path = tmp_path / "bad.py"
    path.write_text(content)
    with pytest.raises(SearchOutputError) as info:
        read_search_output(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert message in str(info.value)


def test_empty_and_binary_files_raise(tmp_path):
    (tmp_path / "empty.py").write_text("\n")
    with pytest.raises(SearchOutputError, match="empty file"):
        read_search_output(tmp_path / "empty.py")
    (tmp_path / "bin.py").write_bytes(b"{\n'a': 'x\0'}\n")
    with pytest.raises(TextFormatError, match=r"bin.py:2: NUL bytes"):
        read_search_output(tmp_path / "bin.py")


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.py"
    write_search_output(path, {"a": "old"})
    with pytest.raises(TypeError, match="tag 'b'"):
        write_search_output(path, {"a": [(-1.0, "new")], "b": [(-1.0, 7)]})
    assert read_search_output(path) == {"a": "old"}
    assert os.listdir(tmp_path) == ["out.py"]


def test_best_text():
    assert best_text([(-2.0, "b"), (-1.0, "a"), (-1.0, "c")]) == "a"
    assert best_text([(math.nan, "n"), (-5.0, "x")]) == "x"
    assert best_text([]) is None
    assert best_text("plain") == "plain"


def test_checkpoint_reload_and_fingerprint(tmp_path):
    path = tmp_path / "scores.ckpt"
    with NBestScoreCheckpoint(path) as ckpt:
        ckpt.add("a", ["x", "y"], [-1.0, math.nan])
        ckpt.add("b", ["z"], [-math.inf])
        with pytest.raises(ValueError, match="tag 'c': 1 scores for 2 hypotheses"):
            ckpt.add("c", ["p", "q"], [1.0])
    with NBestScoreCheckpoint(path) as ckpt:
        assert len(ckpt) == 2 and list(ckpt) == ["a", "b"]
        a = ckpt.get("a", ["x", "y"])
        assert a[0] == -1.0 and math.isnan(a[1])
        assert ckpt.get("b", ["z"]) == [-math.inf]
        assert ckpt.get("a", ["x", "other"]) is None  # n-best changed since: recompute
        assert ckpt.get("c", ["p"]) is None
        ckpt.add("a", ["x", "other"], [-3.0, -4.0])
    with NBestScoreCheckpoint(path) as ckpt:
        assert ckpt.get("a", ["x", "other"]) == [-3.0, -4.0]


def test_checkpoint_drops_torn_last_line_and_rejects_corruption(tmp_path):
    path = tmp_path / "scores.ckpt"
    with NBestScoreCheckpoint(path) as ckpt:
        ckpt.add("a", ["x"], [-1.0])
        ckpt.add("b", ["y"], [-2.0])
    content = path.read_bytes()
    path.write_bytes(content[:-7])  # a crash in the middle of writing record "b"
    with NBestScoreCheckpoint(path) as ckpt:
        assert ckpt.num_dropped_torn_lines == 1
        assert list(ckpt) == ["a"]
        ckpt.add("b", ["y"], [-2.5])
    with NBestScoreCheckpoint(path) as ckpt:
        assert ckpt.get("b", ["y"]) == [-2.5]
    path.write_text(path.read_text().replace("'a'", "'a' garbage", 1))
    with pytest.raises(SearchOutputError, match=r"scores.ckpt:1: corrupt checkpoint record"):
        NBestScoreCheckpoint(path)


def test_nbest_with_scores_checks_shapes():
    with pytest.raises(ValueError, match="no scores for tag 'a'"):
        nbest_with_scores({"a": [(0.0, "x")]}, {})
    with pytest.raises(ValueError, match="tag 'a': 2 scores for 1 hypotheses"):
        nbest_with_scores({"a": [(0.0, "x")]}, {"a": [1.0, 2.0]})
