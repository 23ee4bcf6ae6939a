"""A small JSON-RPC client of the L1 (any Ethereum node: lorachain in L1 mode, geth, anvil, ...).

Synchronous, over one keep-alive connection (:mod:`lorachain.http_transport`). What the rollup reads from
L1: blocks by number or hash, and the logs of one block. Transport failures raise :class:`L1Unavailable`,
node errors :class:`L1RpcError`.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from lorachain.http_transport import KeepAliveHTTP, ServerUnreachable

DEFAULT_TIMEOUT_S = 30.0


class L1Unavailable(RuntimeError):
    """The L1 node could not be reached."""


class L1RpcError(RuntimeError):
    def __init__(self, method: str, error: Any) -> None:
        super().__init__(f"{method}: {error}")
        self.error = error


class L1Client:
    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._http = KeepAliveHTTP(url, timeout_s, "L1 RPC")
        self.url = url
        self._ids = itertools.count(1)

    def call(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        try:
            _status, _headers, data = self._http.request(
                "POST", self._http.path, body.encode(), {"Content-Type": "application/json"}
            )
        except ServerUnreachable as exc:
            raise L1Unavailable(f"L1 node {exc}") from exc
        try:
            reply = json.loads(data)
        except ValueError as exc:
            raise L1RpcError(method, f"not a JSON-RPC answer: {data[:200]!r}") from exc
        if reply.get("error") is not None:
            raise L1RpcError(method, reply["error"])
        return reply.get("result")

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def block_by_number(self, number: int) -> dict[str, Any] | None:
        return self.call("eth_getBlockByNumber", hex(number), False)

    def block_by_hash(self, block_hash: bytes) -> dict[str, Any] | None:
        return self.call("eth_getBlockByHash", "0x" + block_hash.hex(), False)

    def logs(self, block_hash: bytes, address: bytes, topic: bytes) -> list[dict[str, Any]]:
        """The logs of one block emitted by ``address`` with first topic ``topic``, in log-index order."""
        logs = self.call(
            "eth_getLogs",
            {"blockHash": "0x" + block_hash.hex(), "address": "0x" + address.hex(), "topics": ["0x" + topic.hex()]},
        )
        return sorted(logs, key=lambda entry: int(entry["logIndex"], 16))

    def wait_for_receipt(self, tx_hash: str, timeout_s: float = 60.0, poll_s: float = 0.2) -> dict[str, Any]:
        """The receipt of ``tx_hash`` (0x-hex) once it is mined; TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            receipt = self.call("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                return receipt
            time.sleep(poll_s)
        raise TimeoutError(f"transaction {tx_hash} not mined within {timeout_s:.0f}s")

    def close(self) -> None:
        self._http.close()
