"""Unsafe blocks on the validator: gossiped blocks applied optimistically, ahead of derivation.

A valid block message (:mod:`service`) is handed to the node's asyncio loop, where :class:`UnsafeBlocks`

- imports it as the new head when its parent is the head (py-evm executes it; a block whose execution does
  not give its header is refused, and its forwarder scored down);
- when its parent is a known block above the safe head but not the head (the sequencer replaced its tip),
  makes the parent the head first, then imports it (an unsafe reorg; the safe chain is never touched);
- keeps it for later when its parent is not known yet (out of order; at most ``MAX_PENDING`` blocks), and
  imports the kept children of each block it imports, or that derivation makes the head;
- fills a gap below a kept block (blocks gossiped before this node was peered) from a backup RPC when it has
  one (op-node's ``--l2.backup-unsafe-sync-rpc``; here the validator's ``--sequencer`` URL): the fetched blocks
  must chain up to the signed block's parent hash, so the signature covers them too;
- ignores blocks at or below the safe head (derivation owns those) and blocks it has.

Reconciliation with the derived chain happens in derivation (:class:`rollup.derivation.Deriver`): each derived
block either consolidates with the unsafe block at its height or replaces it (reorg + divergence record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

from lorachain.node import metrics
from lorachain.node.chain import ChainError
from lorachain.node.p2p.service import GOSSIP_LATENCY, UNSAFE_BLOCKS, ReceivedBlock

log = logging.getLogger("lorachain.p2p")

MAX_PENDING = 256
KNOWN_CACHE = 4096


class UnsafeBlocks:
    def __init__(self, node: Any, trace: Any = None) -> None:
        self.node = node
        self.trace = trace
        self.service: Any = None  # the GossipService (to score forwarders of blocks that do not execute)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: OrderedDict[bytes, ReceivedBlock] = OrderedDict()  # block hash -> block waiting on its parent
        self.known: OrderedDict[bytes, None] = OrderedDict()  # hashes applied or refused (read by the p2p thread)
        self.applied = 0
        self.backup_rpc: Any = None  # an L1Client-like JSON-RPC client (debug_getRawBlock) to fill gaps
        self._filling: asyncio.Task | None = None

    def is_known(self, block_hash: bytes) -> bool:
        return block_hash in self.known

    def _remember(self, block_hash: bytes) -> None:
        self.known[block_hash] = None
        while len(self.known) > KNOWN_CACHE:
            self.known.popitem(last=False)

    # -- the p2p thread ---------------------------------------------------------------------------------
    def deliver(self, received: ReceivedBlock) -> None:
        """Hand a validated block to the node's loop (called on the p2p thread)."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.on_block, received)

    # -- the node's loop ---------------------------------------------------------------------------------
    def _safe_number(self) -> int:
        deriver = self.node.config.deriver
        safe = getattr(deriver, "safe_head", None)
        return safe.block_number if safe is not None else -1

    def on_block(self, received: ReceivedBlock) -> None:
        block = received.block
        chain = self.node.chain
        if block.hash in self.known or self._has(block.hash):
            UNSAFE_BLOCKS.labels("known").inc()
            return
        if block.number <= self._safe_number():
            UNSAFE_BLOCKS.labels("behind_safe").inc()
            self._remember(block.hash)
            return
        parent = self._header(block.header.parent_hash)
        if parent is None:
            self.pending[block.hash] = received
            while len(self.pending) > MAX_PENDING:
                self.pending.popitem(last=False)
            UNSAFE_BLOCKS.labels("pending").inc()
            if self.backup_rpc is not None and (self._filling is None or self._filling.done()) and self.loop:
                self._filling = self.loop.create_task(self._fill_gap(received))
            return
        if parent.hash != chain.head.hash:
            if parent.block_number < self._safe_number() or not chain.is_canonical(parent):
                UNSAFE_BLOCKS.labels("stale").inc()
                self._remember(block.hash)
                return
            log.warning("unsafe reorg: new block #%d 0x%s replaces the unsafe chain above #%d", block.number,
                        block.hash.hex()[:12], parent.block_number)  # fmt: skip
            self.node.set_head(parent)
        if self._import(received):
            self._import_children(block.hash)

    def on_head_changed(self) -> None:
        """Derivation (or a reorg) moved the head: kept blocks may extend it now."""
        if self.pending:
            self._import_children(self.node.chain.head.hash)

    async def _fill_gap(self, received: ReceivedBlock) -> None:
        """Fetch the blocks between the head and ``received`` from the backup RPC, check they chain up to the
        signed block's parent, and import them."""
        import rlp

        chain = self.node.chain
        start, end = chain.head.block_number + 1, received.block.number - 1
        if end < start or end - start > 1024:
            return
        block_class = type(received.block)
        loop = asyncio.get_running_loop()
        try:
            raws = [await loop.run_in_executor(None, self.backup_rpc.call, "debug_getRawBlock", hex(n))
                    for n in range(start, end + 1)]  # fmt: skip
            blocks = [rlp.decode(bytes.fromhex(raw[2:]), sedes=block_class) for raw in raws]
        except Exception as exc:
            log.warning("unsafe gap #%d..#%d: backup RPC failed: %s", start, end, exc)
            return
        expected = received.block.header.parent_hash
        for block in reversed(blocks):
            if block.hash != expected:
                log.warning("unsafe gap #%d..#%d: the backup RPC's blocks do not chain to the gossiped block",
                            start, end)  # fmt: skip
                return
            expected = block.header.parent_hash
        if expected != chain.head.hash:
            return  # the head moved meanwhile (or another fork): the next gossiped block tries again
        for block in blocks:
            if not self._import(ReceivedBlock(block, received.peer, time.monotonic(), time.time()), gossip=False):
                return
        log.info("unsafe gap #%d..#%d filled from the backup RPC", start, end)
        self._import_children(chain.head.hash)

    def _import_children(self, parent_hash: bytes) -> None:
        while True:
            child = next((r for r in self.pending.values() if r.block.header.parent_hash == parent_hash), None)
            if child is None:
                return
            del self.pending[child.block.hash]
            if not self._import(child):
                return
            parent_hash = child.block.hash

    def _import(self, received: ReceivedBlock, gossip: bool = True) -> bool:
        block = received.block
        self._remember(block.hash)
        with contextlib.suppress(KeyError):
            del self.pending[block.hash]
        try:
            self.node.chain.import_block(block)
        except ChainError as exc:
            UNSAFE_BLOCKS.labels("invalid_block").inc()
            log.warning("unsafe block #%d 0x%s from %s does not execute: %s", block.number, block.hash.hex()[:12],
                        received.peer, exc)  # fmt: skip
            if self.service is not None and gossip:
                self.service.penalize_soon(received.peer, "invalid_block")
            return False
        self.applied += 1
        self.node.pool.reset()
        metrics.HEAD.set(block.number)
        if not gossip:
            UNSAFE_BLOCKS.labels("backfilled").inc()
            return True
        GOSSIP_LATENCY.observe(time.monotonic() - received.arrived)
        UNSAFE_BLOCKS.labels("applied").inc()
        log.info("unsafe head #%d 0x%s (gossip from %s)", block.number, block.hash.hex()[:12], received.peer[-8:])
        if self.trace is not None:
            self.trace({"event": "apply", "number": block.number, "hash": "0x" + block.hash.hex(), "t": time.time(),
                        "arrived": received.arrived_wall})  # fmt: skip
        return True

    def _has(self, block_hash: bytes) -> bool:
        return self._header(block_hash) is not None

    def _header(self, block_hash: bytes) -> Any:
        try:
            return self.node.chain.header_by_hash(block_hash)
        except Exception:  # HeaderNotFound
            return None
