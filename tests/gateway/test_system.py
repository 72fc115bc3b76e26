"""``/system/*`` and ``/healthz``: listing, registration, basic auth."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path

import httpx

from .conftest import StartGateway
from .fakes import FakeServer

MakeFake = Callable[..., tuple[FakeServer, str]]
AUTH = ("admin", "s3cret")
GO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def test_functions_list_shape_and_counts(
    fake: MakeFake, functions_dir: Path, start_gateway: StartGateway, client: httpx.Client
) -> None:
    _, url = fake()
    _, gateway = start_gateway(
        functions_dir=functions_dir,
        upstreams={"echo": url},
        labels={"echo": {"team": "a"}},
        annotations={"hello": {"faas-flow-desc": "says hello"}},
    )
    for _ in range(3):
        assert client.post(f"{gateway}/function/echo.openfaas-fn", content=b"x").status_code == 200
    client.post(f"{gateway}/function/hello", content=b"x")
    client.post(f"{gateway}/function/nope", content=b"x")  # unknown: counted nowhere

    answer = client.get(f"{gateway}/system/functions")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    listed = answer.json()
    assert [f["name"] for f in listed] == ["broken", "echo", "hello"]
    echo = listed[1]
    assert list(echo) == [
        "name", "image", "namespace", "labels", "annotations", "invocationCount",
        "replicas", "availableReplicas", "createdAt",
    ]  # fmt: skip
    assert echo["image"] == "local/echo"
    assert echo["namespace"] == "openfaas-fn"
    assert echo["labels"] == {"team": "a"}
    assert echo["invocationCount"] == 3
    assert (echo["replicas"], echo["availableReplicas"]) == (1, 1)
    assert GO_TIME.match(echo["createdAt"])
    hello = listed[2]
    assert hello["annotations"] == {"faas-flow-desc": "says hello"}
    assert hello["invocationCount"] == 1

    one = client.get(f"{gateway}/system/function/echo?usage=1")
    assert (one.status_code, one.json()) == (200, echo)
    missing = client.get(f"{gateway}/system/function/nope")
    assert (missing.status_code, missing.text) == (404, "No such function: nope\n")


def test_info_and_healthz(start_gateway: StartGateway, client: httpx.Client) -> None:
    _, gateway = start_gateway(basic_auth=AUTH)
    info = client.get(f"{gateway}/system/info", auth=AUTH)
    assert info.status_code == 200
    body = info.json()
    assert set(body) == {"provider", "version", "arch"}
    assert set(body["provider"]) == {"provider", "version", "orchestration"}
    assert set(body["provider"]["version"]) == {"sha", "release"}
    assert set(body["version"]) == {"commit_message", "sha", "release"}
    assert isinstance(body["arch"], str) and body["arch"]
    health = client.get(f"{gateway}/healthz")  # never behind the basic auth
    assert (health.status_code, health.text) == (200, "OK")


def test_basic_auth(fake: MakeFake, start_gateway: StartGateway, client: httpx.Client) -> None:
    _, url = fake()
    _, gateway = start_gateway(upstreams={"echo": url}, basic_auth=AUTH)
    wrong = "Basic " + base64.b64encode(b"admin:wrong").decode()
    for headers in ({}, {"Authorization": wrong}, {"Authorization": "Bearer x"}):
        for path in ("/system/functions", "/system/function/echo", "/system/info"):
            answer = client.get(gateway + path, headers=headers)
            assert answer.status_code == 401
            assert answer.content == b"invalid credentials"
            assert answer.headers["Www-Authenticate"] == 'Basic realm="Restricted"'
    register = client.post(f"{gateway}/system/register", json={"name": "x", "url": url})
    assert register.status_code == 401
    ok = client.get(f"{gateway}/system/functions", auth=AUTH)
    assert ok.status_code == 200
    assert ok.headers["Www-Authenticate"] == 'Basic realm="Restricted"'  # on success too
    # Function routes need no credentials.
    assert client.post(f"{gateway}/function/echo", content=b"x").status_code == 200
    assert client.post(f"{gateway}/async-function/echo", content=b"x").status_code == 202


def test_register_and_remove_at_run_time(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    function, url = fake()
    _, gateway = start_gateway(basic_auth=AUTH)
    registration = {
        "name": "late",
        "url": url + "/",
        "labels": {"faas-flow": "1"},
        "annotations": {"faas-flow-desc": "registered late"},
    }
    created = client.post(f"{gateway}/system/register", json=registration, auth=AUTH)
    assert created.status_code == 201
    assert created.json()["labels"] == {"faas-flow": "1"}
    assert client.post(f"{gateway}/function/late/x", content=b"hi").content == b"hi"
    assert function.wait_for(1)[0].path == "/x"

    replaced = client.post(
        f"{gateway}/system/register", json={**registration, "image": "me/late:1"}, auth=AUTH
    )
    assert replaced.status_code == 200
    assert replaced.json()["image"] == "me/late:1"

    removed = client.request(
        "DELETE", f"{gateway}/system/functions", json={"functionName": "late"}, auth=AUTH
    )
    assert (removed.status_code, removed.content) == (204, b"")
    assert client.post(f"{gateway}/function/late", content=b"").status_code == 503
    again = client.delete(f"{gateway}/system/register/late", auth=AUTH)
    assert (again.status_code, again.text) == (404, "No such function: late\n")

    client.post(f"{gateway}/system/register", json=registration, auth=AUTH)
    assert client.delete(f"{gateway}/system/register/late", auth=AUTH).status_code == 204


def test_bad_registrations_are_400(start_gateway: StartGateway, client: httpx.Client) -> None:
    _, gateway = start_gateway()
    for body in (
        b"not json",
        b"[]",
        b'{"name": "x"}',
        b'{"name": "a.b", "url": "http://127.0.0.1:1"}',
        b'{"name": "x", "url": "ftp://host"}',
        b'{"name": "x", "url": "http://127.0.0.1:1", "labels": {"a": 1}}',
        b'{"name": "x", "url": "http://127.0.0.1:1", "replicas": 3}',
    ):
        answer = client.post(f"{gateway}/system/register", content=body)
        assert answer.status_code == 400, body
        assert answer.text.startswith("bad registration: ")
    assert client.get(f"{gateway}/system/functions").json() == []


def test_folders_and_command_line_functions_cannot_be_removed(
    functions_dir: Path, start_gateway: StartGateway, client: httpx.Client
) -> None:
    _, gateway = start_gateway(functions_dir=functions_dir)
    answer = client.delete(f"{gateway}/system/register/hello")
    assert answer.status_code == 400
    deploy = client.post(f"{gateway}/system/functions", json={"service": "x", "image": "y"})
    assert deploy.status_code == 501
    answer = client.get(f"{gateway}/system/nothing-here")
    assert (answer.status_code, answer.content) == (404, b"404 page not found\n")
    answer = client.post(f"{gateway}/system/info")
    assert (answer.status_code, answer.content) == (405, b"")


def test_oversized_system_bodies_are_413(
    fake: MakeFake, start_gateway: StartGateway, client: httpx.Client
) -> None:
    _, url = fake()
    _, gateway = start_gateway(upstreams={"echo": url}, max_body_size=100)
    padding = "x" * 100
    register = client.post(
        f"{gateway}/system/register", json={"name": "big", "url": url, "image": padding}
    )
    assert (register.status_code, register.text) == (
        413, "request body larger than 100 bytes (--max-body-size)\n"
    )
    remove = client.request(
        "DELETE", f"{gateway}/system/functions",
        content=iter([b'{"functionName": "echo", "pad": "', padding.encode(), b'"}']),
    )  # fmt: skip
    assert remove.status_code == 413
    names = [f["name"] for f in client.get(f"{gateway}/system/functions").json()]
    assert names == ["echo"]  # neither registered nor removed


def test_basic_auth_outside_ascii(start_gateway: StartGateway, client: httpx.Client) -> None:
    # Go compares the decoded bytes: a UTF-8 password works as its UTF-8 bytes.
    password = "p\u00e4ss-\u2603"
    _, gateway = start_gateway(basic_auth=("admin", password))
    assert client.get(f"{gateway}/system/info", auth=("admin", password)).status_code == 200
    for wrong in (("admin", "p\u00e4ss-"), ("\u00e4dmin", password)):
        assert client.get(f"{gateway}/system/info", auth=wrong).status_code == 401
    raw = {"Authorization": b"Basic \xff\xfe"}
    assert client.get(f"{gateway}/system/info", headers=raw).status_code == 401
