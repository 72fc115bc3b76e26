"""Real processes on loopback for the end-to-end tests.

* :class:`Process`: a child process (``python -m faasflow ...``) whose output goes to a
  log file, stopped with SIGTERM then SIGKILL, its own children included;
* :class:`GatewayProcess` and :class:`FlowServer`: ``faasflow gateway`` and
  ``faasflow serve``;
* :class:`Gate`, :class:`Receiver` and :class:`Capture`: small HTTP servers of the test
  process (uvicorn on a thread of their own): a node that waits until the test lets it
  go, a callback receiver, and a recording proxy in front of the gateway's async route;
* :class:`FlowClient`: a flow's routes through the gateway, counting the calls it makes
  so that :meth:`FlowClient.quiesce` can tell when every hop has been answered.

Nothing waits by sleeping for a fixed time: processes are polled with a deadline, and
the helper servers signal what they saw with conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any, TypeVar

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from faasflow.config import variables
from faasflow.gateway import BackgroundServer

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples"
FUNCTIONS_DIR = EXAMPLES_DIR / "functions"

SECRET = "e2e-hop-secret-0123456789abcdef"
"""The ``faasflow_hmac_secret`` of every flow server the tests start."""

START_TIMEOUT = 30.0
"""Seconds a process may take to answer its health check."""

STOP_GRACE = 10.0
"""Seconds a process gets after SIGTERM before SIGKILL."""

WAIT = 30.0
"""Default deadline of every wait in the tests, in seconds."""

POLL = 0.02
"""Seconds between two looks at something polled (with a deadline)."""

# Variables the flow server and the gateway read: the tests set what they need and
# nothing leaks in from the environment the tests run in.
_SCRUBBED = variables() | {"upstream_port"}


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a child process: ours, scrubbed, with the test secret."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    secrets_dir = home / "no-secrets"  # not /var/openfaas/secrets/ of the host
    secrets_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "faasflow_hmac_secret": SECRET,
            "secret_mount_path": str(secrets_dir),
            "XDG_CACHE_HOME": str(home / "cache"),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


def load_example(path: Path) -> ModuleType:
    """An example module, loaded by path as ``faasflow run`` does."""
    spec = importlib.util.spec_from_file_location(f"faasflow_e2e_example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLES: dict[str, ModuleType] = {
    path.stem: load_example(path)
    for path in sorted(EXAMPLES_DIR.glob("*.py"))
    if not path.name.startswith("_")
}
"""Every example flow, discovered as ``tests/examples`` does."""


# -- processes ----------------------------------------------------------------------------


class Process:
    """A child process, its output in ``log``.

    Args:
        name: for messages.
        argv: the command.
        env: its whole environment.
        log: the file its stdout and stderr go to.
    """

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], log: Path):
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log = log
        self._popen: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("ab")
        self._out.write(f"--- start: {' '.join(self.argv)}\n".encode())
        self._out.flush()
        self._popen = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=self._out,
            stderr=subprocess.STDOUT, cwd=str(self.log.parent),
        )  # fmt: skip

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def output(self, tail: int = 4000) -> str:
        """The end of what the process wrote."""
        try:
            return self.log.read_bytes()[-tail:].decode(errors="replace")
        except OSError:
            return ""

    def wait_healthy(self, url: str, timeout: float = START_TIMEOUT) -> None:
        """Poll ``url`` until it answers 200; fail with the process's output otherwise."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not self.running():
                    raise AssertionError(
                        f"{self.name} exited before it was healthy:\n{self.output()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{self.name}: {url} not healthy within {timeout:g}s:\n{self.output()}"
                    )
                time.sleep(POLL)

    def _children(self) -> list[psutil.Process]:
        try:
            children: list[psutil.Process] = psutil.Process(self.pid).children(recursive=True)
            return children
        except psutil.Error:
            return []

    def signal_stop(self) -> list[psutil.Process]:
        """Send SIGTERM (without waiting); returns the children seen before."""
        if not self.running():
            return []
        children = self._children()
        with contextlib.suppress(ProcessLookupError):
            self._popen.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        return children

    def wait_stopped(self, children: Iterable[psutil.Process], grace: float = STOP_GRACE) -> None:
        """Wait for the exit after :meth:`signal_stop`; SIGKILL after ``grace`` seconds.
        Children left behind are killed too (by their pid)."""
        if self._popen is not None:
            try:
                self._popen.wait(grace)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        _, alive = psutil.wait_procs(list(children), timeout=grace)
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(alive, timeout=grace)
        self._close_log()

    def terminate(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the process is reaped."""
        self.wait_stopped(self.signal_stop(), grace)

    def kill(self) -> None:
        """SIGKILL now, and reap it (a zombie would still look alive to its successor)."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
        if self._popen is not None:
            self._popen.wait()
        self._close_log()

    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def _close_log(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def stop_all(processes: Iterable[Process]) -> None:
    """SIGTERM every process at once, then wait for each (SIGKILL when it lingers)."""
    pending = [(process, process.signal_stop()) for process in processes]
    for process, children in pending:
        process.wait_stopped(children)


def faasflow_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "faasflow", *args]


class GatewayProcess:
    """``faasflow gateway`` on a free port.

    Args:
        home: a folder for its log.
        functions: the handler folders it serves.
        register: ``NAME -> URL`` given with ``--register``.
        options: more command-line options.
    """

    def __init__(
        self,
        home: Path,
        *,
        functions: Path | None = FUNCTIONS_DIR,
        register: Mapping[str, str] | None = None,
        options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["gateway", "--port", str(self.port), *options]
        if functions is not None:
            args += ["--functions", str(functions)]
        for name, url in (register or {}).items():
            args += ["--register", f"{name}={url}"]
        self.process = Process(
            "faasflow gateway", faasflow_argv(*args), env=env or child_env(home),
            log=home / f"gateway-{self.port}.log",
        )  # fmt: skip

    def start(self) -> None:
        self.process.start()
        self.process.wait_healthy(self.url + "/healthz")


@dataclass
class FlowServer:
    """``faasflow serve`` for one flow, registered with the gateway under its name.

    Apply calls go through the gateway: ``--functions`` names an empty folder, so no
    handler folder is found locally and the engine falls back to the gateway.
    """

    name: str
    target: Path
    home: Path
    gateway_url: str
    port: int = field(default_factory=free_port)
    hop_gateway: str | None = None  # where hops go, when not the gateway itself
    options: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    process: Process | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.home / f'{self.name}.db'}"

    def spawn(self) -> Process:
        """Start the server (without waiting for it)."""
        empty = self.home / "no-functions"
        empty.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        argv = faasflow_argv(
            "serve", str(self.target), "--name", self.name, "--port", str(self.port),
            "--gateway", self.hop_gateway or self.gateway_url, "--state", self.state_url,
            "--functions", str(empty), *self.options,
        )  # fmt: skip
        self.process = Process(
            f"faasflow serve {self.name} (start {self.starts})", argv,
            env=child_env(self.home, **self.env), log=self.home / f"{self.name}.log",
        )  # fmt: skip
        self.process.start()
        return self.process

    def start(self) -> None:
        self.spawn().wait_healthy(self.url + "/healthz")

    def register(self) -> int:
        """``POST /system/register`` this server under its name; the status code."""
        answer = httpx.post(
            f"{self.gateway_url}/system/register",
            json={"name": self.name, "url": self.url, "labels": {"faas-flow": "1"}},
            timeout=10,
        )
        assert answer.status_code in (200, 201), answer.text
        return answer.status_code

    def unregister(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(f"{self.gateway_url}/system/register/{self.name}", timeout=10)


# -- servers of the test process -----------------------------------------------------------


class _Helper:
    """A Starlette app served by uvicorn on a thread of its own."""

    app: Starlette

    def __init__(self) -> None:
        self.server: BackgroundServer | None = None
        self.url = ""

    def start(self) -> str:
        self.server = BackgroundServer(self.app)
        self.url = self.server.start()
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=15)
            self.server = None


class Gate(_Helper):
    """Function endpoints for flows written by the tests, keyed by request and node.

    * ``POST /hit/NODE?rid=R`` answers the body plus ``-NODE`` at once;
    * ``POST /gate/NODE?rid=R`` answers the same, but only once the test called
      :meth:`release` for ``(R, NODE)`` (or :meth:`open_all`).

    Every call is counted, so a test knows that a node is running (its call arrived)
    and how often each node ran.
    """

    HOLD_LIMIT = 60.0

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self._hits: Counter[tuple[str, str]] = Counter()
        self._callers: dict[tuple[str, str], list[str]] = {}
        self._held: dict[tuple[str, str], list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]]
        self._held = {}
        self._released: set[tuple[str, str]] = set()
        self._all_open = False
        self.app = Starlette(
            routes=[
                Route("/hit/{node}", self._hit, methods=["POST"]),
                Route("/gate/{node}", self._gate, methods=["POST"]),
            ]
        )

    async def _hit(self, request: Request) -> Response:
        node = request.path_params["node"]
        body = await request.body()
        key = (request.query_params.get("rid", ""), node)
        with self._cond:
            self._hits[key] += 1
            self._callers.setdefault(key, []).append(request.query_params.get("pid", ""))
            self._cond.notify_all()
        return Response(body + b"-" + node.encode(), media_type="application/octet-stream")

    async def _gate(self, request: Request) -> Response:
        node = request.path_params["node"]
        key = (request.query_params.get("rid", ""), node)
        body = await request.body()
        event = asyncio.Event()
        with self._cond:
            self._held.setdefault(key, []).append((asyncio.get_running_loop(), event))
            if self._all_open or key in self._released:
                event.set()
            self._hits[key] += 1
            self._cond.notify_all()
        try:
            await asyncio.wait_for(event.wait(), self.HOLD_LIMIT)
        except TimeoutError:
            return PlainTextResponse("the test never released this gate", status_code=504)
        return Response(body + b"-" + node.encode(), media_type="application/octet-stream")

    def hits(self, rid: str, node: str) -> int:
        with self._cond:
            return self._hits[(rid, node)]

    def callers(self, rid: str, node: str) -> list[str]:
        """The ``pid`` query parameter of each ``/hit`` call of ``node`` for ``rid``, in
        order (the calling process, when the flow sends it)."""
        with self._cond:
            return list(self._callers.get((rid, node), []))

    def release(self, rid: str, node: str) -> None:
        """Let the held calls (and any later one) of ``node`` for ``rid`` answer."""
        key = (rid, node)
        with self._cond:
            self._released.add(key)
            found = list(self._held.get(key, []))
        for loop, event in found:
            loop.call_soon_threadsafe(event.set)

    def open_all(self) -> None:
        """Release every gate, now and later (before the flow servers stop)."""
        with self._cond:
            self._all_open = True
            found = [held for calls in self._held.values() for held in calls]
        for loop, event in found:
            with contextlib.suppress(RuntimeError):  # that loop may be gone already
                loop.call_soon_threadsafe(event.set)

    async def entered(self, rid: str, node: str, count: int = 1, timeout: float = WAIT) -> None:
        """Wait until ``node`` of ``rid`` has been called ``count`` times."""

        def wait() -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: self._hits[(rid, node)] >= count, timeout)

        assert await asyncio.to_thread(wait), (
            f"{node} of {rid} was called {self.hits(rid, node)} times, not {count}, "
            f"within {timeout:g}s"
        )

    def stop(self) -> None:
        self.open_all()
        super().stop()


