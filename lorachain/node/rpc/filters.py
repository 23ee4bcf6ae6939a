"""Log queries, polling filters (eth_newFilter…) and WebSocket subscriptions (eth_subscribe)."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from eth.abc import BlockHeaderAPI

from lorachain.node.bloom import may_contain
from lorachain.node.node import Node
from lorachain.node.rpc import codec
from lorachain.node.rpc.blocks import resolve_block
from lorachain.node.rpc.errors import RpcError, invalid_params, server_error
from lorachain.node.rpc.server import CallContext

MAX_BLOCK_RANGE = 10_000
MAX_RESULTS = 10_000
FILTER_TIMEOUT = 300.0  # seconds without a poll before a filter is dropped (geth: 5 minutes)


@dataclass
class LogQuery:
    """A parsed filter object: address set and topic positions (None = wildcard)."""

    addresses: set[bytes] | None
    topics: list[set[int] | None]
    from_block: Any = "latest"
    to_block: Any = "latest"
    block_hash: bytes | None = None

    @classmethod
    def parse(cls, obj: Any) -> LogQuery:
        if obj is None:
            obj = {}
        if not isinstance(obj, dict):
            raise invalid_params("invalid argument 0: filter must be an object")
        addresses = None
        raw_addr = obj.get("address")
        if raw_addr is not None:
            items = raw_addr if isinstance(raw_addr, list) else [raw_addr]
            addresses = {codec.parse_address(a, "address") for a in items}
        topics: list[set[int] | None] = []
        raw_topics = obj.get("topics") or []
        if not isinstance(raw_topics, list):
            raise invalid_params("invalid argument 0: topics must be an array")
        if len(raw_topics) > 4:
            raise invalid_params("invalid argument 0: too many topics (max 4)")
        for position in raw_topics:
            if position is None:
                topics.append(None)
            elif isinstance(position, list):
                topics.append({int.from_bytes(codec.parse_hash(t, "topic"), "big") for t in position if t} or None)
            else:
                topics.append({int.from_bytes(codec.parse_hash(position, "topic"), "big")})
        query = cls(addresses, topics, obj.get("fromBlock", "latest"), obj.get("toBlock", "latest"))
        if obj.get("blockHash") is not None:
            if "fromBlock" in obj or "toBlock" in obj:
                raise invalid_params("invalid argument 0: cannot specify both BlockHash and FromBlock/ToBlock")
            query.block_hash = codec.parse_hash(obj["blockHash"], "blockHash")
        return query

    def matches(self, log: Any) -> bool:
        if self.addresses is not None and log.address not in self.addresses:
            return False
        if len(self.topics) > len(log.topics):
            return False
        return all(want is None or topic in want for want, topic in zip(self.topics, log.topics, strict=False))

    def bloom_may_match(self, bloom: int) -> bool:
        if self.addresses is not None and not any(may_contain(bloom, a) for a in self.addresses):
            return False
        for want in self.topics:
            if want is not None and not any(may_contain(bloom, t.to_bytes(32, "big")) for t in want):
                return False
        return True


def logs_in_block(node: Node, header: BlockHeaderAPI, query: LogQuery, removed: bool = False) -> list[dict]:
    if not query.bloom_may_match(header.bloom):
        return []
    block = node.chain.block_by_header(header)
    receipts = node.chain.receipts(block)
    out = []
    log_index = 0
    for tx_index, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
        for entry in receipt.logs:
            if query.matches(entry):
                out.append(codec.log_json(entry, header, tx.hash, tx_index, log_index, removed))
            log_index += 1
    return out


def get_logs(node: Node, query: LogQuery) -> list[dict]:
    if query.block_hash is not None:
        header = resolve_block(node, {"blockHash": codec.data(query.block_hash)})
        return logs_in_block(node, header, query)
    first = resolve_block(node, query.from_block, "fromBlock").block_number
    last = resolve_block(node, query.to_block, "toBlock").block_number
    if first > last:
        raise invalid_params("invalid block range params")
    if last - first + 1 > MAX_BLOCK_RANGE:
        raise RpcError(-32005, f"block range too large: {last - first + 1} blocks, limit {MAX_BLOCK_RANGE}")
    out: list[dict] = []
    for number in range(first, last + 1):
        out.extend(logs_in_block(node, node.chain.header_by_number(number), query))
        if len(out) > MAX_RESULTS:
            raise RpcError(-32005, f"query returned more than {MAX_RESULTS} results")
    return out


@dataclass
class _Filter:
    kind: str  # "logs" | "blocks" | "pending"
    query: LogQuery | None = None
    next_block: int = 0
    pending_hashes: list[bytes] = field(default_factory=list)
    last_poll: float = field(default_factory=time.monotonic)


class FilterApi:
    namespaces = ("eth",)

    def __init__(self, node: Node) -> None:
        self.node = node
        self.filters: dict[str, _Filter] = {}
        node.events.subscribe("pending_tx", self._on_pending)

    def _new_id(self) -> str:
        return "0x" + secrets.token_hex(16)

    def _on_pending(self, tx_hash: bytes) -> None:
        for flt in self.filters.values():
            if flt.kind == "pending":
                flt.pending_hashes.append(tx_hash)

    def _expire(self) -> None:
        now = time.monotonic()
        for fid in [f for f, flt in self.filters.items() if now - flt.last_poll > FILTER_TIMEOUT]:
            del self.filters[fid]

    def eth_getLogs(self, filter_obj: Any) -> list[dict]:
        return get_logs(self.node, LogQuery.parse(filter_obj))

    def eth_newFilter(self, filter_obj: Any) -> str:
        self._expire()
        query = LogQuery.parse(filter_obj)
        if query.block_hash is not None:
            raise invalid_params("invalid argument 0: blockHash is not allowed in filters")
        fid = self._new_id()
        start = self.node.chain.head.block_number + 1
        if query.from_block not in ("latest", "pending", None):
            start = resolve_block(self.node, query.from_block, "fromBlock").block_number
        self.filters[fid] = _Filter("logs", query, next_block=start)
        return fid

    def eth_newBlockFilter(self) -> str:
        self._expire()
        fid = self._new_id()
        self.filters[fid] = _Filter("blocks", next_block=self.node.chain.head.block_number + 1)
        return fid

    def eth_newPendingTransactionFilter(self, full: Any = False) -> str:
        self._expire()
        fid = self._new_id()
        self.filters[fid] = _Filter("pending")
        return fid

    def eth_uninstallFilter(self, fid: Any) -> bool:
        return self.filters.pop(fid, None) is not None

    def _filter(self, fid: Any) -> _Filter:
        flt = self.filters.get(fid) if isinstance(fid, str) else None
        if flt is None:
            raise server_error("filter not found")
        flt.last_poll = time.monotonic()
        return flt

    def eth_getFilterChanges(self, fid: Any) -> list[Any]:
        flt = self._filter(fid)
        head = self.node.chain.head.block_number
        if flt.kind == "pending":
            hashes, flt.pending_hashes = flt.pending_hashes, []
            return [codec.data(h) for h in hashes]
        first = min(flt.next_block, head + 1)
        flt.next_block = head + 1
        if flt.kind == "blocks":
            return [codec.data(self.node.chain.header_by_number(n).hash) for n in range(first, head + 1)]
        assert flt.query is not None
        last = head
        if flt.query.to_block not in ("latest", "pending", None):
            last = min(head, resolve_block(self.node, flt.query.to_block, "toBlock").block_number)
        out: list[dict] = []
        for number in range(first, last + 1):
            out.extend(logs_in_block(self.node, self.node.chain.header_by_number(number), flt.query))
        return out

    def eth_getFilterLogs(self, fid: Any) -> list[dict]:
        flt = self._filter(fid)
        if flt.kind != "logs" or flt.query is None:
            raise server_error("filter not found")
        return get_logs(self.node, flt.query)

    # -- subscriptions (WebSocket only) ----------------------------------------------------------
    def eth_subscribe(self, kind: Any, options: Any = None, ctx: CallContext | None = None) -> str:
        if ctx is None or ctx.send is None:
            raise RpcError(-32001, "notifications not supported")
        sub_id = self._new_id()
        send = ctx.send
        loop = asyncio.get_running_loop()
        pending_sends: set[asyncio.Task[None]] = set()

        def push(result: Any) -> None:
            message = {
                "jsonrpc": "2.0",
                "method": "eth_subscription",
                "params": {"subscription": sub_id, "result": result},
            }
            task = loop.create_task(send(message))
            pending_sends.add(task)
            task.add_done_callback(pending_sends.discard)

        if kind == "newHeads":

            def on_block(built: Any) -> None:
                push(codec.header_json(built.block.header))

            token = self.node.events.subscribe("block", on_block)
        elif kind == "logs":
            query = LogQuery.parse(options)

            def on_logs(built: Any) -> None:
                for entry in logs_in_block(self.node, built.block.header, query):
                    push(entry)

            token = self.node.events.subscribe("block", on_logs)
        elif kind == "newPendingTransactions":
            full = bool(options) if isinstance(options, bool) else False

            def on_pending(tx_hash: bytes) -> None:
                if full:
                    tx = self.node.pool.get(tx_hash)
                    if tx is not None:
                        push(codec.transaction_json(tx, None, None, None))
                else:
                    push(codec.data(tx_hash))

            token = self.node.events.subscribe("pending_tx", on_pending)
        elif kind == "syncing":
            token = None
        else:
            raise invalid_params(f'no "{kind}" subscription in eth namespace')
        self._subscriptions = getattr(self, "_subscriptions", {})
        self._subscriptions[sub_id] = token
        ctx.subscriptions.add(sub_id)
        ctx.on_close.append(lambda: self._drop(sub_id))
        return sub_id

    def _drop(self, sub_id: str) -> bool:
        subs = getattr(self, "_subscriptions", {})
        if sub_id not in subs:
            return False
        token = subs.pop(sub_id)
        if token is not None:
            self.node.events.unsubscribe(token)
        return True

    def eth_unsubscribe(self, sub_id: Any, ctx: CallContext | None = None) -> bool:
        if ctx is None or sub_id not in ctx.subscriptions:
            return False
        ctx.subscriptions.discard(sub_id)
        return self._drop(sub_id)
