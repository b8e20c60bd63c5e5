"""RETURNN dataset dicts for LM training and evaluation on SentencePiece ids.

Data contract (all three builders): data key ``"data"``, sparse int32 ids of the SentencePiece model,
one sequence = the ids of one sentence followed by EOS (id 0 with :mod:`recipe.data.sentencepiece_model`'s
layout), no BOS. RETURNN's ``LmDataset`` ignores ``seq_end_symbol`` when ``orth_vocab`` is given (it
calls ``orth_vocab.get_seq`` only), so EOS comes from the vocabulary: ``SentencePieces`` with
``add_eos=True``; the ``OggZipDataset`` targets use the same vocabulary, so train (``LmDataset``) and
dev (ogg zip in a ``MetaDataset``) deliver identical ids for the same sentence.

Paths may be ``str``, ``pathlib`` paths (stored as ``str``) or workflow paths such as ``tk.Path``,
which are kept as they are: they make the dataset's files inputs of the job whose config holds the
dict, and are written as absolute paths when that config file is written.
"""

import os
import pathlib
from typing import Any

PathLike = str | os.PathLike


def _path(path: PathLike) -> Any:
    return str(path) if isinstance(path, pathlib.PurePath) else path


def spm_vocab(spm_model: PathLike, *, add_eos: bool = True) -> dict[str, Any]:
    """RETURNN vocabulary options for a SentencePiece model (``Vocabulary.create_vocab`` kwargs)."""
    return {"class": "SentencePieces", "model_file": _path(spm_model), "add_eos": add_eos}


def token_id_dataset(id_text_dict: PathLike, id_vocab: PathLike) -> dict[str, Any]:
    """``TextDictDataset`` over a text dict ``{tag: "id id ... EOS"}`` of token ids (written by
    ``TokenizeTextJob`` for tokenizers other than SentencePiece), read with the id vocabulary of
    ``recipe.data.tokenizers.write_id_vocabulary``; sequence tags are the dict's tags."""
    return {
        "class": "TextDictDataset",
        "filename": _path(id_text_dict),
        "item_format": "single",
        "vocab": {"class": "Vocabulary", "vocab_file": _path(id_vocab), "unknown_label": None},
    }


def lm_train_dataset(
    text_file: PathLike, spm_model: PathLike, *, partition_epoch: int = 1, seq_ordering: str = "laplace:.1000"
) -> dict[str, Any]:
    """``LmDataset`` over a text-lines file (optionally gzipped), split into ``partition_epoch`` sub-epochs.

    Sequence tags are RETURNN's ``line-<n>`` (0-based, empty lines skipped).
    """
    return {
        "class": "LmDataset",
        "corpus_file": _path(text_file),
        "orth_vocab": spm_vocab(spm_model),
        "seq_end_symbol": None,
        "unknown_symbol": None,
        "dtype": "int32",
        "partition_epoch": partition_epoch,
        "seq_ordering": seq_ordering,
    }


def text_ogg_zip_dev_dataset(
    ogg_zip: PathLike,
    spm_model: PathLike,
    *,
    seq_ordering: str = "sorted_reverse",
    fixed_random_subset: int | float | None = None,
) -> dict[str, Any]:
    """Text-only ``OggZipDataset`` (``audio=None``) in a ``MetaDataset`` mapping its ``classes`` to ``data``.

    As in the i6 LibriSpeech LM setups. Sequence tags are the ogg zip's ``seq_name`` (the text dict tags);
    ``fixed_random_subset`` (count or fraction) evaluates on a fixed subset. ``ogg_zip`` may be a symlink
    with another name (RETURNN then resolves it to find the member ``<real name>.txt``).
    """
    ogg_zip_opts = _text_ogg_zip(ogg_zip, spm_model, seq_ordering)
    if fixed_random_subset is not None:
        ogg_zip_opts["fixed_random_subset"] = fixed_random_subset
    return {
        "class": "MetaDataset",
        "datasets": {"ogg_zip": ogg_zip_opts},
        "data_map": {"data": ("ogg_zip", "classes")},
        "seq_order_control_dataset": "ogg_zip",
    }


def _text_ogg_zip(ogg_zip: PathLike, spm_model: PathLike, seq_ordering: str) -> dict[str, Any]:
    return {
        "class": "OggZipDataset",
        "path": _path(ogg_zip),
        "resolve_symlink_for_name": True,  # member name from the real file, not e.g. output/dev.ogg.zip
        "audio": None,
        "targets": spm_vocab(spm_model),
        "seq_ordering": seq_ordering,
        "fixed_random_seed": 1,
    }


DEPTH_EXTERN_DATA = ("token_depth", "token_depth_ids")
"""Data keys of ``text_ogg_zip_depth_dataset``'s depth features and their SentencePiece ids."""


def text_ogg_zip_depth_dataset(
    ogg_zip: PathLike,
    spm_model: PathLike,
    depth_hdf: PathLike,
    *,
    partition_epoch: int = 1,
    seq_ordering: str = "laplace:.1000",
) -> dict[str, Any]:
    """The text of a text-only ``OggZipDataset`` (``data``) and the dependency depths of the same tags from
    a ``ParseDependencyDepthJob`` HDF (``token_depth`` [T, 1] float32, ``token_depth_ids`` [T]) in one
    ``MetaDataset`` (tags: the text dict's; order and ``partition_epoch`` from the ogg zip). The training
    step checks that the two line up per sequence (``recipe.returnn_glue.train_step``)."""
    ogg_zip_opts = _text_ogg_zip(ogg_zip, spm_model, seq_ordering)
    ogg_zip_opts["partition_epoch"] = partition_epoch
    depth_key, ids_key = DEPTH_EXTERN_DATA
    return {
        "class": "MetaDataset",
        "datasets": {
            "ogg_zip": ogg_zip_opts,
            "depth": {"class": "HDFDataset", "files": [_path(depth_hdf)], "use_cache_manager": False},
        },
        "data_map": {
            "data": ("ogg_zip", "classes"),
            depth_key: ("depth", "data"),
            ids_key: ("depth", "piece_ids"),
        },
        "seq_order_control_dataset": "ogg_zip",
    }
