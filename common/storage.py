"""Where results live: a local folder or an object store (s3://, gs://), through pyarrow's filesystems,
and the JSON and Parquet files written there.

Torch-free and Ray-free: the export writes through it, the analysis reads through it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from common.files import write_atomically


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


def write_parquet(table: pa.Table, destination: str) -> None:
    """Local path: temp file in the same folder + os.replace. URI: the object store's single PUT."""
    if is_uri(destination):
        filesystem, path = filesystem_of(destination)
        pq.write_table(table, path, filesystem=filesystem)
        return
    write_atomically(Path(destination.removeprefix("file://")), lambda tmp: pq.write_table(table, tmp))


def write_json(destination: str, data: dict) -> None:
    filesystem, path = filesystem_of(destination)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(json.dumps(data, indent=2, default=str).encode())


def plain(value):
    """`value` as JSON gives it back (tuples as lists, other values as text): what a saved spec or
    run file holds, to compare with."""
    return json.loads(json.dumps(value, default=str))


def read_json(source: str) -> dict | None:
    """The JSON file at `source`, or None where there is none."""
    filesystem, path = filesystem_of(source)
    if filesystem.get_file_info(path).type.name != "File":
        return None
    with filesystem.open_input_stream(path) as stream:
        return json.loads(stream.read().decode())
