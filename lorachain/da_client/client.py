"""A client of eigenda-proxy's REST API (a real proxy by URL, or ``lorachain da-server``).

Certs are opaque: :meth:`DAClient.put` returns the commitment bytes the server chose, :meth:`DAClient.get`
hands them back. Statuses as the spec says:

- 400 / 413 -> :class:`DABadRequest`; 404 -> :class:`DANotFound`;
- 418 -> :class:`DerivationError` with the proxy's ``StatusCode`` (1 cert parse failed, 2 recency check
  failed, 3 invalid cert, 4 blob decoding failed): derivation drops that commitment;
- 429 and other 5xx -> retried with exponential back-off (``Retry-After`` honoured), then
  :class:`DARateLimited` / :class:`DAServerError`;
- 503, or no connection at all -> :class:`DAUnavailable` at once: the batcher fails over to calldata.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable

from lorachain.da_client.commitment import CommitmentMode, KeccakCommitment
from lorachain.http_transport import KeepAliveHTTP, ServerUnreachable

DEFAULT_TIMEOUT_S = 60.0


class DAError(RuntimeError):
    """A DA request failed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DABadRequest(DAError):
    """The server refused the request itself (malformed commitment, oversize payload, ...)."""


class DANotFound(DAError):
    """The server holds nothing under this commitment."""


class DerivationError(DAError):
    """418: the commitment or its blob is invalid; derivation must skip it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, 418)
        self.code = code


class DARateLimited(DAError):
    """429 after every retry."""


class DAServerError(DAError):
    """5xx (other than 503) after every retry."""


class DAUnavailable(DAError):
    """503, or the server cannot be reached: fail over."""


class DAClient:
    def __init__(
        self,
        url: str,
        mode: CommitmentMode = CommitmentMode.OP_GENERIC,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = 4,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = KeepAliveHTTP(url, timeout_s, "DA server")
        self.url = self._http.url
        self.mode = mode
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep

    # -- the API ---------------------------------------------------------------------------------
    def put(self, payload: bytes) -> bytes:
        """Store ``payload``; the commitment to post (OP form, or standard in standard mode)."""
        if self.mode is CommitmentMode.OP_KECCAK:
            commitment = KeccakCommitment.of(payload).encode()
            self._request("POST", f"/put/0x{commitment.hex()}", payload)
            return commitment
        query = "?commitment_mode=standard" if self.mode is CommitmentMode.STANDARD else ""
        return self._request("POST", f"/put{query}", payload)

    def get(self, commitment: bytes) -> bytes:
        """The payload behind ``commitment`` (as :meth:`put` returned it)."""
        query = "?commitment_mode=standard" if self.mode is CommitmentMode.STANDARD else ""
        return self._request("GET", f"/get/0x{commitment.hex()}{query}")

    def get_by_keccak(self, digest: bytes) -> bytes:
        """The payload whose keccak256 is ``digest`` (OP keccak mode: the commitment is the payload's own hash)."""
        return self.get(KeccakCommitment(digest).encode())

    def health(self) -> bool:
        try:
            self._request("GET", "/health")
        except DAError:
            return False
        return True

    # -- transport -------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            status, headers, data = self._send(method, path, body)
            if status == 200:
                return data
            error = _error_for(status, data)
            if not isinstance(error, DARateLimited | DAServerError) or attempt == self.retries:
                raise error
            retry_after = headers.get("retry-after")
            wait = float(retry_after) if retry_after and retry_after.isdigit() else delay
            self._sleep(min(wait, self.max_backoff_s))
            delay = min(delay * 2, self.max_backoff_s)
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, body: bytes | None) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        try:
            return self._http.request(method, path, body, headers)
        except ServerUnreachable as exc:
            raise DAUnavailable(f"DA server {exc}") from exc

    def close(self) -> None:
        self._http.close()


def _error_for(status: int, data: bytes) -> DAError:
    message = _message(data)
    if status == 418:
        code = 0
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            code = int(json.loads(data).get("StatusCode", 0))
        return DerivationError(f"derivation error {code}: {message}", code)
    if status == 404:
        return DANotFound(message, status)
    if 400 <= status < 500 and status != 429:
        return DABadRequest(message, status)
    if status == 429:
        return DARateLimited(f"rate limited: {message}", status)
    if status == 503:
        return DAUnavailable(f"DA unavailable: {message}", status)
    return DAServerError(f"DA server error {status}: {message}", status)


def _message(data: bytes) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        return data[:200].decode(errors="replace")
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message", error))
        return str(body.get("Msg") or error or body)
    return str(body)
