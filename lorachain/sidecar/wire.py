"""The node <-> sidecar wire format: msgpack maps for requests, results, adapter commands and errors.

This module is the format's only definition (the node's client in ``precompiles/`` uses it too). Every
decoder checks types, ranges and sizes and raises :class:`RequestError` with a message that names the
field, so a malformed body is answered with a 400 and never reaches the engine.

  generate request  {prompt_ids: [int], adapter_id: str|nil, max_new_tokens, temperature_milli, top_k,
                     top_p_milli: int, seed: bin(32), stop_ids: [int]}   (all but prompt_ids optional)
  generate result   {output_ids: [int], finish_reason: str, commitment: bin(32), model_hash: bin(32),
                     adapter_hashes: [bin(32)], prompt_tokens: int}
  batch             {requests: [request]} -> {results: [result | {error: error}]}
  adapter load      {path: str} -> {id, rank, alpha, target_modules, nbytes}
  adapter unload    {adapter_id: str} -> {unloaded: str}
  adapter merge     {adapter_ids: [str], weights_milli: [int]} -> {id, rank, alpha, target_modules, nbytes}
  attribute request {record: bin(32), adapter_id: str, prompt_ids: [int], output_ids: [int], method: int,
                     top_k: int, snapshots: [[datanet_id: int, root: bin(32)]]}
  attribute result  {method: int, contributions: [[datanet_id, index, weight: int, content_hash: bin(32)]]}
  activations       generate request -> {result: generate result, hashes: [[bin(32)]], root: bin(32)}
  error             {error: {message: str, type: str, code: str}}

Each message has an ``encode_*`` (the sender's side) and a ``decode_*`` (the receiver's side).

Activation hashes (``POST /v1/lorachain/activations``): ``hashes[s][c]`` is the digest of the integer hidden
state at generation step ``s`` (step 0 runs the prompt, step ``s`` the token chosen at step ``s - 1``; one step
per output token) and column ``c``: 0 the embedding output, ``i + 1`` the residual stream after transformer
layer ``i``, the last the logits the token is chosen from (final norm and LM head). A digest is
blake2b-256 over ``rows`` and ``cols`` (u32 little-endian) then the values as int64 little-endian, row-major.
``root`` (:func:`activation_root`) is blake2b-256 over the step roots, each blake2b-256 over that step's row
of digests: two parties compare the roots, then bisect (:func:`first_divergence`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from lorachain.sidecar.types import (
    MAX_STOP_IDS,
    CheckpointError,
    CorruptArtifactError,
    DecodingParams,
    GenerationRequest,
    GenerationResult,
    IncompatibleAdapterError,
    RequestError,
    SidecarError,
    UnknownAdapterError,
    UnknownModelError,
    UnknownRecordError,
)

MAX_PROMPT_IDS = 1 << 16
MAX_BATCH = 256
MAX_MERGE = 16
MAX_PATH = 4096
FINISH_REASONS = ("stop", "length")
_ERROR_CLASSES = {
    cls.code: cls
    for cls in (
        RequestError,
        CheckpointError,
        UnknownAdapterError,
        UnknownModelError,
        UnknownRecordError,
        IncompatibleAdapterError,
        CorruptArtifactError,
    )
}
_PARAM_FIELDS = ("max_new_tokens", "temperature_milli", "top_k", "top_p_milli")
_REQUEST_FIELDS = {"prompt_ids", "adapter_id", "seed", "stop_ids", *_PARAM_FIELDS}


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(body: bytes) -> Any:
    """Decode a msgpack body; :class:`RequestError` if it is not valid msgpack."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types for malformed input
        raise RequestError(f"body is not valid msgpack: {exc}") from None


def encode_request(request: GenerationRequest) -> dict:
    p = request.params
    return {
        "prompt_ids": list(request.prompt_ids),
        "adapter_id": request.adapter_id,
        "max_new_tokens": p.max_new_tokens,
        "temperature_milli": p.temperature_milli,
        "top_k": p.top_k,
        "top_p_milli": p.top_p_milli,
        "seed": p.seed,
        "stop_ids": list(p.stop_ids),
    }