GATE_FLOW = '''\
"""Three nodes in a row; the middle one waits at the test's gate."""

from faasflow import Context, Workflow

GATE = {gate!r}


def define(flow: Workflow, context: Context) -> None:
    rid = {{"rid": context.request_id}}
    dag = flow.dag()
    dag.node("a").request(GATE + "/hit/a", query=rid)
    dag.node("b").request(GATE + "/gate/b", query=rid, timeout=90)
    dag.node("c").request(GATE + "/hit/c", query=rid)
    dag.edge("a", "b")
    dag.edge("b", "c")
'''
"""A flow file: ``a`` -> ``b`` (held at the gate) -> ``c``; the result is
``input-a-b-c``."""


def gate_flow_expected(data: bytes) -> bytes:
    return data + b"-a-b-c"


@dataclass(frozen=True)
class Delivery:
    """One callback as the receiver got it."""

    headers: dict[str, str]
    body: bytes


class Receiver(_Helper):
    """Takes completion callbacks on ``POST /cb`` and keeps them by request id."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()
        self.deliveries: dict[str, list[Delivery]] = {}
        self.app = Starlette(routes=[Route("/cb", self._take, methods=["POST"])])

    @property
    def callback_url(self) -> str:
        return self.url + "/cb"

    async def _take(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        rid = headers.get("x-faas-flow-reqid", "")
        with self._cond:
            self.deliveries.setdefault(rid, []).append(Delivery(headers, body))
            self._cond.notify_all()
        return PlainTextResponse("thanks")

    def of(self, rid: str) -> list[Delivery]:
        with self._cond:
            return list(self.deliveries.get(rid, []))

    async def delivered(self, rid: str, timeout: float = WAIT) -> Delivery:
        """The first callback for ``rid``, once it arrived."""

        def wait() -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: bool(self.deliveries.get(rid)), timeout)

        assert await asyncio.to_thread(wait), f"no callback for {rid} within {timeout:g}s"
        return self.of(rid)[0]


@dataclass(frozen=True)
class CapturedHop:
    """A hop as the flow server posted it to the gateway's async route."""

    path: str
    headers: dict[str, str]
    body: bytes


