"""The packages' layers (ARCHITECTURE.md, "Layers"): common at the bottom, then trainables, analysis
and study, each importing only from the layers below it; the torch- and Ray-free parts stay so."""

import ast
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.no_ray

LAYERS = ["common", "trainables", "analysis", "study"]  # bottom to top


def imports_of(path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in a file, at module level or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", LAYERS)
def test_no_package_imports_one_above_it(package):
    above = set(LAYERS[LAYERS.index(package) + 1:])
    wrong = [f"{path.relative_to(REPO)}:{line} imports {target}"
             for path in sorted((REPO / package).rglob("*.py"))
             for line, target in imports_of(path) if target in above]
    assert not wrong, wrong


def test_analysis_takes_only_the_key_table_from_trainables():
    # the one thing the analysis needs of trainables: which config keys are mechanics (torch-free)
    modules = {node.module for path in (REPO / "analysis").rglob("*.py") for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trainables")}
    assert modules == {"trainables.keys"}


def loaded_after(code: str) -> set[str]:
    """The heavy packages a fresh interpreter has loaded after running `code`."""
    probe = code + "\nimport sys\nprint(sorted(m for m in ('torch', 'ray', 'statsmodels') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    return set(ast.literal_eval(out.stdout.strip().splitlines()[-1]))


def test_the_analysis_loads_neither_torch_nor_ray():
    assert loaded_after("import analysis, analysis.report, analysis.decisions") == {"statsmodels"}


def test_the_bottom_layer_and_the_key_table_load_none_of_them():
    assert loaded_after("import common.cli, common.contract, common.storage, common.files, trainables.keys") == set()


def test_writing_a_run_file_loads_no_statsmodels(tmp_path):
    code = f"""
from study.options import parse_args
from study.plan import Plan, validated
from study.run_file import write_run_file
options = parse_args("mnist1d_grid", ["--storage", {str(tmp_path)!r}, "--max-seeds", "4"])
write_run_file(Plan("new", options, validated(options)))
"""
    assert "statsmodels" not in loaded_after(code)
    assert (tmp_path / "mnist1d_grid" / "hpstudy_run.json").is_file()
