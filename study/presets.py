"""The built-in studies: study files shipped in study/studies/, one per preset.

STUDIES: name -> Study, for `python -m study.<name>`. A preset is data like any
study file (`python -m study.<name> --print-study` prints it); the one made per
trainable (`optuna`, PER_TRAINABLE) gets its trainable from the command line.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from study.definition import SMOKE_DATA, SMOKE_EPOCHS, Study, _frozen
from study.study_file import read_study_file
from trainables.registry import get_spec

__all__ = ["STUDIES", "PER_TRAINABLE", "OPTIMIZER_LEVELS", "get_study", "optuna_study", "Study", "SMOKE_DATA",
           "SMOKE_EPOCHS"]

PRESETS_FOLDER = Path(__file__).resolve().parent / "studies"
# Presets made per trainable (their file names none): the entry module takes the trainable first.
PER_TRAINABLE = ("optuna",)

STUDIES: dict[str, Study] = {path.stem: read_study_file(path) for path in sorted(PRESETS_FOLDER.glob("*.toml"))
                             if path.stem not in PER_TRAINABLE}
_TEMPLATES = {name: read_study_file(PRESETS_FOLDER / f"{name}.toml") for name in PER_TRAINABLE}

# The optimizer levels of optimizer_benchmark (each optimizer at its usual learning rate).
OPTIMIZER_LEVELS = {label: dict(keys) for label, keys in STUDIES["optimizer_benchmark"].bundles["optimizer"].items()}


def get_study(preset: str, trainable: str | None = None) -> Study:
    """A preset by name; one of PER_TRAINABLE for `trainable` (named <preset>_<trainable>)."""
    if preset in _TEMPLATES:
        get_spec(trainable)
        template = _TEMPLATES[preset]
        return replace(template, name=f"{preset}_{trainable}", fixed=_frozen({**template.fixed, "trainable": trainable}))
    return STUDIES[preset]


def optuna_study(trainable: str) -> Study:
    """The Optuna preset for one trainable (python -m study.optuna TRAINABLE)."""
    return get_study("optuna", trainable)
