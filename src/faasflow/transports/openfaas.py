"""Hops through the OpenFaaS gateway's async route: the flow posts each next hop to itself.

``send`` signs the hop and posts it to ``{gateway}/async-function/{flow}/flow/{id}/forward``;
the gateway queues it and its queue worker calls the flow function's forward route, where
the flow server hands it to :meth:`OpenFaaSTransport.deliver`. The platform queues,
scales and retries; this process only needs to answer the forward route.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import httpx

from faasflow.engine.hops import Hop
from faasflow.errors import ConfigurationError, TransportError
from faasflow.httpclient import new_client
from faasflow.server.signing import SIGNATURE_HEADER, signed_hop
from faasflow.transports.base import HopHandler, Transport

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
    """

    def __init__(
        self,
        *,
        gateway: str,
        flow_name: str,
        secret: bytes,
        attempts: int = 5,
        client: httpx.AsyncClient | None = None,
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

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
