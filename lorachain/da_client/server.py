"""``lorachain da-server``: a local DA server speaking eigenda-proxy's REST API, for devnets and tests.

Routes (``../shared/specs/eigenda.md``):

    POST /put[/][?commitment_mode=optimism_generic|standard]   payload -> commitment bytes (200)
    POST /put/0x<hex OP keccak commitment>                      keccak mode: store under the payload's hash
    GET  /get/0x<hex commitment>[?commitment_mode=standard]     commitment -> payload
    GET  /health, GET /metrics (Prometheus)
    GET|POST /admin/faults                                      read / set injected faults (tests)

Payloads are encoded into version-0 blobs and stored on LMDB under their hash; the returned cert
(:mod:`local_cert`) names that hash, so every read is checked: a blob that no longer hashes to its cert
is a 500 (the store is corrupt: never a reason for derivation to drop the commitment), a cert this server
could not have issued a 418 with eigenda-proxy's ``{"StatusCode", "Msg"}`` body. Errors are JSON.
Faults for tests: added latency, and a status (418, 429, 503, ...) answered instead of serving puts
and/or gets, for a number of requests or until cleared.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from eth_utils import keccak
from prometheus_client import CollectorRegistry, Counter, generate_latest

from lorachain.da_client.blob_codec import MAX_PAYLOAD_SIZE, BlobCodecError, decode_blob
from lorachain.da_client.commitment import (
    CommitmentError,
    CommitmentMode,
    EigenDACert,
    KeccakCommitment,
    decode_commitment,
    decode_op_commitment,
)
from lorachain.da_client.local_cert import LocalCert, LocalCertError
from lorachain.da_client.store import DAStore

log = logging.getLogger("lorachain.da_server")

DEFAULT_PORT = 3100
# eigenda-proxy's derivation-error codes (418 bodies)
CERT_PARSE_FAILED, RECENCY_CHECK_FAILED, INVALID_CERT, BLOB_DECODING_FAILED = 1, 2, 3, 4


@dataclass
class Faults:
    """What the server does wrong on purpose."""

    latency_ms: int = 0
    put_status: int | None = None  # answer puts with this status instead of serving them
    get_status: int | None = None
    remaining: int | None = None  # requests the statuses apply to (None: until cleared)

    def status_for(self, route: str) -> int | None:
        status = self.put_status if route == "put" else self.get_status
        if status is None or self.remaining == 0:
            return None
        if self.remaining is not None:
            self.remaining -= 1
        return status


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("da_requests", "DA requests by route and status", ["route", "status"],
                                registry=self.registry)  # fmt: skip
        self.bytes_in = Counter("da_put_payload_bytes", "Payload bytes accepted", registry=self.registry)
        self.bytes_out = Counter("da_get_payload_bytes", "Payload bytes served", registry=self.registry)


class HttpError(Exception):
    def __init__(self, status: int, message: str, derivation_code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.derivation_code = derivation_code

    def response(self) -> web.Response:
        if self.derivation_code is not None:  # eigenda-proxy's 418 body
            return web.json_response({"StatusCode": self.derivation_code, "Msg": str(self)}, status=self.status)
        return web.json_response({"error": {"message": str(self), "code": self.status}}, status=self.status)


def _commitment_bytes(text: str) -> bytes:
    if not text.startswith("0x"):
        raise HttpError(400, "commitment must be 0x-prefixed hex")
    try:
        return bytes.fromhex(text[2:])
    except ValueError as exc:
        raise HttpError(400, f"commitment is not hex: {exc}") from exc


def _mode(request: web.Request) -> CommitmentMode:
    raw = request.query.get("commitment_mode", CommitmentMode.OP_GENERIC.value)
    try:
        mode = CommitmentMode(raw)
    except ValueError as exc:
        raise HttpError(400, f"unknown commitment_mode {raw!r}") from exc
    if mode is CommitmentMode.OP_KECCAK:
        raise HttpError(400, "keccak mode puts go to /put/0x<commitment>")
    return mode


class DAServer:
    def __init__(self, store: DAStore, faults: Faults | None = None, max_payload: int = MAX_PAYLOAD_SIZE) -> None:
        self.store = store
        self.faults = faults or Faults()
        self.max_payload = max_payload
        self.metrics = _Metrics()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_payload + 1024 * 1024, middlewares=[self._errors])
        app.router.add_post("/put", self.put)
        app.router.add_post("/put/", self.put)
        app.router.add_post("/put/{commitment}", self.put_keccak)
        app.router.add_get("/get/{commitment}", self.get)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics_route)
        app.router.add_get("/admin/faults", self.get_faults)
        app.router.add_post("/admin/faults", self.set_faults)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        route = request.path.split("/")[1] or "/"
        try:
            if route in ("put", "get"):
                await self._inject(route)
            response = await handler(request)
        except HttpError as exc:
            response = exc.response()
        except web.HTTPException as exc:  # aiohttp's own (404 route, 405 method, 413 body, ...): as JSON
            response = HttpError(exc.status, exc.reason).response()
        self.metrics.requests.labels(route, str(response.status)).inc()
        return response

    async def _inject(self, route: str) -> None:
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        status = self.faults.status_for(route)
        if status is not None:
            derivation = BLOB_DECODING_FAILED if status == 418 else None
            raise HttpError(status, f"injected fault: {status}", derivation)

    async def _payload(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_payload:
            raise HttpError(413, f"payload of {request.content_length} bytes exceeds the maximum of {self.max_payload}")
        payload = await request.read()
        if len(payload) > self.max_payload:
            raise HttpError(413, f"payload of {len(payload)} bytes exceeds the maximum of {self.max_payload}")
        if not payload:
            raise HttpError(400, "empty payload")
        return payload

    # -- routes ----------------------------------------------------------------------------------
    async def put(self, request: web.Request) -> web.Response:
        mode = _mode(request)
        payload = await self._payload(request)
        cert, blob = LocalCert.for_payload(payload)
        self.store.put_blob(cert.key, blob)
        self.metrics.bytes_in.inc(len(payload))
        return web.Response(body=cert.encode().encode(mode), content_type="application/octet-stream")

    async def put_keccak(self, request: web.Request) -> web.Response:
        try:
            commitment = decode_op_commitment(_commitment_bytes(request.match_info["commitment"]))
        except CommitmentError as exc:
            raise HttpError(400, str(exc)) from exc
        if not isinstance(commitment, KeccakCommitment):
            raise HttpError(400, "only keccak commitments can be chosen by the caller")
        payload = await self._payload(request)
        if keccak(payload) != commitment.digest:
            raise HttpError(400, "payload does not hash to the keccak commitment")
        self.store.put_keccak(commitment.digest, payload)
        self.metrics.bytes_in.inc(len(payload))
        return web.Response(status=200)

    async def get(self, request: web.Request) -> web.Response:
        mode = _mode(request)
        raw = _commitment_bytes(request.match_info["commitment"])
        try:
            commitment = decode_commitment(raw, mode)
        except CommitmentError as exc:
            raise HttpError(400, str(exc)) from exc
        payload = self._read_keccak(commitment) if isinstance(commitment, KeccakCommitment) else self._read(commitment)
        self.metrics.bytes_out.inc(len(payload))
        return web.Response(body=payload, content_type="application/octet-stream")

    def _read_keccak(self, commitment: KeccakCommitment) -> bytes:
        payload = self.store.get_keccak(commitment.digest)
        if payload is None:
            raise HttpError(404, "no payload under this keccak commitment")
        if keccak(payload) != commitment.digest:
            log.error("stored payload for keccak 0x%s does not hash to it: the store is corrupt",
                      commitment.digest.hex())  # fmt: skip
            raise HttpError(500, "stored payload does not match its commitment")
        return payload

    def _read(self, commitment: EigenDACert) -> bytes:
        try:
            cert = LocalCert.decode(commitment)
        except LocalCertError as exc:
            raise HttpError(418, str(exc), CERT_PARSE_FAILED) from exc
        blob = self.store.get_blob(cert.key)
        if blob is None:
            raise HttpError(404, "no blob for this cert")
        if keccak(blob) != cert.blob_hash:
            log.error("stored blob 0x%s does not hash to its cert: the store is corrupt", cert.key.hex())
            raise HttpError(500, "stored blob does not match its cert")
        try:
            payload = decode_blob(blob)
        except BlobCodecError as exc:
            raise HttpError(418, f"blob decoding failed: {exc}", BLOB_DECODING_FAILED) from exc
        if len(payload) != cert.payload_size:
            raise HttpError(418, "blob payload length differs from the cert's", INVALID_CERT)
        return payload

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **self.store.counts()})

    async def metrics_route(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), content_type="text/plain")

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.faults))

    async def set_faults(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            self.faults = Faults(**body)
        except (ValueError, TypeError) as exc:
            raise HttpError(400, f"faults must be a JSON object of {list(asdict(Faults()))}: {exc}") from exc
        log.warning("faults set: %s", self.faults)
        return web.json_response(asdict(self.faults))


def serve(datadir: Path, host: str, port: int, faults: Faults | None = None) -> None:
    """Run the server until interrupted."""
    store = DAStore(datadir)
    server = DAServer(store, faults)
    log.info("DA server on http://%s:%d, data in %s", host, port, datadir)
    try:
        web.run_app(server.app(), host=host, port=port, print=None, access_log=None)
    finally:
        store.close()
