"""How the findings read: column labels, signed amounts, each comparison's sentence, the answer
in one line per factor (the report's summary, and the last lines a finished study prints) and
the report's method paragraph. It reads what analysis.compare computes and imports nothing of
it (compare imports this module for the sentences). No plotting here, so a study's driver can
print the answer without importing matplotlib."""

from __future__ import annotations

import math

import pandas as pd

from analysis.outcomes import OUTCOMES, is_accuracy, is_relative
from analysis.power import MAX_SEEDS_NEEDED

LABELS = {
    "final_val_acc": "final validation accuracy", "best_val_acc": "best validation accuracy",
    "test_acc": "test accuracy", "train_time_s": "training time per trial (s)",
    "train_us_per_sample": "training time per sample (µs)", "infer_us_per_sample": "inference time per sample (µs)",
    "train_loss": "training loss", "val_loss": "validation loss", "train_acc": "training accuracy",
    "val_acc": "validation accuracy", "lr": "learning rate", "weight_decay": "weight decay",
}


def label(column: str) -> str:
    return LABELS.get(column) or (OUTCOMES[column].label if column in OUTCOMES else column.replace("_", " "))


def amount(value: float, metric: str) -> str:
    """A size as a reader sees it: accuracy in points ("1.0 points"), a relative outcome (a time)
    in percent ("20%", a ratio - 1), other metrics in their units."""
    if is_relative(metric):
        return f"{100 * value:.0f}%"
    return f"{100 * value:.1f} points" if is_accuracy(metric) else f"{value:.3g}"


def folds(*values: float) -> bool:
    """Relative effects (ratios - 1) of which one is a factor 10 or more either way (a gradient
    ratio's): read, all alike, as ratios."""
    return any(not 0.1 < 1 + v < 10 for v in values if math.isfinite(v))


def signed(value: float, metric: str, ratio: bool | None = None) -> str:
    """A difference as a reader sees it: accuracy in signed points, a relative outcome in signed
    percent ("+20%": 20% more) or, `ratio` (by default: a factor 10 or more apart), as the ratio
    ("x0.0004", "x2.3e+06"), other metrics in their units."""
    if not math.isfinite(value):
        return ""
    if is_relative(metric):
        return f"x{1 + value:.2g}" if (folds(value) if ratio is None else ratio) else f"{100 * value:+.0f}%"
    return f"{100 * value:+.1f}" if is_accuracy(metric) else f"{value:+.3g}"


def unit_phrase(metric: str) -> str:
    """What an answer line's amounts are: "points of test accuracy", "% change in training time"."""
    if is_relative(metric):
        return f"% change in {label(metric)}"
    return f"points of {label(metric)}" if is_accuracy(metric) else label(metric)


def answer(analysis) -> list[str]:
    """One line per factor and stratum: what the study says about it."""
    lines = []
    table = analysis.comparisons
    metric = analysis.metric
    for factor in analysis.design.factors:
        rows = table[table["factor"] == factor.name]
        if rows.empty:
            continue
        inter = analysis.interactions
        inter = inter[((inter["factor"] == factor.name) | (inter["other"] == factor.name)) & inter["simple_effects"]]
        where = ""
        if len(inter):
            others = sorted((set(inter["factor"]) | set(inter["other"])) - {factor.name})
            where = (f" It interacts with {', '.join(others)} (p = {', '.join(f'{p:.2g}' for p in inter['p'])}), "
                     f"so it is also compared within each level of {', '.join(others)}.")
        parts = []
        for verdict in ("better", "worse", "equivalent", "inconclusive", "not testable"):
            chosen = rows[rows["verdict"] == verdict]
            if chosen.empty:
                continue
            items = []
            for _, r in chosen.iterrows():
                place = "" if r["stratum"] == "all" else f" with {r['stratum']}"
                amount = f" {signed(r['effect'], metric)}" if verdict in ("better", "worse", "inconclusive") else ""
                depends = f" (depends on {r['depends_on']})" if r.get("depends_on") else ""
                items.append(f"{r['level']}{place}{amount}{depends}")
            name = {"inconclusive": "undecided", "equivalent": "equivalent"}.get(verdict, verdict)
            parts.append(f"{name}: {'; '.join(items)}")
        devices = f" Times of {len(analysis.devices)} devices, compared within each." if analysis.devices else ""
        lines.append(f"{factor.name} (vs {factor.baseline}, {unit_phrase(metric)}): " + " | ".join(parts)
                     + "." + where + devices)
    return lines


