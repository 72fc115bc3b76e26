#!/usr/bin/env python
"""Regenerate the dashboard screenshots in docs/images/ (``python scripts/screenshots.py``).

Starts ``faasflow dashboard`` on the example flows (and the gated test flow, to show a
paused request) with a throw-away SQLite store, runs a few requests through its API, and
photographs the flow list, a flow page and two request pages in headless Chromium
(``/usr/bin/chromium`` unless ``CHROMIUM`` says otherwise).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
FLOWS = [
    ROOT / "examples" / "dynamic_branching.py",
    ROOT / "examples" / "parallel_branching.py",
    ROOT / "examples" / "subdag.py",
    ROOT / "examples" / "greet.py",
    ROOT / "tests" / "dashboard" / "flows" / "gated.py",
]
HEADERS = {"X-Faasflow-Dashboard": "1"}
VIEWPORT = {"width": 1280, "height": 900}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the dashboard exited with status {process.returncode}")
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    sys.exit("the dashboard did not start within 30 s")


def run(api: httpx.Client, flow: str, data: bytes) -> str:
    answer = api.post(f"/api/flows/{flow}/requests", content=data, headers=HEADERS)
    answer.raise_for_status()
    rid: str = answer.json()["request_id"]
    return rid


def wait_status(api: httpx.Client, flow: str, rid: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while api.get(f"/api/flows/{flow}/requests/{rid}").json()["request"]["status"] != status:
        if time.monotonic() > deadline:
            sys.exit(f"request {rid} of {flow} did not become {status}")
        time.sleep(0.05)


def shoot(page: Page, url: str, name: str, ready: str) -> None:
    page.goto(url)
    expect(page.locator(ready).first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(300)  # one more poll, so counts and bars are current
    page.screenshot(path=str(IMAGES / name), full_page=True)
    print(f"wrote docs/images/{name}")


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        gates = Path(home) / "gates"
        gates.mkdir()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "XDG_CACHE_HOME": home, "DASHBOARD_GATE_DIR": str(gates)}
        argv = [sys.executable, "-m", "faasflow", "dashboard", *map(str, FLOWS),
                "--state", f"sqlite:///{home}/flows.db", "--port", str(port)]
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
        try:
            wait_healthy(url, process)
            with httpx.Client(base_url=url, timeout=30) as api:
                for text in (b"Go go GO, team!", b"a b a c b a", b"", b"Hello world!"):
                    rid = run(api, "dynamic_branching", text)
                    wait_status(api, "dynamic_branching", rid, "succeeded")
                for text in (b"Hello  World", b"one two three"):
                    wait_status(api, "subdag", run(api, "subdag", text), "succeeded")
                paused = run(api, "gated", b"hold on")
                while "wait" not in api.get(f"/api/flows/gated/requests/{paused}").json()[
                        "request"]["nodes"]:
                    time.sleep(0.05)
                api.post(f"/api/flows/gated/requests/{paused}/pause", headers=HEADERS)
                (gates / paused).touch()
                run(api, "gated", b"still running")  # its gate stays shut: running
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(
                        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                        args=["--no-sandbox"],
                    )
                    page = browser.new_page(viewport=VIEWPORT)
                    shoot(page, url + "/", "dashboard-flows.png", "#flows tbody tr")
                    shoot(page, url + "/#/flows/dynamic_branching", "dashboard-flow.png",
                          "#requests tbody tr[data-rid]")
                    shoot(page, f"{url}/#/flows/dynamic_branching/requests/{rid}",
                          "dashboard-request.png", "#result")
                    wait_status(api, "gated", paused, "paused")
                    shoot(page, f"{url}/#/flows/gated/requests/{paused}",
                          "dashboard-paused.png", "#timeline .row[data-state=held]")
                    browser.close()
                # Open every gate, so that no node is still waiting when the dashboard stops.
                for item in api.get("/api/flows/gated/requests").json()["requests"]:
                    (gates / item["request_id"]).touch()
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
