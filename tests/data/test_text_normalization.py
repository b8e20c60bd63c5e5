"""Text normalization and the text dict / text lines formats."""

import gzip

import pytest

from recipe.data.text_dict import (
    read_seq_tags,
    read_text_dict,
    read_text_lines,
    write_text_dict,
    write_text_lines,
)
from recipe.data.text_normalization import normalize_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "In the beginning God created the heaven and the earth.",
            "in the beginning god created the heaven and the earth",
        ),
        (
            "Where is Abel thy brother? And he said, I know not:",
            "where is abel thy brother and he said i know not",
        ),
        ("thy brother's blood", "thy brother's blood"),
        ("his sons' wives; 'tis so", "his sons wives tis so"),
        ("O'ER THE HILLS", "o'er the hills"),
        ("loving-kindness, sin--; (selah)", "loving kindness sin selah"),
        ("don\u2019t  stop\t now ", "don't stop now"),
        ("x_y 42nd Stra\u00dfe \uff21", "x y 42nd stra\u00dfe a"),
        ("?!.", ""),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected


def test_normalize_text_cased_keeps_case_only() -> None:
    assert (
        normalize_text("And GOD said, Let there be light:", lowercase=False)
        == "And GOD said Let there be light"
    )


@pytest.mark.parametrize("name", ["dict.py", "dict.py.gz"])
def test_text_dict_round_trip(tmp_path, name: str) -> None:
    data = {
        "kjv/Ge1:1": "in the beginning",
        "dev-other/116-288045-0000/116-288045-0000": "it's \"quoted\" and 'single' \u00e9",
        "x/line-3": "",
    }
    path = tmp_path / name
    write_text_dict(path, data)
    assert read_text_dict(path) == data
    assert list(read_text_dict(path)) == list(data)  # order kept
    raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    assert raw.decode().splitlines()[0] == "{" and raw.decode().splitlines()[-1] == "}"
    assert len(raw.decode().splitlines()) == len(data) + 2  # one entry per line


def test_gzip_output_is_byte_deterministic(tmp_path) -> None:
    data = {f"t/{i}": f"text {i}" for i in range(100)}
    write_text_dict(tmp_path / "a.py.gz", data)
    write_text_dict(tmp_path / "b.py.gz", data)
    assert (tmp_path / "a.py.gz").read_bytes() == (tmp_path / "b.py.gz").read_bytes()


def test_read_text_dict_accepts_other_i6_layouts(tmp_path) -> None:
    one_line = tmp_path / "one_line.py"
    one_line.write_text("{'a': 'x', 'b': 'y'}\n")
    assert read_text_dict(one_line) == {"a": "x", "b": "y"}
    no_trailing_comma = tmp_path / "no_comma.py"
    no_trailing_comma.write_text("{\n'a': 'x',\n  'b': \"it's\"\n}\n\n")
    assert read_text_dict(no_trailing_comma) == {"a": "x", "b": "it's"}


def test_gzip_detected_by_content_not_name(tmp_path) -> None:
    path = tmp_path / "lines.txt"  # gzipped although the name says plain text
    path.write_bytes(gzip.compress(b"one\ntwo\n"))
    assert read_text_lines(path) == ["one", "two"]


def test_text_lines_round_trip_and_line_break_error(tmp_path) -> None:
    assert write_text_lines(tmp_path / "a.txt.gz", ["a b", "c"]) == 2
    assert read_text_lines(tmp_path / "a.txt.gz") == ["a b", "c"]
    with pytest.raises(ValueError, match=r"b\.txt: sentence 2 contains a line break"):
        write_text_lines(tmp_path / "b.txt", ["ok", "two\nlines"])


def test_read_seq_tags_from_text_dict_or_tag_list(tmp_path) -> None:
    write_text_dict(tmp_path / "refs.py.gz", {"kjv/Ge1:1": "x", "kjv/Ge1:2": "y"})
    assert read_seq_tags(tmp_path / "refs.py.gz") == ["kjv/Ge1:1", "kjv/Ge1:2"]
    (tmp_path / "tags.txt").write_text("kjv/Ge1:1\n\n  kjv/Ge1:3 \n")
    assert read_seq_tags(tmp_path / "tags.txt") == ["kjv/Ge1:1", "kjv/Ge1:3"]
