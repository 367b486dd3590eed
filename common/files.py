"""Atomic file writes (readers see the old file or the new one, never half of one), and the data folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

DEFAULT_DATA_ROOT = "data"  # where datasets live unless --data-root says otherwise


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(temporary path)` in the destination's folder, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)  # atomic on POSIX within one filesystem
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
