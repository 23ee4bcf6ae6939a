"""The node's client of its inference sidecar: msgpack over HTTP (format: :mod:`lorachain.sidecar.wire`).

Synchronous on purpose: the EVM calls it from inside a precompile. One keep-alive connection, reopened
when the sidecar closes it. A sidecar that cannot be reached (refused, reset, timed out, 5xx) raises
:class:`SidecarUnavailable`, which the block builder treats as "leave the transaction in the pool": a
block must never depend on a result this node could not compute. A sidecar that answers 4xx raises the
typed :class:`~lorachain.sidecar.types.SidecarError` it sent (unknown adapter, prompt too long, ...).
"""

from __future__ import annotations

import http.client
import threading
from typing import Any
from urllib.parse import urlsplit

from tokenizers import Tokenizer

from lorachain.sidecar import wire
from lorachain.sidecar.types import GenerationRequest, GenerationResult, UnknownAdapterError, UnknownRecordError

DEFAULT_TIMEOUT_S = 120.0


class SidecarUnavailable(RuntimeError):
    """The sidecar could not be reached or failed on its side; nothing about the request is known."""


class SidecarClient:
    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"sidecar URL must be http://host:port, got {url!r}")
        self.url = url
        self._host, self._port = parts.hostname, parts.port or 80
        self._timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()  # one request at a time on the one connection
        self._model: dict[str, Any] | None = None
        self._tokenizer: Tokenizer | None = None

    # --- requests ------------------------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> GenerationResult:
        return wire.decode_result(self._call("POST", "/v1/lorachain/generate", wire.encode_request(request)))

    def activations(self, request: GenerationRequest) -> wire.ActivationTrace:
        """``request``'s result with its per-step, per-layer activation digests (checked against their root)."""
        return wire.decode_activations(self._call("POST", "/v1/lorachain/activations", wire.encode_request(request)))

    def merge(self, adapter_ids: list[str], weights_milli: list[int]) -> str:
        """The id of the weighted merge of ``adapter_ids`` (deterministic: every node gets the same id)."""
        return self._call("POST", "/v1/lorachain/adapters/merge", wire.encode_merge(adapter_ids, weights_milli))["id"]

    def has_adapter(self, adapter_id: str) -> bool:
        try:
            self._call("GET", f"/v1/lorachain/adapters/{adapter_id}")
        except UnknownAdapterError:
            return False
        return True

    def put_artifact(self, adapter_id: str, blob: bytes) -> dict[str, Any]:
        """Register adapter artifact bytes fetched elsewhere (the sidecar checks they hash to the id)."""
        return self._call("PUT", f"/v1/lorachain/artifacts/{adapter_id}.safetensors", raw=blob)

    def record_info(self, record_id: str) -> dict[str, Any] | None:
        """A training record's summary, or None when the sidecar does not have it."""
        try:
            return self._call("GET", f"/v1/lorachain/records/{record_id}")
        except UnknownRecordError:
            return None

    def put_record(self, record_id: str, blob: bytes) -> dict[str, Any]:
        """Store training record bytes fetched elsewhere (the sidecar checks them and their hash)."""
        return self._call("PUT", f"/v1/lorachain/records/{record_id}", raw=blob)

    def attribute(self, request: wire.AttributeRequest) -> tuple[int, list[tuple[int, int, int, bytes]]]:
        """``(method, [(datanet_id, index, weight, content_hash)])`` for one inference (see ``wire``)."""
        return wire.decode_attribution(self._call("POST", "/v1/lorachain/attribute", wire.encode_attribute(request)))

    def model(self) -> dict[str, Any]:
        """The sidecar's model info (hash, config, context length, ...), fetched once."""
        if self._model is None:
            self._model = self._call("GET", "/v1/lorachain/model")
        return self._model

    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer (part of the hashed model artifact), fetched once."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer.from_str(self._call("GET", "/v1/lorachain/tokenizer")["tokenizer"])
        return self._tokenizer

    # --- transport -----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        payload = raw if raw is not None else None if body is None else wire.pack(body)
        headers = {"Content-Type": "application/octet-stream" if raw is not None else "application/msgpack"}
        with self._lock:
            for attempt in (1, 2):  # a kept-alive connection the server closed fails once; retry on a fresh one
                conn = self._connection()
                try:
                    conn.request(method, path, body=payload, headers=headers)
                    response = conn.getresponse()
                    status, data = response.status, response.read()
                    break
                except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                    self._close()
                    if attempt == 2 or isinstance(exc, TimeoutError):
                        raise SidecarUnavailable(f"sidecar at {self.url} unreachable: {exc}") from exc
        if status >= 500:
            raise SidecarUnavailable(f"sidecar at {self.url} failed ({status}): {data[:200]!r}")
        try:
            obj = wire.unpack(data)
        except Exception as exc:  # any undecodable body means the sidecar misbehaved
            raise SidecarUnavailable(f"sidecar at {self.url} sent an undecodable body ({status})") from exc
        if status >= 400:
            raise wire.decode_error(obj, status)
        return obj

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close()
