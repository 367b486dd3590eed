"""python -m analysis.report RESULTS --out DIR: the study's findings, figures and tables as
report.md, report.html and findings.csv.

The report opens with the findings (analysis.compare): one row per comparison of a
level with its factor's baseline, within each dataset, with a verdict; then the
forest plot of the effects and the boxplots; the tables the findings rest on after.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the report writes files; no window, whatever the machine has

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import compare, plots, stats  # noqa: E402
from analysis.compare import Analysis, analyse  # noqa: E402
from analysis.design import parse_baselines  # noqa: E402
from analysis.failures import DEFAULT_CHANCE_MARGIN  # noqa: E402
from analysis.load import Results, load_results  # noqa: E402
from analysis.outcomes import is_accuracy, is_relative  # noqa: E402
from analysis.power import MAX_SEEDS_NEEDED  # noqa: E402
from analysis.words import answer, folds, label, method, more_seeds, signed  # noqa: E402
from common.cli import OneLineParser, report_user_error  # noqa: E402
from common.errors import UserError  # noqa: E402


@dataclass
class Document:
    """Sections of text, tables and figures, rendered both as Markdown and as HTML."""

    out: Path
    blocks: list = field(default_factory=list)

    def heading(self, text: str, level: int = 2):
        self.blocks.append(("heading", level, text))

    def text(self, text: str):
        self.blocks.append(("text", text))

    def bullets(self, items: list[str]):
        self.blocks.append(("bullets", items))

    def table(self, frame: pd.DataFrame, caption: str | None = None):
        self.blocks.append(("table", frame.reset_index(drop=True), caption))

    def words(self, frame: pd.DataFrame, caption: str | None = None):
        """A table of text, shown as written (a signed "+0.5" stays signed)."""
        self.blocks.append(("table", frame.reset_index(drop=True).astype(str), caption))

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
            elif kind == "bullets":
                parts.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "table":
                if block[2]:
                    parts.append(f"*{block[2]}*")
                numbers = any(pd.api.types.is_numeric_dtype(dtype) for dtype in block[1].dtypes)
                parts.append(block[1].to_markdown(index=False, floatfmt=".4g", disable_numparse=not numbers))
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
            elif kind == "bullets":
                parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block[1]) + "</ul>")
            elif kind == "table":
                if block[2]:
                    parts.append(f"<p><em>{html.escape(block[2])}</em></p>")
                parts.append(block[1].to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep=""))
            else:
                parts.append(f"<figure><img src='{block[1]}' alt='{html.escape(block[2])}'>"
                             f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
        parts.append("</body></html>")
        return "\n".join(parts)


def findings_view(analysis: Analysis) -> pd.DataFrame:
    """The findings table as a reader sees it: words and points, not columns of floats."""
    table = analysis.comparisons
    metric = analysis.metric
    unit = " (%, or xratio)" if is_relative(metric) else " (points)" if is_accuracy(metric) else ""
    rows = list(zip(table["effect"], table["ci_low"], table["ci_high"]))  # a row's numbers read alike (words.folds)
    return pd.DataFrame({
        "factor": table["factor"],
        "where": table["stratum"],
        "comparison": [f"{lv} vs {ref}" for lv, ref in zip(table["level"], table["reference"])],
        f"effect{unit}": [signed(v, metric, folds(v, lo, hi)) for v, lo, hi in rows],
        f"interval{unit}": [f"{signed(lo, metric, folds(v, lo, hi))} to {signed(hi, metric, folds(v, lo, hi))}"
                            if np.isfinite(lo) else "" for v, lo, hi in rows],
        "verdict": table["verdict"],
        "runs": [f"{n} vs {m}" + (f", {d}" if d else "") for n, m, d in zip(table["n"], table["n_ref"], table["design"])],
        "seeds needed": ["" if pd.isna(v) else f"over {MAX_SEEDS_NEEDED:,}" if v >= MAX_SEEDS_NEEDED
                         else str(v) for v in table["seeds_needed"]],  # blank where decided
        "failed runs": [f"{a} of {n} vs {b} of {m}" if a or b else "" for a, n, b, m in
                        zip(table["failed"], table["runs"], table["failed_ref"], table["runs_ref"])],
    })


def _figures(doc: Document, results: Results, analysis: Analysis):
    runs, design, metric = analysis.runs, analysis.design, analysis.metric
    names = design.names
    facet = design.strata[0] if design.strata else None
    x = names[0] if names else None
    hue = names[1] if len(names) > 1 and runs[names[1]].nunique() <= 6 else None
    if not x:
        return
    order = list(design.factors[0].levels)
    hue_order = list(design.factors[1].levels) if hue else None
    for value in (metric, "train_us_per_sample"):
        if value in runs and runs[value].notna().any():
            doc.figure(plots.boxplot(runs, x, value, hue, facet, order=order, hue_order=hue_order), f"box_{value}",
                       f"{plots.label(value)} by {x}" + (f" and {hue}" if hue else "") + ", one point per run")
    usable = results.epochs[results.epochs["trial_id"].isin(runs["trial_id"])]
    doc.figure(plots.learning_curves(usable, x), f"curves_{x}", f"Learning curves by {x}: median and IQR across runs")
    if "lr" in names and x != "lr":
        doc.figure(plots.lr_robustness(runs, x, metric), "lr_robustness", f"Final error against learning rate by {x}")
    if len(names) >= 2 and not facet:
        doc.figure(plots.heatmap(runs, names[0], names[1], metric), "heatmap", f"Mean {metric} by {names[0]} and {names[1]}")


def _search_figures(doc: Document, analysis: Analysis, mode: str):
    runs, metric = analysis.runs, analysis.metric
    doc.figure(plots.optuna_progress(runs, metric, mode), "optuna_progress", "Optuna: objective and best so far")
    params = analysis.design.searched(runs)
    if params:
        doc.figure(plots.optuna_params(runs, params, metric), "optuna_params", "Optuna: objective against each parameter")


def build_report(results: Results, out: Path, analysis: Analysis | None = None, outcomes: list[Analysis] = (),
                 **options) -> Path:
    """Write report.md, report.html, findings.csv and the figures to `out`; `options` go to analyse.
    `outcomes`: the analyses of further outcomes than the primary `analysis`, a findings section
    and forest plot each; findings.csv holds every outcome's rows (its `metric` column)."""
    analysis = analysis or analyse(results, **options)
    out.mkdir(parents=True, exist_ok=True)
    doc = Document(out)
    _introduction(doc, results, analysis)
    if outcomes:
        doc.text(f"Outcomes: {', '.join([analysis.metric, *(a.metric for a in outcomes)])}, the first the primary. "
                 f"Each outcome is a family of its own, tested at alpha = {analysis.alpha:g}: within each, the chance "
                 f"of any false verdict is at most alpha; over these {1 + len(outcomes)} outcomes together, at most "
                 f"{1 + len(outcomes)} x alpha (docs/statistics.md, \"Several outcomes\").")
    _findings_section(doc, analysis)
    for other in outcomes:
        _findings_section(doc, other, heading=f"Findings: {label(other.metric)}", forest=f"forest_{other.metric}")
    findings = pd.concat([a.findings() for a in [analysis, *outcomes]], ignore_index=True)
    (out / "findings.csv").write_text(findings.to_csv(index=False))
    _figures_section(doc, results, analysis)
    _evidence_section(doc, results, analysis)
    (out / "report.md").write_text(doc.markdown())
    (out / "report.html").write_text(doc.html(f"hpstudy report: {results.name}"))
    return out / "report.md"


