"""KJV and user-text corpora, and the deterministic, leak-free train/dev/test split."""

import gzip
import random

import pytest

from recipe.data.corpus import kjv_corpus, parse_bible_output, split_corpus, split_fraction, text_file_corpus


def test_kjv_corpus_has_all_verses_with_stable_tags() -> None:
    corpus = kjv_corpus()
    assert len(corpus) == 31102
    tags = list(corpus)
    assert tags[0] == "kjv/Ge1:1" and tags[-1] == "kjv/Rev22:21"
    assert corpus["kjv/Ge1:1"] == "in the beginning god created the heaven and the earth"
    assert corpus["kjv/Ge4:9"].endswith("i know not am i my brother's keeper")
    assert all(text and text == text.lower() and "," not in text for text in corpus.values())


def test_kjv_corpus_cased() -> None:
    corpus = kjv_corpus(lowercase=False, verses="Gen1:1-Gen1:3")
    assert corpus == {
        "kjv/Ge1:1": "In the beginning God created the heaven and the earth",
        "kjv/Ge1:2": "And the earth was without form and void and darkness was upon the face of the deep"
        " And the Spirit of God moved upon the face of the waters",
        "kjv/Ge1:3": "And God said Let there be light and there was light",
    }


def test_parse_bible_output_rejects_garbage() -> None:
    with pytest.raises(ValueError, match=r"bible.out:2: expected '<book><chapter>:<verse> <text>'"):
        parse_bible_output(["Ge1:1 In the beginning.", "Genesis chapter one"], source="bible.out")


def test_text_file_corpus_tags_are_source_line_numbers(tmp_path) -> None:
    path = tmp_path / "my.txt"
    path.write_text("Hello, World!\n\n  ...  \nIt's fine.\n")
    assert text_file_corpus(path, "mine") == {"mine/line-1": "hello world", "mine/line-4": "it's fine"}
    (tmp_path / "my.txt.gz").write_bytes(gzip.compress(path.read_bytes()))
    assert text_file_corpus(tmp_path / "my.txt.gz", "mine") == text_file_corpus(path, "mine")
    assert text_file_corpus(path, "mine", normalize=False) == {
        "mine/line-1": "Hello, World!",
        "mine/line-3": "...",
        "mine/line-4": "It's fine.",
    }


def test_split_is_deterministic_and_disjoint(genesis: dict[str, str]) -> None:
    split = split_corpus(genesis, dev_fraction=0.05, test_fraction=0.05)
    again = split_corpus(dict(genesis), dev_fraction=0.05, test_fraction=0.05)
    assert (split.train, split.dev, split.test) == (again.train, again.dev, again.test)
    train, dev, test = set(split.train), set(split.dev), set(split.test)
    assert not (train & dev) and not (train & test) and not (dev & test)
    assert train | dev | test == set(genesis)
    assert 40 < len(dev) < 120 and 40 < len(test) < 120  # ~5% of 1533 each
    assert all(split.dev[tag] == genesis[tag] for tag in dev)
    assert list(split.train) == [tag for tag in genesis if tag in train]  # corpus order kept


def test_split_membership_depends_only_on_the_tag(genesis: dict[str, str]) -> None:
    full = split_corpus(genesis, dev_fraction=0.1, test_fraction=0.1)
    items = list(genesis.items())
    random.Random(0).shuffle(items)
    half = dict(items[: len(items) // 2])
    part = split_corpus(half, dev_fraction=0.1, test_fraction=0.1)
    assert set(part.dev) == set(full.dev) & set(half)
    assert set(part.test) == set(full.test) & set(half)
    other_seed = split_corpus(genesis, dev_fraction=0.1, test_fraction=0.1, seed="other")
    assert set(other_seed.dev) != set(full.dev)
    assert all(split_fraction(tag) < 0.1 for tag in full.dev)


def test_excluded_tags_never_reach_train(genesis: dict[str, str]) -> None:
    plain = split_corpus(genesis, dev_fraction=0.05, test_fraction=0.05)
    held_out = list(plain.train)[::10] + list(plain.dev)[:3]
    split = split_corpus(genesis, dev_fraction=0.05, test_fraction=0.05, exclude_tags=held_out)
    assert not set(held_out) & set(split.train)
    assert sorted(split.excluded) == sorted(list(plain.train)[::10])
    assert (split.dev, split.test) == (plain.dev, plain.test)  # dev/test do not move with the exclude list
    assert len(split.train) == len(plain.train) - len(split.excluded)
