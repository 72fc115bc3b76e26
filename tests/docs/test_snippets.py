"""Every page of docs/ (and README.md) runs: its Python and shell blocks, as
docs/README.md describes, with Redis and NATS from the suite's own servers."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

from faasflow.config import variables

from .snippets import Block, parse_page, parse_session, run_page

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
_namespaces = itertools.count()

# What a reader's shell may have set that would change what a snippet does.
CLEARED = variables() | {"REDIS_URL"}
"""Every setting's variables: none may leak into the pages' commands from outside."""


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def snippet_env(blocks: list[Block], request: pytest.FixtureRequest, home: Path) -> dict[str, str]:
    """The environment of a page's blocks: the services they name, a cache folder of
    their own (where the embedded default SQLite file goes), this Python's scripts."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_CACHE_HOME"] = str(home / "cache")
    text = "".join(block.code for block in blocks if block.runs)
    if any(name in text for name in ("REDIS_URL", "FAASFLOW_STATE", "FAASFLOW_NATS")):
        redis_url: str = request.getfixturevalue("redis_url")
        # A namespace per page: the session's Redis is shared with other tests.
        env["REDIS_URL"] = f"{redis_url}?namespace=docs{next(_namespaces)}:"
        env["FAASFLOW_STATE"] = env["REDIS_URL"]
    if "FAASFLOW_NATS" in text:
        env["FAASFLOW_NATS"] = request.getfixturevalue("nats_url")
    return env


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_page_runs(page: Path, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    blocks = parse_page(page)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    run_page(blocks, tmp_path, snippet_env(blocks, request, tmp_path))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_opt_outs_say_why_and_sessions_are_well_formed(page: Path) -> None:
    for block in parse_page(page):
        if block.opt_out is not None:
            assert len(block.reason.split()) >= 3, (
                f"{block.where}: say why the block is not run: <!-- not run: REASON -->"
            )
        elif block.runs and block.lang != "python":
            parse_session(block)  # raises on text before the first command


def test_every_page_is_in_the_index() -> None:
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in PAGES if p.parent.name == "docs" and p.name != "README.md"
               and f"({p.name})" not in index]
    assert not missing, f"docs/README.md does not list {missing}"
