"""python -m analysis.report RESULTS --out DIR: figures, tables and tests as report.md and report.html.

The report adapts to the study: the factors are the config columns that vary
across trials; the headline factor is `activation` when it varies, with
`batchnorm` as the second. Statistics are computed twice, on every run with a
result and on the runs that trained (see analysis.stats.mark_failures).
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the report writes files; no window, whatever the machine has

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import plots, stats  # noqa: E402
from analysis.load import Results, load_results  # noqa: E402
from trainables.cli import OneLineParser, report_user_error  # noqa: E402
from trainables.errors import UserError  # noqa: E402

MAX_LEVELS = 12  # a factor with more distinct values is continuous (an Optuna search), not a grid axis


@dataclass
class Document:
    """Sections of text, tables and figures, rendered both as Markdown and as HTML."""

    out: Path
    blocks: list = field(default_factory=list)

    def heading(self, text: str, level: int = 2):
        self.blocks.append(("heading", level, text))

    def text(self, text: str):
        self.blocks.append(("text", text))

    def table(self, frame: pd.DataFrame, caption: str | None = None):
        self.blocks.append(("table", frame.reset_index(drop=True), caption))

    def figure(self, fig, name: str, caption: str):
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        self.blocks.append(("figure", path.name, caption))

    def markdown(self) -> str:
        parts = []
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                parts.append(f"{'#' * block[1]} {block[2]}")
            elif kind == "text":
                parts.append(block[1])
            elif kind == "table":
                if block[2]:
                    parts.append(f"*{block[2]}*")
                parts.append(block[1].to_markdown(index=False, floatfmt=".4g"))
            else:
                parts.append(f"![{block[2]}]({block[1]})\n\n*{block[2]}*")
        return "\n\n".join(parts) + "\n"

    def html(self, title: str) -> str:
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
                 "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
                 "font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head><body>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                parts.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "text":
                parts.append(f"<p>{html.escape(block[1])}</p>")
            elif kind == "table":
                if block[2]:
                    parts.append(f"<p><em>{html.escape(block[2])}</em></p>")
                parts.append(block[1].to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep=""))
            else:
                parts.append(f"<figure><img src='{block[1]}' alt='{html.escape(block[2])}'>"
                             f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts)


def categorical_factors(results: Results) -> list[str]:
    factors = [f for f in results.factors() if results.trials[f].nunique() <= MAX_LEVELS]
    first = [f for f in ("activation", "batchnorm") if f in factors]
    return first + [f for f in factors if f not in first]


def _significance_sections(doc: Document, data: pd.DataFrame, factors: list[str], metric: str, correction: str,
                           label: str):
    doc.heading(f"Tests on {metric}: {label}", 3)
    if data.empty:
        doc.text("not testable: no runs in this set")
        return
    for factor in factors:
        doc.table(stats.omnibus(data, factor, metric), f"Omnibus tests across {factor} ({label})")
        baseline = stats.baseline_for(data, factor) if factor in data and data[factor].notna().any() else None
        if baseline is None:
            continue
        doc.table(_pairwise_view(stats.pairwise(data, factor, metric, baseline=baseline, correction=correction)),
                  f"{factor}: each level vs {baseline} ({label}; p corrected with {correction})")
    if len(factors) >= 2:
        doc.table(stats.two_way_anova(data, factors[0], factors[1], metric),
                  f"Two-way ANOVA (type II) {factors[0]} x {factors[1]} with interaction ({label})")


def _pairwise_view(table: pd.DataFrame) -> pd.DataFrame:
    return table[["level", "reference", "n", "n_ref", "mean", "mean_ref", "mean_diff", "ci_low", "ci_high",
                  "p_mwu", "p_mwu_corrected", "p_welch", "p_welch_corrected", "hedges_g", "cohen_d",
                  "cliffs_delta", "cles", "note"]]


def build_report(results: Results, out: Path, metric: str = "final_val_acc", correction: str = "holm",
                 margin: float = stats.DEFAULT_CHANCE_MARGIN) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    doc = Document(out)
    trials, epochs = results.trials, results.epochs
    factors = categorical_factors(results)
    is_optuna = results.name.startswith("optuna_")
    doc.heading(f"Study {results.name}", 1)
    if results.spec.get("description"):
        doc.text(results.spec["description"])
    doc.text(f"Results: {results.folder}. Factors compared: {', '.join(factors) or 'none'}. "
             f"Metric: {metric}. Multiple-comparison correction: {correction}. A run 'did not train' if it "
             f"diverged or its {metric} is within {margin} of chance (1 / classes).")
    if results.spec:
        doc.table(pd.DataFrame([{"key": k, "value": str(v)} for k, v in results.spec.items() if k != "description"]),
                  "Study spec (from the Parquet metadata)")

    doc.heading("Trials by status")
    group = factors[:2] or ["trainable"]
    doc.table(stats.status_counts(trials, group), f"Trials per status by {' x '.join(group)}")
    errors = trials[trials["status"] == "error"]
    if len(errors):
        doc.table(errors[["trial_id", *group, "seed", "error"]], "Errored trials (no result; left out of the statistics)")

    marked = stats.mark_failures(trials, margin=margin, metric=metric)
    trained = marked[~marked["did_not_train"]]

    doc.heading("Summary")
    for factor in factors:
        doc.table(stats.summary(marked, [factor], metric), f"{metric} by {factor} (all runs with a result)")
    if len(factors) >= 2:
        doc.table(stats.summary(marked, factors[:2], metric), f"{metric} by {factors[0]} x {factors[1]}")

    doc.heading("Figures")
    x = factors[0] if factors else None
    hue = factors[1] if len(factors) > 1 and marked[factors[1]].nunique() <= 6 else None
    if x:
        for value in (metric, "best_val_acc"):
            doc.figure(plots.boxplot(marked, x, value, hue), f"box_{value}", f"{plots.label(value)} by {x}" +
                       (f" and {hue}" if hue else "") + ", one point per run")
        for value in ("train_time_s", "train_us_per_sample"):
            if value in marked and marked[value].notna().any():
                doc.figure(plots.boxplot(marked, x, value, hue), f"box_{value}", f"{plots.label(value)} by {x}")
        usable = epochs[epochs["trial_id"].isin(marked["trial_id"])]
        doc.figure(plots.learning_curves(usable, x), f"curves_{x}", f"Learning curves by {x}: median and IQR across runs")
        if "lr" in factors and x != "lr":
            doc.figure(plots.lr_robustness(marked, x, metric), "lr_robustness", f"Final error against learning rate by {x}")
        if len(factors) >= 2:
            doc.figure(plots.heatmap(marked, factors[0], factors[1], metric), "heatmap",
                       f"Mean {metric} by {factors[0]} and {factors[1]}")
    if {"grad_norm_first", "grad_norm_last"} <= set(epochs.columns) and epochs["grad_norm_first"].notna().any():
        facet = next((f for f in ("depth", "hidden") if f in factors), None)
        factor = "activation" if "activation" in epochs and epochs["activation"].nunique() > 1 else (x or "trainable")
        doc.figure(plots.gradient_norms(epochs[epochs["grad_norm_first"].notna()], factor, facet), "gradient_norms",
                   "First vs last layer gradient norm per epoch (vanishing gradients)")
    if is_optuna:
        mode = results.spec.get("mode", "max")
        doc.figure(plots.optuna_progress(marked, metric, mode), "optuna_progress", "Optuna: objective and best so far")
        params = [p for p in ("lr", "weight_decay", "dropout", "activation", "batchnorm") if p in marked]
        doc.figure(plots.optuna_params(marked, params, metric), "optuna_params", "Optuna: objective against each parameter")

    doc.heading("Significance tests")
    if factors:
        _significance_sections(doc, marked, factors, metric, correction, "all runs with a result")
        _significance_sections(doc, trained, factors, metric, correction, "only runs that trained")
        if len(stats.levels(marked, factors[0])) > 2:
            doc.table(_pairwise_view(stats.pairwise(marked, factors[0], metric, correction=correction)),
                      f"{factors[0]}: all pairs (all runs with a result; p corrected with {correction})")
    else:
        doc.text("not testable: no factor varies across trials")

    doc.heading("Runs that did not train")
    failed = marked[marked["did_not_train"]]
    doc.text(f"{len(failed)} of {len(marked)} runs did not train "
             f"({(failed['failure'] == 'diverged').sum()} diverged, {(failed['failure'] == 'near chance').sum()} near chance).")
    for factor in ([*factors, factors[:2]] if len(factors) >= 2 else factors):
        doc.table(stats.failure_rates(marked, factor, correction),
                  f"Failure rate by {factor if isinstance(factor, str) else ' x '.join(factor)} "
                  f"(Fisher's exact test, each level vs all others; {correction}-corrected)")

    if "optimizer" in factors:
        by = [c for c in ("trainable", "optimizer", "regularization") if c in trials and trials[c].notna().any()]
        doc.heading("Optimizer benchmark")
        doc.table(stats.optimizer_summary(trials, epochs, by),
                  "Speed (mean training time), robustness (test accuracy mean / std across seeds), stability "
                  "(variance across seeds of the per-epoch training loss, averaged over epochs), generalization gap "
                  "(final train minus validation accuracy)")

    (out / "report.md").write_text(doc.markdown())
    (out / "report.html").write_text(doc.html(f"hpstudy report: {results.name}"))
    return out / "report.md"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m analysis.report", description=__doc__)
    parser.add_argument("results", help="a study's results folder (holding epochs.parquet and trials.parquet)")
    parser.add_argument("--out", required=True, help="folder for report.md, report.html and the figures")
    parser.add_argument("--metric", default="final_val_acc", choices=["final_val_acc", "best_val_acc", "test_acc"])
    parser.add_argument("--correction", default="holm", choices=list(stats.CORRECTIONS))
    parser.add_argument("--chance-margin", type=float, default=stats.DEFAULT_CHANCE_MARGIN,
                        help="a run within this much of chance accuracy 'did not train' (default 0.05)")
    args = parser.parse_args(argv)
    try:
        results = load_results(args.results)
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file; give a folder")
        path = build_report(results, out, args.metric, args.correction, args.chance_margin)
    except UserError as error:
        return report_user_error(parser.prog, error)
    print(f"report: {path} (and report.html, figures) for {len(results.trials)} trials")
    return 0


if __name__ == "__main__":
    sys.exit(main())