def _introduction(doc: Document, results: Results, analysis: Analysis) -> None:
    trials, metric, design = results.trials, analysis.metric, analysis.design
    doc.heading(f"Study {results.name}", 1)
    if results.spec.get("description"):
        doc.text(results.spec["description"])
    excluded = ", ".join(f"{n} {status}" for status, n in analysis.excluded.items() if n) or "none"
    doc.text(f"Results: {results.folder}. Metric: {metric} (the unit is one run: one seed of one configuration). "
             f"{len(analysis.runs)} runs with a result; left out (no result): {excluded}. "
             f"Datasets are compared within, never pooled"
             f"{' (' + ', '.join(design.strata) + ')' if design.strata else ''}. "
             + (f"A run 'failed' if it diverged or ended below chance + {analysis.margin:g} x (1 - chance), chance "
                "being the test set's majority-class rate. " if "chance_acc" in trials else
                "A run 'failed' if it diverged (these results, of format 1, predate the chance column, so runs near chance "
                "are not counted as failed). ")
             + ("" if design.from_spec else " No study spec in the results: factors inferred from the config columns."))
    if not analysis.untestable_because and analysis.strata:
        doc.heading("How the findings are made", 3)
        doc.bullets(method(analysis))


def _findings_section(doc: Document, analysis: Analysis, heading: str = "Findings", forest: str = "forest") -> None:
    metric, design = analysis.metric, analysis.design
    doc.heading(heading)
    if analysis.untestable_because:
        doc.text(f"No significance tests: {analysis.untestable_because}. Re-run the best configurations over "
                 f"several seeds (a grid with --seeds) to know whether their differences are real.")
        if not analysis.importances.empty:
            doc.table(analysis.importances, f"Parameter importance for {metric} (Optuna's fANOVA on these runs)")
    if not analysis.comparisons.empty:
        doc.words(findings_view(analysis), "One row per comparison with the factor's baseline; better / worse if "
                  "the interval excludes 0 or the failure rates differ, equivalent if the two one-sided tests put it "
                  "inside +/- the smallest effect, else undecided (seeds needed: per configuration, to decide it "
                  "with probability 0.8)")
        if not analysis.untestable_because:
            doc.bullets(answer(analysis))
            more = more_seeds(analysis)
            if more:
                doc.text("More seeds for the open comparisons: each line gives the seeds per configuration that "
                         "decide it with probability 0.8 and the command that adds them to this study (only the "
                         "missing runs train; the study is then tested as one more look):")
                doc.bullets(more)
        doc.figure(plots.forest(analysis.comparisons, analysis.smallest_effect, metric), forest,
                   "Effects with intervals at each row's tested level; shaded: +/- the smallest effect that matters")
    elif not design.factors:
        doc.text("No factor varies in this study: nothing to compare.")