def decode_request(obj: Any) -> GenerationRequest:
    """A validated :class:`GenerationRequest` from a decoded map (engine limits are checked by the engine)."""
    if not isinstance(obj, dict):
        raise RequestError("a generate request must be a map")
    unknown = set(obj) - _REQUEST_FIELDS
    if unknown:
        raise RequestError(f"unknown request fields: {', '.join(sorted(map(str, unknown)))}")
    prompt = _int_list(obj.get("prompt_ids"), "prompt_ids", MAX_PROMPT_IDS)
    adapter_id = obj.get("adapter_id")
    if adapter_id is not None and not isinstance(adapter_id, str):
        raise RequestError("adapter_id must be a string or nil")
    defaults = DecodingParams()
    values = {}
    for name in _PARAM_FIELDS:
        value = obj.get(name, getattr(defaults, name))
        if not _is_int(value):
            raise RequestError(f"{name} must be an integer")
        values[name] = value
    seed = obj.get("seed", defaults.seed)
    if not isinstance(seed, bytes) or len(seed) != 32:
        raise RequestError("seed must be 32 bytes (msgpack bin)")
    stop_ids = tuple(_int_list(obj.get("stop_ids", []), "stop_ids", MAX_STOP_IDS, allow_empty=True))
    return GenerationRequest(tuple(prompt), adapter_id, DecodingParams(**values, seed=seed, stop_ids=stop_ids))


def encode_result(result: GenerationResult) -> dict:
    return {
        "output_ids": list(result.output_ids),
        "finish_reason": result.finish_reason,
        "commitment": result.commitment,
        "model_hash": result.model_hash,
        "adapter_hashes": list(result.adapter_hashes),
        "prompt_tokens": result.prompt_tokens,
    }


def decode_result(obj: Any) -> GenerationResult:
    """A :class:`GenerationResult` from a decoded map (the node's side); :class:`RequestError` if malformed."""
    if not isinstance(obj, dict):
        raise RequestError("a generate result must be a map")
    missing = {"output_ids", "finish_reason", "commitment", "model_hash", "adapter_hashes", "prompt_tokens"} - set(obj)
    if missing:
        raise RequestError(f"generate result lacks {', '.join(sorted(missing))}")
    if obj["finish_reason"] not in FINISH_REASONS:
        raise RequestError(f"finish_reason must be one of {FINISH_REASONS}")
    if not _is_int(obj["prompt_tokens"]) or obj["prompt_tokens"] < 1:
        raise RequestError("prompt_tokens must be a positive integer")
    if not isinstance(obj["adapter_hashes"], list):
        raise RequestError("adapter_hashes must be a list")
    return GenerationResult(
        output_ids=tuple(_int_list(obj["output_ids"], "output_ids", MAX_PROMPT_IDS, allow_empty=True)),
        finish_reason=obj["finish_reason"],
        commitment=_bytes32(obj["commitment"], "commitment"),
        model_hash=_bytes32(obj["model_hash"], "model_hash"),
        adapter_hashes=tuple(_bytes32(h, "adapter_hashes") for h in obj["adapter_hashes"]),
        prompt_tokens=obj["prompt_tokens"],
    )


def encode_batch(requests: list[GenerationRequest]) -> dict:
    return {"requests": [encode_request(r) for r in requests]}


def decode_batch(obj: Any) -> list[GenerationRequest | SidecarError]:
    """The requests of a batch; an invalid entry becomes its error so the others still run."""
    if not isinstance(obj, dict) or not isinstance(obj.get("requests"), list):
        raise RequestError("a batch must be a map with a 'requests' list")
    entries = obj["requests"]
    if not 1 <= len(entries) <= MAX_BATCH:
        raise RequestError(f"a batch holds 1..{MAX_BATCH} requests, got {len(entries)}")
    decoded: list[GenerationRequest | SidecarError] = []
    for entry in entries:
        try:
            decoded.append(decode_request(entry))
        except RequestError as exc:
            decoded.append(exc)
    return decoded


def encode_batch_results(outcomes: list[GenerationResult | SidecarError]) -> dict:
    return {"results": [encode_error(o) if isinstance(o, Exception) else encode_result(o) for o in outcomes]}


def decode_batch_results(obj: Any) -> list[GenerationResult | SidecarError]:
    """The node's side of a batch answer: one result or one error per request, in request order."""
    if not isinstance(obj, dict) or not isinstance(obj.get("results"), list):
        raise RequestError("a batch answer must be a map with a 'results' list")
    return [decode_error(r) if isinstance(r, dict) and "error" in r else decode_result(r) for r in obj["results"]]


def encode_error(error: SidecarError | Exception) -> dict:
    if isinstance(error, SidecarError):
        return {"error": {"message": str(error), "type": type(error).__name__, "code": error.code}}
    return {"error": {"message": "internal error", "type": "InternalError", "code": "internal_error"}}


def decode_error(obj: Any, status: int | None = None) -> SidecarError:
    """The :class:`SidecarError` an error body describes: the class its code names (``SidecarError`` for codes
    this side does not know, keeping the code), with ``status`` = the HTTP status it came with, if given."""
    body = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("message", "type", "code")):
        raise RequestError("an error body must be {error: {message, type, code}} with string fields")
    error = _ERROR_CLASSES.get(body["code"], SidecarError)(body["message"])
    error.code = body["code"]
    if status is not None:
        error.status = status
    return error


