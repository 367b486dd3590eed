"""Command-line plumbing shared by every entry point: one-line errors, exit code 2."""

from __future__ import annotations

import argparse
import ast
import json
import sys

from common.errors import UserError

EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (problem and fix), not usage plus error."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}; see {self.prog} --help\n")
        sys.exit(EXIT_BAD_INPUT)


def parse_value(text: str):
    """A --set value: JSON (0.1, true, [64, 64], null), a Python literal (True), else the string."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            continue
    return text


def parse_assignments(items: list[str]) -> dict:
    config = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set takes key=value, got {item!r}; e.g. --set lr=0.01")
        config[key.strip()] = parse_value(value.strip())
    return config


def report_user_error(prog: str, error: UserError) -> int:
    """Print the one line a bad input gets; return the exit code for it."""
    sys.stderr.write(f"{prog}: error: {error}\n")
    return EXIT_BAD_INPUT