def more_seeds(analysis) -> list[str]:
    """One line per open comparison: the seeds that would decide it, and the command that adds them."""
    table = analysis.comparisons
    lines = []
    for _, row in table[table["verdict"] == "inconclusive"].iterrows():
        where = "" if row["stratum"] == "all" else f" ({row['stratum']})"
        pair = f"{row['factor']} {row['level']} vs {row['reference']}{where}"
        seeds = row["seeds_needed"]
        if pd.isna(seeds):
            continue
        if seeds >= MAX_SEEDS_NEEDED:
            lines.append(f"{pair}: over {MAX_SEEDS_NEEDED:,} seeds per configuration; more seeds will not decide it "
                         "at this spread")
        elif analysis.more_seeds_command:
            lines.append(f"{pair}: {seeds} seeds per configuration: "
                         + analysis.more_seeds_command.format(seeds=int(seeds)))
        else:
            lines.append(f"{pair}: {seeds} seeds per configuration")
    return lines


def nearest_more_seeds(analysis) -> str | None:
    """The end of a study's answer where comparisons are open: the command that adds the seeds
    the nearest of them needs (the report lists each)."""
    table = analysis.comparisons
    open_rows = table[table["verdict"] == "inconclusive"]
    needs = open_rows["seeds_needed"].dropna()
    needs = needs[needs < MAX_SEEDS_NEEDED]
    if needs.empty or not analysis.more_seeds_command:
        return None
    seeds = int(needs.min())
    others = "" if len(open_rows) == 1 else f" ({len(open_rows)} are open; the report lists each)"
    return (f"more seeds: {seeds} seeds per configuration would decide the nearest open comparison{others}: "
            + analysis.more_seeds_command.format(seeds=seeds))


def seeds_phrase(seeds: int) -> str:
    return "more than a million" if seeds >= MAX_SEEDS_NEEDED else f"about {seeds}"


def sentence(row: pd.Series, metric: str, smallest_effect: float) -> str:
    """A comparison (a row of analysis.compare's table) in words a reader can act on."""
    where = "" if row["stratum"] == "all" else f" ({row['stratum']})"
    pair = f"{row['level']} vs {row['reference']}{where}"
    ratio = folds(row["effect"], row["ci_low"], row["ci_high"])  # the row's numbers all alike
    interval = f"[{signed(row['ci_low'], metric, ratio)}, {signed(row['ci_high'], metric, ratio)}]"
    verdict = row["verdict"]
    counts = f"{row['failed']} of {row['runs']} runs vs {row['failed_ref']} of {row['runs_ref']}"
    depends = f"; its effect depends on {row['depends_on']}" if row.get("depends_on") else ""
    if row["decided_by"] == "failures":
        text = f"{pair}: {verdict}: it fails {'more' if verdict == 'worse' else 'less'} often ({counts} failed, " \
               f"Fisher p = {row['p_failures']:.2g})"
        if math.isfinite(row["effect"]) and math.isfinite(row["ci_low"]):
            text += f"; {signed(row['effect'], metric, ratio)} {interval} on the runs compared"
        return text + depends
    if verdict in ("better", "worse") and is_relative(metric):  # a time: "worse: 20% slower [+12%, +29%]"
        more, less = OUTCOMES[metric].more_less
        size = signed(row["effect"], metric, ratio) if ratio else \
            f"{amount(abs(row['effect']), metric)} {more if row['effect'] > 0 else less}"  # x0.11, or 19% slower
        text = f"{pair}: {verdict}: {size} {interval}"
        if abs(row["effect"]) < smallest_effect:
            text += f", less than the smallest effect that matters ({amount(smallest_effect, metric)})"
    elif verdict in ("better", "worse"):
        text = f"{pair}: {verdict} by {amount(abs(row['effect']), metric)} {interval}"
        if abs(row["effect"]) < smallest_effect:
            text += f", less than the smallest effect that matters ({amount(smallest_effect, metric)})"
    elif verdict == "equivalent":
        text = f"{pair}: equivalent, within ±{amount(smallest_effect, metric)} {interval}"
    elif verdict == "inconclusive":
        why = row.get("why") or ""
        # the averaged row's dependence on another factor is said once, by `depends`
        why = "" if depends and why.startswith("its effect may depend") else why
        why = f"; not equivalent: {why}" if why else ""
        text = (f"{pair}: undecided, {signed(row['effect'], metric, ratio)} {interval}{why}; "
                f"{seeds_phrase(int(row['seeds_needed']))} seeds per configuration would decide it")
    else:
        effect = "" if not math.isfinite(row["effect"]) else f" (observed {signed(row['effect'], metric)})"
        text = f"{pair}: not testable{effect}" + (f": {row['note']}" if row["note"] else "")
    text += depends
    if row["failed"] or row["failed_ref"]:
        if row["n"] and row["failed"] == row["runs"]:
            text += f"; every run of it failed ({counts}): their accuracy is the result compared"
        elif row["n_ref"] and row["failed_ref"] == row["runs_ref"]:
            text += f"; every run of the reference failed ({counts}): their accuracy is the result compared"
        else:
            text += f"; failed runs (left out of the effect; the rates do not differ significantly): {counts}"
    return text


