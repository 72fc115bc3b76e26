"""Completion callbacks: POST the result (or the failure) to ``X-Faas-Flow-Callback-Url``.

Sent once per request end, by the process that recorded the end, and retried with
backoff until the receiver answers 2xx or the attempts run out.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from faasflow.engine.observers import Observer, RequestEnd
from faasflow.engine.views import SUCCEEDED
from faasflow.httpclient import new_client

log = logging.getLogger("faasflow.callbacks")


class CallbackSender(Observer):
    """Delivers completion callbacks in the background (an engine observer).

    Args:
        attempts: tries per callback.
        backoff: seconds before the second try; doubles, at most ``max_delay``.
        max_delay: the longest wait between tries.
        timeout: seconds one try may take.
    """

    def __init__(
        self, *, attempts: int = 8, backoff: float = 0.2, max_delay: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        self.attempts = attempts
        self.backoff = backoff
        self.max_delay = max_delay
        self._client = new_client(timeout)
        self._tasks: set[asyncio.Task[bool]] = set()

    async def ended(self, end: RequestEnd) -> None:
        """Schedule the callback when the request asked for one."""
        url = end.record.callback_url
        if not url:
            return
        headers = {"X-Faas-Flow-Reqid": end.request_id, "X-Faas-Flow-Flow": end.flow}
        if end.status == SUCCEEDED:
            body = end.result or b""
            headers["X-Faas-Flow-Status"] = "success"
        else:
            body = str(end.error or end.status).encode()
            headers["X-Faas-Flow-Status"] = "failure"
            headers["X-Faas-Flow-Request-Status"] = end.status
        task = asyncio.create_task(self.deliver(url, body, headers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(self, url: str, body: bytes, headers: dict[str, str]) -> bool:
        """POST until a 2xx; returns whether the receiver accepted it."""
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._client.post(url, content=body, headers=headers)
                if response.is_success:
                    return True
                problem = f"answered {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            log.warning("callback to %s for %s failed (try %d): %s", url,
                        headers["X-Faas-Flow-Reqid"], attempt, problem)
            if attempt < self.attempts:
                await asyncio.sleep(min(self.max_delay, self.backoff * 2 ** (attempt - 1)))
        log.error("callback to %s for %s given up after %d tries", url,
                  headers["X-Faas-Flow-Reqid"], self.attempts)
        return False

    async def drain(self) -> None:
        """Wait for the callbacks under way."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._client.aclose()
