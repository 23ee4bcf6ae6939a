"""OpenAI-compatible endpoints: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``.

``model`` names the base model (its 0x hash or its served name) or a registered adapter (its 0x id), as
vLLM and LoRAX do. Sampling follows OpenAI's defaults (temperature 1, top_p 1) and is always reproducible:
the engine's 32-byte seed is ``keccak256(seed as a 32-byte signed big-endian integer)`` (``seed`` defaults
to 0), and ``temperature: 0`` is greedy. ``null`` means "the default" for every option. Streaming uses
server-sent events ending with ``data: [DONE]``. Each choice carries ``lorachain: {commitment, model_hash,
adapter_hashes, output_ids}``; a stream carries it on its last chunk.

Chat messages are rendered as ``"<Role>: <content>\\n"`` lines followed by ``"Assistant:"``; generation
also stops at a newline followed by ``User:``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import aclosing
from typing import Any

from aiohttp import web
from eth_utils import keccak

from lorachain.sidecar.types import (
    DecodingParams,
    GenerationRequest,
    GenerationResult,
    RequestError,
    SidecarError,
    UnknownModelError,
)

MAX_STOP_STRINGS = 4
MAX_PROMPTS = 64
SEED_BOUND = 1 << 255  # seeds are signed 256-bit integers
CHAT_ROLES = ("system", "user", "assistant")

log = logging.getLogger(__name__)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)


def _keys():
    from lorachain.sidecar.server import ENGINE_KEY, NAME_KEY, SCHEDULER_KEY

    return ENGINE_KEY, SCHEDULER_KEY, NAME_KEY


async def list_models(request: web.Request) -> web.Response:
    engine_key, _, name_key = _keys()
    engine = request.app[engine_key]
    created = int(time.time())
    base = "0x" + engine.model_hash.hex()
    data = [{"id": base, "object": "model", "created": created, "owned_by": "lorachain", "root": base,
             "name": request.app[name_key], "max_model_len": engine.context_length}]  # fmt: skip
    data += [{"id": a, "object": "model", "created": created, "owned_by": "lorachain", "root": base, "parent": base}
             for a in engine.store.ids()]  # fmt: skip
    return web.json_response({"object": "list", "data": data})


async def _json_body(request: web.Request) -> dict:
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("body must be a JSON object")
    return body


def _adapter_for(request: web.Request, model: Any) -> str | None:
    engine_key, _, name_key = _keys()
    engine = request.app[engine_key]
    if not isinstance(model, str) or not model:
        raise RequestError("'model' is required: the base model id or an adapter id (see /v1/models)")
    if model in ("0x" + engine.model_hash.hex(), request.app[name_key]):
        return None
    if model in engine.store:
        return model
    raise UnknownModelError(f"the model {model!r} does not exist (see /v1/models)")


def _number(body: dict, key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestError(f"'{key}' must be a number in [{low}, {high}]")
    return float(value)


def _integer(body: dict, key: str, default: int) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"'{key}' must be an integer")
    return value


def _params(request: web.Request, body: dict, stop_ids: tuple[int, ...]) -> DecodingParams:
    engine_key, _, _ = _keys()
    engine = request.app[engine_key]
    if _integer(body, "n", 1) != 1 or _integer(body, "best_of", 1) != 1:
        raise RequestError("only n=1 is supported")
    for unsupported in ("echo", "logprobs", "top_logprobs", "suffix", "tools"):
        if body.get(unsupported):
            raise RequestError(f"'{unsupported}' is not supported")
    max_tokens = _integer(body, "max_tokens", _integer(body, "max_completion_tokens", 16))
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.001, 1.0)
    seed = _integer(body, "seed", 0)
    if not -SEED_BOUND <= seed < SEED_BOUND:
        raise RequestError("'seed' must be a signed 256-bit integer")
    params = DecodingParams(
        max_new_tokens=max_tokens,
        temperature_milli=round(temperature * 1000),
        top_k=0,
        top_p_milli=max(1, round(top_p * 1000)),
        seed=keccak(seed.to_bytes(32, "big", signed=True)),
        stop_ids=stop_ids,
    )
    params.validate(engine.max_new_tokens_limit)
    return params


def _stops(request: web.Request, body: dict, extra: tuple[str, ...] = ()) -> tuple[list[str], tuple[int, ...]]:
    """Stop strings, and the token ids of those that are a single token (stopped on inside the engine)."""
    engine_key, _, _ = _keys()
    tokenizer = request.app[engine_key].tokenizer
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else (stop or [])
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOP_STRINGS:
        raise RequestError(f"'stop' must be a string or a list of up to {MAX_STOP_STRINGS} non-empty strings")
    stops = [*stops, *extra]
    ids = []
    for s in stops:
        encoded = tokenizer.encode(s, add_special_tokens=False).ids
        if len(encoded) == 1:
            ids.append(encoded[0])
    return stops, tuple(dict.fromkeys(ids))


def _cut(text: str, stops: list[str]) -> tuple[str, bool]:
    cut = min((text.find(s) for s in stops if s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _lorachain(result: GenerationResult) -> dict:
    return {
        "commitment": "0x" + result.commitment.hex(),
        "model_hash": "0x" + result.model_hash.hex(),
        "adapter_hashes": ["0x" + h.hex() for h in result.adapter_hashes],
        "output_ids": list(result.output_ids),
    }


def _usage(results: list[GenerationResult]) -> dict:
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(len(r.output_ids) for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def completions(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    adapter = _adapter_for(request, body.get("model"))
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise RequestError("'prompt' must be a non-empty string or a list of them")
    if len(prompts) > MAX_PROMPTS:
        raise RequestError(f"at most {MAX_PROMPTS} prompts per request, got {len(prompts)}")
    stops, stop_ids = _stops(request, body)
    params = _params(request, body, stop_ids)
    return await _serve(request, body, "text_completion", "cmpl", prompts, adapter, params, stops, chat=False)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    adapter = _adapter_for(request, body.get("model"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    lines = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in CHAT_ROLES or not isinstance(m.get("content"), str):
            raise RequestError(f"each message needs a role in {CHAT_ROLES} and a string content")
        lines.append(f"{m['role'].capitalize()}: {m['content']}\n")
    prompt = "".join(lines) + "Assistant:"
    stops, stop_ids = _stops(request, body, extra=("\nUser:",))
    params = _params(request, body, stop_ids)
    return await _serve(request, body, "chat.completion", "chatcmpl", [prompt], adapter, params, stops, chat=True)


async def _serve(request, body, obj, prefix, prompts, adapter, params, stops, chat: bool) -> web.StreamResponse:
    engine_key, scheduler_key, _ = _keys()
    engine, scheduler = request.app[engine_key], request.app[scheduler_key]
    generation = [GenerationRequest(tuple(engine.tokenizer.encode(p).ids), adapter, params) for p in prompts]
    for g in generation:
        engine.validate(g)  # errors answer with a 4xx before any streaming starts
    ident, created, model = f"{prefix}-{uuid.uuid4().hex}", int(time.time()), body["model"]
    if body.get("stream"):
        if len(generation) != 1:
            raise RequestError("streaming takes one prompt")
        return await _stream(request, scheduler, engine, generation[0], stops, ident, created, model, chat)
    results = await asyncio.gather(*(scheduler.submit(g) for g in generation))
    choices = []
    for index, result in enumerate(results):
        text, stopped = _cut(engine.tokenizer.decode(list(result.output_ids)), stops)
        finish = "stop" if stopped else result.finish_reason
        choice: dict[str, Any] = {"index": index, "finish_reason": finish, "lorachain": _lorachain(result)}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice.update(text=text, logprobs=None)
        choices.append(choice)
    return web.json_response({"id": ident, "object": obj, "created": created, "model": model, "choices": choices,
                              "usage": _usage(list(results))})  # fmt: skip


async def _stream(request, scheduler, engine, generation, stops, ident, created, model, chat) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    obj = "chat.completion.chunk" if chat else "text_completion"

    async def send(delta: str | None, finish: str | None, extra: dict | None = None) -> None:
        if chat:
            choice: dict[str, Any] = {"index": 0, "delta": {} if delta is None else {"content": delta}}
        else:
            choice = {"index": 0, "text": delta or "", "logprobs": None}
        choice["finish_reason"] = finish
        if extra:
            choice["lorachain"] = extra
        chunk = {"id": ident, "object": obj, "created": created, "model": model, "choices": [choice]}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    ids: list[int] = []
    sent = ""
    stopped = False
    try:
        if chat:
            first = {"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}
            head = {"id": ident, "object": obj, "created": created, "model": model, "choices": [first]}
            await response.write(f"data: {json.dumps(head)}\n\n".encode())
        async with aclosing(scheduler.stream(generation)) as items:
            async for item in items:
                if isinstance(item, GenerationResult):
                    text, _ = _cut(engine.tokenizer.decode(ids), stops)
                    if len(text) > len(sent):  # whatever was held back
                        await send(text[len(sent) :], None)
                    await send(None, "stop" if stopped else item.finish_reason, _lorachain(item))
                    break
                if stopped:
                    continue
                ids.append(item)
                text, stopped = _cut(engine.tokenizer.decode(ids), stops)
                holding = not stopped and text.endswith("\ufffd")  # a partial UTF-8 sequence
                if not holding and len(text) > len(sent):
                    await send(text[len(sent) :], None)
                    sent = text
    except SidecarError as exc:
        error = {"error": {"message": str(exc), "type": type(exc).__name__, "code": exc.code}}
        await response.write(f"data: {json.dumps(error)}\n\n".encode())
    except ConnectionResetError:
        log.info("stream %s: the client went away", ident)  # closing the stream cancels the sequence
        return response
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response
