"""Where results live: a local folder or an object store (s3://, gs://), through pyarrow's filesystems.

Torch-free and Ray-free: the export writes through it, the analysis reads through it.
"""

from __future__ import annotations

import pyarrow.fs as pafs


def is_uri(location: str) -> bool:
    """An object store or other pyarrow filesystem URI (file:// counts as a local path)."""
    return "://" in str(location) and not str(location).startswith("file://")


def filesystem_of(location: str):
    """(pyarrow filesystem, path within it) for a local path or a URI alike."""
    location = str(location)
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), location.removeprefix("file://")


def join(folder: str, name: str) -> str:
    return f"{str(folder).rstrip('/')}/{name}"
