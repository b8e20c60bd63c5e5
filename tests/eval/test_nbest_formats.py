"""N-best readers of other toolkits (Kaldi, ESPnet, icefall, HyPoradise): small files in each format,
their converter jobs to search output, round trips through the writers, and errors naming file and line."""

import json
from pathlib import Path

import pytest

from jobs.nbest_formats import (
    EspnetNBestToSearchOutputJob,
    HyporadiseToSearchOutputJob,
    IcefallRecogsToSearchOutputJob,
    KaldiNBestToSearchOutputJob,
)
from recipe.asr.nbest_formats import (
    NBestFormatError,
    read_espnet_json,
    read_hyporadise_json,
    read_icefall_recogs,
    read_kaldi_nbest,
    write_espnet_json,
    write_hyporadise_json,
    write_icefall_recogs,
    write_kaldi_nbest,
)
from recipe.asr.search_output import read_nbest
from recipe.data.text_dict import read_text_dict
from sisyphus import gs, tk


@pytest.fixture
def base_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(gs, "BASE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> tk.Path:
    path.write_text(text, encoding="utf-8")
    return tk.Path(str(path))


# utterance ids with '-' (as LibriSpeech's), ranks out of order, an empty hypothesis
KALDI_TEXT = "1272-128104-0000-2 mister quilter is\n1272-128104-0000-1 mister quilter is the\nutt2-1\n"
KALDI_LM = "1272-128104-0000-1 10.5\n1272-128104-0000-2 12.0\nutt2-1 3\n"
KALDI_AC = "1272-128104-0000-1 200\n1272-128104-0000-2 150\nutt2-1 0\n"
KALDI_EXPECTED = {
    "1272-128104-0000": [
        (-(10.5 + 0.1 * 200), "mister quilter is the"),
        (-(12.0 + 0.1 * 150), "mister quilter is"),
    ],
    "utt2": [(-3.0, "")],
}


def test_kaldi(base_dir: Path):
    text, lm, ac = (
        write(base_dir / n, t) for n, t in (("text", KALDI_TEXT), ("lm", KALDI_LM), ("ac", KALDI_AC))
    )
    refs = write(base_dir / "ref_text", "1272-128104-0000 Mister Quilter is the apostle\nutt2 yes\n")
    nbest = read_kaldi_nbest("text", lm_cost="lm", ac_cost="ac", acoustic_scale=0.1)
    assert nbest == KALDI_EXPECTED
    job = KaldiNBestToSearchOutputJob(text, lm_cost=lm, ac_cost=ac, references=refs)
    tk.run_job(job)
    assert read_nbest(job.out_nbest) == KALDI_EXPECTED and job.out_num_seqs.get() == 2
    assert read_text_dict(job.out_references)["1272-128104-0000"] == "Mister Quilter is the apostle"
    normalized = KaldiNBestToSearchOutputJob(text, lm_cost=lm, ac_cost=ac, references=refs, normalize=True)
    tk.run_job(normalized)
    assert read_text_dict(normalized.out_references)["1272-128104-0000"] == "mister quilter is the apostle"
    # round trip: search output -> Kaldi archives -> search output
    paths = write_kaldi_nbest(read_nbest(job.out_nbest), base_dir / "back")
    assert (
        read_kaldi_nbest(paths["text"], lm_cost=paths["lm_cost"], ac_cost=paths["ac_cost"]) == KALDI_EXPECTED
    )
    # integer word ids with a symbol table (the raw nbest-to-linear output)
    write(base_dir / "words.txt", "<eps> 0\nmister 1\nquilter 2\n")
    write(base_dir / "ids", "u-1 1 2\nu-2 2\n")
    assert read_kaldi_nbest("ids", words="words.txt") == {"u": [(-0.0, "mister quilter"), (-0.0, "quilter")]}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"text": "utt 1 2\n"}, r"text:1: key 'utt' is not <utterance>-<rank>"),
        ({"text": "u-1 a\nu-1 b\n"}, r"text:2: duplicate key 'u-1' \(first at text:1\)"),
        ({"text": "u-1 a\nu-2 b\n", "lm": "u-1 1.0\n"}, r"lm: no lm cost for 'u-2' \(text:2\)"),
        ({"text": "u-1 a\n", "lm": "u-1 1.0\nv-1 2\n"}, r"lm:2: key 'v-1' is not in text"),
        ({"text": "u-1 a\n", "lm": "u-1 x\n"}, r"lm:1: cost 'x' is not a number"),
        ({"text": "u-1 a\n", "lm": "u-1\n"}, r"lm:1: expected '<utt>-<n> <cost>'"),
        ({"text": "u-1 7\n", "words": "a 1\n"}, r"text:1: word ids \['7'\] are not in words"),
    ],
)
def test_kaldi_errors_name_file_and_line(base_dir: Path, files: dict, message: str):
    for name, content in files.items():
        write(base_dir / name, content)
    with pytest.raises(NBestFormatError, match=message):
        read_kaldi_nbest(
            "text", lm_cost="lm" if "lm" in files else None, words="words" if "words" in files else None
        )


