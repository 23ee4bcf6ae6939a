"""One keep-alive HTTP connection to one server, reopened once when the server has closed it.

Shared by the synchronous clients (DA server, L1 node): they map :class:`ServerUnreachable` to their own
"unavailable" errors and read statuses and bodies themselves.
"""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit


class ServerUnreachable(RuntimeError):
    """The server refused the connection, timed out, or closed it twice in a row."""


class KeepAliveHTTP:
    def __init__(self, url: str, timeout_s: float, what: str = "server") -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{what} URL must be http://host:port, got {url!r}")
        self.url = url.rstrip("/")
        self.path = parts.path or "/"
        self._host, self._port = parts.hostname, parts.port or 80
        self._timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body) of one request."""
        for fresh in (False, True):  # a kept-alive connection the server closed: reconnect once
            if self._conn is None or fresh:
                self.close()
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                response = self._conn.getresponse()
                data = response.read()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                if fresh:
                    self.close()
                    raise ServerUnreachable(f"{self.url} closed the connection") from None
            except OSError as exc:
                self.close()
                raise ServerUnreachable(f"{self.url} unreachable: {exc}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
