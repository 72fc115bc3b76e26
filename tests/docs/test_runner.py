"""The snippet runner itself: what it runs, what it compares, what it reports, what it
cleans up — on small pages written here."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from .snippets import SnippetError, output_matches, parse_page, run_page


def page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def run(tmp_path: Path, text: str) -> int:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return run_page(parse_page(page(tmp_path, text)), work, dict(os.environ))


def test_python_blocks_share_a_namespace_and_may_await(tmp_path: Path) -> None:
    ran = run(tmp_path, '''
        ```python
        import asyncio
        seen = [1]
        ```

        ```python
        await asyncio.sleep(0)
        seen.append(2)
        open("seen.txt", "w").write(repr(seen))
        ```
    ''')
    assert ran == 2
    assert (tmp_path / "work" / "seen.txt").read_text() == "[1, 2]"


def test_a_failing_python_block_is_reported_at_its_page_line(tmp_path: Path) -> None:
    with pytest.raises(SnippetError) as caught:
        run(tmp_path, '''
            Intro.

            ```python
            x = 1
            assert x == 2, "x is not two"
            ```
        ''')
    message = str(caught.value)
    assert "page.md:3" in message and "x is not two" in message
    assert 'page.md", line 5' in message  # the traceback points into the page


def test_session_output_is_compared_with_ellipsis(tmp_path: Path) -> None:
    assert run(tmp_path, '''
        ```console
        $ echo hello; echo world
        hello
        world
        $ NAME=Adam
        $ echo "id 123 for $NAME"
        id ... for Adam
        $ printf 'a\\nb\\nc\\n'
        a
        ...
        ```
    ''') == 1


@pytest.mark.parametrize(
    ("session", "complaint"),
    [
        ("$ echo hello\nhullo\n", "printed"),
        ("$ echo hello\n", "printed"),  # nothing expected means nothing printed
        ("$ false\n", "exited 1"),
        ("$ echo hi >&2; exit 3\nhi\n", "exited 3"),
    ],
)
def test_session_failures_are_reported(tmp_path: Path, session: str, complaint: str) -> None:
    path = tmp_path / "page.md"
    path.write_text(f"```console\n{session}```\n", encoding="utf-8")
    with pytest.raises(SnippetError, match=complaint):
        run_page(parse_page(path), tmp_path, dict(os.environ))


def test_shell_listings_and_opt_outs_are_not_run(tmp_path: Path) -> None:
    blocks = parse_page(page(tmp_path, '''
        ```sh
        rm -rf /nothing/to/see   # a listing: no prompt
        ```

        <!-- not run: needs an OpenFaaS cluster -->
        ```python
        raise SystemExit("never")
        ```

        ```json
        {"not": "code"}
        ```
    '''))
    assert [b.runs for b in blocks] == [False, False, False]
    assert blocks[1].reason == "needs an OpenFaaS cluster"


def test_an_opt_out_without_a_block_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SnippetError, match="opt-out not followed by a block"):
        parse_page(page(tmp_path, '''
            <!-- not run: stray -->
            Some text.
        '''))


def test_background_commands_end_with_their_block(tmp_path: Path) -> None:
    run(tmp_path, '''
        ```console
        $ sleep 300 & echo $! > sleeper.pid
        ```
    ''')
    pid = int((tmp_path / "work" / "sleeper.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_output_matching_rules() -> None:
    assert output_matches(("a  ",), "a\n\n")  # trailing spaces and blank lines ignored
    assert not output_matches(("a",), "a\nb")
    assert output_matches(("...", "end"), "x\ny\nend")
    assert not output_matches(("a...c",), "a\nc")  # ... stays within a line
