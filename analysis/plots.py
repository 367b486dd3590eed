"""Seaborn figures of a study's results. Each function returns a matplotlib Figure
with labelled axes, a title and a legend; the caller saves or shows it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from analysis.outcomes import is_accuracy, is_relative
from analysis.stats import learning_curves as curve_table
from analysis.stats import levels
from analysis.words import label


def boxplot(trials: pd.DataFrame, x: str, value: str, hue: str | None = None, facet: str | None = None,
            title: str | None = None, order: list | None = None, hue_order: list | None = None):
    """Box per level of `x` (split by `hue`), every run drawn as a point on top; one panel per
    level of `facet` (the dataset, which is never pooled), each with its own y axis."""
    panels = levels(trials, facet) if facet else [None]
    order = order or levels(trials, x)
    hue_order = (hue_order or levels(trials, hue)) if hue else None
    width = max(6, 0.9 * len(order) + 3)
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 4.5), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        data = trials if panel is None else trials[trials[facet] == panel]
        sns.boxplot(data=data, x=x, y=value, hue=hue, order=order, hue_order=hue_order, ax=ax, showfliers=False,
                    palette="pastel" if hue else None, color=None if hue else "lightsteelblue")
        sns.stripplot(data=data, x=x, y=value, hue=hue, order=order, hue_order=hue_order, ax=ax, dodge=bool(hue),
                      color="black" if not hue else None, palette="dark" if hue else None, size=4, alpha=0.7,
                      legend=False)
        ax.set_xlabel(label(x))
        ax.set_ylabel(label(value))
        ax.set_title((title or f"{label(value)} by {label(x)}" + (f" and {label(hue)}" if hue else "") + " (points: runs)")
                     + (f"\n{facet}={panel}" if panel is not None else ""))
        if hue:
            ax.legend(title=label(hue), loc="best")
        ax.tick_params(axis="x", rotation=30 if len(order) > 6 else 0)
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"better": "tab:green", "worse": "tab:red", "equivalent": "tab:blue", "inconclusive": "tab:gray",
                   "not testable": "lightgray"}


def forest(comparisons: pd.DataFrame, smallest_effect: float, metric: str):
    """Each comparison's effect with its interval (at the level it was tested at), one panel per
    factor; the band of +/- the smallest effect that matters is shaded, colours are the verdicts."""
    factors = list(dict.fromkeys(comparisons["factor"]))
    scale = 100.0 if is_accuracy(metric) or is_relative(metric) else 1.0
    unit = "%, a ratio - 1" if is_relative(metric) else "points" if scale == 100.0 else "units"
    heights = [max(1, (comparisons["factor"] == f).sum()) for f in factors]
    fig, axes = plt.subplots(len(factors), 1, figsize=(9, 0.38 * sum(heights) + 1.3 * len(factors)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, factor in zip(axes.flat, factors):
        rows = comparisons[comparisons["factor"] == factor].reset_index(drop=True)
        y = np.arange(len(rows))[::-1]
        ax.axvspan(-smallest_effect * scale, smallest_effect * scale, color="tab:blue", alpha=0.12, lw=0)
        ax.axvline(0, color="black", lw=0.8)
        for yi, (_, row) in zip(y, rows.iterrows()):
            colour = VERDICT_COLOURS[row["verdict"]]
            if np.isfinite(row["ci_low"]):
                ax.plot([row["ci_low"] * scale, row["ci_high"] * scale], [yi, yi], color=colour, lw=2)
            if np.isfinite(row["effect"]):
                ax.plot(row["effect"] * scale, yi, "o", color=colour)
        names = [f"{r['level']} vs {r['reference']}" + ("" if r["stratum"] == "all" else f" ({r['stratum']})")
                 for _, r in rows.iterrows()]
        ax.set_yticks(y, names, fontsize="small")
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_title(f"{factor}: effect on {label(metric)} ({unit}), intervals at each row's tested level", fontsize="medium")
    axes.flat[-1].set_xlabel(f"difference in {label(metric)} ({unit}); shaded: +/- the smallest effect that matters")
    present = set(comparisons["verdict"])
    handles = [plt.Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in VERDICT_COLOURS.items() if v in present]
    axes.flat[0].legend(handles=handles, fontsize="small", loc="best")
    fig.tight_layout()
    return fig


def learning_curves(epochs: pd.DataFrame, factor: str, metrics=("train_loss", "val_loss", "train_acc", "val_acc")):
    """Median across seeds per level of `factor`, with the inter-quartile range as a band."""
    metrics = [m for m in metrics if m in epochs.columns]
    cols = 2
    rows = int(np.ceil(len(metrics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(11, 3.8 * rows), squeeze=False)
    palette = dict(zip(levels(epochs, factor), sns.color_palette("tab10", epochs[factor].nunique())))
    for ax, metric in zip(axes.flat, metrics):
        table = curve_table(epochs, factor, metric)
        for level, part in table.groupby(factor):
            ax.plot(part["epoch"], part["median"], label=str(level), color=palette[level])
            ax.fill_between(part["epoch"], part["q25"], part["q75"], color=palette[level], alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label(metric))
        ax.set_title(f"{label(metric)}: median and IQR across runs")
        spans = table["median"].max() / max(table["median"].min(), 1e-12)
        if metric.endswith("loss") and (table["median"] > 0).all() and spans > 50:
            ax.set_yscale("log")
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    axes.flat[0].legend(title=label(factor), fontsize="small")
    fig.suptitle(f"Learning curves by {label(factor)}")
    fig.tight_layout()
    return fig


def lr_robustness(trials: pd.DataFrame, factor: str, value: str = "final_val_acc"):
    """Final error (1 - accuracy) against learning rate on a log axis, one line per level of `factor`."""
    data = trials.assign(error=1.0 - trials[value])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=data, x="lr", y="error", hue=factor, hue_order=levels(data, factor), estimator="median",
                 errorbar=("pi", 50), marker="o", ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"final error (1 - {label(value)})")
    ax.set_title(f"Learning-rate robustness by {label(factor)} (median, IQR band)")
    ax.legend(title=label(factor))
    fig.tight_layout()
    return fig


def heatmap(trials: pd.DataFrame, rows: str, cols: str, value: str = "final_val_acc"):
    """Mean of `value` over two factors."""
    table = trials.pivot_table(index=rows, columns=cols, values=value, aggfunc="mean")
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * table.shape[1] + 3), max(3.5, 0.5 * table.shape[0] + 2)))
    sns.heatmap(table, annot=True, fmt=".3f", cmap="viridis", ax=ax, cbar_kws={"label": f"mean {label(value)}"})
    ax.set_xlabel(label(cols))
    ax.set_ylabel(label(rows))
    ax.set_title(f"Mean {label(value)} by {label(rows)} and {label(cols)}")
    fig.tight_layout()
    return fig


def gradient_norms(epochs: pd.DataFrame, factor: str, facet: str | None = None):
    """First vs last layer gradient norm per epoch (log scale): vanishing gradients show as a gap."""
    long = epochs.melt(id_vars=[c for c in (factor, facet, "epoch") if c], value_vars=["grad_norm_first", "grad_norm_last"],
                       var_name="layer", value_name="gradient norm")
    long["layer"] = long["layer"].map({"grad_norm_first": "first layer", "grad_norm_last": "last layer"})
    grid = sns.relplot(data=long, x="epoch", y="gradient norm", hue=factor, style="layer", col=facet, kind="line",
                       estimator="median", errorbar=None, height=4, aspect=1.2)
    grid.set(yscale="log")
    grid.set_axis_labels("epoch", "gradient norm (log)")
    grid.figure.suptitle("Gradient norm of the first and last layer (median across runs)", y=1.03)
    return grid.figure


def unit_fractions(epochs: pd.DataFrame, factor: str, facet: str | None = None):
    """Dead and saturated shares of the hidden units per epoch (config `diagnostics`), one panel each."""
    long = epochs.melt(id_vars=[c for c in (factor, facet, "epoch") if c],
                       value_vars=["dead_fraction", "saturated_fraction"], var_name="units", value_name="share")
    long["units"] = long["units"].map({"dead_fraction": "dead units", "saturated_fraction": "saturated units"})
    grid = sns.relplot(data=long, x="epoch", y="share", hue=factor, col="units", row=facet, kind="line",
                       estimator="median", errorbar=None, height=3.5, aspect=1.2, facet_kws={"sharey": False})
    grid.set_axis_labels("epoch", "share of hidden units")
    for ax in grid.axes.flat:
        ax.set_ylim(bottom=0)
    grid.figure.suptitle("Dead and saturated hidden units on the fixed batch (median across runs)", y=1.03)
    return grid.figure


def optuna_progress(trials: pd.DataFrame, value: str = "final_val_acc", mode: str = "max"):
    """Objective per trial in the order Optuna proposed them, and the best so far."""
    ordered = trials.sort_values("trial_id").reset_index(drop=True)
    best = ordered[value].cummax() if mode == "max" else ordered[value].cummin()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(ordered.index, ordered[value], label="trial", color="tab:blue", alpha=0.7)
    ax.plot(ordered.index, best, label="best so far", color="tab:red", drawstyle="steps-post")
    ax.set_xlabel("trial index (proposal order)")
    ax.set_ylabel(label(value))
    ax.set_title("Optuna search: objective and best so far")
    ax.legend()
    fig.tight_layout()
    return fig


def optuna_params(trials: pd.DataFrame, params: list[str], value: str = "final_val_acc"):
    """Objective against each searched parameter (log x for rates)."""
    fig, axes = plt.subplots(1, len(params), figsize=(3.6 * len(params), 3.8), squeeze=False)
    for ax, param in zip(axes.flat, params):
        if trials[param].dtype == object or trials[param].dtype == bool:
            sns.stripplot(data=trials, x=param, y=value, ax=ax, color="tab:blue")
        else:
            ax.scatter(trials[param], trials[value], color="tab:blue", alpha=0.7)
            if param in ("lr", "weight_decay"):
                ax.set_xscale("log")
        ax.set_xlabel(label(param))
        ax.set_ylabel(label(value))
        ax.set_title(label(param))
    fig.suptitle("Optuna search: objective against each parameter")
    fig.tight_layout()
    return fig