def encode_load(path: str) -> dict:
    return {"path": str(path)}


def decode_load(obj: Any) -> str:
    """The adapter folder to register; :class:`RequestError` unless a non-empty path of sane length."""
    path = decode_string_field(obj, "path")
    if not path or len(path) > MAX_PATH or "\x00" in path:
        raise RequestError(f"path must be 1..{MAX_PATH} characters without NUL")
    return path


def encode_unload(adapter_id: str) -> dict:
    return {"adapter_id": adapter_id}


def decode_unload(obj: Any) -> str:
    return decode_string_field(obj, "adapter_id")


def encode_merge(adapter_ids: list[str], weights_milli: list[int]) -> dict:
    return {"adapter_ids": list(adapter_ids), "weights_milli": list(weights_milli)}


def decode_string_field(obj: Any, name: str) -> str:
    if not isinstance(obj, dict) or not isinstance(obj.get(name), str):
        raise RequestError(f"expected a map with a string '{name}'")
    return obj[name]


def decode_merge(obj: Any) -> tuple[list[str], list[int]]:
    if not isinstance(obj, dict):
        raise RequestError("a merge request must be a map")
    ids, weights = obj.get("adapter_ids"), obj.get("weights_milli")
    if not isinstance(ids, list) or not all(isinstance(a, str) for a in ids) or not 1 <= len(ids) <= MAX_MERGE:
        raise RequestError(f"adapter_ids must be a list of 1..{MAX_MERGE} adapter ids")
    weights = _int_list(weights, "weights_milli", MAX_MERGE)
    if len(weights) != len(ids):
        raise RequestError("weights_milli needs one weight per adapter")
    return ids, weights


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_list(value: Any, name: str, limit: int, allow_empty: bool = False) -> list[int]:
    if not isinstance(value, list) or not all(_is_int(v) for v in value):
        raise RequestError(f"{name} must be a list of integers")
    if not value and not allow_empty:
        raise RequestError(f"{name} must not be empty")
    if len(value) > limit:
        raise RequestError(f"{name} holds {len(value)} entries; at most {limit}")
    return value


