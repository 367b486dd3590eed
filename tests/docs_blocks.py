"""The documentation's code blocks: found, checked for their run / not-run marks, and run.

A fenced ```bash or ```python block in README.md or a page under docs/ says what the tests do
with it in an HTML comment on the line before (invisible on the page):

    <!-- run -->                  run as it is
    <!-- run: --smoke --epochs 1 -->  run, each `python -m study...` command with these flags added
                                  (the real study would take long; the page shows what users type)
    <!-- not run: REASON -->      not run (a cluster, a download, a full-size study), and why

A block that only includes a file (`--8<-- "docs/examples/..."`) is that tested file: the run
copies it into its folder. `python -m docs_blocks FOLDER` runs every page's runnable blocks in
nav order, in FOLDER, in this one process with one local Ray: each `python -m MODULE ARGS` line
calls that module's `main(ARGS)`, as the interpreter would (`> FILE` writes its output there).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MARK = re.compile(r"<!--\s*(run|not run)\s*(?::\s*(.*?))?\s*-->\s*$")
FENCE = re.compile(r"^```(\w*)\s*$")
INCLUDE = re.compile(r'^--8<--\s+"([^"]+)"\s*$')
COMMAND_LANGUAGES = ("bash", "python")


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    mark: str | None  # "run", "not run" or None
    detail: str  # the run flags or the not-run reason

    @property
    def included(self) -> str | None:
        """The file a block consists of (a snippet include), or None."""
        lines = self.code.strip().splitlines()
        match = INCLUDE.match(lines[0]) if len(lines) == 1 else None
        return match.group(1) if match else None


def blocks(page: Path) -> list[Block]:
    found, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = MARK.match(before.strip())
        found.append(Block(page, i + 1, opening.group(1), "\n".join(lines[i + 1:end]),
                           mark.group(1) if mark else None, (mark.group(2) or "") if mark else ""))
        i = end + 1
    return found


def nav_pages() -> list[Path]:
    """The site's pages in its navigation's order (mkdocs.yml)."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    return [REPO / "docs" / next(iter(entry.values())) for entry in config["nav"]]


def commands(code: str) -> list[str]:
    """A bash block's command lines: continuations joined, comments and blank lines dropped."""
    joined = code.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def entry_point(module: str):
    """`python -m MODULE`'s main, taking the arguments."""
    if module == "study":
        from study.__main__ import main
        return main
    if module.startswith("study."):
        from study.run import main as run_main
        return lambda argv: run_main(module.split(".", 1)[1], argv)
    if module == "analysis.report":
        from analysis.report import main
        return main
    if module == "trainables":
        from trainables.__main__ import main
        return main
    raise ValueError(f"no entry point for python -m {module}")


def run_command(line: str, flags: str) -> None:
    words = shlex.split(line)
    output = None
    if ">" in words:
        at = words.index(">")
        words, output = words[:at], words[at + 1]
    assert words[:2] == ["python", "-m"], f"not a python -m command: {line}"
    module, argv = words[2], words[3:]
    if module.startswith("study") and flags:
        argv += shlex.split(flags)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = entry_point(module)(argv)
    sys.stdout.write(printed.getvalue())
    if output:
        Path(output).write_text(printed.getvalue())
    assert code in (0, None), f"{line} {flags} exited {code}"


def run_pages(folder: Path) -> list[str]:
    """Run every page's runnable blocks in `folder`; the commands run, for the caller to report."""
    import os

    import ray

    os.chdir(folder)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ran = []
    try:
        for page in nav_pages():
            namespace: dict = {}
            for block in blocks(page):
                if block.included:
                    shutil.copy(REPO / block.included, folder / Path(block.included).name)
                elif block.mark == "run" and block.language == "python":
                    exec(compile(block.code, f"{page.name}:{block.line}", "exec"), namespace)
                    ran.append(f"{page.name}:{block.line} python")
                elif block.mark == "run" and block.language == "bash":
                    for line in commands(block.code):
                        run_command(line, block.detail)
                        ran.append(f"{page.name}:{block.line} {line} {block.detail}".strip())
    finally:
        ray.shutdown()
    return ran


if __name__ == "__main__":
    done = run_pages(Path(sys.argv[1]))
    print("\n".join(["RAN:", *done]))