ESPNET = {
    "utts": {
        "1272-128104-0000": {
            "output": [
                {
                    "name": "target1[2]",
                    "rec_text": "\u2581mister\u2581quilter<eos>",
                    "score": -7.5,
                    "text": "MISTER QUILTER IS",
                },
                {
                    "name": "target1[1]",
                    "rec_text": "\u2581mister\u2581quilter\u2581is<eos>",
                    "score": -3.25,
                    "text": "MISTER QUILTER IS",
                },
            ],
            "utt2spk": "1272-128104",
        },
        "u2": {"output": [{"name": "target1[1]", "rec_text": "a<space>b<eos>", "score": -1}]},
    }
}


def test_espnet(base_dir: Path):
    path = write(base_dir / "data.json", json.dumps(ESPNET, indent=2))
    nbest, refs = read_espnet_json("data.json")
    assert nbest == {
        "1272-128104-0000": [(-3.25, "mister quilter is"), (-7.5, "mister quilter")],
        "u2": [(-1.0, "a b")],
    }
    assert refs == {"1272-128104-0000": "MISTER QUILTER IS"}
    job = EspnetNBestToSearchOutputJob(path)
    tk.run_job(job)
    assert read_nbest(job.out_nbest) == nbest and read_text_dict(job.out_references) == refs
    write_espnet_json(read_nbest(job.out_nbest), refs, base_dir / "back.json")
    assert read_espnet_json(base_dir / "back.json") == (nbest, refs)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"utts": {\n "a": {"output": [\n  {"rec_text": "x"}]}}}',
            r"data.json:2: utterance 'a', output 0: no 'rec_text' and 'score'",
        ),
        ('{"utts": {\n "a": {"output": []},\n "b": {"out": 1}}}', r"data.json:3: utterance 'b': expected"),
        (
            '{"utts": {\n "a": {"output": [\n {"rec_text": "x", "score": "high"}]}}}',
            r"data.json:2: .*score 'high' is not a number",
        ),
        ('{"utts": {\n "a": ,}}', r"data.json:2: not valid JSON"),
        ('{"other": 1}', r"data.json:1: no 'utts' object"),
        ("", r"data.json:1: empty file"),
    ],
)
def test_espnet_errors_name_file_and_line(base_dir: Path, content: str, message: str):
    write(base_dir / "data.json", content)
    with pytest.raises(NBestFormatError, match=message):
        read_espnet_json("data.json")


ICEFALL = (
    "1089-134686-0000-1:\tref=['HE', 'HOPED', 'THERE']\n"
    "1089-134686-0000-1:\thyp=['HE', 'HOPE', 'THERE']\n"
    "1089-134686-0001-2:\tref=['STUFF']\n"
    "1089-134686-0001-2:\thyp=[]\n"
)


