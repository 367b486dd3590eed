"""The documentation: the site builds with `mkdocs build --strict`, its config-key reference lists
every key the code knows, every command block says whether it runs, and the runnable ones run."""

import subprocess
import sys

import pytest

from trainables.keys import KEYS

from conftest import REPO
from docs_blocks import COMMAND_LANGUAGES, blocks, nav_pages


def every_page() -> list:
    return [REPO / "README.md", *nav_pages()]


@pytest.mark.no_ray
def test_every_command_block_says_whether_it_runs():
    unmarked = [f"{b.page.relative_to(REPO)}:{b.line}" for page in every_page() for b in blocks(page)
                if b.language in COMMAND_LANGUAGES and not b.included and b.mark is None]
    assert not unmarked, f"mark these blocks <!-- run -->, <!-- run: FLAGS --> or <!-- not run: REASON -->: {unmarked}"
    reasonless = [f"{b.page.relative_to(REPO)}:{b.line}" for page in every_page() for b in blocks(page)
                  if b.mark == "not run" and not b.detail]
    assert not reasonless, f"a block not run says why: {reasonless}"


@pytest.mark.no_ray
def test_the_readme_shows_the_main_job_output_the_docs_date():
    shown = (REPO / "docs" / "examples" / "main_job_output.txt").read_text().strip()
    readme = [b for b in blocks(REPO / "README.md") if b.language == "text"]
    assert readme and readme[0].code.strip() == shown
    assert len((REPO / "README.md").read_text().splitlines()) <= 150


@pytest.mark.no_ray
def test_the_site_builds_strict_and_lists_every_config_key(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = (site / "trials" / "index.html").read_text()
    missing = [key for key in [*KEYS, "members", "trainable"] if f"<code>{key}</code>" not in trials]
    assert not missing, f"the config-key reference lacks {missing}"
    for page in ("index", "studies", "seeds", "statistics", "clusters", "results", "api", "changelog"):
        assert (site / (page if page != "index" else "") / "index.html").is_file(), page
    api = (site / "api" / "index.html").read_text()
    assert "register_trainable" in api and "load_results" in api and "smallest_effect" in api


def test_the_docs_runnable_blocks_run(tmp_path):
    """Every page's runnable blocks, in the site's order, in one folder (a page may read what an
    earlier one trained), in a fresh process with one local Ray."""
    result = subprocess.run([sys.executable, str(REPO / "tests" / "docs_blocks.py"), str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    ran = result.stdout.split("RAN:\n", 1)[1].splitlines()
    runnable = sum(1 for page in nav_pages() for b in blocks(page) if b.mark == "run")
    assert len({line.split(" ", 1)[0] for line in ran}) == runnable  # every runnable block ran
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "results" / "blob_study").is_dir()
