"""Hops on NATS JetStream: any number of worker processes, on any machines, share them.

Every flow has one subject, ``{subject_prefix}.{flow}``, in one work-queue stream, and
one durable consumer, ``faasflow-{flow}``, that all its workers join as a queue group:
JetStream hands each hop to one worker and keeps it until that worker acknowledges it.

* **Acknowledged only when durable.** A hop is acked after its handler returned, that is
  after the node's output, its done record and its successors' hops are stored; a worker
  killed before that never acks, and JetStream delivers the hop again once ``ack_wait``
  passes. While a node runs, the worker tells JetStream it is still working
  (``+WPI``) every third of ``ack_wait``, so a long node is not handed to another worker.
* **Redelivery is bounded.** A hop whose handler raised is delivered again after a
  backoff; one delivered more than ``max_deliveries`` times (a node that keeps killing
  its worker, a store that stays down) goes to ``on_undeliverable``, which fails the
  request with a record saying so, and is then acked. JetStream's own ``max_deliver`` is
  not used: when it runs out the server drops the message silently.
* **Published without waiting, by default.** Before a hop is sent, the engine has already
  recorded it as pending in the state store, in the same commit that recorded the node
  before it as done; a hop lost on its way (the server went away with it) is sent again
  by the workers' sweeper after ``resend_after``. So :meth:`send` hands the hop to the
  connection and goes on (while the server is away, the client keeps it until it is
  back). With ``confirm=True`` it waits until JetStream has stored the hop, retrying for
  ``publish_timeout`` seconds: a round trip per hop, for recovery without the sweeper.

Only this module imports nats-py; its errors become :class:`TransportError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from faasflow import _failpoints
from faasflow.errors import ConfigurationError, TransportError
from faasflow.transports.base import HopHandler, Transport, cancel_and_wait
from faasflow.wire.hop import Hop

log = logging.getLogger("faasflow.transport.nats")

TRACEPARENT = "traceparent"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def _check_token(what: str, value: str) -> str:
    if not _TOKEN.match(value):
        raise ConfigurationError(
            f"{what} {value!r} cannot be a NATS subject token: use letters, digits, '_' and '-'"
        )
    return value


class NatsTransport(Transport):
    """Hops through a JetStream work queue shared by every worker of a flow.

    Args:
        url: the NATS server(s), ``nats://host:4222`` (comma-separated for a cluster).
        flow_name: the flow whose hops this transport carries (a subject token).
        consume: whether this process runs hops (a worker) or only sends them (a client).
        concurrency: hops this process runs at once.
        ack_wait: seconds JetStream waits for an ack (or a progress signal) before it
            delivers a hop to another worker; how soon a killed worker's hop is taken over.
        max_deliveries: deliveries of one hop before it is given up on.
        redelivery_delay: seconds before a failed hop is delivered again; doubles each time.
        stream: the JetStream stream's name; ``subject_prefix``: its subjects' prefix.
        publish_timeout: seconds :meth:`send` keeps trying while the server is away.
        close_grace: seconds :meth:`close` lets running hops finish.
        connect_timeout: seconds :meth:`start` tries to reach the server.
        confirm: wait for JetStream's confirmation of each published hop.
    """

    def __init__(
        self,
        url: str,
        *,
        flow_name: str,
        consume: bool = True,
        concurrency: int = 64,
        ack_wait: float = 30.0,
        max_deliveries: int = 5,
        redelivery_delay: float = 0.5,
        stream: str = "FAASFLOW",
        subject_prefix: str = "faasflow",
        publish_timeout: float = 30.0,
        close_grace: float = 10.0,
        connect_timeout: float = 10.0,
        confirm: bool = False,
    ) -> None:
        self.url = url
        self.flow_name = _check_token("flow name", flow_name)
        self.stream = _check_token("stream name", stream)
        self.subject_prefix = _check_token("subject prefix", subject_prefix)
        self.subject = f"{subject_prefix}.{flow_name}"
        self.durable = f"faasflow-{flow_name}"
        self.consume = consume
        self.concurrency = concurrency
        self.ack_wait = ack_wait
        self.max_deliveries = max_deliveries
        self.redelivery_delay = redelivery_delay
        self.publish_timeout = publish_timeout
        self.close_grace = close_grace
        self.connect_timeout = connect_timeout
        self.confirm = confirm
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._sub: Any = None
        self._handler: HopHandler | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- lifetime ---------------------------------------------------------------------
    async def start(self, handler: HopHandler) -> None:
        self._handler = handler
        try:
            # nats-py retries a first connection forever when reconnecting is allowed:
            # bound it, so a wrong URL is an error rather than a hang.
            async with asyncio.timeout(self.connect_timeout):
                self._nc = await self._connect()
            self._js = self._nc.jetstream(timeout=5)
            await self._ensure_stream()
            if self.consume:
                self._sub = await self._js.subscribe(
                    self.subject,
                    queue=self.durable,
                    durable=self.durable,
                    cb=self._receive,
                    manual_ack=True,
                    pending_msgs_limit=-1,
                    pending_bytes_limit=-1,
                    config=ConsumerConfig(
                        # One deliver subject for every worker: workers starting at once
                        # each create the consumer, and with a fresh inbox each, the last
                        # one would take every hop and the others' would never arrive.
                        deliver_subject=f"{self.subject_prefix}-deliver.{self.flow_name}",
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.ALL,
                        ack_wait=self.ack_wait,
                        max_deliver=-1,
                        max_ack_pending=-1,
                    ),
                )
        except (TimeoutError, NatsError, OSError) as exc:
            await self.close()
            raise TransportError(f"NATS at {self.url}: cannot start: {exc!r}") from exc

    async def _connect(self) -> NatsClient:
        return await nats.connect(
            servers=[part.strip() for part in self.url.split(",")],
            name=f"faasflow-{self.flow_name}",
            max_reconnect_attempts=-1,  # once connected, ride out server restarts
            reconnect_time_wait=0.25,
            connect_timeout=2,
            allow_reconnect=True,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnect,
            reconnected_cb=self._on_reconnect,
        )

    async def _ensure_stream(self) -> None:
        """Create the work-queue stream unless it exists; add this flow's subject to it."""
        assert self._js is not None
        subjects = [f"{self.subject_prefix}.>"]
        try:
            await self._js.stream_info(self.stream)
            return
        except NotFoundError:
            pass
        try:
            await self._js.add_stream(
                name=self.stream,
                subjects=subjects,
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
            )
        except BadRequestError as exc:  # another process created it meanwhile
            if "already in use" not in str(exc):
                raise

    async def close(self) -> None:
        """Stop taking hops, let the running ones finish (or be cancelled), disconnect."""
        self._closing = True
        if self._sub is not None:
            with contextlib.suppress(NatsError, asyncio.TimeoutError):
                # Not unsubscribe(): that would delete the durable consumer of every worker.
                await self._sub.drain()
            self._sub = None
        # Running hops get a grace period to finish and be acked; the rest come back to
        # another worker after ack_wait.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.close_grace)
        await cancel_and_wait(self._tasks)
        if self._nc is not None:
            with contextlib.suppress(NatsError, asyncio.TimeoutError):
                await self._nc.close()
            self._nc = None

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- sending ----------------------------------------------------------------------
    async def send(self, hop: Hop) -> None:
        """Publish ``hop``; with ``confirm``, return once JetStream has stored it.

        Raises:
            TransportError: the server did not confirm within ``publish_timeout``.
        """
        if self._js is None or self._nc is None:
            raise TransportError("NATS transport not started")
        headers = {TRACEPARENT: hop.trace} if hop.trace else None
        if not self.confirm:
            try:
                await self._nc.publish(self.subject, hop.json.encode(), headers=headers)
            except NatsError as exc:
                raise TransportError(
                    f"NATS at {self.url}: could not publish hop {hop.id}: {exc!r}"
                ) from exc
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        delay = 0.05
        while True:
            try:
                await self._js.publish(self.subject, hop.json.encode(), headers=headers)
                return
            except (TimeoutError, NatsError) as exc:
                if loop.time() + delay > deadline:
                    raise TransportError(
                        f"NATS at {self.url}: could not publish hop {hop.id}: {exc!r}"
                    ) from exc
                log.warning("publishing hop %s failed (%r); retrying", hop.id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # -- request ends -------------------------------------------------------------------
    @property
    def ends_subject(self) -> str:
        """Where workers announce that a request ended (core NATS, outside the stream)."""
        return f"{self.subject_prefix}-ends.{self.flow_name}"

    async def announce_end(self, request_id: str) -> None:
        """Tell waiting clients that ``request_id`` ended (best effort: they also poll)."""
        if self._nc is None:
            return
        with contextlib.suppress(NatsError, asyncio.TimeoutError):
            await self._nc.publish(self.ends_subject, request_id.encode())

    async def on_end(self, callback: Callable[[str], Awaitable[None]]) -> None:
        """Call ``callback(request_id)`` for each request end announced by a worker."""
        if self._nc is None:
            raise TransportError("NATS transport not started")

        async def receive(msg: Msg) -> None:
            await callback(msg.data.decode())

        await self._nc.subscribe(self.ends_subject, cb=receive)

    # -- receiving --------------------------------------------------------------------
    async def _receive(self, msg: Msg) -> None:
        # nats-py awaits this callback before the next message: hand the hop to a task
        # and return, waiting only for a free slot (which bounds the hops in memory).
        await self._slots.acquire()
        if self._closing:
            self._slots.release()
            return  # not acked: JetStream delivers it again, to another worker
        task = asyncio.create_task(self._run(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, msg: Msg) -> None:
        assert self._handler is not None
        progress = asyncio.create_task(self._keep_alive(msg))
        try:
            try:
                hop = Hop.from_json(msg.data)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("dropping a malformed hop on %s: %s", msg.subject, exc)
                await msg.term()
                return
            deliveries = msg.metadata.num_delivered
            delay = min(60.0, self.redelivery_delay * 2 ** (deliveries - 1))
            if deliveries > self.max_deliveries:
                # Earlier deliveries died with their worker: this hop kills whoever runs it.
                lost = TransportError(
                    f"hop delivered {deliveries - 1} times and never finished "
                    "(its worker died or lost the server each time)"
                )
                await (msg.ack() if await self._give_up(hop, lost) else msg.nak(delay=delay))
                return
            try:
                await self._handler(hop)
            except Exception as exc:
                if deliveries >= self.max_deliveries and await self._give_up(hop, exc):
                    await msg.ack()
                    return
                log.warning("hop %s failed (%s); redelivering", hop.id, exc)
                await msg.nak(delay=delay)
                return
            if _failpoints.FOLDER:
                await _failpoints.reach("ack", hop.path, hop.json)
            await msg.ack()
        except (TimeoutError, NatsError) as exc:
            # The ack did not reach the server: the hop comes back, and running it again
            # changes nothing (its effects are idempotent).
            log.warning("could not acknowledge a hop: %r", exc)
        finally:
            progress.cancel()
            self._slots.release()

    async def _keep_alive(self, msg: Msg) -> None:
        """Tell JetStream this worker still runs the hop, so it is not redelivered."""
        while True:
            await asyncio.sleep(self.ack_wait / 3)
            with contextlib.suppress(NatsError, asyncio.TimeoutError):
                await msg.in_progress()

    async def _give_up(self, hop: Hop, error: Exception) -> bool:
        """Record ``hop`` as given up on; ``False`` when even that failed (keep the hop)."""
        log.error("hop %s given up: %s", hop.id, error)
        if self.on_undeliverable is None:
            return True
        try:
            await self.on_undeliverable(hop, error)
        except Exception:
            log.exception("could not record the failure of hop %s", hop.id)
            return False
        return True

    # -- connection events --------------------------------------------------------------
    async def _on_error(self, exc: Exception) -> None:
        if self._nc is None or self._closing:
            return  # the first connection: start() reports it
        log.warning("NATS at %s: %r", self.url, exc)

    async def _on_disconnect(self) -> None:
        if self._closing:
            return
        log.warning("NATS at %s: disconnected; reconnecting", self.url)

    async def _on_reconnect(self) -> None:
        log.info("NATS at %s: reconnected", self.url)