def _bytes32(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != 32:
        raise RequestError(f"{name} must be 32 bytes")
    return value


@dataclass(frozen=True)
class AttributeRequest:
    record: bytes
    adapter_id: str
    prompt_ids: tuple[int, ...]
    output_ids: tuple[int, ...]
    method: int
    top_k: int
    snapshots: tuple[tuple[int, bytes], ...]


MAX_TOP_K = 64
MAX_SNAPSHOTS = 16


def encode_attribute(request: AttributeRequest) -> dict:
    return {
        "record": request.record, "adapter_id": request.adapter_id, "prompt_ids": list(request.prompt_ids),
        "output_ids": list(request.output_ids), "method": request.method, "top_k": request.top_k,
        "snapshots": [[d, r] for d, r in request.snapshots],
    }  # fmt: skip


def decode_attribute(obj: Any) -> AttributeRequest:
    if not isinstance(obj, dict):
        raise RequestError("an attribute request must be a map")
    record = _bytes32(obj.get("record"), "record")
    adapter_id = decode_string_field(obj, "adapter_id")
    prompt = _int_list(obj.get("prompt_ids"), "prompt_ids", MAX_PROMPT_IDS)
    output = _int_list(obj.get("output_ids"), "output_ids", MAX_PROMPT_IDS)
    method, top_k = obj.get("method"), obj.get("top_k")
    if not _is_int(method) or not 0 <= method <= 255:
        raise RequestError("method must be an integer in 0..255")
    if not _is_int(top_k) or not 1 <= top_k <= MAX_TOP_K:
        raise RequestError(f"top_k must be an integer in 1..{MAX_TOP_K}")
    snapshots = obj.get("snapshots")
    if not isinstance(snapshots, list) or not 1 <= len(snapshots) <= MAX_SNAPSHOTS:
        raise RequestError(f"snapshots must list 1..{MAX_SNAPSHOTS} [datanet_id, root] pairs")
    pairs = []
    for entry in snapshots:
        if not isinstance(entry, list) or len(entry) != 2 or not _is_int(entry[0]) or entry[0] < 0:
            raise RequestError("each snapshot is [datanet_id, root]")
        pairs.append((entry[0], _bytes32(entry[1], "snapshot root")))
    return AttributeRequest(record, adapter_id, tuple(prompt), tuple(output), method, top_k, tuple(pairs))


def encode_attribution(method: int, contributions: list[tuple[int, int, int, bytes]]) -> dict:
    return {"method": method, "contributions": [[d, i, w, bytes(h)] for d, i, w, h in contributions]}


def decode_attribution(obj: Any) -> tuple[int, list[tuple[int, int, int, bytes]]]:
    if not isinstance(obj, dict) or not _is_int(obj.get("method")) or not isinstance(obj.get("contributions"), list):
        raise RequestError("an attribution result is {method, contributions}")
    rows = []
    for entry in obj["contributions"]:
        if not isinstance(entry, list) or len(entry) != 4 or not all(_is_int(v) and v >= 0 for v in entry[:3]):
            raise RequestError("each contribution is [datanet_id, index, weight, content_hash] (non-negative integers)")
        rows.append((entry[0], entry[1], entry[2], _bytes32(entry[3], "content_hash")))
    return obj["method"], rows


# -- activation hashes ---------------------------------------------------------------------------
MAX_ACTIVATION_STEPS = MAX_PROMPT_IDS  # one row per output token
MAX_ACTIVATION_COLUMNS = 1 << 10


@dataclass(frozen=True)
class ActivationTrace:
    """A generation with its activation digests: ``hashes[step][column]`` (see the module docstring)."""

    result: GenerationResult
    hashes: tuple[tuple[bytes, ...], ...]
    root: bytes


def activation_digest(rows: int, cols: int, data: bytes) -> bytes:
    """The digest of an integer tensor of ``rows`` x ``cols`` whose int64 little-endian row-major bytes are ``data``."""
    if len(data) != rows * cols * 8:
        raise ValueError(f"{len(data)} bytes are not {rows} x {cols} int64 values")
    header = rows.to_bytes(4, "little") + cols.to_bytes(4, "little")
    return hashlib.blake2b(header + data, digest_size=32).digest()


def activation_root(hashes: Sequence[Sequence[bytes]]) -> bytes:
    """blake2b-256 over the step roots (each blake2b-256 over the step's digests, in column order)."""
    steps = b"".join(hashlib.blake2b(b"".join(row), digest_size=32).digest() for row in hashes)
    return hashlib.blake2b(steps, digest_size=32).digest()


def column_name(column: int, columns: int) -> str:
    """``embedding``, ``layers.<i>`` or ``logits``: what column ``column`` of a ``columns``-wide row hashes."""
    if column == 0:
        return "embedding"
    return "logits" if column == columns - 1 else f"layers.{column - 1}"


def first_divergence(ours: Sequence[Sequence[bytes]], theirs: Sequence[Sequence[bytes]]) -> tuple[int, int] | None:
    """The first ``(step, column)``, steps in order and columns in order within a step, whose digests differ;
    where one side has fewer steps (or columns), the first missing one counts. None if equal."""
    for step, (a, b) in enumerate(zip(ours, theirs, strict=False)):
        if tuple(a) == tuple(b):
            continue
        for column, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return step, column
        return step, min(len(a), len(b))
    return None if len(ours) == len(theirs) else (min(len(ours), len(theirs)), 0)


def encode_activations(trace: ActivationTrace) -> dict:
    return {"result": encode_result(trace.result), "hashes": [list(row) for row in trace.hashes], "root": trace.root}


def decode_activations(obj: Any) -> ActivationTrace:
    """An :class:`ActivationTrace` (the node's side): one row per output token, rows of equal width (at least
    embedding and logits), and ``root`` recomputed from the rows; :class:`RequestError` otherwise."""
    if not isinstance(obj, dict) or set(obj) != {"result", "hashes", "root"}:
        raise RequestError("an activations answer is a map {result, hashes, root}")
    result = decode_result(obj["result"])
    rows = obj["hashes"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise RequestError("hashes must be a list of rows (lists)")
    if len(rows) != len(result.output_ids) or len(rows) > MAX_ACTIVATION_STEPS:
        raise RequestError(f"hashes holds {len(rows)} steps for {len(result.output_ids)} output tokens")
    widths = {len(row) for row in rows}
    if len(widths) > 1 or not all(2 <= w <= MAX_ACTIVATION_COLUMNS for w in widths):
        raise RequestError(f"every step's row of hashes has the same width, 2..{MAX_ACTIVATION_COLUMNS}")
    hashes = tuple(tuple(_bytes32(h, "hashes") for h in row) for row in rows)
    root = _bytes32(obj["root"], "root")
    if root != activation_root(hashes):
        raise RequestError("root is not the activation root of hashes")
    return ActivationTrace(result, hashes, root)
