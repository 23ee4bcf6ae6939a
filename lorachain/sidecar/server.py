"""The sidecar's HTTP server: msgpack endpoints for the node, OpenAI-compatible JSON for people.

    POST /v1/lorachain/generate          msgpack request -> result          (see lorachain.sidecar.wire)
    POST /v1/lorachain/generate_batch    {requests: [...]} -> {results: [...]}
    POST /v1/lorachain/activations       generate request -> {result, hashes, root}: per-step, per-layer digests
    POST /v1/lorachain/adapters/load     {path} -> adapter info
    POST /v1/lorachain/adapters/unload   {adapter_id} -> {unloaded: id}
    POST /v1/lorachain/adapters/merge    {adapter_ids, weights_milli} -> adapter info
    GET  /v1/lorachain/model             model facts
    GET  /v1/lorachain/tokenizer         {tokenizer: tokenizer.json text, model_hash}
    GET  /v1/lorachain/artifacts/0x<hash>.safetensors   an adapter's artifact bytes (content-addressed)
    PUT  /v1/lorachain/artifacts/0x<hash>.safetensors   register artifact bytes (must hash to <hash>)
    GET  /v1/lorachain/adapters/{id}     adapter info
    PUT  /v1/lorachain/records/0x<hash>  store a training record (checked; must hash to <hash>) -> summary
    GET  /v1/lorachain/records/0x<hash>  a training record's summary (404 unknown_record if absent)
    GET  /v1/lorachain/artifacts/0x<hash>.record   a training record's bytes (content-addressed)
    POST /v1/lorachain/attribute         {record, adapter_id, prompt_ids, output_ids, method, top_k, snapshots}
                                         -> {method, contributions: [[datanet_id, index, weight]]}
    GET  /v1/models, POST /v1/completions, POST /v1/chat/completions   (lorachain.sidecar.openai_api)
    GET  /health, GET /metrics

Every client mistake is a 4xx with an error body (msgpack on msgpack routes, JSON elsewhere) and the
server keeps serving; anything unexpected is logged and answered with a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lorachain.attribution.service import Attributor
from lorachain.sidecar import wire
from lorachain.sidecar.exact_engine import ExactEngine
from lorachain.sidecar.scheduler import Scheduler
from lorachain.sidecar.types import GenerationRequest, GenerationResult, RequestError, SidecarError

log = logging.getLogger(__name__)

MSGPACK = "application/msgpack"
MAX_BODY = 8 << 20
MAX_ARTIFACT = 1 << 30  # an adapter artifact uploaded with PUT /v1/lorachain/artifacts/...
ENGINE_KEY = web.AppKey("engine", ExactEngine)
SCHEDULER_KEY = web.AppKey("scheduler", Scheduler)
NAME_KEY = web.AppKey("model_name", str)
ATTRIBUTOR_KEY = web.AppKey("attributor", Attributor)
MAX_RECORD = 1 << 30


def msgpack_response(obj, status: int = 200) -> web.Response:
    return web.Response(body=wire.pack(obj), status=status, content_type=MSGPACK)


def json_error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "code": code}}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Map every failure to a status and an error body in the route's format."""
    is_msgpack = request.path.startswith("/v1/lorachain/")
    try:
        return await handler(request)
    except SidecarError as exc:
        if is_msgpack:
            return msgpack_response(wire.encode_error(exc), exc.status)
        return json_error(exc.status, str(exc), exc.code, type(exc).__name__)
    except web.HTTPRequestEntityTooLarge:
        message = f"request body exceeds {MAX_BODY} bytes"
        if is_msgpack:
            return msgpack_response(wire.encode_error(RequestError(message)), 413)
        return json_error(413, message, "body_too_large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if is_msgpack:
            return msgpack_response(wire.encode_error(RequestError(exc.reason)), exc.status)
        return json_error(exc.status, exc.reason, "not_found" if exc.status == 404 else "http_error")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        if is_msgpack:
            return msgpack_response(wire.encode_error(Exception()), 500)
        return json_error(500, "internal error", "internal_error", "server_error")


async def _msgpack_body(request: web.Request):
    return wire.unpack(await request.read())


async def generate(request: web.Request) -> web.Response:
    req = wire.decode_request(await _msgpack_body(request))
    result = await request.app[SCHEDULER_KEY].submit(req)
    return msgpack_response(wire.encode_result(result))


async def generate_batch(request: web.Request) -> web.Response:
    entries = wire.decode_batch(await _msgpack_body(request))
    scheduler = request.app[SCHEDULER_KEY]

    async def one(entry: GenerationRequest | SidecarError) -> GenerationResult | SidecarError:
        if isinstance(entry, SidecarError):
            return entry
        try:
            return await scheduler.submit(entry)
        except SidecarError as exc:
            return exc

    return msgpack_response(wire.encode_batch_results(await asyncio.gather(*(one(e) for e in entries))))


async def activations(request: web.Request) -> web.Response:
    """The request generated alone with its activation digests (a dispute's tool: the batcher waits meanwhile)."""
    req = wire.decode_request(await _msgpack_body(request))
    engine, scheduler = request.app[ENGINE_KEY], request.app[SCHEDULER_KEY]
    trace = await asyncio.to_thread(scheduler.run_exclusive, lambda: engine.activations(req))
    return msgpack_response(wire.encode_activations(trace))


async def load_adapter(request: web.Request) -> web.Response:
    path = wire.decode_load(await _msgpack_body(request))
    store = request.app[ENGINE_KEY].store
    info = await asyncio.to_thread(store.register, Path(path))
    return msgpack_response(info.to_dict())


async def unload_adapter(request: web.Request) -> web.Response:
    adapter_id = wire.decode_unload(await _msgpack_body(request))
    request.app[ENGINE_KEY].store.unload(adapter_id)
    return msgpack_response({"unloaded": adapter_id})


async def merge_adapters(request: web.Request) -> web.Response:
    ids, weights = wire.decode_merge(await _msgpack_body(request))
    info = await asyncio.to_thread(request.app[ENGINE_KEY].store.merge, ids, weights)
    return msgpack_response(info.to_dict())


async def model_info(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    return msgpack_response({**engine.info(), "name": request.app[NAME_KEY], "adapters": engine.store.stats()})


async def tokenizer(request: web.Request) -> web.Response:
    """The model's tokenizer.json (part of the hashed artifact), for clients that tokenize themselves."""
    engine = request.app[ENGINE_KEY]
    return msgpack_response({"tokenizer": engine.model.tokenizer_json, "model_hash": engine.model_hash})


async def get_artifact(request: web.Request) -> web.Response:
    """An adapter's artifact bytes by content hash: a sidecar is a content-addressed source for others."""
    name = request.match_info["name"]
    if name.endswith(".record"):
        blob = await asyncio.to_thread(request.app[ATTRIBUTOR_KEY].blob, name.removesuffix(".record"))
        return web.Response(body=blob, content_type="application/octet-stream")
    if not name.endswith(".safetensors"):
        raise RequestError("artifact names are 0x<hash>.safetensors or 0x<hash>.record")
    blob = await asyncio.to_thread(request.app[ENGINE_KEY].store.artifact, name.removesuffix(".safetensors"))
    return web.Response(body=blob, content_type="application/octet-stream")


async def put_artifact(request: web.Request) -> web.Response:
    """Register artifact bytes under their content hash (rejected unless they hash to it)."""
    adapter_id = request.match_info["name"].removesuffix(".safetensors")
    blob = await _read_streamed(request, MAX_ARTIFACT)
    info = await asyncio.to_thread(request.app[ENGINE_KEY].store.import_artifact, blob, adapter_id)
    return msgpack_response(info.to_dict())


async def adapter_info(request: web.Request) -> web.Response:
    info = await asyncio.to_thread(request.app[ENGINE_KEY].store.info, request.match_info["adapter_id"])
    return msgpack_response(info.to_dict())


async def put_record(request: web.Request) -> web.Response:
    """Keep a training record under its content hash (checked on the way in)."""
    blob = await _read_streamed(request, MAX_RECORD)
    info = await asyncio.to_thread(request.app[ATTRIBUTOR_KEY].put, blob, request.match_info["record_id"])
    return msgpack_response(info)


async def record_info(request: web.Request) -> web.Response:
    return msgpack_response(await asyncio.to_thread(request.app[ATTRIBUTOR_KEY].info, request.match_info["record_id"]))


async def attribute(request: web.Request) -> web.Response:
    query = wire.decode_attribute(await _msgpack_body(request))
    attributor = request.app[ATTRIBUTOR_KEY]
    method, rows = await asyncio.to_thread(
        attributor.attribute, query.record, query.adapter_id, query.prompt_ids, query.output_ids, query.method,
        query.top_k, query.snapshots,
    )  # fmt: skip
    return msgpack_response(wire.encode_attribution(int(method), rows))


async def _read_streamed(request: web.Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 20):  # streamed: may exceed MAX_BODY
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    return web.json_response({"status": "ok", "model_hash": "0x" + engine.model_hash.hex()})


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[SCHEDULER_KEY].metrics.registry
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(engine: ExactEngine, scheduler: Scheduler, model_name: str) -> web.Application:
    from lorachain.sidecar import openai_api

    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors_middleware])
    app[ENGINE_KEY], app[SCHEDULER_KEY], app[NAME_KEY] = engine, scheduler, model_name
    app[ATTRIBUTOR_KEY] = Attributor(engine, engine.store.directory / "records", scheduler.run_exclusive)
    app.router.add_post("/v1/lorachain/generate", generate)
    app.router.add_post("/v1/lorachain/generate_batch", generate_batch)
    app.router.add_post("/v1/lorachain/activations", activations)
    app.router.add_post("/v1/lorachain/adapters/load", load_adapter)
    app.router.add_post("/v1/lorachain/adapters/unload", unload_adapter)
    app.router.add_post("/v1/lorachain/adapters/merge", merge_adapters)
    app.router.add_get("/v1/lorachain/model", model_info)
    app.router.add_get("/v1/lorachain/tokenizer", tokenizer)
    app.router.add_get("/v1/lorachain/artifacts/{name}", get_artifact)
    app.router.add_put("/v1/lorachain/artifacts/{name}", put_artifact)
    app.router.add_get("/v1/lorachain/adapters/{adapter_id}", adapter_info)
    app.router.add_put("/v1/lorachain/records/{record_id}", put_record)
    app.router.add_get("/v1/lorachain/records/{record_id}", record_info)
    app.router.add_post("/v1/lorachain/attribute", attribute)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    openai_api.add_routes(app)
    return app


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8600,
    adapters: str | None = None,
    device: str = "cpu",
    max_batch: int = 64,
    cache: str | None = None,
    model_name: str | None = None,
) -> int:
    """Load the model, then serve until interrupted (the ``lorachain sidecar`` command)."""
    from lorachain.sidecar.artifact import DEFAULT_CACHE
    from lorachain.sidecar.exact_engine import load_engine

    engine = load_engine(model, adapters_dir=adapters, device=device, cache=Path(cache) if cache else DEFAULT_CACHE)
    if adapters:
        log.info("adapter store %s: %d adapters registered", adapters, engine.store.stats()["registered"])
    scheduler = Scheduler(engine, max_batch=max_batch)
    name = model_name or Path(model).name
    app = build_app(engine, scheduler, name)
    log.info("sidecar serving model %s (0x%s) on http://%s:%d (ops %s, gemm %s)", name, engine.model_hash.hex(),
             host, port, engine.ops.name, engine.mm.dtype)  # fmt: skip
    print(json.dumps({"event": "listening", "host": host, "port": port, "model_hash": "0x" + engine.model_hash.hex()}),
          flush=True)  # fmt: skip
    try:
        web.run_app(app, host=host, port=port, print=None, access_log=None, handle_signals=True)
    finally:
        scheduler.close()
    return 0
