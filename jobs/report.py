"""The experiment report: one markdown file and one plot in ``output/``."""

from __future__ import annotations

from typing import Any

from jobs.returnn import instanciate_paths
from sisyphus import Job, Task, tk


class ExperimentReportJob(Job):
    """``out_report`` (markdown): perplexity and WER tables; ``out_plot`` (png): dev score curves,
    test perplexities and test WERs.

    ``perplexities``: {model: {"test_ppl": Variable, "test_nats_per_token": Variable, "gen_ppl_under_ar": Variable}};
    ``wers``: {system: {"dev": Variable, "test": Variable}}; ``learning_rates``: {model: [RETURNN
    learning-rate file of each training stage]}; ``notes``: extra markdown lines; ``rescoring_details``:
    {system: {"trace": dev search trace file of a multi-LM combination, "dev_sclite"/"test_sclite": NIST
    sclite WER Variables}} (tables of sclite WERs and the search traces; not hashed when absent);
    ``title``: the report's heading (not hashed when the default).
    """

    __sis_hash_exclude__ = {"rescoring_details": None, "title": None}

    def __init__(
        self,
        perplexities: dict[str, dict[str, Any]],
        wers: dict[str, dict[str, Any]],
        learning_rates: dict[str, list[tk.Path]],
        notes: tuple[str, ...] = (),
        rescoring_details: dict[str, dict[str, Any]] | None = None,
        title: str | None = None,
    ) -> None:
        self.perplexities = perplexities
        self.wers = wers
        self.learning_rates = learning_rates
        self.notes = notes
        self.rescoring_details = rescoring_details
        self.title = title
        self.out_report = self.output_path("report.md")
        self.out_plot = self.output_path("report.png")

    def tasks(self):
        yield Task("run", mini_task=True)

    def run(self) -> None:
        from recipe.report import perplexity_section, plot_report, rescoring_details_section, wer_section

        ppl, wers, lrs = (
            instanciate_paths(self.perplexities),
            instanciate_paths(self.wers),
            instanciate_paths(self.learning_rates),
        )
        plot_report(ppl, lrs, wers, self.out_plot.get_path())
        text = [
            f"# {self.title or 'Diffusion LMs for ASR: experiment report'}",
            "",
            perplexity_section(ppl),
            "",
            wer_section(wers),
            "",
        ]
        if self.rescoring_details:
            text += [rescoring_details_section(instanciate_paths(self.rescoring_details)), ""]
        text += [*self.notes, "", "![report](report.png)", ""]
        with open(self.out_report.get_path(), "w", encoding="utf-8") as f:
            f.write("\n".join(text))
