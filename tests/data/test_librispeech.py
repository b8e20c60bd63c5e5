"""LibriSpeech download and transcription reading, on small local archives in the real layout."""

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from recipe.data.download import ChecksumError, download, sha256_of_file
from recipe.data.librispeech import SUBSET_SHA256, SUBSET_URL, read_transcriptions_from_tar
from recipe.data.text_dict import TextFormatError

TRANSCRIPTIONS = {
    ("dev-clean", "1272", "128104"): [
        "1272-128104-0000 MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES",
        "1272-128104-0001 NOR IS MISTER QUILTER'S MANNER LESS INTERESTING",
    ],
    ("dev-clean", "84", "121123"): ["84-121123-0000 GO DO YOU HEAR"],
}


def make_librispeech_tar(path: Path, transcriptions: dict[tuple[str, str, str], list[str]]) -> Path:
    """A ``.tar.gz`` in LibriSpeech's layout: a top-level file, per chapter fake flacs and a .trans.txt."""

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w:gz") as tar:
        add(tar, "LibriSpeech/README.TXT", b"LibriSpeech fixture\n")
        for (subset, spk, chapter), lines in transcriptions.items():
            folder = f"LibriSpeech/{subset}/{spk}/{chapter}"
            for line in lines:
                add(tar, f"{folder}/{line.split()[0]}.flac", b"fLaC\0\0not audio")
            add(tar, f"{folder}/{spk}-{chapter}.trans.txt", ("\n".join(lines) + "\n").encode())
    return path


def test_known_checksums_cover_all_subsets() -> None:
    assert set(SUBSET_SHA256) == {"dev-clean", "dev-other", "test-clean", "test-other"} | {
        "train-clean-100",
        "train-clean-360",
        "train-other-500",
    }
    assert all(len(digest) == 64 and int(digest, 16) >= 0 for digest in SUBSET_SHA256.values())
    assert SUBSET_URL.format(subset="dev-other") == "https://www.openslr.org/resources/12/dev-other.tar.gz"


def test_download_and_read_transcriptions(tmp_path: Path) -> None:
    archive = make_librispeech_tar(tmp_path / "dev-clean.tar.gz", TRANSCRIPTIONS)
    digest = sha256_of_file(archive)
    target = tmp_path / "downloaded.tar.gz"
    assert download(archive.as_uri(), target, sha256=digest.upper()) == digest
    assert target.read_bytes() == archive.read_bytes()
    assert read_transcriptions_from_tar(target, "dev-clean") == {
        "dev-clean/1272-128104-0000/1272-128104-0000": "mister quilter is the apostle of the middle classes",
        "dev-clean/1272-128104-0001/1272-128104-0001": "nor is mister quilter's manner less interesting",
        "dev-clean/84-121123-0000/84-121123-0000": "go do you hear",
    }
    cased = read_transcriptions_from_tar(target, "dev-clean", lowercase=False)
    assert cased["dev-clean/84-121123-0000/84-121123-0000"] == "GO DO YOU HEAR"


def test_download_lm_corpus_without_checksum(tmp_path: Path) -> None:
    source = tmp_path / "librispeech-lm-norm.txt.gz"
    source.write_bytes(gzip.compress(b"A LINE OF TEXT\nANOTHER ONE\n"))
    digest = download(source.as_uri(), tmp_path / "copy.txt.gz", sha256=None)
    assert digest == sha256_of_file(source)


def test_wrong_checksum_names_url_expected_and_actual(tmp_path: Path) -> None:
    archive = make_librispeech_tar(tmp_path / "dev-clean.tar.gz", TRANSCRIPTIONS)
    target = tmp_path / "out.tar.gz"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        download(archive.as_uri(), target, sha256=wrong)
    message = str(info.value)
    assert archive.as_uri() in message and wrong in message and sha256_of_file(archive) in message
    assert not target.exists() and not Path(str(target) + ".part").exists()


def test_missing_url_names_url(tmp_path: Path) -> None:
    url = (tmp_path / "nothing-here.tar.gz").as_uri()
    with pytest.raises(OSError, match=f"download of {url} failed"):
        download(url, tmp_path / "x", sha256=None)


def test_subset_missing_from_tar(tmp_path: Path) -> None:
    archive = make_librispeech_tar(tmp_path / "dev-clean.tar.gz", TRANSCRIPTIONS)
    with pytest.raises(ValueError, match=r"no LibriSpeech/test-other/\*/\*/\*\.trans\.txt"):
        read_transcriptions_from_tar(archive, "test-other")


def test_malformed_transcription_line_names_member_and_line(tmp_path: Path) -> None:
    bad = {("dev-other", "116", "288045"): ["116-288045-0000 FINE", "116-999999-0001 WRONG CHAPTER"]}
    archive = make_librispeech_tar(tmp_path / "dev-other.tar.gz", bad)
    with pytest.raises(
        TextFormatError, match=r"116/288045/116-288045\.trans\.txt:2: expected '116-288045-<nr> TEXT'"
    ):
        read_transcriptions_from_tar(archive, "dev-other")
