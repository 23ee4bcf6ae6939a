"""The safe and finalized L2 heads, as op-node tracks them, for ``optimism_syncStatus``.

- :class:`SafeHeadTracker` (the sequencer): a block is *safe* once its batch is on L1. As op-node's sequencer
  does, the tracker derives from L1 (+ the DA server for alt-DA commitments): each confirmed L1 block's batcher
  frames (:mod:`retrieval`) make channels (``channel_timeout`` L1 blocks at most), and each batch read is
  consolidated with the sequencer's own chain: a batch on the safe head that equals the next block's batch
  (:func:`batcher.batch_of_raw_block`, the batcher's own definition) makes that block safe. Unlike the
  validator's :class:`derivation.Deriver`, nothing is executed or written. The state lives in memory: after a
  restart the tracker reads L1 again from the rollup's genesis L1 block, at most ``max_l1_blocks`` per step.
  L1 reorgs as in derivation: the L1 blocks read are remembered (:class:`derivation.L1Journal`); when the last
  one leaves the canonical chain, the safe head and the read position go back to those of the newest one still
  on it. A safe head the sequencer's own chain dropped (its reset on an L1 reorg) goes back the same way, to the
  newest one still in the chain.
- :class:`Finality` (both roles): op-node's finalizer, the safe head as of each L1 block read; the finalized
  head is the last one recorded at an L1 block at or below the L1's finalized block.
"""

from __future__ import annotations

import logging
from collections import deque

from eth.abc import BlockHeaderAPI
from eth.exceptions import HeaderNotFound

from lorachain.da_client.client import DAClient, DAError
from lorachain.node.chain import Blockchain
from lorachain.node.rollup.batcher import BatcherError, batch_of_raw_block
from lorachain.node.rollup.batches import BatchError, SingularBatch
from lorachain.node.rollup.channels import ChannelAssembler, ChannelError, decompress_channel, split_batches
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.derivation import CHANNEL_TIMEOUT, REORG_MARGIN, L1Journal, L1Read
from lorachain.node.rollup.l1_client import L1Client, L1RpcError, L1Unavailable
from lorachain.node.rollup.retrieval import DARequired, frames_in_l1_block

log = logging.getLogger("lorachain.safe_head")

FINALITY_LOOKBACK = 4096  # L1 blocks of safe heads kept for finality (op-node keeps fewer, ~385)


class Finality:
    """Which L2 block was the safe head after each L1 block; the finalized L2 head follows the L1's."""

    def __init__(self, genesis: BlockHeaderAPI, lookback: int = FINALITY_LOOKBACK) -> None:
        self.finalized = genesis
        self._points: deque[tuple[int, BlockHeaderAPI]] = deque(maxlen=lookback)

    def record(self, l1_number: int, safe: BlockHeaderAPI) -> None:
        """``safe`` was derived from L1 blocks up to ``l1_number`` (kept at the first L1 block it was safe at)."""
        if self._points and self._points[-1][1].hash == safe.hash:
            return
        if self._points and l1_number < self._points[-1][0]:
            return  # never claim an earlier L1 block than one already recorded
        self._points.append((l1_number, safe))

    def rewind(self, l1_number: int) -> None:
        """Forget the safe heads recorded after L1 block ``l1_number`` (an L1 reorg replaced those blocks)."""
        while self._points and self._points[-1][0] > l1_number:
            self._points.pop()

    def update(self, finalized_l1: int) -> BlockHeaderAPI:
        """The finalized L2 head once the L1 has finalized ``finalized_l1`` (never moves back)."""
        while self._points and self._points[0][0] <= finalized_l1:
            _, safe = self._points.popleft()
            if safe.block_number > self.finalized.block_number:
                self.finalized = safe
        return self.finalized


