"""The JSON-RPC HTTP/1.1 transport (lorachain/node/rpc/http_protocol.py) over real sockets, byte by byte.

Each test starts an RpcServer with a small dispatcher on a free port and speaks raw HTTP to it, so
framing (keep-alive, pipelining, chunked bodies, 100-continue, limits) is checked as a client sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import websockets

from lorachain.node.rpc.http_protocol import json_bytes
from lorachain.node.rpc.server import MAX_BODY_BYTES, RpcDispatcher, RpcServer


def make_dispatcher() -> RpcDispatcher:
    dispatcher = RpcDispatcher()
    dispatcher.register("test_echo", lambda value: value)

    async def slow(delay: float, value: Any) -> Any:
        await asyncio.sleep(delay)
        return value

    dispatcher.register("test_slow", slow)
    return dispatcher


def with_server(
    test: Callable[[RpcServer, int], Awaitable[None]], cors: str = "*", idle_timeout_s: float = 120.0
) -> None:
    async def main() -> None:
        server = RpcServer(
            make_dispatcher(), cors_origins=cors, health=lambda: {"ok": True}, idle_timeout_s=idle_timeout_s
        )
        port = await server.start("127.0.0.1", 0)
        try:
            await asyncio.wait_for(test(server, port), timeout=20)
        finally:
            await server.stop()

    asyncio.run(main())


def rpc_body(method: str, *params: Any, call_id: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": call_id, "method": method, "params": list(params)}).encode()


def post(body: bytes, extra: str = "") -> bytes:
    head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, value = line.decode().rstrip("\r\n").split(": ", 1)
        headers[name.lower()] = value
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


def test_keep_alive_answers_several_requests_on_one_connection() -> None:
    async def test(_server: RpcServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(3):
            writer.write(post(rpc_body("test_echo", i, call_id=i)))
            status, headers, body = await read_response(reader)
            assert status == 200 and headers["content-type"] == "application/json"
            assert json.loads(body) == {"jsonrpc": "2.0", "id": i, "result": i}
        writer.close()

    with_server(test)


def test_pipelined_requests_are_answered_in_order_even_when_the_first_is_slow() -> None:
    async def test(_server: RpcServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            post(rpc_body("test_slow", 0.2, "first", call_id=1)) + post(rpc_body("test_echo", "second", call_id=2))
        )
        first = json.loads((await read_response(reader))[2])
        second = json.loads((await read_response(reader))[2])
        assert (first["id"], first["result"]) == (1, "first")
        assert (second["id"], second["result"]) == (2, "second")
        writer.close()

    with_server(test)


def test_expect_100_continue_and_chunked_body() -> None:
    async def test(_server: RpcServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = rpc_body("test_echo", "chunked")
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert await reader.readline() == b"\r\n"
        half = len(body) // 2
        for part in (body[:half], body[half:]):
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        writer.write(b"0\r\n\r\n")
        status, _, reply = await read_response(reader)
        assert status == 200 and json.loads(reply)["result"] == "chunked"
        writer.close()

    with_server(test)


@pytest.mark.parametrize("chunked", [False, True])
def test_body_over_the_limit_is_413_with_json_and_closes(chunked: bool) -> None:
    async def test(_server: RpcServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if chunked:
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"a" * (1024 * 1024)
            for _ in range(MAX_BODY_BYTES // len(chunk) + 1):
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        else:
            writer.write(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode())
        status, headers, body = await read_response(reader)
        assert status == 413 and headers["connection"] == "close"
        assert json.loads(body)["error"] == {"code": -32600, "message": "content length too large"}
        with contextlib.suppress(ConnectionResetError):  # closed with body unread: the kernel may reset
            assert await reader.read() == b""
        writer.close()

    with_server(test)


def test_malformed_http_is_400_with_json() -> None:
    async def test(_server: RpcServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status == 400 and json.loads(body)["error"]["message"] == "malformed HTTP request"
        writer.close()

    with_server(test)


def test_connection_close_and_http_1_0_close_after_the_answer() -> None:
    async def test(_server: RpcServer, port: int) -> None:
        for request in (
            post(rpc_body("test_echo", 1), "Connection: close\r\n"),
            post(rpc_body("test_echo", 1)).replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            status, headers, body = await read_response(reader)
            assert status == 200 and headers["connection"] == "close" and json.loads(body)["result"] == 1
            assert await reader.read() == b""
            writer.close()

    with_server(test)


def test_notification_gets_an_empty_200_and_parse_error_a_json_rpc_error() -> None:
    async def test(_server: RpcServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(b'{"jsonrpc": "2.0", "method": "test_echo", "params": [1]}'))
        status, headers, body = await read_response(reader)
        assert (status, body) == (200, b"") and headers["content-length"] == "0"
        writer.write(post(b"{not json"))
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["error"]["code"] == -32700
        writer.close()

    with_server(test)


def test_cors_headers_only_for_allowed_origins() -> None:
    async def test(_server: RpcServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(rpc_body("test_echo", 1), "Origin: https://dapp.example\r\n"))
        _, headers, _ = await read_response(reader)
        assert headers["access-control-allow-origin"] == "https://dapp.example" and headers["vary"] == "Origin"
        writer.write(post(rpc_body("test_echo", 1), "Origin: https://evil.example\r\n"))
        _, headers, _ = await read_response(reader)
        assert "access-control-allow-origin" not in headers
        writer.close()

    with_server(test, cors="https://dapp.example")


def test_other_requests_on_a_post_connection_get_json_errors() -> None:
    async def test(_server: RpcServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(rpc_body("test_echo", 1)))
        assert (await read_response(reader))[0] == 200
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status == 405 and json.loads(body)["error"]["code"] == -32600
        writer.write(post(rpc_body("test_echo", 1)).replace(b"POST / ", b"POST /elsewhere ", 1))
        status, _, body = await read_response(reader)
        assert status == 404 and "/elsewhere" in json.loads(body)["error"]["message"]
        writer.write(post(rpc_body("test_echo", 2)))  # the connection still serves
        assert json.loads((await read_response(reader))[2])["result"] == 2
        writer.close()

    with_server(test)


def test_a_connection_that_starts_otherwise_is_served_by_aiohttp() -> None:
    async def test(_server: RpcServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for piece in (b"GE", b"T /health HTTP/1.1\r\nHost: x\r\n\r\n"):  # split inside the method name
            writer.write(piece)
            await asyncio.sleep(0.05)
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body) == {"ok": True}
        writer.write(post(rpc_body("test_echo", 3)))  # and aiohttp keeps serving the connection, POSTs too
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["result"] == 3
        writer.close()
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send(rpc_body("test_echo", "ws").decode())
            assert json.loads(await ws.recv())["result"] == "ws"

    with_server(test)


def test_json_bytes_matches_the_standard_library_and_takes_what_orjson_refuses() -> None:
    for value in ({"jsonrpc": "2.0", "id": 1, "result": ["0x1", None, True, {"a": "é"}]}, [1.5, -3, "x"]):
        assert json.loads(json_bytes(value)) == value
    assert json.loads(json_bytes({"big": 2**80, 5: "int key"})) == {"big": 2**80, "5": "int key"}


def test_idle_keep_alive_connections_are_closed_but_busy_ones_are_not() -> None:
    async def test(_server: RpcServer, port: int) -> None:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
        idle_writer.write(post(rpc_body("test_echo", 1)))
        await read_response(idle_reader)
        busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", port)
        busy_writer.write(post(rpc_body("test_slow", 0.6, "done")))  # in flight longer than the timeout
        assert await asyncio.wait_for(idle_reader.read(), timeout=2) == b""  # closed by the server
        status, _, body = await read_response(busy_reader)
        assert status == 200 and json.loads(body)["result"] == "done"
        idle_writer.close()
        busy_writer.close()

    with_server(test, idle_timeout_s=0.3)


def test_overlong_request_target_is_400() -> None:
    async def test(_server: RpcServer, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post(rpc_body("test_echo", 1)).replace(b"POST / ", b"POST /" + b"a" * 10_000 + b" ", 1))
        status, _, body = await read_response(reader)
        assert status == 400 and json.loads(body)["error"]["code"] == -32600
        writer.close()

    with_server(test)
