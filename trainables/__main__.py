"""python -m trainables NAME [--set key=value ...] [--plugins MODULE]: one trial, no Ray, one JSON line per epoch."""

from __future__ import annotations

import argparse
import json
import math
import sys

from common.cli import OneLineParser, parse_assignments, report_user_error
from common.errors import UserError
from trainables.plugins import import_plugins
from trainables.registry import TRAINABLES


def _json_safe(value):
    # NaN / inf are not JSON: a diverged loss prints as null (also in a fused trial's member rows).
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def main(argv: list[str] | None = None) -> int:
    # --plugins first: they register trainables the positional argument may name
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--plugins", action="append", default=[])
    try:
        import_plugins(early.parse_known_args(argv)[0].plugins)
    except UserError as error:
        return report_user_error("python -m trainables", error)
    parser = OneLineParser(prog="python -m trainables", description=__doc__)
    parser.add_argument("trainable", choices=list(TRAINABLES), metavar="TRAINABLE",
                        help=f"one of: {', '.join(TRAINABLES)}")
    parser.add_argument("--plugins", action="append", default=[], metavar="MODULE",
                        help="a module name or .py file that registers trainables and datasets (repeatable)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set activation=gelu --set batchnorm=true")
    parser.add_argument("--data-root", default=None, help="dataset folder (default: ./data)")
    parser.add_argument("--download", action="store_true", help="download a missing torchvision dataset")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    args = parser.parse_args(argv)
    if args.trainable not in TRAINABLES:  # pragma: no cover - argparse checks choices
        parser.error(f"unknown trainable {args.trainable!r}")

    from trainables.loop import fit, pick_device  # torch import only after the arguments are known good

    try:
        config = {"trainable": args.trainable, **parse_assignments(args.assignments)}
        if args.device not in (None, "auto", "cpu", "cuda"):
            raise UserError(f"unknown --device {args.device!r}; choose cpu or cuda")
        if args.device == "cuda" and pick_device("auto").type != "cuda":
            raise UserError("--device cuda asked for, but no CUDA GPU is visible; drop --device or use --device cpu")
        fit(config, lambda metrics, state: print(json.dumps(_json_safe(metrics)), flush=True),
            data_root=args.data_root, download=args.download, device=args.device)
    except UserError as error:
        return report_user_error(parser.prog, error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