class SafeHeadTracker:
    def __init__(
        self,
        config: RollupConfig,
        l1: L1Client,
        chain: Blockchain,
        da: DAClient | None = None,
        channel_timeout: int = CHANNEL_TIMEOUT,
    ) -> None:
        self.config, self.l1, self.chain, self.da = config, l1, chain, da
        self.channel_timeout = channel_timeout
        self.l1_reorgs = 0
        self._reset()

    def _reset(self) -> None:
        genesis = self.chain.header_by_number(0)
        self.safe: BlockHeaderAPI = genesis
        self.next_l1 = self.config.genesis_l1.number
        self.finality = Finality(genesis)
        self._channels: dict[bytes, tuple[ChannelAssembler, int]] = {}
        self._warned: str | None = None
        self.journal = L1Journal(self.channel_timeout + REORG_MARGIN)

    def step(self, max_l1_blocks: int = 64) -> None:
        """Read the confirmed L1 blocks not read yet (at most ``max_l1_blocks``); an L1 or DA server that cannot
        answer leaves the rest for the next step."""
        if not self.chain.is_canonical(self.safe):  # the sequencer reset (an L1 reorg), or dev tools rewound it
            self._rewind_to_canonical_safe()
        try:
            canonical, _ = self.journal.check_tip(self.l1)
            if not canonical:
                self._rewind_l1()
            last = self.l1.block_number() - self.config.l1_confirmations
            for _ in range(max_l1_blocks):
                if self.next_l1 > last:
                    break
                number, tip, block_hash = self.next_l1, self.journal.tip, None
                if tip is None or number > tip.number:  # a block read again keeps what it first recorded
                    raw = self.l1.block_by_number(number)  # before its frames: a reorg in between is seen next
                    if raw is None:
                        break
                    if tip is not None and number == tip.number + 1 and raw["parentHash"] != "0x" + tip.hash.hex():
                        self._rewind_l1()
                        continue
                    block_hash = bytes.fromhex(raw["hash"][2:])
                self._read(number)
                if block_hash is not None:
                    resume = min((opened for _, opened in self._channels.values()), default=number + 1)
                    self.journal.record(L1Read(number, block_hash, self.safe.hash, resume))
                self.finality.record(number, self.safe)
                self.next_l1 += 1
        except (L1Unavailable, L1RpcError, DAError, DARequired) as exc:
            if str(exc) != self._warned:  # once per cause, not once per RPC call
                log.warning("safe head stays at #%d (L1 block #%d not read): %s", self.safe.block_number,
                            self.next_l1, exc)  # fmt: skip
                self._warned = str(exc)

    def _rewind_l1(self) -> None:
        """An L1 reorg replaced the last L1 block read: back to the newest one still canonical."""
        tip = self.journal.tip
        ancestor = self.journal.rewind(self.l1)
        self.l1_reorgs += 1
        if ancestor is None or not self._rewind_to(ancestor):
            log.error("L1 reorg deeper than the L1 blocks remembered (up to #%d): reading L1 again from the rollup's "
                      "genesis", tip.number if tip else -1)  # fmt: skip
            self._reset()
            return
        log.warning("L1 reorg: L1 blocks #%d-#%d read are no longer canonical: safe head back to #%d, reading L1 "
                    "again from #%d", ancestor.number + 1, tip.number if tip else ancestor.number,
                    self.safe.block_number, self.next_l1)  # fmt: skip

    def _rewind_to_canonical_safe(self) -> None:
        """The chain dropped the safe head: back to the newest L1 block read whose safe head is still in it."""
        was = self.safe.block_number
        for entry in reversed(list(self.journal.entries.values())):
            if self._rewind_to(entry):
                self.journal.forget_after(entry.number)
                log.warning("safe head #%d is no longer canonical: back to #%d, reading L1 again from #%d", was,
                            self.safe.block_number, self.next_l1)  # fmt: skip
                return
        log.warning("safe head #%d is no longer canonical: reading L1 again", was)
        self._reset()

    def _rewind_to(self, entry: L1Read) -> bool:
        """Safe head and read position as after L1 block ``entry`` (False if its safe head left the chain)."""
        try:
            safe = self.chain.header_by_hash(entry.safe_head)
        except HeaderNotFound:
            return False
        if not self.chain.is_canonical(safe):
            return False
        self.safe, self.next_l1 = safe, entry.resume_l1
        self._channels.clear()
        self.finality.rewind(entry.number)
        return True

    def _read(self, number: int) -> None:
        for frame in frames_in_l1_block(self.l1, self.config, number, self.da):
            entry = self._channels.setdefault(frame.channel_id, (ChannelAssembler(frame.channel_id), number))
            entry[0].add(frame)
        for channel_id, (assembler, opened) in sorted(self._channels.items(), key=lambda item: item[1][1]):
            if assembler.ready:
                del self._channels[channel_id]
                self._consolidate_channel(assembler)
            elif number - opened > self.channel_timeout:
                del self._channels[channel_id]

    def _consolidate_channel(self, assembler: ChannelAssembler) -> None:
        try:
            raw_batches = split_batches(decompress_channel(assembler.data()))
        except ChannelError as exc:
            log.warning("channel 0x%s unreadable: %s", assembler.channel_id.hex(), exc)
            return
        for raw in raw_batches:
            try:
                self._consolidate(SingularBatch.decode(raw))
            except BatchError as exc:
                log.warning("the rest of channel 0x%s unreadable: %s", assembler.channel_id.hex(), exc)
                return

    def _consolidate(self, batch: SingularBatch) -> None:
        if batch.parent_hash != self.safe.hash:
            return  # a batch already consolidated, or one that does not extend the safe head
        try:
            header = self.chain.header_by_number(self.safe.block_number + 1)
        except HeaderNotFound:
            log.warning("a batch on L1 extends the safe head #%d, which this node has no child of",
                        self.safe.block_number)  # fmt: skip
            return
        try:
            ours = batch_of_raw_block(header.block_number, self.chain.encode_block(self.chain.block_by_header(header)))
        except BatcherError as exc:
            log.warning("block #%d: %s", header.block_number, exc)
            return
        if ours != batch:
            log.warning("the batch on L1 after block #%d differs from block #%d: not safe",
                        self.safe.block_number, header.block_number)  # fmt: skip
            return
        self.safe = header