def recorded(epochs: pd.DataFrame, column: str) -> bool:
    return column in epochs.columns and epochs[column].notna().any()


def _figures_section(doc: Document, results: Results, analysis: Analysis) -> None:
    epochs, design = results.epochs, analysis.design
    doc.heading("Figures")
    _figures(doc, results, analysis)
    facet = next((f for f in ("depth", "hidden") if f in design.names), None)
    factor = "activation" if "activation" in design.names else (design.names[0] if design.names else "trainable")
    if recorded(epochs, "grad_norm_first"):
        taken = "on a fixed batch" if results.format >= 3 else "the mean over its steps"  # format 3 changed it
        doc.figure(plots.gradient_norms(epochs[epochs["grad_norm_first"].notna()], factor, facet), "gradient_norms",
                   f"First vs last layer gradient norm per epoch, {taken} (vanishing gradients)")
    if recorded(epochs, "dead_fraction"):
        doc.figure(plots.unit_fractions(epochs[epochs["dead_fraction"].notna()], factor, facet), "unit_fractions",
                   "Dead hidden units (no input of the fixed batch activates them) and saturated ones (within 1% of "
                   "a bounded activation's range of a bound) per epoch")
    if design.search == "optuna" and len(analysis.runs):
        _search_figures(doc, analysis, results.spec.get("mode", "max"))


