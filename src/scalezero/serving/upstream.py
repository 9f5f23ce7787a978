"""A small HTTP/1.1 client for the gateway's hop to its instances.

The hop is always loopback, always ``POST`` with a JSON body, always to a server the
gateway started (llama-cpp-python's uvicorn, or ``llama-server``). A general client
(httpx) spends more CPU per request and per streamed chunk than the whole rest of the
gateway; this one does only what the hop needs: keep-alive connections per instance,
``Content-Length`` and chunked bodies, per-read timeouts, and one retry on a reused
connection that the server had already closed (its keep-alive timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

MAX_HEAD_BYTES = 64 * 1024
READ_BYTES = 64 * 1024
MAX_IDLE_PER_INSTANCE = 32


class UpstreamError(Exception):
    """The instance could not be reached, or broke off its answer."""


class _StaleConnection(UpstreamError):
    """A reused keep-alive connection that turned out closed before any answer."""


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _IdleWatch:
    """Aborts a connection that stays silent for ``timeout_s``.

    One timer per answer, re-armed only when it fires, instead of a timeout context per
    read: streamed answers have one read per token.
    """

    def __init__(self, writer: asyncio.StreamWriter, timeout_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.writer = writer
        self.timeout_s = timeout_s
        self.last_s = self.loop.time()
        self.fired = False
        self.handle = self.loop.call_at(self.last_s + timeout_s, self._check)

    def touch(self) -> None:
        self.last_s = self.loop.time()

    def _check(self) -> None:
        due_s = self.last_s + self.timeout_s
        if self.loop.time() >= due_s:
            self.fired = True
            self.writer.transport.abort()  # the pending read then fails
        else:
            self.handle = self.loop.call_at(due_s, self._check)

    def cancel(self) -> None:
        self.handle.cancel()


class UpstreamResponse:
    """Status and headers of an answer; its body is read with ``aiter_bytes``/``aread``."""

    def __init__(
        self, client: UpstreamClient, key: tuple[str, int], conn: Connection, status_code: int,
        headers: dict[str, str],
    ) -> None:
        self._client = client
        self._key = key
        self._conn: Connection | None = conn
        self.status_code = status_code
        self.headers = headers
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._length = int(length) if length is not None and length.isdigit() else None
        self._reusable = headers.get("connection", "").lower() != "close" and (
            self._chunked or self._length is not None
        )
        self._complete = False

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives: a piece per read (the chunks of a chunked answer that
        arrived together are one piece)."""
        if self._conn is None:
            raise UpstreamError("response body already consumed or closed")
        reader, writer = self._conn
        watch = _IdleWatch(writer, self._client.read_timeout_s)
        try:
            if self._chunked:
                # One read per arrival, framing parsed from a local buffer, the chunks
                # that came together relayed as one piece: a streamed answer arrives a
                # chunk (a token) at a time, and per-token work is the relay's cost.
                buffer = b""
                while True:
                    pieces: list[bytes] = []
                    start = 0
                    while (line_end := buffer.find(b"\r\n", start)) >= 0:
                        size = int(buffer[start:line_end].split(b";", 1)[0], 16)
                        if size == 0:
                            trailers_end = buffer.find(b"\r\n\r\n", line_end)
                            if trailers_end < 0:
                                break  # the last chunk's trailers are not all in yet
                            if pieces:
                                yield b"".join(pieces)
                            # Bytes after the answer would belong to nothing we asked for.
                            if trailers_end + 4 != len(buffer):
                                self._reusable = False
                            self._complete = True
                            return
                        data_end = line_end + 2 + size
                        if len(buffer) < data_end + 2:
                            break
                        if buffer[data_end:data_end + 2] != b"\r\n":
                            raise ValueError("chunk data not followed by CRLF")
                        pieces.append(buffer[line_end + 2:data_end])
                        start = data_end + 2
                    if start:
                        buffer = buffer[start:]
                    if pieces:
                        yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                    elif len(buffer) > MAX_HEAD_BYTES and buffer.find(b"\r\n") < 0:
                        raise ValueError("chunk size line too long")
                    data = await reader.read(READ_BYTES)
                    if not data:
                        raise asyncio.IncompleteReadError(buffer, None)
                    watch.touch()
                    buffer += data
            elif self._length is not None:
                remaining = self._length
                while remaining:
                    data = await reader.read(min(remaining, READ_BYTES))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    watch.touch()
                    remaining -= len(data)
                    yield data
            else:  # delimited by the connection's end
                while data := await reader.read(READ_BYTES):
                    watch.touch()
                    yield data
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                ConnectionError) as exc:
            self._drop()
            if watch.fired:
                raise UpstreamError(
                    f"answer broken off: no data for {watch.timeout_s:g} s"
                ) from None
            raise UpstreamError(f"answer broken off: {_describe(exc)}") from None
        finally:
            watch.cancel()
        self._complete = True

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_bytes()])

    async def aclose(self) -> None:
        """Give the connection back for reuse if the answer was read whole, else close it."""
        if self._conn is None:
            return
        if self._complete and self._reusable:
            self._client._put_back(self._key, self._conn)
            self._conn = None
        else:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        if exc.expected is None:
            return "connection closed before the answer's last chunk"
        return f"connection closed with {exc.expected} bytes outstanding"
    if isinstance(exc, TimeoutError):
        return "read timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class UpstreamClient:
    """Keep-alive connections to instances, keyed by (host, port)."""

    def __init__(self, connect_timeout_s: float = 10.0, read_timeout_s: float = 600.0) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._idle: dict[tuple[str, int], list[Connection]] = {}

    async def post(
        self, host: str, port: int, path: str, body: bytes, content_type: str = "application/json"
    ) -> UpstreamResponse:
        """Send one POST; return once the answer's status and headers are in."""
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\naccept: */*\r\n\r\n"
        ).encode("latin-1")
        key = (host, port)
        while True:
            conn, reused = self._take(key), True
            if conn is None:
                conn, reused = await self._connect(host, port), False
            try:
                return await self._exchange(key, conn, head + body, reused)
            except _StaleConnection:
                continue  # the server had closed it; nothing was processed: try a new one

    async def _exchange(
        self, key: tuple[str, int], conn: Connection, request: bytes, reused: bool
    ) -> UpstreamResponse:
        reader, writer = conn
        try:
            writer.write(request)
            await writer.drain()
            async with asyncio.timeout(self.read_timeout_s):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            writer.close()
            nothing_read = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
            if reused and nothing_read:
                raise _StaleConnection() from None
            raise UpstreamError(f"no answer: {_describe(exc)}") from None
        except (asyncio.LimitOverrunError, ValueError, TimeoutError) as exc:
            writer.close()
            raise UpstreamError(f"no valid answer: {_describe(exc)}") from None
        lines = head.decode("latin-1").split("\r\n")
        try:
            status_code = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            writer.close()
            raise UpstreamError(f"not an HTTP answer: {lines[0][:80]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return UpstreamResponse(self, key, conn, status_code, headers)

    async def _connect(self, host: str, port: int) -> Connection:
        self._purge()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                return await asyncio.open_connection(host, port, limit=MAX_HEAD_BYTES)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {_describe(exc)}") from None

    def _take(self, key: tuple[str, int]) -> Connection | None:
        idle = self._idle.get(key)
        while idle:
            reader, writer = idle.pop()
            if not (reader.at_eof() or writer.is_closing()):
                return reader, writer
            writer.close()
        return None

    def _put_back(self, key: tuple[str, int], conn: Connection) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < MAX_IDLE_PER_INSTANCE:
            idle.append(conn)
        else:
            conn[1].close()

    def _purge(self) -> None:
        """Close idle connections their server has closed (instances come and go)."""
        for key in list(self._idle):
            alive = []
            for reader, writer in self._idle[key]:
                if reader.at_eof() or writer.is_closing():
                    writer.close()
                else:
                    alive.append((reader, writer))
            if alive:
                self._idle[key] = alive
            else:
                del self._idle[key]

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        self._idle.clear()
