"""Seeds on demand: a study adds seeds only where its answer is still open.

`SeedsOnDemand` is a Ray Tune `Searcher`: it suggests (configuration, seed) trials. Every
configuration of the grid first gets N seeds. When a round has finished, the searcher computes
the study's findings (analysis.compare, the same verdicts, smallest effect and strata as the
report) and schedules the next seeds only for the configurations that take part in a
comparison still `inconclusive` and not futile (its conditional power at M seeds is under
FUTILITY: even M would hardly decide it), until every comparison is decided or futile or every
open configuration has M seeds, or the last planned look is taken. Look k is at
N + (k - 1) x step seeds (`step` K with `--batch-seeds K`, as batched trials; else N): a round
brings each open configuration to the next look's count, so one that paused catches up. The
searcher's state is saved with the experiment (Tune calls `save`), so `--resume` continues its
rounds and no seed trains twice. With `--fuse K` a round's seed runs are fused as a grid's are
(study.spaces.fused_trials): those of configurations that share everything not fusible train
as members of one trial, up to K.

Repeated looks at the data inflate false decisions. The procedure spends alpha over the L
planned looks (L = 1 + ceil((M - N) / step)) with an O'Brien-Fleming-like spending function
(analysis.testing.look_alpha; "equal", alpha / L at each look, as an ablation): look k tests the
study's family (every test the study could make, analysis.compare) at its share alpha_k, strict
early and most of alpha at the last look; the shares add up to alpha. By the union bound the
chance of any wrong `better`, `worse` or `equivalent` verdict anywhere in the study at any look
stays at or under alpha, whenever the study stops; stopping for futility adds no verdict, so
it keeps the bound (non-binding). The report reads the looks, the spending and the rounds from the
results (`hpstudy.run` metadata) and applies the last look's level, so its verdicts are the
ones the last round saw.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
from pathlib import Path

import pandas as pd
from ray.tune.search import Searcher
from tqdm.auto import tqdm

from analysis.compare import analyse
from analysis.load import Results
from analysis.power import conditional_power
from analysis.testing import look_alpha
from study.spaces import pack, tune_config

# An open comparison whose chance of a decision at --max-seeds (conditional power, current
# trend) is under this gets no more seeds. Non-binding: stopping never adds a verdict, so the
# error bound is unchanged; it only saves the seeds a near-tie would spend without deciding.
FUTILITY = 0.1


def planned_looks(first: int, most: int, step: int) -> int:
    return 1 + math.ceil((most - first) / step)


def information_fractions(first: int, most: int, step: int) -> list[float]:
    """Each planned look's seeds per configuration over the most: what the spending function reads."""
    return [min(first + k * step, most) / most for k in range(planned_looks(first, most, step))]


def count(n: int, noun: str) -> str:
    """'1 comparison', '3 comparisons': the round and summary lines read as sentences."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _cell(value):
    """A config value as the results hold it: lists as JSON text."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def futile(row, most: int, smallest_effect: float, final_scale: float) -> bool:
    """An open comparison that even `most` seeds per configuration would hardly decide: its
    conditional power (current trend, analysis.power.conditional_power) at `most` seeds, at the
    level of the last planned look (this look's level x `final_scale`, the ratio of their shares
    of alpha), is under FUTILITY. One whose seeds are all spent is open, not futile."""
    if row["seeds"] >= most:
        return False
    final_df = max(row["df"] / max(row["seeds"] - 1, 1) * (most - 1), 1.0)  # df grow with the seeds
    power = conditional_power(row["effect"], row["unit_sd"], int(row["seeds"]), most, final_df,
                              (1 - row["confidence"]) * final_scale, smallest_effect)
    return power < FUTILITY


def open_comparisons(runs: pd.DataFrame, spec: dict, run: dict, smallest_effect: float, alpha: float,
                     most: int):
    """(decided, open, futile among the open, configurations in an open comparison that is not
    futile) from the runs so far; `run` says which look this is and how alpha is spent."""
    analysis = analyse(Results(Path("."), pd.DataFrame(), runs, spec, run), smallest_effect=smallest_effect,
                       alpha=alpha, detail=False)
    comparisons = analysis.comparisons
    still_open = comparisons[comparisons["verdict"] == "inconclusive"]
    final_share = look_alpha(alpha, run["looks"], run["looks"], run["spending"], run["fractions"])
    stopped = [futile(row, most, smallest_effect, final_share / analysis.family_alpha)
               for _, row in still_open.iterrows()]
    promising = still_open[pd.Series([not s for s in stopped], index=still_open.index, dtype=bool)]
    configurations = {c for group in promising["configurations"] for c in group}
    decided = int(comparisons["verdict"].isin(["better", "worse", "equivalent"]).sum())
    return decided, len(still_open), sum(stopped), configurations


