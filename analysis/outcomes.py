"""What a study can be asked about: each outcome's values per run, its direction, its scale.

An outcome is a column of trials.parquet (test accuracy, training time), or one derived from
the results (the generalization gap; the epochs or seconds until the validation accuracy first
reaches a target). Its kind says how it is compared and read:
- "accuracy": a fraction, compared as it is and read in points (x 100);
- "relative": a positive amount such as a time, compared on the log scale, so its effects are
  ratios: read as ratio - 1 ("+20%": 20% more), with a relative smallest effect (5%);
- "plain": compared and read in its own units (a loss, epochs).

A run that never reaches a convergence outcome's target is not dropped and gets no invented
value: it is a failed run (`not_reached`), counted in the failure rates and Fisher's test and
decided on as failures are (analysis.compare).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from common.errors import UserError

TIME = dict(more_less=("slower", "faster"), machine_dependent=True)


@dataclass(frozen=True)
class Outcome:
    name: str
    higher_is_better: bool
    kind: str  # "accuracy", "relative" or "plain"
    smallest_effect: float  # the default smallest effect that matters, in the kind's units (relative: a share)
    label: str
    needs: tuple[str, ...] = ()  # the trials columns it is made of (none: its own column)
    needs_target: bool = False  # a convergence outcome: --target VALUE, a validation accuracy in (0, 1)
    more_less: tuple[str, str] = ("more", "less")  # a relative effect above and below 0 in words ("20% slower")
    machine_dependent: bool = False  # a time: compared within each device where runs ran on several
    # whether a run whose accuracy stayed near chance failed: for a diagnostic it is the run the value
    # explains (a deep sigmoid net whose gradients vanished), measured as any other; a diverged run fails
    near_chance_fails: bool = True


OUTCOMES: dict[str, Outcome] = {o.name: o for o in [
    Outcome("test_acc", True, "accuracy", 0.01, "test accuracy"),
    Outcome("final_val_acc", True, "accuracy", 0.01, "final validation accuracy"),
    Outcome("best_val_acc", True, "accuracy", 0.01, "best validation accuracy"),
    Outcome("test_loss", False, "plain", 0.01, "test loss"),
    Outcome("final_val_loss", False, "plain", 0.01, "final validation loss"),
    Outcome("train_time_s", False, "relative", 0.05, "training time", **TIME),
    Outcome("train_us_per_sample", False, "relative", 0.05, "training time per sample", **TIME),
    Outcome("infer_us_per_sample", False, "relative", 0.05, "inference time per sample", **TIME),
    Outcome("generalization_gap", False, "accuracy", 0.01, "generalization gap (final train minus test accuracy)",
            needs=("final_train_acc", "test_acc")),
    Outcome("epochs_to_target", False, "plain", 1.0, "epochs to the target validation accuracy", needs_target=True),
    Outcome("seconds_to_target", False, "relative", 0.05, "time to the target validation accuracy",
            needs_target=True, **TIME),
    # the first layer's gradient norm over the last's at the last epoch: far below 1, vanishing gradients
    Outcome("grad_ratio", True, "relative", 0.05, "gradient ratio (first / last layer)", more_less=("higher", "lower"),
            near_chance_fails=False),
]}
DEFAULT_OUTCOME = "test_acc"


def outcome(name: str, target: float | None = None) -> Outcome:
    """The outcome `name`, checked with its `target`: one line naming what is wrong and the fix."""
    if name not in OUTCOMES:
        raise UserError(f"unknown metric {name!r}; choose one of: {', '.join(OUTCOMES)}")
    chosen = OUTCOMES[name]
    if chosen.needs_target and target is None:
        raise UserError(f"{name} needs the validation accuracy to reach: add --target VALUE, e.g. --target 0.9")
    if target is not None and not 0 < target < 1:
        raise UserError(f"--target is a validation accuracy in (0, 1), got {target}")
    return chosen


def is_relative(metric: str) -> bool:
    return metric in OUTCOMES and OUTCOMES[metric].kind == "relative"


def is_accuracy(metric: str) -> bool:
    """Read in points: an accuracy outcome (or, outside the outcomes, an accuracy column)."""
    return OUTCOMES[metric].kind == "accuracy" if metric in OUTCOMES else metric.endswith("acc")


def compared_scale(chosen: Outcome, smallest_effect: float) -> float:
    """The smallest effect on the scale the outcome is compared on (the log of 1 + a share)."""
    return math.log1p(smallest_effect) if chosen.kind == "relative" else smallest_effect


def reached(epochs: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per run (trial_id): the first epoch whose val_acc reaches `target` and the training time
    until it (the epochs' times summed), NaN where none does."""
    ordered = epochs.sort_values(["trial_id", "epoch"])
    seconds = ordered.groupby("trial_id")["epoch_time_s"].cumsum() if "epoch_time_s" in ordered else np.nan
    ordered = ordered.assign(seconds=seconds)
    hit = ordered[ordered["val_acc"] >= target].groupby("trial_id").first()
    return hit[["epoch", "seconds"]].rename(columns={"epoch": "epochs_to_target", "seconds": "seconds_to_target"})


def outcome_values(trials: pd.DataFrame, epochs: pd.DataFrame, chosen: Outcome,
                   target: float | None) -> tuple[pd.Series, pd.Series]:
    """(each run's value on the compared scale, whether the run never reached the target), indexed
    as `trials`. A run with a result but no value (a target not reached) is NaN."""
    not_reached = pd.Series(False, index=trials.index)
    if chosen.needs_target:
        hits = reached(epochs, target) if len(epochs) else pd.DataFrame(columns=["epochs_to_target"])
        values = trials["trial_id"].map(hits[chosen.name]).astype(float)
        not_reached = values.isna() & trials["status"].isin(["completed", "diverged"])
    elif chosen.needs:
        missing = [c for c in chosen.needs if c not in trials]
        if missing:
            raise UserError(f"the results have no {', '.join(missing)} column for {chosen.name}; rerun the study "
                            "with this hpstudy (older results lack it)")
        values = trials[chosen.needs[0]] - trials[chosen.needs[1]]
    elif chosen.name in trials:
        values = pd.to_numeric(trials[chosen.name], errors="coerce")
    else:
        raise UserError(f"the results have no {chosen.name} column; choose one of: "
                        f"{', '.join(o for o in OUTCOMES if o in trials)}")
    if chosen.kind == "relative":
        values = np.log(values.where(values > 0))
    return values, not_reached
