"""The rounds of a seeds-on-demand study as data: its planned looks, and the status its searcher saved.

Free of Ray and of the analysis: the run file, the live export and the summary line read a
study's rounds through it without loading the searcher (study.seeds_on_demand).
"""

from __future__ import annotations

import math
import pickle

import pyarrow.fs as pafs

from common.storage import filesystem_of


def planned_looks(first: int, most: int, step: int) -> int:
    return 1 + math.ceil((most - first) / step)


def information_fractions(first: int, most: int, step: int) -> list[float]:
    """Each planned look's seeds per configuration over the most: what the spending function reads."""
    return [min(first + k * step, most) / most for k in range(planned_looks(first, most, step))]


def count(n: int, noun: str) -> str:
    """'1 comparison', '3 comparisons': the round and summary lines read as sentences."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def status_of(state: dict) -> dict:
    """What a searcher's state says of the study: planned looks, rounds, seed runs, verdicts."""
    return {"looks": state["looks"], "spending": state.get("spending", "equal"),
            "fractions": state.get("fractions"), "seeds": state["first"], "max_seeds": state["most"], "step": state["step"],
            "smallest_effect": state["smallest_effect"], "configurations": len(state["points"]),
            "seed_runs": sum(state["seeds"]), "rounds": state["rounds"], "decided": state["decided"],
            "open": state["still_open"], "futile": state.get("futile", 0), "finished": state["done"]}


def latest_state_file(folder: str) -> pafs.FileInfo | None:
    """The searcher state Tune saved last in a study folder (local or URI), or None.
    Tune's own copy is the one to trust: a file of ours in the experiment folder would be
    overwritten by Tune's staged copy of the folder when a study resumes."""
    filesystem, path = filesystem_of(folder)
    files = [info for info in filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
             if info.base_name.startswith("searcher-state-") and info.base_name.endswith(".pkl")]
    return max(files, key=lambda info: info.path) if files else None  # names carry the session's start time


def saved_status(folder: str, state_file: pafs.FileInfo | None = None) -> dict | None:
    """The status of the searcher state Tune saved last in `folder` (`state_file`, where the caller
    has looked it up already), or None."""
    state_file = state_file or latest_state_file(folder)
    if state_file is None:
        return None
    filesystem, _ = filesystem_of(folder)
    with filesystem.open_input_stream(state_file.path) as stream:
        return status_of(pickle.loads(stream.read()))