STATISTICS_PAGE = "docs/statistics.md"  # the method, stated once (the documentation's Statistics page)


def method(analysis) -> list[str]:
    """The report's method paragraph: this study's numbers (its model's spreads, the shares of
    alpha, its looks, the smallest effect), each line pointing to the section of the
    statistics page that says how and why (analysis: analysis.compare.Analysis)."""
    from analysis.compare import PRIMARY_WEIGHT  # the words module imports no findings code at its top

    spreads, metric = analysis.spreads, analysis.metric
    scale, unit = (100, " points") if is_accuracy(metric) else (1, "")
    apart = spreads[spreads["group"] > 0]
    alike = spreads[spreads["group"] == 0]
    if analysis.spread == "pooled":
        model = "one residual variance per dataset (the pooled model)"
    else:
        model = ("a variance per configuration, moderated within the cluster of alike spreads"
                 + (f" (sd {scale * alike['sd'].min():.2g} to {scale * alike['sd'].max():.2g}{unit})" if len(alike) else "")
                 + (f"; {apart['configuration'].iloc[0]} varies far more and keeps its own variance" if len(apart) == 1
                    else "; " + "; ".join(apart["configuration"]) + " vary far more and keep their own variances"
                    if len(apart) else "; no configuration varies far more"))
    share = analysis.alpha if analysis.family_alpha == analysis.alpha else analysis.family_alpha
    datasets = f", {analysis.strata} datasets at {share:.2g} / {analysis.strata} each" if analysis.strata > 1 else ""
    looks = ""
    if analysis.looks > 1:
        looks = (f" Seeds on demand: look {analysis.look} of {analysis.looks} planned, alpha spent "
                 f"{'O' + chr(39) + 'Brien-Fleming-like' if analysis.spending == 'obrien-fleming' else 'equally'} "
                 "over them.")
    if analysis.extensions:
        looks += f" Extended with more seeds {analysis.extensions} time(s): each extension is one more look."
    return [
        f"Model: {metric} ~ configuration + seed, with {model} "
        f"({STATISTICS_PAGE}, \"Seeds are blocks\").",
        f"Error control over the whole study: at most alpha = {analysis.alpha:g} for any false better, worse, "
        f"equivalent or interaction{datasets}; this study's share {share:.2g}. Averaged comparisons hold "
        f"{PRIMARY_WEIGHT:.0%} of it, interactions and simple effects the rest; each row's test_level is what it was "
        f"finally tested at.{looks} ({STATISTICS_PAGE}, \"The question, and where alpha goes\").",
        f"Verdicts: equivalent within +/- {amount(analysis.smallest_effect, metric)}; failed runs decide too; "
        f"seeds needed at probability 0.8 ({STATISTICS_PAGE}, \"Verdicts\").",
    ]
