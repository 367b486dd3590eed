"""Checks that must pass before anything is written: the cluster address, the storage, the data."""

from __future__ import annotations

import socket
from pathlib import Path

from common.errors import UserError
from study.options import RunOptions
from study.presets import Study


def check_address(address: str | None) -> None:
    """Fail fast on an unreachable cluster (ray.init would wait for minutes)."""
    if address in (None, "auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r} is not HOST:PORT or auto; e.g. --address 10.0.0.5:6379")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise UserError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
                        "`ray start --head` or `ray up cluster.yaml`, or drop --address to run locally") from None


def check_storage(options: RunOptions) -> None:
    if "://" in options.storage:
        # object stores: Ray and pyarrow report access errors on the first write
        from ray import tune

        has_results = tune.Tuner.can_restore(options.folder)
    else:
        folder = Path(options.folder)
        has_results = folder.exists() and any(folder.iterdir())  # anything there: never overwrite it
        if not has_results:
            probe_storage(folder, options.storage)
    if options.resume and not has_results:
        raise UserError(f"nothing to resume at {options.folder}; run without --resume to start the study")
    if not options.resume and has_results:
        raise UserError(f"results already exist at {options.folder}; pass --resume to continue them, "
                        "or --name NEW (or another --storage) to start a new study")


def probe_storage(folder: Path, storage: str) -> None:
    """Create the study folder and a file in it, then remove what the probe made: permission
    bits can call a place writable where nothing can be created (/proc, a read-only mount)."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--storage {storage} is not writable ({existing} is not a folder); choose a writable folder")
    created = []
    try:
        for path in [*reversed(folder.parents), folder]:
            if not path.exists():
                path.mkdir()
                created.append(path)
        (folder / ".hpstudy-probe").write_bytes(b"")
        (folder / ".hpstudy-probe").unlink()
    except OSError as exc:
        raise UserError(f"--storage {storage} is not writable (cannot create {folder}: {exc.strerror or exc}); "
                        "choose a writable folder") from None
    finally:
        for path in reversed(created):
            path.rmdir()


def check_data(study: Study, options: RunOptions):
    """Load each dataset once in the driver; Ray's object store ships it to every node."""
    from trainables import data

    return {name: data.load(name, options.data_root, download=options.download).shareable() for name in study.datasets()}


def check_loggers(names) -> None:
    """--log needs its package; say which extra installs it."""
    import importlib.util

    from study.options import LOGGERS

    for name in names:
        package, extra = LOGGERS[name]
        if importlib.util.find_spec(package) is None:
            raise UserError(f"--log {name} needs the {package} package; pip install 'hpstudy[{extra}]' "
                            f"(or drop --log {name})")


def open_optuna_storage(url: str):
    """--optuna-storage: a database URL (sqlite:///study.db) or a journal file path -> Optuna storage."""
    import optuna

    try:
        if "://" in url:
            return optuna.storages.RDBStorage(url)
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(Path(url).expanduser().resolve())))
    except Exception as exc:  # sqlalchemy and the file backend raise many kinds
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--optuna-storage {url} cannot be opened ({message}); give sqlite:///path/to/study.db "
                        "or a journal file path such as optuna.log") from None