def status_of(state: dict) -> dict:
    """What a searcher's state says of the study: planned looks, rounds, seed runs, verdicts."""
    return {"looks": state["looks"], "spending": state.get("spending", "equal"),
            "fractions": state.get("fractions"), "seeds": state["first"], "max_seeds": state["most"], "step": state["step"],
            "smallest_effect": state["smallest_effect"], "configurations": len(state["points"]),
            "seed_runs": sum(state["seeds"]), "rounds": state["rounds"], "decided": state["decided"],
            "open": state["still_open"], "futile": state.get("futile", 0), "finished": state["done"]}


def saved_status(folder: str) -> dict | None:
    """The status of the searcher state Tune saved last in a study folder (local or URI), or None.
    Tune's own copy is the one to trust: a file of ours in the experiment folder would be
    overwritten by Tune's staged copy of the folder when a study resumes."""
    import pyarrow.fs as pafs

    from study.storage import filesystem_of

    filesystem, path = filesystem_of(folder)
    files = [info.path for info in filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
             if info.base_name.startswith("searcher-state-") and info.base_name.endswith(".pkl")]
    if not files:
        return None
    with filesystem.open_input_stream(max(files)) as stream:  # names carry the session's start time
        return status_of(pickle.loads(stream.read()))


class SeedsOnDemand(Searcher):
    """Suggests each configuration's seeds in rounds; more only where a comparison is open.

    `points` are the grid's configurations (axis levels, no seed), `fixed` the keys every trial
    shares. With `replicates` K in `fixed` each trial trains K seeds, starting at its `seed`; with
    `fuse` K, up to K seed runs whose points differ only in the `fusible` axes train as the
    members of one trial. Its state is what Tune saves with the experiment; `saved_status(folder)`
    reads it back."""

    def __init__(self, spec: dict, points: list[dict], fixed: dict, first: int, most: int, step: int,
                 smallest_effect: float, alpha: float, name: str, spending: str = "obrien-fleming",
                 fuse: int | None = None, fusible: list[str] = ()):
        super().__init__()
        self.spec, self.points, self.fixed = spec, points, dict(fixed)
        self.first, self.most, self.step = first, most, step
        self.smallest_effect, self.alpha = smallest_effect, alpha
        self.name = name
        self.looks = planned_looks(first, most, step)
        self.spending, self.fractions = spending, information_fractions(first, most, step)
        self.batch = int(self.fixed.get("replicates", 1))
        self.fuse, self.fusible = fuse, list(fusible)
        self.seeds = [0] * len(points)  # seeds scheduled so far, per configuration
        # trials still to suggest, each its (configuration, first seed) runs: one, or with --fuse its members
        self.queue: list[list[tuple[int, int]]] = []
        self.running: dict[str, dict] = {}  # trial id -> its runs, the last row per seed (member)
        self.runs: list[dict] = []  # one row per finished seed run
        self.rounds: list[dict] = []
        self.decided, self.still_open, self.futile = 0, None, 0  # at the last look
        self.done = False
        self._schedule(range(len(points)), first, decided=0, still_open=None, futile=0)

    # --- rounds ---------------------------------------------------------------------------

    def _schedule(self, indices, target: int, decided: int, still_open: int | None, futile: int) -> None:
        """Bring each configuration in `indices` to `target` seeds: the planned seeds of the next
        look, the same for all, so the looks stay the planned ones (a configuration that paused
        and is open again catches up) and there are never more than `looks` of them."""
        scheduled = 0
        target = min(target, self.most)
        runs = []
        for i in indices:
            for seed in range(self.seeds[i], target, self.batch):
                runs.append((i, seed))
                scheduled += min(self.batch, target - seed)
            self.seeds[i] = max(self.seeds[i], target)
        self.queue += self._trials(runs)
        record = {"round": len(self.rounds) + 1, "decided": decided, "open": still_open, "futile": futile,
                  "scheduled": scheduled, "configurations": len({i for trial in self.queue for i, _ in trial})}
        if scheduled:
            self.rounds.append(record)
            # tqdm.write: a line above the study's progress bar, not through it
            tqdm.write(f"{self.name}: round {record['round']}: "
                       + ("" if still_open is None else f"{count(decided, 'comparison')} decided, {still_open} open"
                          + (f" ({futile} stopped for futility)" if futile else "") + "; ")
                       + f"{count(scheduled, 'seed run')} scheduled on {count(record['configurations'], 'configuration')}",
                       file=sys.stdout)
            sys.stdout.flush()

    def _trials(self, runs: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
        """A round's (configuration, seed) runs as trials: one run each, or fused as a grid is."""
        if not self.fuse:
            return [[run] for run in runs]

        shared = [json.dumps({k: v for k, v in self.points[i].items() if k not in self.fusible}, sort_keys=True,
                             default=str) for i, _ in runs]
        return pack(runs, shared, self.fuse)

    def _key(self, point: dict, columns: list[str]) -> tuple:
        return tuple(_cell(point.get(c, self.fixed.get(c))) for c in columns)

    def _next_round(self) -> None:
        runs = pd.DataFrame(self.runs)
        if not (runs["status"].isin(["completed", "diverged"])).any():  # every run errored: nothing to learn from
            self.done = True
            return
        decided, still_open, futile, configurations = open_comparisons(runs, self.spec, self.run_record(),
                                                                       self.smallest_effect, self.alpha, self.most)
        self.decided, self.still_open, self.futile = decided, still_open, futile
        if len(self.rounds) >= self.looks:  # that was the last planned look
            self.done = True
            return
        target = min(self.first + len(self.rounds) * self.step, self.most)  # the next look's seeds
        columns = self._columns()
        wanted = [i for i, point in enumerate(self.points)
                  if self._key(point, columns) in configurations and self.seeds[i] < target]
        self._schedule(wanted, target, decided, still_open, futile)
        self.done = not self.queue

    def _columns(self) -> list[str]:
        """The analysis's configuration key: the strata (the dataset, if it varies), then the factors."""
        axes = [k for k in self.spec["axes"] if k != "seed"]
        strata = ["trainable"] if "trainable" in axes else []
        return [*strata, *[k for k in axes if k != "trainable"]]

    def status(self) -> dict:
        return status_of(self.__dict__)

    def run_record(self) -> dict:
        """What the analysis needs to test these runs at their look: the looks, the spending and
        the rounds so far (the run metadata carries the same keys)."""
        return {"looks": self.looks, "spending": self.spending, "fractions": self.fractions,
                "rounds": list(self.rounds)}

    # --- Tune's Searcher interface ----------------------------------------------------------

    def suggest(self, trial_id: str):
        if not self.queue and not self.running and not self.done:
            self._next_round()
        if self.done:
            return Searcher.FINISHED
        if not self.queue:
            return None  # the round is still running: ask again later
        runs = self.queue.pop(0)
        self.running[trial_id] = {"runs": runs, "rows": {}}
        if not self.fuse:
            index, seed = runs[0]
            return {**self.fixed, **self.points[index], "seed": seed}
        index = runs[0][0]
        members = [{**{k: v for k, v in self.points[i].items() if k in self.fusible}, "seed": seed} for i, seed in runs]
        return tune_config({**self.fixed, **{k: v for k, v in self.points[index].items() if k not in self.fusible},
                            "members": members})

    def _row_key(self, trial: dict, row: dict) -> int:
        """A row's place among its trial's runs: its member index (fused), else its seed."""
        if self.fuse:
            return int(row.get("member", 0))
        return int(row.get("seed", trial["runs"][0][1]))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self.running.get(trial_id)
        if trial is None:
            return
        rows = result.get("replicate_metrics")
        for row in rows if isinstance(rows, list) else [result]:
            trial["rows"][self._row_key(trial, row)] = {k: row.get(k) for k in ("test_acc", "chance_acc", "val_acc",
                                                                                 "diverged")}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result:
            self.on_trial_result(trial_id, result)
        trial = self.running.pop(trial_id, None)
        if trial is None:
            return
        if self.fuse:  # (configuration, seed, its rows' key) per member
            runs = [(index, seed, member) for member, (index, seed) in enumerate(trial["runs"])]
        else:
            index, first = trial["runs"][0]
            runs = [(index, seed, seed) for seed in range(first, first + self.batch)]
        for index, seed, key in runs:
            point = self.points[index]
            labels = {c: _cell(point.get(c, self.fixed.get(c))) for c in ["trainable", *point]}
            row = trial["rows"].get(key)
            status = "error" if error or row is None or row.get("test_acc") is None else (
                "diverged" if row.get("diverged") else "completed")
            self.runs.append({**labels, "seed": seed, "status": status,
                              "test_acc": None if row is None else row.get("test_acc"),
                              "final_val_acc": None if row is None else row.get("val_acc"),
                              "chance_acc": None if row is None else row.get("chance_acc")})

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        state.setdefault("spending", "equal")  # a study started before spending functions keeps its split
        state.setdefault("fuse", None)  # a study started before --fuse: one run per trial
        state.setdefault("fusible", [])
        state["queue"] = [item if isinstance(item, list) else [tuple(item)] for item in state["queue"]]
        state["running"] = {trial_id: trial if "runs" in trial else {"runs": [(trial["index"], trial["seed"])],
                                                                      "rows": trial["rows"]}
                            for trial_id, trial in state["running"].items()}
        self.__dict__.update(state)
