"""JSON-RPC over HTTP/1.1 on asyncio's protocol layer, with httptools' C parser.

A connection whose first request is a ``POST`` is served here: keep-alive, pipelining (answers in
request order), ``Expect: 100-continue``, chunked bodies, the body limit (413 with a JSON body) and CORS.
A trivial POST (``eth_chainId``) costs the node ~40-60 µs of CPU this way, against ~110 µs through
aiohttp's web application.

Any other first request (a WebSocket upgrade, ``GET /metrics``, a CORS preflight) hands the connection,
with the bytes read so far, to aiohttp's protocol (``fallback``), which serves it from then on. A later
request on a POST connection that is not a POST to ``/`` gets a JSON error (405 or 404).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import httptools
import orjson

from lorachain.node.rpc.errors import INVALID_REQUEST, RpcError, error_response

POST_PREFIX = b"POST "
MAX_PIPELINED = 32  # requests queued on one connection before it stops reading
MAX_URL_BYTES = 8 * 1024
IDLE_TIMEOUT_S = 120.0  # a keep-alive connection with nothing in flight is closed after this (geth's)

# request body -> (HTTP status, JSON body, or b"" for none)
PostHandler = Callable[[bytes], Awaitable[tuple[int, bytes]]]


def error_body(message: str) -> bytes:
    """A JSON-RPC error object without an id, the body of every HTTP-level refusal."""
    return json_bytes(error_response(None, RpcError(INVALID_REQUEST, message)))


def response_bytes(status: int, body: bytes, extra_headers: str = "", close: bool = False) -> bytes:
    """One HTTP/1.1 response with a JSON body (or none)."""
    head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Length: {len(body)}\r\n"
    if body:
        head += "Content-Type: application/json\r\n"
    if close:
        head += "Connection: close\r\n"
    return (head + extra_headers + "\r\n").encode("latin-1") + body


class _Request:
    __slots__ = ("body", "keep_alive", "method", "origin", "path")

    def __init__(self, path: bytes, method: bytes, origin: str | None, body: bytes, keep_alive: bool) -> None:
        self.path, self.method, self.origin, self.body, self.keep_alive = path, method, origin, body, keep_alive


class JsonRpcHttpProtocol(asyncio.Protocol):
    """One client connection; ``handle_post`` answers a JSON-RPC body, ``cors_lines`` gives the CORS header
    lines for an Origin, ``fallback`` makes the aiohttp protocol that takes over non-POST connections."""

    def __init__(
        self,
        handle_post: PostHandler,
        cors_lines: Callable[[str | None], str],
        fallback: Callable[[], asyncio.Protocol],
        max_body: int,
        connections: set[JsonRpcHttpProtocol],
    ) -> None:
        self._handle_post = handle_post
        self._cors_lines = cors_lines
        self._fallback = fallback
        self._max_body = max_body
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._first_bytes: bytearray | None = bytearray()  # until the connection is known to be a POST one
        self._url = b""
        self._origin: str | None = None
        self._expect_continue = False
        self._body: list[bytes] = []
        self._body_size = 0
        self._queue: deque[_Request] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._paused_reading = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._closing = False
        self._too_large = False
        self.last_active = 0.0  # loop time of the last bytes received or answer sent

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._connections.add(self)
        self.last_active = asyncio.get_running_loop().time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._closing = True
        self._can_write.set()
        if self._worker is not None:
            self._worker.cancel()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def data_received(self, data: bytes) -> None:
        self.last_active = asyncio.get_running_loop().time()
        if self._first_bytes is not None:
            self._first_bytes += data
            start = bytes(self._first_bytes[: len(POST_PREFIX)])
            if not POST_PREFIX.startswith(start):
                self._hand_over()
                return
            if len(start) < len(POST_PREFIX):
                return  # too few bytes to tell yet
            data, self._first_bytes = bytes(self._first_bytes), None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are served only as a connection's first request")
        except httptools.HttpParserError:  # a callback's exception arrives wrapped in this one too
            if self._too_large:
                self._refuse(413, "content length too large")
            else:
                self._refuse(400, "malformed HTTP request")

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url, self._origin, self._expect_continue = b"", None, False
        self._body, self._body_size = [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL_BYTES:
            raise ValueError("request target too long")  # stops the parser: 400

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"origin":
            self._origin = value.decode("latin-1")
        elif lowered == b"content-length":
            if value.strip().isdigit() and int(value) > self._max_body:
                self._stop_too_large()
        elif lowered == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True

    def on_headers_complete(self) -> None:
        if self._expect_continue and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if self._body_size > self._max_body:
            self._stop_too_large()
        self._body.append(chunk)

    def _stop_too_large(self) -> None:
        self._too_large = True
        raise ValueError("body over the limit")  # stops the parser; data_received answers 413

    def on_message_complete(self) -> None:
        request = _Request(
            self._url.split(b"?", 1)[0],
            self._parser.get_method(),
            self._origin,
            b"".join(self._body),
            self._parser.should_keep_alive(),
        )
        self._body = []
        self._queue.append(request)
        if len(self._queue) >= MAX_PIPELINED and self._transport is not None and not self._paused_reading:
            self._transport.pause_reading()
            self._paused_reading = True
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._serve_queue())

    # -- serving ---------------------------------------------------------------------------------
    async def _serve_queue(self) -> None:
        try:
            while self._queue and not self._closing:
                request = self._queue.popleft()
                status, body = await self._answer(request)
                if not self._can_write.is_set():
                    await self._can_write.wait()
                if self._closing or self._transport is None:
                    return
                extra = self._cors_lines(request.origin)
                self._transport.write(response_bytes(status, body, extra, close=not request.keep_alive))
                self.last_active = asyncio.get_running_loop().time()
                if not request.keep_alive:
                    self.close()
                    return
                if self._paused_reading and len(self._queue) < MAX_PIPELINED // 2:
                    self._transport.resume_reading()
                    self._paused_reading = False
        finally:
            self._worker = None

    async def _answer(self, request: _Request) -> tuple[int, bytes]:
        if request.path != b"/":
            return 404, error_body(f"no JSON-RPC endpoint at {request.path.decode('latin-1')}")
        if request.method != b"POST":
            return 405, error_body("send JSON-RPC requests with POST")
        return await self._handle_post(request.body)

    def _refuse(self, status: int, message: str) -> None:
        """Answer an unservable request and close: what follows it on the connection cannot be framed."""
        self._queue.clear()
        if self._transport is not None and not self._closing:
            self._transport.write(response_bytes(status, error_body(message), self._cors_lines(self._origin), True))
        self.close()

    def idle_since(self, now: float) -> float:
        """Seconds without traffic, or 0 while a request is being answered."""
        return 0.0 if self._worker is not None else now - self.last_active

    def close(self) -> None:
        """Close the connection (what is queued on it is dropped)."""
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def _hand_over(self) -> None:
        """Give this connection, and what it has sent so far, to the aiohttp protocol."""
        assert self._transport is not None and self._first_bytes is not None
        buffered, self._first_bytes = bytes(self._first_bytes), None
        self._connections.discard(self)
        protocol = self._fallback()
        self._transport.set_protocol(protocol)
        protocol.connection_made(self._transport)
        protocol.data_received(buffered)


def json_bytes(value: Any) -> bytes:
    """Compact JSON of a JSON-RPC response (orjson; the standard library for what orjson refuses, such as
    integers beyond 64 bits or non-string keys)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()
