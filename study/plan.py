"""What a run does, decided once from its options and the study folder.

`plan_run` is the one place that tells a new study from `--resume` of an interrupted one, from
more seeds for a finished one (an extension: `--seeds N --resume`, study.extend) and from the
restart of an extension whose driver stopped before Tune saved it. Everything refused here is
refused before anything is written; the rest of the run (study.run) follows the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from study.checks import check_storage
from study.definition import Study
from study.effective import effective_study, validate_study
from study.extend import check_same_grid, extension_trials, new_extension, part_folders, trials_to_restart
from study.options import RunOptions
from study.run_file import load_run_file, resumed_options


@dataclass(frozen=True)
class Plan:
    mode: str  # "new", "resume" (Tune restores the study's last part) or "extend" (a new part of listed trials)
    options: RunOptions  # the flags this run goes by (on --resume, the study's own)
    study: Study  # the study as this run trains it
    extensions: tuple = ()  # the study's extensions (study.extend.new_extension records); an extending run's last
    trials: tuple = ()  # "extend": the trial configs the new part trains

    @property
    def folder(self) -> str:
        return self.options.folder

    @property
    def parts(self) -> list[str]:
        """The study's Tune experiments: the first, then each extension's."""
        return part_folders(self.folder, self.extensions)

    @property
    def experiment(self) -> str:
        """The Tune experiment this run trains: the study's own name, or its latest extension's."""
        return self.extensions[-1]["experiment"] if self.extensions else self.options.name


def plan_run(options: RunOptions) -> Plan:
    """The plan for `options`. On --resume the study's own flags come from its run file (a
    flag given again must agree), its grid must be the saved one, and a larger --seeds adds
    an extension."""
    if not options.resume:
        return Plan("new", options, validated(options))
    check_storage(options)  # the study is there to be read
    saved = load_run_file(options)
    options, wanted = resumed_options(options, saved)
    extensions = tuple(saved.get("extensions") or ())
    study = validated(options)
    check_same_grid(study, options.folder)
    # the study at the seed count --seeds asks for (validated only where that is another count)
    grown = study if wanted in (None, study.seeds) else validated(replace(options, seeds=wanted))
    if grown.seeds != study.seeds:
        trials = extension_trials(study, grown, options.name, options.folder, extensions, options.fuse,
                                  options.max_seeds)
        record = new_extension(extensions, study.seeds, grown.seeds, trials)
        return Plan("extend", replace(options, seeds=wanted), grown, (*extensions, record), tuple(trials))
    restart = trials_to_restart(study, options.folder, extensions, options.fuse)
    if restart:
        return Plan("extend", options, study, extensions, tuple(restart))
    return Plan("resume", options, study, extensions)


def validated(options: RunOptions) -> Study:
    study = effective_study(options)
    validate_study(study, options.study_file, options.fuse)
    return study
