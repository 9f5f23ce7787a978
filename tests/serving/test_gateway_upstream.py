"""The gateway's HTTP/1.1 client for its instances, against scripted servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from scalezero.serving.upstream import UpstreamClient, UpstreamError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


def run_with_server(handler: Handler, scenario: Callable[[int], Awaitable[None]]) -> int:
    """Serve ``handler`` on a loopback port while ``scenario(port)`` runs; count connections."""
    connections = 0

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(counted, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            await scenario(port)

    asyncio.run(main())
    return connections


def test_chunked_and_sized_answers_on_one_kept_alive_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await _read_request(reader)
            if body == b"stream":
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                for piece in (b"data: a\n\n", b"data: bb\n\n"):
                    writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\noops!")
            await writer.drain()

    async def scenario(port: int) -> None:
        client = UpstreamClient()
        answer = await client.post("127.0.0.1", port, "/x", b"stream")
        assert answer.status_code == 200
        # Chunks that arrive together may come as one piece; the bytes are what counts.
        body = b"".join([piece async for piece in answer.aiter_bytes()])
        assert body == b"data: a\n\ndata: bb\n\n"
        await answer.aclose()
        answer = await client.post("127.0.0.1", port, "/x", b"other")
        assert answer.status_code == 400 and await answer.aread() == b"oops!"
        await answer.aclose()
        await client.aclose()

    assert run_with_server(handler, scenario) == 1


def test_connection_closed_by_server_while_idle_is_retried_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        # and then closes, as a server's keep-alive timeout would, unannounced

    async def scenario(port: int) -> None:
        client = UpstreamClient()
        for _ in range(3):
            answer = await client.post("127.0.0.1", port, "/x", b"{}")
            assert await answer.aread() == b"ok"
            await answer.aclose()
        await client.aclose()

    assert run_with_server(handler, scenario) == 3


def test_silent_instance_times_out() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(10)

    async def scenario(port: int) -> None:
        client = UpstreamClient(read_timeout_s=0.3)
        answer = await client.post("127.0.0.1", port, "/x", b"{}")
        pieces = []
        with pytest.raises(UpstreamError, match=r"no data for 0\.3 s"):
            async for piece in answer.aiter_bytes():
                pieces.append(piece)
        assert pieces == [b"abc"]
        await answer.aclose()
        await client.aclose()

    run_with_server(handler, scenario)


def test_instance_dying_mid_answer_and_refusing_connections() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()

    async def scenario(port: int) -> None:
        client = UpstreamClient()
        answer = await client.post("127.0.0.1", port, "/x", b"{}")
        with pytest.raises(UpstreamError, match="broken off"):
            await answer.aread()
        await answer.aclose()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed_port = sock.getsockname()[1]
        with pytest.raises(UpstreamError, match="cannot connect"):
            await client.post("127.0.0.1", closed_port, "/x", b"{}")
        await client.aclose()

    run_with_server(handler, scenario)


def _chunked_answer_in_pieces(parts: list[bytes]) -> Handler:
    """A handler that sends a chunked answer in the given pieces, one write each."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.01)  # a separate read on the other side

    return handler


@pytest.mark.parametrize("cut", [1, 2, 4, 7])
def test_chunks_split_anywhere_across_reads_come_out_whole(cut: int) -> None:
    # Size lines, data and CRLFs cut at every position, extensions and trailers included.
    wire = b"9;ext=1\r\ndata: a\n\n\r\nA\r\ndata: bb\n\n\r\n0\r\nx-trailer: 1\r\n\r\n"
    parts = [wire[index:index + cut] for index in range(0, len(wire), cut)]

    async def scenario(port: int) -> None:
        client = UpstreamClient()
        for _ in range(2):  # the connection is reused after a whole answer
            answer = await client.post("127.0.0.1", port, "/x", b"{}")
            assert b"".join([p async for p in answer.aiter_bytes()]) == b"data: a\n\ndata: bb\n\n"
            await answer.aclose()
        await client.aclose()

    assert run_with_server(_chunked_answer_in_pieces(parts), scenario) == 1


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"zz\r\nabc\r\n0\r\n\r\n", "broken off: ValueError"),
        (b"3\r\nabcXY0\r\n\r\n", "broken off: ValueError: chunk data not followed by CRLF"),
        (b"3\r\nabc\r\n", "connection closed before the answer's last chunk"),
    ],
)
def test_broken_chunked_framing_is_an_upstream_error(wire: bytes, message: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + wire)
        await writer.drain()

    async def scenario(port: int) -> None:
        client = UpstreamClient()
        answer = await client.post("127.0.0.1", port, "/x", b"{}")
        with pytest.raises(UpstreamError, match=message):
            await answer.aread()
        await answer.aclose()
        await client.aclose()

    run_with_server(handler, scenario)


def test_bytes_after_the_last_chunk_make_the_connection_unreusable() -> None:
    async def scenario(port: int) -> None:
        client = UpstreamClient()
        for _ in range(2):
            answer = await client.post("127.0.0.1", port, "/x", b"{}")
            assert await answer.aread() == b"abc"
            await answer.aclose()
        await client.aclose()

    handler = _chunked_answer_in_pieces([b"3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n"])
    assert run_with_server(handler, scenario) == 2