def _evidence_section(doc: Document, results: Results, analysis: Analysis) -> None:
    trials, epochs, metric, design = results.trials, results.epochs, analysis.metric, analysis.design
    doc.heading("What the findings rest on")
    group = [*design.strata, *design.names[:2]] or ["trainable"]
    doc.table(stats.status_counts(trials, group), f"Runs per status by {' x '.join(group)}")
    errors = trials[trials["status"] == "error"]
    if len(errors):
        doc.table(errors[["trial_id", *group, "seed", "error"]], "Errored runs (no result; left out)")
    if len(analysis.interactions):
        doc.table(analysis.interactions, "Interactions (Wald tests in the block model, each at the level the testing "
                  "procedure gave it): where simple_effects is true (p_adjusted < alpha) each factor's simple effects "
                  "within each level of the other are shown")
    if len(analysis.spreads):
        doc.table(analysis.spreads, "Seed-to-seed spread of each configuration's runs (sd, metric units) as the model "
                  "uses it (moderated); group 0 is the cluster of alike spreads, group 1 the configurations that vary "
                  "far more; df: the degrees of freedom of the configuration's own variance")
    if len(analysis.shares):
        doc.table(analysis.shares, "Share of the variance of the metric (of its log for a time or ratio): each "
                  "factor beside the seeds (residual), 95% bootstrap intervals")
    if len(analysis.failures) and analysis.failures["failed"].sum() > 0:
        doc.table(analysis.failures, "Failed runs by level: rate with a Wilson 95% interval, Fisher's exact test "
                  "against the baseline, mean of the runs that trained (geometric for a time or ratio), and P(a run "
                  "beats a baseline run) with failed runs ranked below every trained one")
        cells = [*design.strata, *design.names]
        rates = analysis.runs.groupby(cells, sort=False)["did_not_train"].agg(["sum", "count"]).reset_index()
        doc.table(rates.rename(columns={"sum": "failed", "count": "n"}), "Failed runs per configuration")
    elif len(analysis.runs):
        doc.text("No run failed (none diverged or ended near chance).")
    if not analysis.comparisons.empty:
        detail = analysis.comparisons[["factor", "stratum", "level", "reference", "design", "n", "n_ref", "effect",
                                       "ci_low", "ci_high", "confidence", "unit_sd", "df", "p", "p_adjusted",
                                       "test_level", "verdict", "decided_by", "depends_on", "why",
                                       "seeds_needed", "runs", "failed", "runs_ref", "failed_ref", "p_failures",
                                       "note"]]
        doc.table(detail, "Comparisons in detail (metric units; confidence: of the interval, 1 - the level of "
                  "the accuracy part; p_adjusted below alpha exactly where the procedure rejected)")
    cells = [*design.strata, *design.names]
    if cells and len(analysis.runs):
        doc.table(stats.summary(analysis.runs, cells, metric), f"{metric} per configuration (runs with a result)")
    if "optimizer" in design.names:
        by = [c for c in ("trainable", "optimizer", "regularization") if c in trials and trials[c].notna().any()]
        doc.heading("Optimizer benchmark", 3)
        doc.table(stats.optimizer_summary(trials, epochs, by),
                  "Speed (mean training time), robustness (test accuracy mean / std across seeds), stability "
                  "(variance across seeds of the per-epoch training loss, averaged over epochs), generalization gap "
                  "(final train minus validation accuracy)")
    if results.spec:
        doc.table(pd.DataFrame([{"key": k, "value": str(v)} for k, v in results.spec.items() if k != "description"]),
                  "Study spec (from the Parquet metadata)")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m analysis.report", description=__doc__)
    parser.add_argument("results", help="a study's results folder (holding epochs.parquet and trials.parquet)")
    parser.add_argument("--out", required=True, help="folder for report.md, report.html, findings.csv and the figures")
    parser.add_argument("--metric", action="append", choices=list(compare.METRICS), metavar="OUTCOME",
                        help=f"what is compared, repeatable: one findings section each, the first the primary "
                             f"(default {compare.DEFAULT_METRIC}: the last epoch's test accuracy); one of "
                             f"{', '.join(compare.METRICS)}")
    parser.add_argument("--target", type=float, default=None,
                        help="epochs_to_target / seconds_to_target: the validation accuracy to reach, in (0, 1)")
    parser.add_argument("--baseline", action="append", metavar="FACTOR=LEVEL", default=[],
                        help="the level a factor's others are compared with (default: the axis's first level); repeatable")
    parser.add_argument("--smallest-effect", type=float, default=None,
                        help="the smallest difference that matters, in each outcome's units: accuracy as a "
                             "fraction (default 0.01: one point, or what a seeds-on-demand study ran with), times "
                             "and other relative outcomes as a share (default 0.05: 5%%)")
    parser.add_argument("--alpha", type=float, default=compare.DEFAULT_ALPHA,
                        help="the study-wise error rate: the chance of any false verdict in the study (default 0.05)")
    parser.add_argument("--chance-margin", type=float, default=DEFAULT_CHANCE_MARGIN,
                        help="a run that ended below chance + this share of the room above chance (1 - chance) "
                             "failed (default 0.05)")
    args = parser.parse_args(argv)
    try:
        results = load_results(args.results)
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file; give a folder")
        # the outcomes asked for, else the study's own (its spec's `outcomes`), else test accuracy
        metrics = list(dict.fromkeys(args.metric or results.spec.get("outcomes") or [compare.DEFAULT_METRIC]))
        analyses = [analyse(results, metric, parse_baselines(args.baseline), args.smallest_effect, alpha=args.alpha,
                            margin=args.chance_margin, target=args.target) for metric in metrics]
        analysis = analyses[0]
        path = build_report(results, out, analysis, outcomes=analyses[1:])
    except UserError as error:
        return report_user_error(parser.prog, error)
    decided = analysis.comparisons["verdict"].isin(["better", "worse", "equivalent"]).sum()
    print(f"report: {path} (and report.html, findings.csv, figures) for {len(results.trials)} runs: "
          f"{decided} of {len(analysis.comparisons)} comparisons decided")
    return 0


if __name__ == "__main__":
    sys.exit(main())
