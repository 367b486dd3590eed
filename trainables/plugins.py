"""The user's own datasets and trainables, registered from a module of theirs (a plugin).

    import trainables
    from torch import nn

    def load(data_root, download):                 # -> trainables.Splits
        ...
    trainables.register_dataset("my_data", load)

    def build(config, splits):                     # -> torch.nn.Module
        return nn.Sequential(nn.Linear(20, 64), trainables.make_activation(config["activation"]),
                             nn.Linear(64, splits.num_classes))
    trainables.register_trainable("my_mlp", dataset="my_data", build=build,
                                  defaults={"optimizer": "adam", "lr": 1e-3}, extra={"width": 64})

A registered trainable gets what a built-in one gets: config validation, the epoch loop with
its reports and checkpoints, `members` (fused runs), `python -m trainables NAME --plugins MODULE`, and
studies (`plugins = [...]` in a study file, or `--plugins`). Ray workers import the same
plugins before they train (study.tuner.run_trial).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from common.errors import ConfigError, DataError, UserError


class PluginError(UserError):
    """A plugin that cannot be imported, or registers something it may not."""


def register_dataset(name: str, load: Callable, *, downloadable: bool = False) -> None:
    """Add dataset `name`: `load(data_root: pathlib.Path, download: bool) -> trainables.Splits`."""
    from trainables.data import DATASETS, DatasetSpec, Splits

    _check_name("dataset", name, DATASETS)
    if not callable(load):
        raise PluginError(f"register_dataset({name!r}, load): load must be a function (data_root, download) -> Splits")

    def checked_load(root: Path, download: bool) -> Splits:
        splits = load(root, download)
        if not isinstance(splits, Splits):
            raise DataError(f"dataset {name!r}: its load function returned {type(splits).__name__}, not "
                            "trainables.Splits; return Splits(train_x, train_y, val_x, val_y, test_x, test_y, num_classes)")
        return splits

    DATASETS[name] = DatasetSpec(checked_load, downloadable)


def register_trainable(name: str, *, dataset: str, build: Callable, defaults: Mapping | None = None,
                       extra: Mapping | None = None, dropout_layers: int = 1, fusible: Iterable[str] = ()) -> None:
    """Add trainable `name`: `build(config, splits) -> torch.nn.Module` on registered dataset `dataset`.

    `defaults` override the common config defaults (optimizer, lr, epochs, ...); `extra` adds
    this trainable's own config keys with their defaults; `dropout_layers` is how many drop
    probabilities a per-layer `dropout` list must give; `fusible` names keys of `extra` that change
    only the model's values, not its shapes, so that `--fuse` may train configurations differing in
    them as members of one trial."""
    from trainables.data import DATASETS
    from trainables.keys import COMMON_DEFAULTS
    from trainables.registry import TRAINABLES, TrainableSpec

    _check_name("trainable", name, TRAINABLES)
    if dataset not in DATASETS:
        raise PluginError(f"register_trainable({name!r}): unknown dataset {dataset!r}; register it first with "
                          f"trainables.register_dataset, or use one of: {', '.join(DATASETS)}")
    if not callable(build):
        raise PluginError(f"register_trainable({name!r}): build must be a function (config, splits) -> nn.Module")
    defaults, extra = dict(defaults or {}), dict(extra or {})
    unknown = [k for k in defaults if k not in COMMON_DEFAULTS]
    if unknown:
        raise PluginError(f"register_trainable({name!r}): defaults may only set common keys, not {unknown[0]!r} "
                          f"(put it in extra=); common keys: {', '.join(COMMON_DEFAULTS)}")
    shadowing = [k for k in extra if k in COMMON_DEFAULTS or k == "trainable"]
    if shadowing:
        raise PluginError(f"register_trainable({name!r}): extra key {shadowing[0]!r} is a common key; "
                          "set its default in defaults= instead")
    fusible = tuple(fusible)
    not_extra = [k for k in fusible if k not in extra]
    if not_extra:
        raise PluginError(f"register_trainable({name!r}): fusible key {not_extra[0]!r} is not one of its extra keys; "
                          "the common fusible keys (lr, weight_decay, dropout, ...) are fusible already")
    TRAINABLES[name] = TrainableSpec(dataset, build, defaults=defaults, extra=extra,
                                     dropout_layers=lambda c: dropout_layers, fusible=fusible)


def _check_name(what: str, name: str, registry: Mapping) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise PluginError(f"a {what} name must be a plain identifier such as my_{what}, got {name!r}")
    if name in registry:
        raise PluginError(f"{what} {name!r} is already registered; give yours another name")


_IMPORTED: dict[str, object] = {}  # plugin entry -> its module, so a process imports each once


def import_plugins(entries: Iterable[str]) -> list:
    """Import each plugin (a module name, or a path to a .py file) once per process; its module.

    A path that does not exist here (a Ray worker on another machine, where the plugin came
    with the job's py_modules) is imported by its module name instead."""
    modules = []
    for entry in entries:
        if entry not in _IMPORTED:
            _IMPORTED[entry] = _import(entry)
        modules.append(_IMPORTED[entry])
    return modules


def plugin_sources(modules) -> list[tuple[str, str]]:
    """(module name, file) of imported plugins: what a Ray worker needs to import them too."""
    return [(module.__name__, module.__file__) for module in modules]


def import_sources(sources: Iterable[tuple[str, str]]) -> None:
    """In a Ray worker: import the driver's plugins, from their files where this machine has them,
    else by name (on a cluster they come with the job's runtime_env py_modules)."""
    for name, file in sources:
        if name in sys.modules:
            continue
        path = Path(file)
        if not path.is_file():
            importlib.import_module(name)
            continue
        package = [str(path.parent)] if path.name == "__init__.py" else None
        spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=package)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise


def _import(entry: str):
    path = Path(entry)
    try:
        if entry.endswith(".py") and path.is_file():
            name = path.stem
            loaded = sys.modules.get(name)
            if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path.resolve():
                return loaded
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # by name, as a Ray worker given it in py_modules imports it
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module
        return importlib.import_module(path.stem if entry.endswith(".py") else entry)
    except (PluginError, ConfigError) as exc:
        raise PluginError(f"plugin {entry}: {exc}") from None
    except Exception as exc:
        raise PluginError(f"plugin {entry} cannot be imported ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else 'no message'}); check its name or path "
                          "and that it imports on its own (python -c 'import ...')") from None
