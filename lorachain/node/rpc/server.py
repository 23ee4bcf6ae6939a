"""JSON-RPC 2.0 over HTTP and WebSocket on one port (aiohttp), with batches, CORS and limits.

Shape of errors, limits and codes follows geth: -32700 parse error, -32600 invalid request, -32601
unknown method, -32602 bad params, -32000 for failed calls, 3 for reverted calls; batches of at most
1000 calls; bodies of at most 5 MiB. ``/metrics`` serves Prometheus text and ``/health`` a JSON probe.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lorachain.node import metrics
from lorachain.node.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RpcError,
    error_response,
)
from lorachain.node.rpc.http_protocol import IDLE_TIMEOUT_S, JsonRpcHttpProtocol, error_body, json_bytes

log = logging.getLogger("lorachain.rpc")

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_BATCH = 1000

Handler = Callable[..., Any]


@dataclass
class CallContext:
    """Per-connection context: WebSocket connections can push subscription notifications."""

    send: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    subscriptions: set[str] = field(default_factory=set)
    on_close: list[Callable[[], None]] = field(default_factory=list)


class RpcDispatcher:
    """Method registry and JSON-RPC request processing, independent of transport."""

    def __init__(self) -> None:
        self.methods: dict[str, Handler] = {}
        self.context_methods: set[str] = set()
        self._arity: dict[str, tuple[int, int]] = {}
        # Labelled metric children by method (and outcome): prometheus' labels() takes a lock per lookup.
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}
        # Every call waits while this is clear: the node clears it while it seals a block whose senders it
        # has already answered (Node.committed), so no call reads the chain without that block.
        self.barrier: asyncio.Event | None = None

    def register(self, name: str, handler: Handler, wants_context: bool = False) -> None:
        self.methods[name] = handler
        if wants_context:
            self.context_methods.add(name)
        positional = [
            p
            for p in inspect.signature(handler).parameters.values()
            if p.name != "ctx" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        required = sum(1 for p in positional if p.default is inspect.Parameter.empty)
        self._arity[name] = (len(positional), required)

    def register_object(self, api: Any) -> None:
        """Register every method of ``api`` named like ``eth_blockNumber`` (prefix_camelCase)."""
        for name, member in inspect.getmembers(api, callable):
            if "_" in name and not name.startswith("_") and name.split("_", 1)[0] in api.namespaces:
                params = inspect.signature(member).parameters
                self.register(name, member, wants_context="ctx" in params)

    async def handle_payload(self, payload: Any, ctx: CallContext) -> Any:
        if isinstance(payload, list):
            if not payload:
                return error_response(None, RpcError(INVALID_REQUEST, "empty batch"))
            if len(payload) > MAX_BATCH:
                return error_response(None, RpcError(INVALID_REQUEST, "batch too large"))
            responses = [await self.handle_call(item, ctx) for item in payload]
            return [r for r in responses if r is not None]
        return await self.handle_call(payload, ctx)

    async def handle_call(self, call: Any, ctx: CallContext) -> dict[str, Any] | None:
        barrier = self.barrier
        if barrier is not None and not barrier.is_set():
            await barrier.wait()
        if not isinstance(call, dict):
            return error_response(None, RpcError(INVALID_REQUEST, "invalid request"))
        call_id = call.get("id")
        is_notification = "id" not in call
        method = call.get("method")
        if call.get("jsonrpc") != "2.0" or not isinstance(method, str):
            return error_response(call_id, RpcError(INVALID_REQUEST, "invalid request"))
        params = call.get("params", [])
        if params is None:
            params = []
        if not isinstance(params, list):
            return error_response(call_id, RpcError(-32602, "non-array args"))
        handler = self.methods.get(method)
        if handler is None:
            self._count("unknown", "error")
            err = RpcError(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")
            return None if is_notification else error_response(call_id, err)
        started = time.perf_counter()
        try:
            result = self._invoke(handler, method, params, ctx)
            if inspect.isawaitable(result):
                result = await result
        except RpcError as err:
            self._count(method, "error")
            return None if is_notification else error_response(call_id, err)
        except Exception:
            log.exception("internal error in %s", method)
            self._count(method, "error")
            err = RpcError(INTERNAL_ERROR, "internal error")
            return None if is_notification else error_response(call_id, err)
        finally:
            self._latency(method).observe(time.perf_counter() - started)
        self._count(method, "ok")
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": call_id, "result": result}

    def _count(self, method: str, outcome: str) -> None:
        counter = self._counters.get((method, outcome))
        if counter is None:
            counter = self._counters[method, outcome] = metrics.RPC_REQUESTS.labels(method, outcome)
        counter.inc()

    def _latency(self, method: str) -> Any:
        histogram = self._histograms.get(method)
        if histogram is None:
            histogram = self._histograms[method] = metrics.RPC_LATENCY.labels(method)
        return histogram

    def _invoke(self, handler: Handler, method: str, params: list[Any], ctx: CallContext) -> Any:
        most, required = self._arity[method]
        if len(params) > most:
            raise RpcError(-32602, f"too many arguments, want at most {most}")
        if len(params) < required:
            raise RpcError(-32602, f"missing value for required argument {len(params)}")
        kwargs = {"ctx": ctx} if method in self.context_methods else {}
        return handler(*params, **kwargs)


class RpcServer:
    """The HTTP/WS front of a :class:`RpcDispatcher`."""

    def __init__(
        self,
        dispatcher: RpcDispatcher,
        cors_origins: str = "*",
        health: Callable[[], Any] = dict,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.dispatcher = dispatcher
        self.cors_origins = cors_origins
        self.health = health
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_route("OPTIONS", "/{tail:.*}", self._preflight)
        self.app.router.add_get("/", self._websocket)
        self.app.router.add_get("/ws", self._websocket)
        self.app.router.add_post("/", self._http)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._idle_sweeper: asyncio.Task[None] | None = None
        self.idle_timeout_s = idle_timeout_s
        self._connections: set[JsonRpcHttpProtocol] = set()
        self._sockets: set[web.WebSocketResponse] = set()
        self.port: int | None = None

    def _cors(self, response: web.StreamResponse, request: web.Request) -> web.StreamResponse:
        response.headers.update(self.cors_headers(request.headers.get("Origin")))
        return response

    async def _preflight(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "POST, GET, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Content-Type"
        )
        response.headers["Access-Control-Max-Age"] = "600"
        return self._cors(response, request)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        body = generate_latest(metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.health())

    async def _http(self, request: web.Request) -> web.StreamResponse:
        """A POST on a connection aiohttp serves (one that began with another request)."""
        too_large = request.content_length is not None and request.content_length > MAX_BODY_BYTES
        if not too_large:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                too_large = True
        if too_large:
            status, payload = 413, error_body("content length too large")
        else:
            status, payload = await self.answer_post(body)
        return self._cors(web.Response(status=status, body=payload, content_type="application/json"), request)

    async def answer_post(self, body: bytes) -> tuple[int, bytes]:
        """(HTTP status, response body) for a JSON-RPC POST body, whichever transport carried it."""
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return 200, json_bytes(error_response(None, RpcError(PARSE_ERROR, "parse error")))
        result = await self.dispatcher.handle_payload(payload, CallContext())
        if result is None or result == []:
            return 200, b""
        return 200, json_bytes(result)

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        """The CORS response headers for a request from ``origin`` (none for a disallowed one)."""
        if origin and (self.cors_origins == "*" or origin in self.cors_origins.split(",")):
            return {"Access-Control-Allow-Origin": "*" if self.cors_origins == "*" else origin, "Vary": "Origin"}
        return {}

    def cors_header_lines(self, origin: str | None) -> str:
        """:meth:`cors_headers` as raw HTTP header lines, for the lean transport."""
        return "".join(f"{name}: {value}\r\n" for name, value in self.cors_headers(origin).items())

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_BODY_BYTES, heartbeat=30)
        if not ws.can_prepare(request).ok:
            return web.json_response(
                error_response(None, RpcError(INVALID_REQUEST, "send JSON-RPC requests with POST")), status=405
            )
        await ws.prepare(request)
        self._sockets.add(ws)
        metrics.WS_CONNECTIONS.inc()
        send_lock = asyncio.Lock()

        async def send(message: dict[str, Any]) -> None:
            if ws.closed:
                return
            async with send_lock:
                await ws.send_str(json.dumps(message))

        ctx = CallContext(send=send)
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    payload = json.loads(msg.data)
                except (ValueError, UnicodeDecodeError):
                    await send(error_response(None, RpcError(PARSE_ERROR, "parse error")))
                    continue
                result = await self.dispatcher.handle_payload(payload, ctx)
                if result is not None and result != []:
                    await send(result)
        finally:
            for callback in ctx.on_close:
                callback()
            self._sockets.discard(ws)
            metrics.WS_CONNECTIONS.dec()
        return ws

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port``: POST connections on the lean protocol, the rest through aiohttp."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        aiohttp_protocol = self._runner.server
        assert aiohttp_protocol is not None

        def protocol() -> JsonRpcHttpProtocol:
            return JsonRpcHttpProtocol(
                self.answer_post, self.cors_header_lines, aiohttp_protocol, MAX_BODY_BYTES, self._connections
            )

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol, host, port, reuse_address=True)
        self._idle_sweeper = loop.create_task(self._close_idle_connections())
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _close_idle_connections(self) -> None:
        """Close keep-alive connections left idle past ``idle_timeout_s`` (checked 8 times per timeout)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.idle_timeout_s / 8)
            now = loop.time()
            for connection in [c for c in self._connections if c.idle_since(now) > self.idle_timeout_s]:
                connection.close()

    async def stop(self) -> None:
        if self._idle_sweeper is not None:
            self._idle_sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.close()
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
