"""The bottom layer: what every package above shares and nothing else.

- `errors`: the user-facing errors (one line, exit code 2);
- `cli`: one-line argument parsing and `--set` values;
- `files`: atomic writes and the default data folder;
- `storage`: local folders and object stores alike (pyarrow filesystems), JSON and Parquet files on them;
- `contract`: the results contract (file names, columns, metadata keys, the trial record).

It imports neither torch nor Ray nor any package above it (tests/test_layers.py).
"""
