"""End to end in headless Chromium, against running systems started as processes:

- ``local``: ``faasflow dashboard FILES --state redis://... --data redis://...`` with a
  token (from ``$FAASFLOW_DASHBOARD_TOKEN``), signed in through the form;
- ``gateway``: ``faasflow gateway --flow ...`` running flow servers, and
  ``faasflow dashboard --gateway URL`` with Basic auth.

Each test runs against both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from e2e.harness import GatewayProcess, Process, child_env, faasflow_argv, free_port
from faasflow.dashboard.auth import COOKIE

from .conftest import EXAMPLES, FLOWS, HEADERS
from .test_api import count_nodes

TOKEN = "browser-token-123"
USER, PASSWORD = "ada", "lovelace"
GATEWAY_USER, GATEWAY_PASSWORD = "admin", "gateway-pass"
WAIT_MS = 30_000
SHOWN = ("dynamic_branching", "gated", "parallel_branching", "subdag")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        yield chromium
        chromium.close()


class System:
    """A running dashboard and how to get in."""

    def __init__(self, kind: str, url: str, gates: Path, processes: list[Process]) -> None:
        self.kind = kind
        self.url = url
        self.gates = gates
        self.processes = processes

    @property
    def auth(self) -> dict[str, Any]:
        """httpx arguments that authenticate API calls."""
        if self.kind == "local":
            return {"headers": {"Authorization": f"Bearer {TOKEN}"}}
        return {"auth": (USER, PASSWORD)}

    def api(self, method: str, path: str, **options: Any) -> httpx.Response:
        """An API call as the page makes it (Basic auth needs the page's header to change
        anything)."""
        options = {**self.auth, **options}
        options["headers"] = {**options.get("headers", {}), **HEADERS}
        return httpx.request(method, self.url + path, timeout=30, **options)

    def page(self, browser: Browser) -> Page:
        """A signed-in page on the flow list."""
        if self.kind == "local":
            page = browser.new_context().new_page()
            page.goto(self.url + "/login")
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
        else:
            context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
            page = context.new_page()
            page.goto(self.url + "/")
        expect(page.locator("#flows tbody tr")).to_have_count(len(SHOWN), timeout=WAIT_MS)
        return page


def _stop(processes: list[Process]) -> None:
    for process in reversed(processes):
        process.terminate()


@pytest.fixture(scope="module", params=["local", "gateway"])
def system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    home = tmp_path_factory.mktemp(f"dashboard-{request.param}")
    gates = home / "gates"
    gates.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flows = {
        "dynamic_branching": EXAMPLES / "dynamic_branching.py",
        "gated": FLOWS / "gated.py",
        "parallel_branching": EXAMPLES / "parallel_branching.py",
        "subdag": EXAMPLES / "subdag.py",
    }
    processes: list[Process] = []
    try:
        if request.param == "local":
            redis_url: str = request.getfixturevalue("redis_url")
            store = f"{redis_url}?namespace=dashboard{port}:"
            env = child_env(home, DASHBOARD_GATE_DIR=str(gates), FAASFLOW_DASHBOARD_TOKEN=TOKEN)
            argv = faasflow_argv("dashboard", *map(str, flows.values()), "--state", store,
                                 "--data", store, "--port", str(port))
        else:
            gateway = GatewayProcess(
                home, env=child_env(home, DASHBOARD_GATE_DIR=str(gates)),
                options=[*(f"--flow={name}={path}" for name, path in flows.items()),
                         "--basic-auth", f"{GATEWAY_USER}:{GATEWAY_PASSWORD}"],
            )  # fmt: skip
            processes.append(gateway.process)
            gateway.start()
            env = child_env(home, FAASFLOW_GATEWAY_PASSWORD=GATEWAY_PASSWORD)
            argv = faasflow_argv("dashboard", "--gateway", gateway.url, "--gateway-user",
                                 GATEWAY_USER, "--basic-auth", f"{USER}:{PASSWORD}",
                                 "--port", str(port))
        dashboard = Process("faasflow dashboard", argv, env=env, log=home / "dashboard.log")
        processes.append(dashboard)
        dashboard.start()
        dashboard.wait_healthy(url + "/healthz")
        yield System(request.param, url, gates, processes)
    finally:
        _stop(processes)


def test_credentials_are_required(system: System, browser: Browser) -> None:
    refused = httpx.get(system.url + "/api/flows")
    assert refused.status_code == 401
    page = browser.new_context().new_page()
    if system.kind == "local":
        page.goto(system.url + "/")
        expect(page).to_have_url(re.compile(r"/login$"))
        page.fill("#token", "not-the-token")
        page.click("button[type=submit]")
        expect(page.locator("p.error")).to_have_text("Wrong token.")
    else:
        assert refused.headers["www-authenticate"].startswith("Basic")
        # Headless Chromium cannot ask for the password: it gives up on the challenge.
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            page.goto(system.url + "/")
        wrong = browser.new_context(http_credentials={"username": USER, "password": "x"})
        wrong_page = wrong.new_page()
        answer = wrong_page.goto(system.url + "/")
        assert answer is not None and answer.status == 401
        expect(wrong_page.locator("body")).to_have_text("Authentication required.")
        expect(wrong_page.locator("#flows")).to_have_count(0)
    page = system.page(browser)
    names = page.locator("#flows tbody tr td:first-child").all_inner_texts()
    assert names == list(SHOWN)
    expect(page.locator("#source")).to_have_text(
        "local flows" if system.kind == "local" else "flows of the gateway")


@pytest.mark.parametrize("flow", ["parallel_branching", "dynamic_branching", "subdag"])
def test_graph_draws_every_node(system: System, browser: Browser, flow: str) -> None:
    export = system.api("GET", f"/api/flows/{flow}").json()["export"]
    page = system.page(browser)
    page.click(f"#flows a:text-is('{flow}')")
    expect(page.locator("svg.dag")).to_be_visible()
    nodes = page.locator("svg.dag g.node")
    expect(nodes).to_have_count(count_nodes(export["dag"]))
    if flow == "dynamic_branching":
        # The conditional and the foreach inside its c1 branch: diamonds, branch boxes, joins.
        conditional = page.locator("svg.dag g.node[data-kind=conditional]")
        expect(conditional).to_have_count(1)
        expect(conditional.locator("g.branch")).to_have_count(3)  # c1, c2, and F's [*]
        foreach = page.locator("g.node[data-kind=foreach][data-path='C[c1]/F']")
        expect(foreach.locator(":scope > polygon.diamond")).to_have_count(1)
        expect(foreach.locator("g.node[data-path='C[c1]/F[*]/n1']")).to_have_count(1)
        expect(page.locator("svg.dag circle.join")).to_have_count(2)
    if flow == "subdag":
        for cluster in ("shout", "mirror"):
            box = page.locator(f"g.node[data-kind=subdag][data-path={cluster}]")
            expect(box.locator("g.node")).to_have_count(2)
            expect(box.locator(f"g.node[data-path='{cluster}/wrap']")).to_have_count(1)
        expect(page.locator("svg.dag path.edge.exec-only")).to_have_count(1)
    if flow == "parallel_branching":
        # Fan-out and fan-in: four nodes and four edges, n2 and n3 side by side.
        expect(page.locator("svg.dag path.edge")).to_have_count(4)
        middles = {}
        for name in ("n1", "n2", "n3", "n4"):
            box = page.locator(f"g.node[data-path={name}]").bounding_box()
            assert box is not None
            middles[name] = box["y"] + box["height"] / 2
        assert middles["n2"] == middles["n3"]  # one layer
        assert middles["n1"] < middles["n2"] < middles["n4"]


def test_request_started_from_the_page_is_followed_to_the_end(
    system: System, browser: Browser
) -> None:
    page = system.page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    page.click("#flows a:text-is('dynamic_branching')")
    page.fill("#input", "Go go GO, team!")
    page.click("#execute")
    expect(page).to_have_url(re.compile(r"#/flows/dynamic_branching/requests/[\w.-]+$"))
    rid = page.url.rsplit("/", 1)[1]
    expect(page.locator("#status")).to_have_text("succeeded", timeout=WAIT_MS)
    rows = page.locator("#timeline .row")
    expect(rows).to_have_count(8)
    shown = {row.get_attribute("data-node") for row in rows.all()}
    assert shown == {"n1", "C", "C[c1]/F", "C[c2]/n1", "C[c1]/F[go]/n1",
                     "C[c1]/F[go%2C]/n1", "C[c1]/F[team%21]/n1", "n2"}
    expect(page.locator("#timeline .row .bar.state-done")).to_have_count(8)
    expect(page.locator("#result")).to_have_text("c1: go=2, go,=1, team!=1\nc2: GO GO GO, TEAM!!!")
    expect(page.locator("svg.dag g.node.state-done")).to_have_count(6)
    expect(page.locator("g.node[data-path='C[c1]/F[*]/n1'] text.badge")).to_have_text("\u00d73")
    # No control fits a succeeded request.
    expect(page.locator("#controls button")).to_have_count(0)

    page.click("#timeline .row[data-node=n1]")
    detail = page.locator("#node-detail-table")
    expect(detail.locator("td[data-field=state]")).to_have_text("done")
    expect(detail.locator("td[data-field=attempt]")).to_have_text("1")
    expect(detail.locator("td[data-field=size-in]")).to_have_text("15 B")
    expect(detail.locator("td[data-field=size-out]")).to_have_text("15 B")
    page.click("svg.dag g.node[data-path=n2]")
    expect(detail.locator("td[data-field=node]")).to_have_text("n2")

    page.click("nav.crumbs a:text-is('dynamic_branching')")
    row = page.locator(f"#requests tr[data-rid='{rid}']")
    expect(row.locator(".status-cell")).to_have_text("succeeded")
    assert errors == []


def test_requests_table_refreshes_by_itself(system: System, browser: Browser) -> None:
    page = system.page(browser)
    page.click("#flows a:text-is('gated')")
    expect(page.locator("#requests tbody")).to_be_visible()
    started = system.api("POST", "/api/flows/gated/requests", content=b"table")
    rid = started.json()["request_id"]
    row = page.locator(f"#requests tr[data-rid='{rid}']")
    expect(row.locator(".status-cell")).to_have_text("running", timeout=WAIT_MS)
    page.check("input[value=running]")
    expect(page.locator("#requests tbody tr[data-rid]")).to_have_count(1)
    (system.gates / rid).touch()
    expect(page.locator("#requests tbody tr[data-rid]")).to_have_count(0, timeout=WAIT_MS)
    page.uncheck("input[value=running]")
    expect(row.locator(".status-cell")).to_have_text("succeeded", timeout=WAIT_MS)
    page.click("a.brand")
    flow_row = page.locator("#flows tr[data-flow=gated]")
    expect(flow_row.locator(".running-count")).to_have_text("0")


def test_pause_and_resume_from_the_request_page(system: System, browser: Browser) -> None:
    page = system.page(browser)
    page.click("#flows a:text-is('gated')")
    page.fill("#input", "go")
    page.click("#execute")
    expect(page.locator("#status")).to_have_text("running", timeout=WAIT_MS)
    rid = page.url.rsplit("/", 1)[1]
    expect(page.locator("#timeline .row[data-node=wait]")).to_have_attribute(
        "data-state", "running")
    expect(page.locator("#action-resume")).to_have_count(0)
    page.click("#action-pause")
    expect(page.locator("#status")).to_have_text("paused", timeout=WAIT_MS)
    expect(page.locator("#action-pause")).to_have_count(0)
    expect(page.locator("#action-resume")).to_be_visible()

    # The node in flight finishes; the next one is held until resume.
    (system.gates / rid).touch()
    expect(page.locator("#timeline .row[data-node=b]")).to_have_attribute(
        "data-state", "held", timeout=WAIT_MS)
    expect(page.locator("#status")).to_have_text("paused")
    page.click("#action-resume")
    expect(page.locator("#status")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#timeline .row .bar.state-done")).to_have_count(3)
    expect(page.locator("#result")).to_have_text("go wait b c")


def test_a_refused_action_is_shown(system: System, browser: Browser) -> None:
    page = system.page(browser)
    rid = system.api("POST", "/api/flows/gated/requests", content=b"x").json()["request_id"]
    page.goto(f"{system.url}/#/flows/gated/requests/{rid}")
    expect(page.locator("#action-pause")).to_be_visible(timeout=WAIT_MS)

    # Freeze the page's view of the request, then stop it elsewhere: the page still
    # offers Pause, and the server's refusal must reach the user.
    def frozen(route: Route) -> None:
        if route.request.method == "GET":
            route.abort()
        else:
            route.continue_()

    page.route(re.compile(rf".*/api/flows/gated/requests/{rid}$"), frozen)
    assert system.api("POST", f"/api/flows/gated/requests/{rid}/stop").status_code == 200
    page.click("#action-pause")
    expect(page.locator(".error[role=alert]").filter(has_text="stopped")).to_be_visible()
    expect(page.locator(".error[role=alert]").filter(has_text="cannot pause")).to_be_visible()
    (system.gates / rid).touch()  # let the node in flight end before the processes stop


def test_signing_out_ends_the_session(system: System, browser: Browser) -> None:
    page = system.page(browser)
    if system.kind != "local":
        # Basic auth: the browser keeps the credentials, there is no session to end.
        expect(page.locator("#logout")).to_be_hidden()
        return
    (cookie,) = [c["value"] for c in page.context.cookies() if c["name"] == COOKIE]
    page.click("#logout button")  # the page's own form: a same-origin POST
    expect(page).to_have_url(re.compile(r"/login$"))
    assert not [c for c in page.context.cookies() if c["name"] == COOKIE]
    # The session is over on the server: a copy of its cookie is refused.
    copied = httpx.get(system.url + "/api/flows", cookies={COOKIE: cookie})
    assert copied.status_code == 401