_HOP_HEADERS = ("x-faas-flow-signature", "content-type", "x-faas-flow-reqid", "traceparent")


class Capture(_Helper):
    """A recording proxy in front of the gateway, given to a flow server as ``--gateway``.

    Every ``POST /async-function/...`` (a hop) is recorded; while :attr:`forwarding` it
    is passed on to the gateway, otherwise it is kept back (answered 202) for the test
    to deliver. Everything else is passed on unchanged.
    """

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream
        self.forwarding = True
        self._cond = threading.Condition()
        self.hops: list[CapturedHop] = []
        self.forwarded = 0
        self._client: httpx.AsyncClient | None = None
        self.app = Starlette(
            routes=[
                Route(
                    "/{path:path}", self._take,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                )
            ],
            lifespan=self._lifespan,
        )  # fmt: skip

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> Any:
        async with httpx.AsyncClient(timeout=60) as client:
            self._client = client
            yield
        self._client = None

    async def _take(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        if request.method == "POST" and path.startswith("/async-function/"):
            hop = CapturedHop(path, {k: v for k, v in headers.items() if k in _HOP_HEADERS}, body)
            with self._cond:
                self.hops.append(hop)
                self._cond.notify_all()
                forwarding = self.forwarding
                if forwarding:
                    self.forwarded += 1
            if not forwarding:
                return Response(status_code=202)
            headers = hop.headers
        else:
            headers = {k: v for k, v in headers.items() if k not in ("host", "content-length")}
        assert self._client is not None
        url = self.upstream + path + (f"?{request.url.query}" if request.url.query else "")
        answer = await self._client.request(request.method, url, content=body, headers=headers)
        return Response(answer.content, status_code=answer.status_code,
                        media_type=answer.headers.get("content-type"))

    def count(self) -> int:
        with self._cond:
            return len(self.hops)

    def paths(self) -> list[str]:
        """The node path of each hop captured, in order."""
        with self._cond:
            return [json.loads(hop.body)["path"] for hop in self.hops]

    def forwarded_count(self) -> int:
        with self._cond:
            return self.forwarded

    async def captured(self, count: int, timeout: float = WAIT) -> list[CapturedHop]:
        """Wait until ``count`` hops were posted; returns them all."""

        def wait() -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: len(self.hops) >= count, timeout)

        assert await asyncio.to_thread(wait), f"{self.count()} hops captured, not {count}"
        with self._cond:
            return list(self.hops)


