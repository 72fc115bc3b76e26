"""A small asyncio client for the Redis protocol (RESP2): the Redis stores' connection.

The stores send a handful of commands per hop (a multi-get, two Lua scripts); with
redis-py's asyncio client each command costs about 85 µs of Python, more than the
round trip itself. This client does only what the stores need — commands and pipelines
over a pool of connections, AUTH and SELECT from the URL, TLS for ``rediss://`` — in a
fraction of that.

Replies: simple strings and bulk strings as ``bytes`` (``None`` for nil), integers as
``int``, arrays as ``list``; an error reply raises :class:`RespError`. A connection that
fails (the server restarted, a proxy closed it) raises :class:`RespConnectionError`
and is dropped; the pool opens a new one on the next call.

Nothing is sent twice that may have run once: a write whose reply did not come (a
timeout, a connection lost after sending) is an error for the caller to resolve, never
resent here. Only what provably never reached the server is tried again: a pooled
connection found closed before anything is written to it is replaced, and a read-only
pipeline whose connection broke (not timed out) is sent once more on a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["RespConnectionError", "RespError", "RespPool"]

Reply = Any
"""``bytes | int | None | list[Reply]``, or a :class:`RespError` inside a pipeline."""


class RespError(Exception):
    """An error reply from the server (``-ERR …``, ``-NOSCRIPT …``)."""


class RespConnectionError(Exception):
    """The connection failed or closed; the command may or may not have run."""


_READS = frozenset(
    {b"GET", b"MGET", b"SCAN", b"ZRANGE", b"ZRANGEBYLEX", b"ZREVRANGEBYLEX", b"ZSCORE",
     b"ZCARD", b"LRANGE", b"LLEN", b"SMEMBERS", b"EXISTS", b"PTTL", b"PING"}
)
"""Commands that change nothing: sending one again is harmless."""


def _read_only(commands: list[list[Any]]) -> bool:
    return all(
        (c[0].encode() if isinstance(c[0], str) else c[0]).upper() in _READS for c in commands
    )


_LARGE = 64 * 1024
"""A value at least this large is written as it is, not joined with the rest of the
command: joining would copy it (a worker handling one large value would hold it twice
more than it must)."""


def _encode(commands: list[list[Any]]) -> list[bytes]:
    """The commands as RESP: chunks to write in order, each large value a chunk of its
    own and every small part joined with its neighbours."""
    chunks: list[bytes] = []
    parts: list[bytes] = []
    append = parts.append
    for args in commands:
        append(b"*%d\r\n" % len(args))
        for arg in args:
            kind = type(arg)
            if kind is str:
                arg = arg.encode()
            elif kind is int or kind is float:
                arg = repr(arg).encode()
            elif kind is not bytes:
                if not isinstance(arg, bytes | bytearray | memoryview):
                    raise TypeError(f"cannot send {kind.__name__} to Redis")
                arg = bytes(arg)
            append(b"$%d\r\n" % len(arg))
            if len(arg) >= _LARGE:
                chunks.append(b"".join(parts))
                chunks.append(arg)
                parts.clear()
            else:
                append(arg)
            append(b"\r\n")
    chunks.append(b"".join(parts))
    return chunks


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.timed_out = False

    def time_out(self) -> None:
        """Abort the connection: a reply is overdue (the pending read fails at once)."""
        self.timed_out = True
        self.writer.transport.abort()

    async def read(self) -> Reply:
        line = await self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise RespConnectionError("connection closed by the server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            if size < _LARGE:
                data = await self.reader.readexactly(size + 2)
                return data[:-2]
            # A large value: in pieces (the reader's buffer stays small), joined once;
            # reading it whole would grow a buffer as large and copy it out again.
            pieces: list[bytes] = []
            left = size
            while left:
                piece = await self.reader.read(min(left, _LARGE))
                if not piece:
                    raise RespConnectionError("connection closed by the server")
                pieces.append(piece)
                left -= len(piece)
            await self.reader.readexactly(2)
            return b"".join(pieces)
        if kind == b":":
            return int(rest)
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [await self.read() for _ in range(count)]
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        raise RespConnectionError(f"unexpected reply {line[:40]!r}")

    def close(self) -> None:
        self.writer.close()

    @property
    def closed(self) -> bool:
        """Whether the connection is known to be closed (the server hung up while it
        was idle): nothing written to it would reach the server."""
        reader = self.reader
        return (
            self.writer.transport.is_closing()
            or reader.at_eof()
            or reader.exception() is not None
        )


class RespPool:
    """Connections to one Redis server, opened as needed, at most ``size`` at once.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://`` (TLS);
            ``?socket_timeout=`` and ``?socket_connect_timeout=`` (seconds) are read.
        size: most connections open at once; callers beyond that wait.
    """

    def __init__(self, url: str, size: int = 64) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.tls = parts.scheme == "rediss"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        path = parts.path.strip("/")
        self.db = int(path) if path else 0
        options = dict(parse_qsl(parts.query))
        self.timeout = float(options.get("socket_timeout", 30))
        self.connect_timeout = float(options.get("socket_connect_timeout", 5))
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)

    async def _open(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=ssl.create_default_context() if self.tls else None
                )
        except (OSError, TimeoutError) as exc:
            raise RespConnectionError(
                f"cannot connect to {self.host}:{self.port}: {exc}"
            ) from exc
        connection = _Connection(reader, writer)
        hello: list[list[Any]] = []
        if self.password is not None:
            auth = [self.username, self.password] if self.username else [self.password]
            hello.append(["AUTH", *auth])
        if self.db:
            hello.append(["SELECT", self.db])
        if hello:
            for reply in await self._exchange(connection, hello):
                if isinstance(reply, RespError):
                    connection.close()
                    raise reply
        return connection

    async def _exchange(self, connection: _Connection, commands: list[list[Any]]) -> list[Reply]:
        # A timer that aborts the connection, rather than asyncio.timeout(): the same
        # effect at a fraction of the cost on every command.
        timer = asyncio.get_running_loop().call_later(self.timeout, connection.time_out)
        try:
            writer = connection.writer
            for chunk in _encode(commands):
                if len(chunk) < _LARGE:
                    writer.write(chunk)
                    continue
                # A large value a slice at a time, each sent before the next: the
                # transport would otherwise copy all that the socket did not take at once.
                view = memoryview(chunk)
                for start in range(0, len(view), _LARGE):
                    writer.write(view[start : start + _LARGE])
                    await writer.drain()
            return [await connection.read() for _ in commands]
        except (OSError, asyncio.IncompleteReadError, ValueError, RespConnectionError) as exc:
            connection.close()
            if connection.timed_out:
                raise RespConnectionError(
                    f"{self.host}:{self.port}: no reply within {self.timeout:g}s"
                ) from exc
            raise RespConnectionError(f"{self.host}:{self.port}: {exc!r}") from exc
        except BaseException:
            connection.close()  # cancelled mid-reply: the stream is out of step
            raise
        finally:
            timer.cancel()

    async def pipeline(self, commands: list[list[Any]]) -> list[Reply]:
        """Send ``commands`` in one write on one connection; their replies, in order
        (an error reply is returned in its place, not raised).

        Raises:
            RespConnectionError: no reply came (the connection broke or timed out);
                writes among ``commands`` may or may not have run.
        """
        async with self._slots:
            connection = self._pooled()
            pooled = connection is not None
            if connection is None:
                connection = await self._open()
            try:
                replies = await self._exchange(connection, commands)
            except RespConnectionError:
                # Reads may go again on a fresh connection when the pooled one broke
                # (most likely closed unseen by a server restart); never after a
                # timeout (the server is slow: do not add to its load), never writes.
                if not (pooled and not connection.timed_out and _read_only(commands)):
                    raise
                connection = await self._open()
                replies = await self._exchange(connection, commands)
            self._idle.append(connection)
            return replies

    def _pooled(self) -> _Connection | None:
        """An idle connection not known to be closed, or ``None``."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            connection.close()
        return None

    async def call(self, *args: Any) -> Reply:
        """Send one command; its reply.

        Raises:
            RespError: the server answered with an error.
            RespConnectionError: the connection failed.
        """
        (reply,) = await self.pipeline([list(args)])
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            connection = self._idle.pop()
            connection.close()
            with contextlib.suppress(OSError):
                await connection.writer.wait_closed()
