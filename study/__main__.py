"""python -m study FILE.toml [flags]: run the study a file describes, with every flag a preset takes."""

from __future__ import annotations

import sys

from study.run import main as run_main


def main(argv: list[str] | None = None) -> int:
    return run_main(None, argv)


if __name__ == "__main__":
    sys.exit(main())
