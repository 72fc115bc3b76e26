"""Hops through the OpenFaaS gateway's async route: the flow posts each next hop to itself.

``send`` signs the hop and posts it to ``{gateway}/async-function/{flow}/flow/{id}/forward``;
the gateway queues it and its queue worker calls the flow function's forward route, where
the flow server hands it to :meth:`OpenFaaSTransport.deliver`. The platform queues and
scales; it does not retry: OpenFaaS's queue worker calls a function once, whatever it
answers. So a hop whose handler fails (a store that is away) is sent again from here,
after a backoff (0.5 s, doubling), up to ``redeliveries`` times; then it goes to
``on_undeliverable``, which fails its request with a record saying why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import httpx

from faasflow.errors import ConfigurationError, TransportError
from faasflow.httpclient import new_client
from faasflow.transports.base import HopHandler, Transport, cancel_and_wait
from faasflow.wire.hop import Hop
from faasflow.wire.signing import SIGNATURE_HEADER, signed_hop

log = logging.getLogger("faasflow.transport.openfaas")

TRACEPARENT = "traceparent"


class OpenFaaSTransport(Transport):
    """Signed self-forwarding through an OpenFaaS gateway.

    Args:
        gateway: the gateway's base URL.
        flow_name: the flow function's name on the gateway (configuration, never
            derived from a Host header).
        secret: the HMAC key (the ``faasflow-hmac-secret`` secret); required.
        attempts: tries to hand a hop to the gateway before giving up.
        client: an httpx client to share; one is made (and closed) otherwise.
        redeliveries: times a hop whose handler failed is sent again from here.
        redelivery_delay: seconds before the first of those; doubles each time.
    """

    def __init__(
        self,
        *,
        gateway: str,
        flow_name: str,
        secret: bytes,
        attempts: int = 5,
        client: httpx.AsyncClient | None = None,
        redeliveries: int = 5,
        redelivery_delay: float = 0.5,
    ) -> None:
        if not secret:
            raise ConfigurationError(
                "faasflow-hmac-secret: hops through the gateway must be signed; create the "
                "secret (faas-cli secret create faasflow-hmac-secret --from-literal ...)"
            )
        self.gateway = gateway.rstrip("/")
        self.flow_name = flow_name
        self.secret = secret
        self.attempts = attempts
        self._client = client or new_client(10.0)
        self._owns_client = client is None
        self._handler: HopHandler | None = None
        self.redeliveries = redeliveries
        self.redelivery_delay = redelivery_delay
        self._failures: dict[str, int] = {}
        self._later: set[asyncio.Task[None]] = set()

    def url_for(self, hop: Hop) -> str:
        return f"{self.gateway}/async-function/{self.flow_name}/flow/{hop.request_id}/forward"

    async def start(self, handler: HopHandler) -> None:
        self._handler = handler

    async def send(self, hop: Hop) -> None:
        # Stamp the hop now: a held or redriven hop may be hours old, and the
        # receiver refuses stale ones.
        hop = replace(hop, sent_at=time.time())
        body, signature = signed_hop(self.secret, hop)
        headers = {
            SIGNATURE_HEADER: signature,
            "Content-Type": "application/json",
            "X-Faas-Flow-Reqid": hop.request_id,
        }
        if hop.trace:
            headers[TRACEPARENT] = hop.trace
        error: Exception | None = None
        for attempt in range(self.attempts):
            try:
                response = await self._client.post(self.url_for(hop), content=body,
                                                   headers=headers)
                if response.status_code in (200, 202):
                    return
                error = TransportError(
                    f"gateway answered {response.status_code} to a hop: "
                    f"{response.text[:200]}"
                )
            except httpx.HTTPError as exc:
                error = exc
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
        raise TransportError(f"could not hand hop {hop.id} to the gateway: {error}") from error

    async def deliver(self, hop: Hop) -> None:
        """Run a hop that arrived on the forward route (already verified)."""
        if self._handler is None:
            raise RuntimeError("transport not started")
        await self._handler(hop)
        self._failures.pop(hop.id, None)

    def retry_later(self, hop: Hop, error: Exception) -> None:
        """``hop`` arrived and could not be run (``error``): send it again after a
        backoff, or give up on it after ``redeliveries`` times (see the module
        docstring)."""
        failures = self._failures[hop.id] = self._failures.get(hop.id, 0) + 1
        if failures > self.redeliveries:
            del self._failures[hop.id]
            log.error("hop %s failed %d times, giving up: %s", hop.id, failures, error)
            later = self._give_up(hop, error)
        else:
            log.warning("hop %s failed (%s); sending it again", hop.id, error)
            later = self._send_later(hop, self.redelivery_delay * 2 ** (failures - 1))
        task = asyncio.create_task(later)
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _send_later(self, hop: Hop, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self.send(hop)
        except TransportError as exc:
            log.error("could not send hop %s again: %s", hop.id, exc)

    async def _give_up(self, hop: Hop, error: Exception) -> None:
        if self.on_undeliverable is None:
            return
        try:
            await self.on_undeliverable(hop, error)
        except Exception:
            log.exception("could not record the failure of hop %s", hop.id)

    async def close(self) -> None:
        await cancel_and_wait(self._later)
        if self._owns_client:
            await self._client.aclose()
