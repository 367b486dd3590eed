"""Run a study on Ray Tune: `python -m study.<preset> [flags]` or `python -m study FILE.toml [flags]`.

The steps, each in its own module: the command line (study.options), the study as
this run trains it (study.effective), the checks before anything is written
(study.checks), the run file for --resume (study.run_file), the Tuner
(study.tuner) and the live Parquet export (study.live_export). This module runs
them in order and ends with a one-line summary, then the study's answer (one line per factor)
and the command that writes the whole report. Bad input of any kind is one line
on stderr and exit code 2, before anything is written.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from trainables.cli import report_user_error
from trainables.errors import UserError

from study import export
from study.contract import EPOCHS_FILE, STATUSES, TRIALS_FILE
from study.checks import check_address, check_data, check_loggers, check_storage, open_optuna_storage
from study.cluster import check_fits, check_shared_storage, cluster_shapes, default_gpus
from study.effective import effective_study, validate_study
from study.options import RunOptions, parse_args
from study.extend import check_same_grid, extension_runs, merged, plan_extension, restart_extension, study_parts
from study.run_file import load_run_file, resumed_options, run_info, write_run_file
from study.study_file import to_toml

# Ray's own driver-side INFO and WARNING lines (connecting, token authentication, Tune's state
# writes) would surround a refusal's one line; the progress bar says what a user needs
QUIET = logging.ERROR
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C: results are partial, `--resume` continues


def seeds_summary(options: RunOptions) -> str | None:
    """The last line of a seeds-on-demand study: seed runs spent against the fixed design."""
    from study.seeds_on_demand import count, saved_status

    status = saved_status(options.folder)
    if not status:
        return None
    fixed = status["configurations"] * status["max_seeds"]
    futile = status.get("futile", 0)
    state = ("every comparison decided" if not status["open"] else
             f"{count(status['open'], 'comparison')} still open"
             + (f", {futile} of them stopped for futility (even {status['max_seeds']} seeds would hardly decide them)"
                if futile else f" at {status['max_seeds']} seeds"))
    return (f"{options.name}: seeds on demand: {status['seed_runs']} seed runs in {len(status['rounds'])} rounds "
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
    # a batched trial's seeds are counted one by one, as its rows are
    what = (f"{len(trials)} seed runs ({options.batch_seeds} per trial)" if options.batch_seeds else
            f"{len(trials)} runs (fused, up to {options.fuse} per trial)" if options.fuse else f"{len(trials)} trials")
    return (f"{options.name}: {what}: {counts['completed']} completed, {counts['diverged']} diverged, "
            f"{counts['error']} errored{unfinished} in {seconds:.0f} s; results in {options.folder}/{EPOCHS_FILE} "
            f"and {TRIALS_FILE}")


def fused_comment(study, options: RunOptions) -> str | None:
    """What --fuse makes of the study, for --print-study (the study file itself has no run options)."""
    if not options.fuse or study.search != "grid":
        return None
    from study.spaces import fused_trials, fusible_axes, members_of

    trials = fused_trials(study, options.fuse)
    runs = sum(len(members_of(t)) for t in trials)
    differ = ", ".join([*fusible_axes(study), "seed"])
    return (f"--fuse {options.fuse}: {runs} runs as {len(trials)} trials of up to {options.fuse} members; "
            f"members of a trial differ in {differ}")


def run(options: RunOptions, reuse_actors: bool = True) -> int:
    """Run (or resume) the study; `reuse_actors=False` exists only to measure what reuse saves."""
    started = time.perf_counter()
    wanted_seeds = extension = None
    if options.resume:
        check_storage(options)
        options, wanted_seeds = resumed_options(options, load_run_file(options))
    study = effective_study(options)
    validate_study(study, options.study_file, options.fuse)
    if options.resume:
        check_same_grid(study, options)
        # more seeds (--seeds N above the study's): a new part that trains only the missing runs
        planned = plan_extension(study, options, wanted_seeds) or restart_extension(study, options)
        if planned:
            options, study, trials_to_add = planned
            extension = (options.extensions[-1], trials_to_add)
    check_address(options.address)
    check_loggers(options.log)
    if options.optuna_storage:
        open_optuna_storage(options.optuna_storage)
    if not options.resume:
        check_storage(options)
    splits_by_dataset = check_data(study, options)

    import ray

    from study.live_export import ParquetExporter
    from study.tuner import build_tuner, logger_callbacks, start_loggers, tune_environment

    from trainables.plugins import import_plugins, plugin_sources

    loggers = start_loggers(logger_callbacks(options.log, options.name))
    plugins = import_plugins(study.plugins)
    owns_ray = start_ray(options, plugins)
    try:
        # what the cluster has and can launch: the GPU default, trials that fit, storage every node sees
        cluster = cluster_shapes(options.cluster_config, own_ray=owns_ray and not options.address)
        gpus = default_gpus(cluster) if options.gpus_per_trial is None else options.gpus_per_trial
        waiting = check_fits(cluster, options.cpus_per_trial, gpus)
        check_shared_storage(cluster, options.storage, options.shared_storage, options.cpus_per_trial, gpus)
        if waiting:
            print(f"{options.name}: {waiting}", flush=True)
        options = replace(options, gpus_per_trial=gpus)  # the run file and metadata say what trials got
        if not options.resume or extension:
            write_run_file(options)
        if extension:
            record = extension[0]
            print(f"{options.name}: {record['experiment']}: {len(extension[1])} trials for seeds "
                  f"{seed_list(record['seeds_trained'])}, so that every configuration has {record['seeds']} seeds; "
                  "the runs trained before stay as they are", flush=True)
        exporter = ParquetExporter(study, options)
        tuner = build_tuner(study, options, splits_by_dataset, exporter, gpus, plugin_sources(plugins), reuse_actors,
                            loggers, extension)
        with tune_environment(options.verbose):
            tuner.fit()
        # Read back what Tune saved: after Ctrl-C its in-memory trials all look "terminated",
        # while the saved state keeps the unfinished ones pending for --resume.
        parts = study_parts(study, options)
        trials = merged(parts)
        epochs, trial_rows = export.collect(study, trials)
        info = run_info(options)
        info["extensions"] = extension_runs(options, parts)  # and the runs each added
        export.write_results(options.folder, study, epochs, trial_rows, info)
        unfinished = sum(not t["finished"] for t in trials.values())
        print(summarize(options, trial_rows, time.perf_counter() - started), flush=True)
        summary = seeds_summary(options) if options.max_seeds and not options.extensions and not unfinished else None
        if summary:
            print(summary, flush=True)
        if unfinished:
            print(f"{options.name}: {unfinished} trials did not finish; continue with the same command and --resume",
                  flush=True)
            return EXIT_INTERRUPTED
        print("\n".join(answer_lines(options)), flush=True)
    finally:
        if owns_ray:
            ray.shutdown()
    return 0


def main(preset: str | None, argv: list[str] | None = None) -> int:
    """`preset` None: `python -m study FILE.toml`."""
    prog = "python -m study" if preset is None else f"python -m study.{preset}"
    try:
        options = parse_args(preset, argv)
        if options.print_study:
            study = effective_study(options)
            validate_study(study, options.study_file, options.fuse)
            print(to_toml(study, fused_comment(study, options)), end="")
            return 0
        return run(options)
    except UserError as error:
        return report_user_error(prog, error)