def test_icefall(base_dir: Path):
    path = write(base_dir / "recogs-test-clean-greedy_search.txt", ICEFALL)
    nbest, refs = read_icefall_recogs(str(path))
    assert nbest == {"1089-134686-0000-1": [(0.0, "HE HOPE THERE")], "1089-134686-0001-2": [(0.0, "")]}
    assert refs == {"1089-134686-0000-1": "HE HOPED THERE", "1089-134686-0001-2": "STUFF"}
    job = IcefallRecogsToSearchOutputJob(path, normalize=True)
    tk.run_job(job)
    assert read_nbest(job.out_nbest)["1089-134686-0000-1"] == [(0.0, "he hope there")]
    write_icefall_recogs(nbest, refs, base_dir / "back.txt")
    assert (base_dir / "back.txt").read_text() == ICEFALL
    assert read_icefall_recogs(base_dir / "back.txt") == (nbest, refs)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a:\tref=['x']\nb ref=['y']\n", r"r.txt:2: expected '<cut>:\\tref"),
        ("a:\thyp=['x']\na:\thyp=['y']\n", r"r.txt:2: second hyp for 'a'"),
        ("a:\thyp=x y\n", r"r.txt:1: hyp is not a list of words"),
        ("a:\tref=['x']\n", r"r.txt: 1 cuts have a ref but no hyp line"),
    ],
)
def test_icefall_errors_name_file_and_line(base_dir: Path, content: str, message: str):
    write(base_dir / "r.txt", content)
    with pytest.raises(NBestFormatError, match=message):
        read_icefall_recogs("r.txt")


HYPORADISE = [
    {
        "input": [
            "He hoped there would be stew.",
            "he hoped there would be stu",
            "he hope there would be stew",
        ],
        "output": "he hoped there would be stew for dinner",
    },
    {"input": ["stuff it into you"], "output": "stuff it into you"},
]


def test_hyporadise(base_dir: Path):
    path = write(base_dir / "test_ls.json", json.dumps(HYPORADISE, indent=4))
    nbest, refs = read_hyporadise_json(str(path), prefix="ls/")
    assert nbest == {
        "ls/0": [
            (0.0, "He hoped there would be stew."),
            (-1.0, "he hoped there would be stu"),
            (-2.0, "he hope there would be stew"),
        ],
        "ls/1": [(0.0, "stuff it into you")],
    }
    assert refs == {"ls/0": HYPORADISE[0]["output"], "ls/1": "stuff it into you"}
    job = HyporadiseToSearchOutputJob(path, prefix="ls/", normalize=True)
    tk.run_job(job)
    assert read_nbest(job.out_nbest)["ls/0"][0] == (0.0, "he hoped there would be stew")
    assert read_text_dict(job.out_references) == refs
    # round trip (ids are kept), also as JSON lines and as an object keyed by id
    write_hyporadise_json(nbest, refs, base_dir / "back.json")
    assert read_hyporadise_json(base_dir / "back.json") == (nbest, refs)
    write(
        base_dir / "lines.jsonl",
        "\n".join(json.dumps({"id": f"ls/{i}", **e}) for i, e in enumerate(HYPORADISE)),
    )
    assert read_hyporadise_json(base_dir / "lines.jsonl") == (nbest, refs)
    write(base_dir / "keyed.json", json.dumps({f"ls/{i}": e for i, e in enumerate(HYPORADISE)}))
    assert read_hyporadise_json(base_dir / "keyed.json") == (nbest, refs)
    write(base_dir / "string.json", json.dumps([{"input": "a b\nc d\n", "output": "a b"}]))
    assert read_hyporadise_json(base_dir / "string.json", rank_penalty=0.5)[0] == {
        "0": [(0.0, "a b"), (-0.5, "c d")]
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[\n {"input": ["a"], "output": "a"},\n {"output": "b"}\n]', r"h.json:3: expected \{\"input\""),
        ('[\n {"input": ["a"]},\n {"input": [1, 2]}\n]', r"h.json:3: 'input' of '1' must be a list"),
        ('[\n {"input": ["a"], "output": ["a"]}\n]', r"h.json:2: 'output' of '0' must be the reference"),
        (
            '[\n {"id": "x", "input": ["a"]},\n {"id": "x", "input": ["b"]}\n]',
            r"h.json:3: duplicate utterance 'x'",
        ),
        ('[\n {"input": ["a"]}\n {"input": ["b"]}\n]', r"h.json:3: expected ',' or '\]'"),
        ('{"input": ["a"]}\n{"input": ["b"],}\n', r"h.json:2: not a JSON object per line"),
        ('"just text"', r"h.json:1: expected a JSON list"),
    ],
)
def test_hyporadise_errors_name_file_and_line(base_dir: Path, content: str, message: str):
    write(base_dir / "h.json", content)
    with pytest.raises(NBestFormatError, match=message):
        read_hyporadise_json("h.json")
