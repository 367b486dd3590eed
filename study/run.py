"""Run a study on Ray Tune: `python -m study.<preset> [flags]` or `python -m study FILE.toml [flags]`.

The steps, each in its own module: the command line (study.options), the plan (study.plan:
new, resume or extend, the study as this run trains it), the checks before anything is written
(study.checks), the run record for --resume (study.run_file), the Tuner (study.tuner) and the
live Parquet export (study.live_export). This module runs them in order and ends with a
one-line summary, then the study's answer (one line per factor) and the command that writes
the whole report. Bad input of any kind is one line on stderr and exit code 2, before anything
is written.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from common.cli import report_user_error
from common.contract import EPOCHS_FILE, STATUSES, TRIALS_FILE
from common.errors import UserError
from study import export
from study.checks import check_address, check_data, check_loggers, check_storage, open_optuna_storage
from study.cluster import check_fits, check_shared_storage, cluster_shapes, default_gpus
from study.extend import merged, study_parts
from study.fusion import fused_trials, fusible_axes, members_of
from study.options import RunOptions, parse_args, study_command
from study.plan import Plan, plan_run, validated
from study.rounds import count, saved_status
from study.run_file import run_record, write_run_file
from study.study_file import to_toml

# Ray's own driver-side INFO and WARNING lines (connecting, token authentication, Tune's state
# writes) would surround a refusal's one line; the progress bar says what a user needs
QUIET = logging.ERROR
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C: results are partial, `--resume` continues


def seeds_summary(options: RunOptions) -> str | None:
    """The last line of a seeds-on-demand study: seed runs spent against the fixed design."""
    status = saved_status(options.folder)
    if not status:
        return None
    fixed = status["configurations"] * status["max_seeds"]
    futile = status.get("futile", 0)
    state = ("none left open" if not status["open"] else
             f"{count(status['open'], 'comparison')} still open"
             + (f", {futile} of them stopped for futility (even {status['max_seeds']} seeds would hardly decide them)"
                if futile else f" at {status['max_seeds']} seeds"))
    return (f"{options.name}: seeds on demand: {status['seed_runs']} seed runs in {count(len(status['rounds']), 'round')} "
            f"against {status['configurations']} configs x {status['max_seeds']} = {fixed} for the fixed design "
            f"({status['seed_runs'] / fixed:.0%}); {count(status['decided'], 'comparison')} decided, {state}")


def answer_lines(options: RunOptions) -> list[str]:
    """The last lines of a finished study: its answer, one line per factor in the report's
    words, or the one reason it has none (one seed, an Optuna search), the command that adds
    the seeds the nearest open comparison needs, then the command that writes the whole report.
    The findings alone (no detail tables): a fraction of a second."""
    from analysis.compare import analyse
    from analysis.load import load_results
    from analysis.words import answer, nearest_more_seeds

    command = f"{options.name}: the whole report: python -m analysis.report {options.folder} --out report/"
    try:
        analysis = analyse(load_results(options.folder), detail=False)
    except UserError as error:  # results the analysis cannot read (every trial errored, say)
        return [f"{options.name}: no verdicts: {error}", command]
    if analysis.untestable_because:
        return [f"{options.name}: no verdicts: {analysis.untestable_because}", command]
    more = nearest_more_seeds(analysis)
    return [f"{options.name}: {line}" for line in [*answer(analysis), *([more] if more else [])]] + [command]


def ray_token_exists() -> bool:
    """A Ray authentication token where Ray looks for one (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).expanduser().is_file()


def start_ray(options: RunOptions, plugins: list) -> bool:
    """Join --address, or start a local Ray; True if we started (and so must stop) it.

    On a cluster the plugin modules travel with the job (runtime_env py_modules), so workers
    on other machines import them too; a local Ray's workers import them from their files."""
    import ray

    if ray.is_initialized():
        return False  # an embedding program (or a test) owns Ray
    try:
        if options.address:
            runtime_env = {"py_modules": plugins} if plugins else None
            ray.init(address=options.address, log_to_driver=True, runtime_env=runtime_env, logging_level=QUIET)
        else:
            ray.init(include_dashboard=False, logging_level=QUIET)
    except ConnectionError as exc:
        if options.address != "auto" and "RAY_AUTH_MODE" not in os.environ and ray_token_exists():
            # Ray sends its token to an explicit address only in token mode (it auto-enables the
            # mode for `auto` alone), so a token cluster refuses such a driver
            raise UserError(f"cannot connect to Ray at {options.address}: {exc}; this machine has a Ray token "
                            "(~/.ray/auth_token), so the cluster likely uses token authentication: set "
                            "RAY_AUTH_MODE=token, or use --address auto on a cluster node") from None
        raise UserError(f"cannot connect to Ray at {options.address}: {exc}; start a cluster "
                        "(`ray start --head` or `ray up cluster.yaml`) or drop --address") from None
    return True


