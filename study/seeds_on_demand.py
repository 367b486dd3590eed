"""Seeds on demand: a study adds seeds only where its answer is still open.

`SeedsOnDemand` is a Ray Tune `Searcher`: it suggests (configuration, seed) trials. Every
configuration of the grid first gets N seeds. When a round has finished, the searcher computes
the study's findings (analysis.decisions, the same verdicts, smallest effect and strata as the
report) and schedules the next seeds only for the configurations that take part in a
comparison still `inconclusive` and not futile (its conditional power at M seeds is under
analysis.decisions.FUTILITY: even M would hardly decide it), until every comparison is decided
or futile or every open configuration has M seeds, or the last planned look is taken. Look k is
at N + (k - 1) x N seeds (study.rounds): a round brings each open configuration to the next
look's count, so one that paused catches up. The
searcher's state is saved with the experiment (Tune calls `save`), so `--resume` continues its
rounds and no seed trains twice. With `--fuse K` a round's seed runs are fused as a grid's are
(study.fusion): those of configurations that share everything not fusible train
as members of one trial, up to K.

Repeated looks at the data inflate false decisions. The procedure spends alpha over the L
planned looks (L = 1 + ceil((M - N) / N)) with an O'Brien-Fleming-like spending function
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

import pickle
import sys

import pandas as pd
from ray.tune.search import Searcher
from tqdm.auto import tqdm

from common.contract import MEMBER_METRICS, config_cell
from study.fusion import pack, shared_key, tune_config
from study.rounds import count, information_fractions, planned_looks, status_of


class SeedsOnDemand(Searcher):
    """Suggests each configuration's seeds in rounds; more only where a comparison is open.

    `points` are the grid's configurations (axis levels, no seed), `fixed` the keys every trial
    shares. With `fuse` K, up to K seed runs whose points differ only in the `fusible` axes train
    as the members of one trial. Its state is what Tune saves with the experiment;
    `study.rounds.saved_status(folder)` reads it back."""

    def __init__(self, spec: dict, points: list[dict], fixed: dict, first: int, most: int,
                 smallest_effect: float, alpha: float, name: str, spending: str = "obrien-fleming",
                 fuse: int | None = None, fusible: list[str] = ()):
        super().__init__()
        self.spec, self.points, self.fixed = spec, points, dict(fixed)
        # every look is N more seeds: step is kept in the state (status_of reads it), always `first`
        self.first, self.most, self.step = first, most, first
        self.smallest_effect, self.alpha = smallest_effect, alpha
        self.name = name
        self.looks = planned_looks(first, most, self.step)
        self.spending, self.fractions = spending, information_fractions(first, most, self.step)
        self.fuse, self.fusible = fuse, list(fusible)
        self.seeds = [0] * len(points)  # seeds scheduled so far, per configuration
        # trials still to suggest, each its (configuration, seed) runs: one, or with --fuse its members
        self.queue: list[list[tuple[int, int]]] = []
        self.running: dict[str, dict] = {}  # trial id -> its runs, the last row per member
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
            for seed in range(self.seeds[i], target):
                runs.append((i, seed))
                scheduled += 1
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

        return pack(runs, [shared_key(self.points[i], self.fusible) for i, _ in runs], self.fuse)

    def _key(self, point: dict, columns: list[str]) -> tuple:
        return tuple(config_cell(point.get(c, self.fixed.get(c))) for c in columns)

    def _next_round(self) -> None:
        runs = pd.DataFrame(self.runs)
        if not (runs["status"].isin(["completed", "diverged"])).any():  # every run errored: nothing to learn from
            self.done = True
            return
        from analysis.decisions import open_comparisons  # the analysis loads once a round has finished

        decisions = open_comparisons(runs, self.spec, self.run_record(), self.smallest_effect, self.alpha, self.most)
        decided, still_open, futile = decisions.decided, decisions.still_open, decisions.futile
        self.decided, self.still_open, self.futile = decided, still_open, futile
        if len(self.rounds) >= self.looks:  # that was the last planned look
            self.done = True
            return
        target = min(self.first + len(self.rounds) * self.step, self.most)  # the next look's seeds
        columns = self._columns()
        wanted = [i for i, point in enumerate(self.points)
                  if self._key(point, columns) in decisions.configurations and self.seeds[i] < target]
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

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self.running.get(trial_id)
        if trial is None:
            return
        rows = result.get(MEMBER_METRICS)
        for row in rows if isinstance(rows, list) else [result]:  # a trial of one run reports its row as it is
            trial["rows"][int(row.get("member", 0))] = {k: row.get(k) for k in ("test_acc", "chance_acc", "val_acc",
                                                                                 "diverged")}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result:
            self.on_trial_result(trial_id, result)
        trial = self.running.pop(trial_id, None)
        if trial is None:
            return
        for member, (index, seed) in enumerate(trial["runs"]):
            point = self.points[index]
            labels = {c: config_cell(point.get(c, self.fixed.get(c))) for c in ["trainable", *point]}
            row = trial["rows"].get(member)
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
