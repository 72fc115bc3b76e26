"""The Go look-alikes: url.Parse's refusals, header names, JSON, times; the façade."""

from __future__ import annotations

import inspect
import subprocess
import sys
from datetime import UTC, datetime

import pytest

import faasflow.gateway
from faasflow.gateway._gourl import GoURLError, check_url
from faasflow.gateway.wire import canonical_header, go_json, go_quote, go_time


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/callback?x=1",
        "https://user:pa%20ss@example.com/a%2Fb#frag",
        "http://[::1]:9000/x",
        "not a url",  # a relative path to Go; posting to it fails later, and is logged
        "mailto:someone",
        "/relative/path?q=%zz",  # the query is never checked
        "http://h/x?",
    ],
)
def test_urls_go_accepts(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (":nothing", 'parse ":nothing": missing protocol scheme'),
        ("http://a b/", 'parse "http://a b/": invalid character " " in host name'),
        ("http://h:port/", 'parse "http://h:port/": invalid port ":port" after host'),
        ("http://h/%zz", 'parse "http://h/%zz": invalid URL escape "%zz"'),
        ("http://h/%4", 'parse "http://h/%4": invalid URL escape "%4"'),
        ("http://h%41/", 'parse "http://h%41/": invalid URL escape "%41"'),
        ("http://[::1/", "parse \"http://[::1/\": missing ']' in host"),
        ("http://u{s@h/", 'parse "http://u{s@h/": net/url: invalid userinfo'),
        ("1a:b/c", 'parse "1a:b/c": first path segment in URL cannot contain colon'),
        ("http://h/x#%g0", 'parse "http://h/x#%g0": invalid URL escape "%g0"'),
        ("http://h/\x7f", 'parse "http://h/\\x7f": net/url: invalid control character in URL'),
    ],
)
def test_urls_go_refuses(url: str, message: str) -> None:
    with pytest.raises(GoURLError) as caught:
        check_url(url)
    assert str(caught.value) == message


def test_go_formats() -> None:
    assert canonical_header("x-call-id") == "X-Call-Id"
    assert canonical_header("X-FAAS-FLOW-REQID") == "X-Faas-Flow-Reqid"
    assert canonical_header("bad header") == "bad header"
    assert go_json({"a": "<&>", "n": [1, 2.5], "s": "ü"}) == (
        '{"a":"\\u003c\\u0026\\u003e","n":[1,2.5],"s":"ü"}'.encode()
    )
    assert go_time(datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2024-01-02T03:04:05.12Z"
    assert go_time(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05Z"
    assert go_quote('a"b\\c\n\x01é') == '"a\\"b\\\\c\\n\\x01é"'


def test_facade() -> None:
    names = faasflow.gateway.__all__
    assert names == sorted(set(names))
    for name in names:
        value = getattr(faasflow.gateway, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), name
    with pytest.raises(AttributeError):
        _ = faasflow.gateway.nothing_here  # type: ignore[attr-defined]


def test_importing_the_cli_needs_no_server_extra() -> None:
    code = (
        "import sys, faasflow.cli.main\n"
        "assert 'starlette' not in sys.modules and 'uvicorn' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
