"""Text format conversion jobs."""

from __future__ import annotations

from recipe.data.text_dict import read_text_dict, write_text_lines
from recipe.data.tokenizers import TokenizerFiles
from sisyphus import Job, Task, tk


class TextDictToTextLinesJob(Job):
    """The texts of a text dict, one per line in dict order (as i6_core's job of the same name).

    Output: ``out_text_lines`` (``text_lines.txt``, or ``text_lines.txt.gz`` with ``gzip=True``).
    """

    def __init__(self, text_dict: tk.Path, gzip: bool = False) -> None:
        self.text_dict = text_dict
        self.gzip = gzip
        self.out_text_lines = self.output_path("text_lines.txt.gz" if gzip else "text_lines.txt")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        write_text_lines(self.out_text_lines, read_text_dict(self.text_dict).values())


class TokenizeTextJob(Job):
    """Token ids of a text dict or a text-lines file (optionally gzipped), for RETURNN
    (``recipe.returnn_glue.datasets.token_id_dataset``) with any tokenizer (``TokenizerFiles``).

    Without ``wrap_length``: one sequence per entry (tag kept; lines are tagged ``line-<n>``, 0-based,
    empty lines skipped), its ids followed by EOS (the LM data contract). With ``wrap_length``:
    bd3lms' wrapped evaluation data (``recipe.data.tokenizers.wrap_chunks``): chunks of exactly
    ``wrap_length`` tokens tagged ``chunk-<n>``, [BOS] ... [EOS] around each with ``insert_special``.
    Outputs: ``out_text_dict`` ({tag: "id id ..."}, gzipped), ``out_vocab`` (the id vocabulary),
    ``out_report`` (what the tokenizer cannot encode), ``out_num_seqs``, ``out_num_tokens``.
    """

    def __init__(
        self,
        text: tk.Path,
        tokenizer: TokenizerFiles,
        *,
        wrap_length: int | None = None,
        insert_special: bool = True,
    ) -> None:
        if not isinstance(tokenizer, TokenizerFiles):
            raise ValueError(f"TokenizeTextJob: tokenizer must be TokenizerFiles, got {tokenizer!r}")
        if wrap_length is not None and wrap_length < (3 if insert_special else 1):
            raise ValueError(f"TokenizeTextJob: wrap_length {wrap_length} is too short")
        self.text = text
        self.tokenizer = tokenizer
        self.wrap_length = wrap_length
        self.insert_special = insert_special
        self.out_text_dict = self.output_path("token_ids.py.gz")
        self.out_vocab = self.output_path("token_ids.vocab")
        self.out_report = self.output_path("report.txt")
        self.out_num_seqs = self.output_var("num_seqs")
        self.out_num_tokens = self.output_var("num_tokens")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        from recipe.asr.nbest import describe_unknown_characters, unknown_characters
        from recipe.data.text_dict import read_lines, write_text_dict
        from recipe.data.tokenizers import load_tokenizer, wrap_chunks, write_id_vocabulary

        tokenizer = load_tokenizer(self.tokenizer)
        first = next((line for _, line in read_lines(self.text) if line.strip()), "")
        if first.lstrip().startswith("{"):
            texts = read_text_dict(self.text)
        else:
            lines = [line for _, line in read_lines(self.text) if line.strip()]
            texts = {f"line-{i}": line for i, line in enumerate(lines)}
        if not texts:
            raise ValueError(f"{self.text}: no text to tokenize")
        unknown = unknown_characters({tag: [(0.0, t)] for tag, t in texts.items()}, tokenizer)
        report = [
            describe_unknown_characters(
                unknown, str(self.text), tokenizer.vocabulary, tokenizer.unknown_effect
            )
            or "all encoded"
        ]
        if self.wrap_length is None:
            seqs = {tag: [*tokenizer.encode(t), tokenizer.eos_id] for tag, t in texts.items()}
        else:
            docs = [tokenizer.encode(t) for t in texts.values()]
            chunks = wrap_chunks(
                docs, self.wrap_length, tokenizer.bos_id, tokenizer.eos_id, insert_special=self.insert_special
            )
            if not chunks:
                raise ValueError(
                    f"{self.text}: {sum(map(len, docs)) + len(docs)} tokens give no complete chunk of"
                    f" {self.wrap_length} tokens"
                )
            seqs = {f"chunk-{i}": chunk for i, chunk in enumerate(chunks)}
        write_id_vocabulary(self.out_vocab.get_path(), tokenizer.vocab_size)
        write_text_dict(
            self.out_text_dict.get_path(), {t: " ".join(map(str, ids)) for t, ids in seqs.items()}
        )
        with open(self.out_report.get_path(), "w", encoding="utf-8") as f:
            f.write("\n".join(report) + "\n")
        self.out_num_seqs.set(len(seqs))
        self.out_num_tokens.set(sum(map(len, seqs.values())))
