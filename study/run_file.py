"""The run record: how a study was started, what its extensions and rounds were, and the command
that resumes it. One record, written from here to two places: the run file (hpstudy_run.json,
which --resume reads back) and the results' `hpstudy.run` metadata (study.export)."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import UserError
from common.files import DEFAULT_DATA_ROOT
from common.storage import join, plain, read_json, write_json
from study.extend import extension_runs
from study.options import RunOptions, options_where, study_command
from study.rounds import saved_status

if TYPE_CHECKING:
    from study.plan import Plan

RUN_FILE = "hpstudy_run.json"


def resume_command(options: RunOptions) -> str:
    """The command that adds seeds to the study (study.extend), with `{seeds}` where the count goes."""
    start = study_command(options.preset, options.trainable, options.study_file)
    default_name = options.preset is not None and options.name == options.preset
    return (f"{start} --storage {shlex.quote(options.storage)}"
            + ("" if default_name else f" --name {shlex.quote(options.name)}") + " --seeds {seeds} --resume")


def run_record(plan: Plan, status: dict | None = None, parts: list | None = None) -> dict:
    """The record of `plan`: its recorded flags, its extensions (with the run ids each added, given
    the study's `parts` as study.extend.study_parts read them), the command that adds seeds and,
    for seeds on demand, the planned looks, their spending and the rounds so far (from the
    searcher's saved `status`): the analysis tests the results at the share of alpha their look
    spends (analysis.testing.look_alpha)."""
    record = {key: plain(getattr(plan.options, key)) for key in options_where("recorded")}
    record["extensions"] = extension_runs(plan.extensions, parts) if parts else [dict(e) for e in plan.extensions]
    record["resume_command"] = resume_command(plan.options)
    if plan.options.max_seeds:
        status = status if status is not None else saved_status(plan.folder) or {}
        record.update({k: status[k] for k in ("looks", "spending", "fractions", "rounds") if k in status})
    return record


def write_run_file(plan: Plan) -> None:
    write_json(join(plan.folder, RUN_FILE), run_record(plan))


def load_run_file(options: RunOptions) -> dict:
    saved = read_json(join(options.folder, RUN_FILE))
    if saved is None:
        raise UserError(f"{options.folder} has no {RUN_FILE}: not an hpstudy study folder; check --storage and --name")
    if saved["preset"] != options.preset or saved.get("trainable") != options.trainable:
        how = study_command(saved["preset"], saved.get("trainable"), saved.get("study_file") or "FILE.toml")
        raise UserError(f"{options.folder} holds a study started with {how}; resume it with that command and --resume")
    return saved


def _flag(key: str) -> str:
    return "--" + {"axis_overrides": "axis", "sets": "set"}.get(key, key).replace("_", "-")


def resumed_options(options: RunOptions, saved: dict) -> tuple[RunOptions, int | None]:
    """The options a --resume runs with, and the seed count it asks for (None: the study's).

    The study's own flags come from its run file. A flag given again keeps its value where it
    shapes the grid (the grid check then names any difference) and must equal the study's
    otherwise; none is silently ignored."""
    changes = {}
    grid = options_where("grid")
    for key, default in options_where("resumed").items():
        was, given = saved.get(key, default), getattr(options, key)
        if key == "seeds":
            changes[key] = was
        elif key == "plugins":
            changes[key] = tuple(dict.fromkeys([*was, *given]))  # more plugins only import more modules
        elif plain(given) == plain(default) or plain(given) == plain(was):
            changes[key] = was
        elif key in grid:
            changes[key] = given
        else:
            had = "has none" if was is None else f"has {was}"
            raise UserError(f"{_flag(key)} {given} differs from the study's own (it {had}); --resume continues a "
                            f"study as it was started: drop {_flag(key)} (more seeds: --seeds N)")
    if options.data_root == str(Path(DEFAULT_DATA_ROOT).resolve()) and saved.get("data_root"):
        changes["data_root"] = saved["data_root"]  # the study's data, unless --data-root says otherwise
    return replace(options, **changes), options.seeds