# -- talking to a flow through the gateway -------------------------------------------------


async def poll(
    fetch: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    timeout: float = WAIT,
    interval: float = POLL,
    what: str = "a condition",
) -> T:
    """Call ``fetch`` until ``until(value)``, every ``interval`` seconds; fail after
    ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await fetch()
        if until(value):
            return value
        assert loop.time() < deadline, f"gave up waiting for {what}; last: {value!r}"
        await asyncio.sleep(interval)


class FlowClient:
    """One flow's routes through the gateway.

    Every call of ``/function/NAME...`` and ``/async-function/NAME...`` made here is
    counted in :attr:`calls`: with the hops a :class:`Capture` saw, that is how many
    invocations the gateway must have counted once everything was answered
    (:meth:`quiesce`).
    """

    def __init__(self, client: httpx.AsyncClient, gateway_url: str, name: str) -> None:
        self.client = client
        self.gateway_url = gateway_url
        self.name = name
        self.calls = 0

    @property
    def base(self) -> str:
        return f"{self.gateway_url}/function/{self.name}"

    async def call(self, method: str, sub: str = "", **options: Any) -> httpx.Response:
        self.calls += 1
        return await self.client.request(method, self.base + sub, **options)

    async def enqueue(self, sub: str, **options: Any) -> httpx.Response:
        """``POST /async-function/NAME{sub}``: the gateway's queue runs it (one call)."""
        self.calls += 1
        return await self.client.post(f"{self.gateway_url}/async-function/{self.name}{sub}",
                                      **options)

    async def start(
        self, data: bytes, *, query: str = "", headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        return await self.call("POST", f"?{query}" if query else "", content=data,
                               headers=dict(headers or {}))

    async def submit(self, data: bytes, **options: Any) -> str:
        """Start an asynchronous request; its id."""
        answer = await self.start(data, **options)
        assert answer.status_code == 202, (answer.status_code, answer.text)
        rid = answer.headers["X-Faas-Flow-Reqid"]
        assert answer.text == rid
        return rid

    async def state(self, rid: str) -> dict[str, Any]:
        answer = await self.call("GET", f"/flow/{rid}/state")
        assert answer.status_code == 200, (answer.status_code, answer.text)
        state: dict[str, Any] = answer.json()
        return state

    async def control(self, rid: str, verb: str) -> httpx.Response:
        return await self.call("POST", f"/flow/{rid}/{verb}")

    async def result(
        self, rid: str, timeout: float = WAIT, interval: float = POLL
    ) -> httpx.Response:
        """``GET /flow/ID/result`` until it is no longer 404 (running)."""
        return await poll(
            lambda: self.call("GET", f"/flow/{rid}/result"),
            lambda answer: answer.status_code != 404,
            timeout=timeout, interval=interval, what=f"the result of {rid}",
        )  # fmt: skip

    async def invocations(self) -> int:
        answer = await self.client.get(f"{self.gateway_url}/system/function/{self.name}")
        assert answer.status_code == 200, answer.text
        count: int = answer.json()["invocationCount"]
        return count

    async def quiesce(self, capture: Capture, timeout: float = WAIT) -> None:
        """Wait until the gateway answered every call made here and every hop captured.

        A hop is posted (and captured) within the call that runs its parent, before that
        call is answered; so once the gateway counted as many answered invocations as
        there were calls and forwarded hops, with no hop captured meanwhile, nothing of
        this flow is in flight and nothing more will run.
        """

        async def settled() -> tuple[int, int, int]:
            before = capture.forwarded_count()
            counted = await self.invocations()
            return before, counted, capture.forwarded_count()

        await poll(
            settled,
            lambda seen: seen[0] == seen[2] and seen[1] == self.calls + seen[0],
            timeout=timeout, what=f"{self.name} to settle ({self.calls} calls made)",
        )  # fmt: skip