def seed_list(seeds: list[int]) -> str:
    """[3, 4, 5] -> '3-5'; [3, 7] -> '3, 7'."""
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def summarize(options: RunOptions, trials: list[dict], seconds: float) -> str:
    counts = {s: sum(t["status"] == s for t in trials) for s in STATUSES}
    unfinished = f", {counts['unfinished']} unfinished" if counts["unfinished"] else ""
    # a fused trial's runs are counted one by one, as its rows are
    what = f"{len(trials)} runs (fused, up to {options.fuse} per trial)" if options.fuse else f"{len(trials)} trials"
    return (f"{options.name}: {what}: {counts['completed']} completed, {counts['diverged']} diverged, "
            f"{counts['error']} errored{unfinished} in {seconds:.0f} s; results in {options.folder}/{EPOCHS_FILE} "
            f"and {TRIALS_FILE}")


def fused_comment(study, options: RunOptions) -> str | None:
    """What --fuse makes of the study, for --print-study (the study file itself has no run options)."""
    if not options.fuse or study.search != "grid":
        return None
    trials = fused_trials(study, options.fuse)
    runs = sum(len(members_of(t)) for t in trials)
    differ = ", ".join([*fusible_axes(study), "seed"])
    return (f"--fuse {options.fuse}: {runs} runs as {len(trials)} trials of up to {options.fuse} members; "
            f"members of a trial differ in {differ}")


def check_before_writing(plan: Plan) -> dict:
    """Everything that can be checked before the study folder is touched; the data each trial
    needs, by dataset (check_data)."""
    options = plan.options
    check_address(options.address)
    check_loggers(options.log)
    if options.optuna_storage:
        open_optuna_storage(options.optuna_storage)
    if not options.resume:
        check_storage(options)
    return check_data(plan.study, options)


def fit_cluster(plan: Plan, owns_ray: bool) -> Plan:
    """What the cluster has and can launch: the GPU default, trials that fit, storage every node sees."""
    options = plan.options
    cluster = cluster_shapes(options.cluster_config, own_ray=owns_ray and not options.address)
    gpus = default_gpus(cluster) if options.gpus_per_trial is None else options.gpus_per_trial
    waiting = check_fits(cluster, options.cpus_per_trial, gpus)
    check_shared_storage(cluster, options.storage, options.shared_storage, options.cpus_per_trial, gpus)
    if waiting:
        print(f"{options.name}: {waiting}", flush=True)
    return replace(plan, options=replace(options, gpus_per_trial=gpus))  # the record says what trials got


def announce_extension(plan: Plan) -> None:
    record = plan.extensions[-1]
    print(f"{plan.options.name}: {record['experiment']}: {len(plan.trials)} trials for seeds "
          f"{seed_list(record['seeds_trained'])}, so that every configuration has {record['seeds']} seeds; "
          "the runs trained before stay as they are", flush=True)


def finish(plan: Plan, seconds: float) -> int:
    """The final export, read back from what Tune saved (after Ctrl-C its in-memory trials all
    look "terminated", while the saved state keeps the unfinished ones pending for --resume),
    then the summary lines and the study's answer."""
    options = plan.options
    parts = study_parts(plan.study, plan.folder, plan.extensions)
    trials = merged(parts)
    epochs, trial_rows = export.collect(plan.study, trials)
    export.write_results(plan.folder, plan.study, epochs, trial_rows, run_record(plan, parts=parts))
    unfinished = sum(not t["finished"] for t in trials.values())
    print(summarize(options, trial_rows, seconds), flush=True)
    summary = seeds_summary(options) if options.max_seeds and not plan.extensions and not unfinished else None
    if summary:
        print(summary, flush=True)
    if unfinished:
        print(f"{options.name}: {unfinished} trials did not finish; continue with the same command and --resume",
              flush=True)
        return EXIT_INTERRUPTED
    print("\n".join(answer_lines(options)), flush=True)
    return 0


def run(options: RunOptions, reuse_actors: bool = True) -> int:
    """Run (or resume, or extend) the study; `reuse_actors=False` exists only to measure what reuse saves."""
    started = time.perf_counter()
    plan = plan_run(options)
    splits_by_dataset = check_before_writing(plan)

    import ray

    from study.live_export import ParquetExporter
    from study.tuner import build_tuner, logger_callbacks, start_loggers, tune_environment
    from trainables.plugins import import_plugins, plugin_sources

    loggers = start_loggers(logger_callbacks(plan.options.log, plan.options.name))
    plugins = import_plugins(plan.study.plugins)
    owns_ray = start_ray(plan.options, plugins)
    try:
        plan = fit_cluster(plan, owns_ray)
        if plan.mode != "resume":
            write_run_file(plan)
        if plan.mode == "extend":
            announce_extension(plan)
        tuner = build_tuner(plan, splits_by_dataset, ParquetExporter(plan), plan.options.gpus_per_trial,
                            plugin_sources(plugins), reuse_actors, loggers)
        with tune_environment(plan.options.verbose):
            tuner.fit()
        return finish(plan, time.perf_counter() - started)
    finally:
        if owns_ray:
            ray.shutdown()


def main(preset: str | None, argv: list[str] | None = None) -> int:
    """`preset` None: `python -m study FILE.toml`."""
    try:
        options = parse_args(preset, argv)
        if options.print_study:
            study = validated(options)
            print(to_toml(study, fused_comment(study, options)), end="")
            return 0
        return run(options)
    except UserError as error:
        return report_user_error(study_command(preset), error)
