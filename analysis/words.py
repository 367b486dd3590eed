"""How the findings read: column labels, signed amounts, and the answer in one line per factor
(the report's summary, and the last lines a finished study prints). No plotting here, so a
study's driver can print the answer without importing matplotlib."""

from __future__ import annotations

import math
import shlex
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # compare imports this module
    from analysis.compare import Analysis


LABELS = {
    "final_val_acc": "final validation accuracy", "best_val_acc": "best validation accuracy",
    "test_acc": "test accuracy", "train_time_s": "training time per trial (s)",
    "train_us_per_sample": "training time per sample (µs)", "infer_us_per_sample": "inference time per sample (µs)",
    "train_loss": "training loss", "val_loss": "validation loss", "train_acc": "training accuracy",
    "val_acc": "validation accuracy", "lr": "learning rate", "weight_decay": "weight decay",
}


def label(column: str) -> str:
    return LABELS.get(column, column.replace("_", " "))


def amount(value: float, metric: str) -> str:
    """A size as a reader sees it: accuracy in points ("1.0 points"), other metrics in their units."""
    return f"{100 * value:.1f} points" if metric.endswith("acc") else f"{value:.3g}"


def signed(value: float, metric: str) -> str:
    """A difference as a reader sees it: accuracy in signed points, other metrics in their units."""
    if not math.isfinite(value):
        return ""
    return f"{100 * value:+.1f}" if metric.endswith("acc") else f"{value:+.3g}"


def answer(analysis: "Analysis") -> list[str]:
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
                     f"so it is compared within each level of {', '.join(others)}.")
        parts = []
        for verdict in ("better", "worse", "equivalent", "inconclusive", "not testable"):
            chosen = rows[rows["verdict"] == verdict]
            if chosen.empty:
                continue
            items = []
            for _, r in chosen.iterrows():
                place = "" if r["stratum"] == "all" else f" with {r['stratum']}"
                amount = f" {signed(r['effect'], metric)}" if verdict in ("better", "worse", "inconclusive") else ""
                items.append(f"{r['level']}{place}{amount}")
            name = {"inconclusive": "undecided", "equivalent": "equivalent"}.get(verdict, verdict)
            parts.append(f"{name}: {'; '.join(items)}")
        unit = "points of " if metric.endswith("acc") else ""
        lines.append(f"{factor.name} (vs {factor.baseline}, {unit}{label(metric)}): " + " | ".join(parts)
                     + "." + where)
    return lines


def resume_command(run: dict, folder) -> str | None:
    """The command that adds seeds to the study in `folder` (study.extend), with `{seeds}` where
    the count goes; None where the results do not say how the study was started."""
    if not run or "preset" not in run:
        return None
    location = str(folder).rstrip("/")
    storage, _, name = location.rpartition("/")
    if run["preset"]:
        start = f"python -m study.{run['preset']}" + (f" {run['trainable']}" if run.get("trainable") else "")
    elif run.get("study_file"):
        start = f"python -m study {shlex.quote(run['study_file'])}"
    else:
        return None
    default_name = run["preset"] is not None and name == run["preset"]
    return (f"{start} --storage {shlex.quote(storage or '.')}" + ("" if default_name else f" --name {shlex.quote(name)}")
            + " --seeds {seeds} --resume")


def more_seeds(analysis: "Analysis") -> list[str]:
    """One line per open comparison: the seeds that would decide it, and the command that adds them."""
    from analysis.stats import MAX_SEEDS_NEEDED

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


def nearest_more_seeds(analysis: "Analysis") -> str | None:
    """The end of a study's answer where comparisons are open: the command that adds the seeds
    the nearest of them needs (the report lists each)."""
    from analysis.stats import MAX_SEEDS_NEEDED

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
