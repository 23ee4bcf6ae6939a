"""The sequencer's L1 side: each L2 block's L1 origin, its L1-attributes deposit and its user deposits.

For the block after ``parent`` at ``timestamp``:

- the parent's origin is read from the parent's own L1-info deposit (the L2 genesis block's origin is the
  rollup config's ``genesis_l1``), so nothing else needs storing and a restart resumes exactly; a block
  that stays in the epoch repeats those L1 attributes with the next sequence number;
- the next L1 block becomes the new origin (a new epoch) once it is ``l1_confirmations`` behind the L1 head,
  its timestamp is not after ``timestamp``, and it extends the current origin; the block then starts with
  that L1 block's user deposits (from the portal's logs) after the L1-info deposit, sequence number 0;
- otherwise the block stays in the epoch with the next sequence number, and only the L1-info deposit.

An unreachable L1 keeps the current origin (blocks go on, deposits wait). A block more than
``max_sequencer_drift`` seconds after its origin's L1 timestamp takes no pool transactions (deposits only), as
op-node's sequencer does and as derivation requires (:meth:`Sequencer.takes_transactions`): the sequencer
moves to the next origin whenever it may, so past the drift the next one is not there to adopt.

An L1 reorg that replaces the head's origin makes the L2 blocks on that origin invalid (no validator derives
them): as op-node's sequencer does, :meth:`Sequencer.reset_on_l1_reorg` (before each block) drops them, back to
the newest L2 block whose origin is still canonical, and the next blocks adopt the new canonical L1 blocks as
origins. The user transactions of the dropped blocks go back to the pool (those still valid); receipts given for
them are void, as on any rollup whose L1 reorgs (logged as an error; ``lorachain_sequencer_l1_reorg_resets_total``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI
from eth.vm.forks.cancun.state import fake_exponential
from prometheus_client import Counter

from lorachain.da_client.client import DAClient
from lorachain.node import metrics
from lorachain.node.rollup.config import L1BlockRef, RollupConfig
from lorachain.node.rollup.deposit_vm import deposit_of, deposit_transaction, is_deposit
from lorachain.node.rollup.l1_client import L1Client, L1RpcError, L1Unavailable
from lorachain.node.rollup.l1_deposits import deposits_in_block
from lorachain.node.rollup.l1_info import L1_BLOCK_ADDRESS, L1BlockInfo, L1InfoError

if TYPE_CHECKING:
    from lorachain.node.chain import Blockchain
    from lorachain.node.node import Node

log = logging.getLogger("lorachain.sequencer")

BLOB_BASE_FEE_UPDATE_FRACTION = 5_007_716  # Prague (EIP-7691)
ORIGIN_CHECK_S = 0.25  # the head's L1 origin is checked against L1 at most this often (each block, when slower)

PAST_DRIFT_BLOCKS = Counter("lorachain_sequencer_past_drift_blocks_total",
                            "Blocks built past the sequencer drift of their L1 origin (deposits only)",
                            registry=metrics.REGISTRY)  # fmt: skip
L1_REORG_RESETS = Counter("lorachain_sequencer_l1_reorg_resets_total",
                          "Sequencer resets: L2 blocks dropped because an L1 reorg replaced their L1 origin",
                          registry=metrics.REGISTRY)  # fmt: skip


@dataclass(frozen=True)
class L1BlockHeader:
    ref: L1BlockRef
    parent_hash: bytes
    base_fee: int
    blob_base_fee: int


@dataclass(frozen=True)
class OriginReset:
    """Where the sequencer goes back to once an L1 reorg replaced its head's L1 origin."""

    head: BlockHeaderAPI  # the newest L2 block whose L1 origin is still canonical
    dropped: int  # the L2 blocks above it
    transactions: tuple[SignedTransactionAPI, ...]  # the user transactions of the dropped blocks, oldest first


def origin_of(block: BlockAPI) -> L1BlockInfo | None:
    """The L1 attributes an L2 block records in its first transaction (None without an L1-info deposit)."""
    if not block.transactions:
        return None
    first = block.transactions[0]
    if not is_deposit(first) or deposit_of(first).to != L1_BLOCK_ADDRESS:
        return None
    try:
        return L1BlockInfo.decode(deposit_of(first).data)
    except L1InfoError:
        return None


class Sequencer:
    def __init__(self, config: RollupConfig, l1: L1Client, da: DAClient | None = None) -> None:
        self.config = config
        self.l1 = l1
        self.da = da  # not for building blocks: the node reads its batches back through it (rollup.safe_head)
        self._origin_checked = float("-inf")  # when the head's L1 origin was last found canonical

    def l1_block(self, number: int) -> L1BlockHeader | None:
        raw = self.l1.block_by_number(number)
        if raw is None:
            return None
        excess = int(raw.get("excessBlobGas") or "0x0", 16)
        return L1BlockHeader(
            ref=L1BlockRef(int(raw["number"], 16), bytes.fromhex(raw["hash"][2:]), int(raw["timestamp"], 16)),
            parent_hash=bytes.fromhex(raw["parentHash"][2:]),
            base_fee=int(raw.get("baseFeePerGas") or "0x0", 16),
            blob_base_fee=fake_exponential(1, excess, BLOB_BASE_FEE_UPDATE_FRACTION),
        )

    def l1_info(self, l1: L1BlockHeader, sequence_number: int) -> L1BlockInfo:
        return L1BlockInfo(
            base_fee_scalar=self.config.base_fee_scalar,
            blob_base_fee_scalar=self.config.blob_base_fee_scalar,
            sequence_number=sequence_number,
            l1_timestamp=l1.ref.timestamp,
            l1_number=l1.ref.number,
            base_fee=l1.base_fee,
            blob_base_fee=l1.blob_base_fee,
            l1_block_hash=l1.ref.hash,
            batcher_hash=self.config.batcher_hash,
        )

    def genesis_origin(self) -> L1BlockInfo:
        """The L2 genesis block's L1 attributes (its origin is the config's genesis L1 block)."""
        genesis = self.config.genesis_l1
        block = self.l1_block(genesis.number)
        if block is None or block.ref.hash != genesis.hash:
            raise RuntimeError(f"the L1 node does not have the rollup's genesis L1 block #{genesis.number}")
        return self.l1_info(block, 0)

    def _next_origin(self, current: L1BlockInfo, timestamp: int) -> L1BlockHeader | None:
        """The L1 block after ``current``'s if it may become the origin of a block at ``timestamp``."""
        try:
            if self.l1.block_number() - self.config.l1_confirmations < current.l1_number + 1:
                return None
            candidate = self.l1_block(current.l1_number + 1)
        except (L1Unavailable, L1RpcError) as exc:
            log.warning("L1 unavailable, staying on origin #%d: %s", current.l1_number, exc)
            return None
        if candidate is None or candidate.ref.timestamp > timestamp:
            return None
        if candidate.parent_hash != current.l1_block_hash:
            log.error("L1 block #%d does not extend origin 0x%s (an L1 reorg): staying on the origin until the "
                      "sequencer resets", candidate.ref.number, current.l1_block_hash.hex())  # fmt: skip
            self._origin_checked = float("-inf")  # the next reset check goes to L1 at once
            return None
        return candidate

    # -- L1 reorgs ---------------------------------------------------------------------------------
    def origin_reset(self, chain: Blockchain) -> OriginReset | None:
        """None while the L1 origin of the chain's head is canonical (checked at most every ``ORIGIN_CHECK_S``
        seconds, or where L1 cannot be read); else the reset to the newest L2 block whose origin still is."""
        now = time.monotonic()
        if now - self._origin_checked < ORIGIN_CHECK_S:
            return None
        hashes: dict[int, bytes | None] = {}  # canonical L1 hashes by number, read once each
        header, dropped = chain.head, []
        try:
            while not self._origin_canonical(chain, header, hashes):
                if header.block_number == 0:
                    log.error("the rollup's genesis L1 block #%d is no longer canonical: the sequencer cannot reset",
                              self.config.genesis_l1.number)  # fmt: skip
                    return None
                dropped.append(chain.block_by_header(header))
                header = chain.header_by_hash(header.parent_hash)
        except (L1Unavailable, L1RpcError) as exc:
            log.warning("L1 unavailable, the L1 origin of L2 block #%d is not checked: %s", chain.head.block_number,
                        exc)  # fmt: skip
            return None
        self._origin_checked = now
        if not dropped:
            return None
        transactions = tuple(tx for block in reversed(dropped) for tx in block.transactions if not is_deposit(tx))
        return OriginReset(header, len(dropped), transactions)

    def _origin_canonical(self, chain: Blockchain, header: BlockHeaderAPI, hashes: dict[int, bytes | None]) -> bool:
        if header.block_number == 0:
            number, origin_hash = self.config.genesis_l1.number, self.config.genesis_l1.hash
        else:
            origin = origin_of(chain.block_by_header(header))
            if origin is None:
                raise RuntimeError(f"L2 block #{header.block_number} records no L1 origin: not a block of this rollup")
            number, origin_hash = origin.l1_number, origin.l1_block_hash
        if number not in hashes:
            raw = self.l1.block_by_number(number)
            hashes[number] = bytes.fromhex(raw["hash"][2:]) if raw is not None else None
        return hashes[number] == origin_hash

    def reset_on_l1_reorg(self, node: Node) -> OriginReset | None:
        """Before the node builds a block: if L1 reorged the head's origin away, set the node's head back to the
        newest L2 block whose origin is canonical (:meth:`origin_reset`) and return the dropped blocks' user
        transactions to its pool (those no longer valid stay out)."""
        reset = self.origin_reset(node.chain)
        if reset is None:
            return None
        from lorachain.node.txpool import TxPoolError

        old_head = node.chain.head
        node.set_head(reset.head)  # clears the pool too
        pooled = 0
        for tx in reset.transactions:
            try:
                node.pool.add(tx, len(tx.encode()))
                pooled += 1
            except TxPoolError as exc:
                log.warning("tx 0x%s of a dropped block does not go back to the pool: %s", tx.hash.hex(), exc)
        L1_REORG_RESETS.inc()
        log.error("L1 REORG: the L1 origin of L2 blocks #%d-#%d is no longer canonical: sequencer reset to L2 block "
                  "#%d (0x%s), %d block(s) dropped with %d user transaction(s), %d back in the pool; their receipts "
                  "are void", reset.head.block_number + 1, old_head.block_number, reset.head.block_number,
                  reset.head.hash.hex(), reset.dropped, len(reset.transactions), pooled)  # fmt: skip
        return reset

    def takes_transactions(self, leading: list[SignedTransactionAPI], timestamp: int) -> bool:
        """Whether the block that ``leading`` (:meth:`block_inputs`) opens at ``timestamp`` may hold pool
        transactions: not past the sequencer drift of its origin (derivation drops such a batch)."""
        info = L1BlockInfo.decode(deposit_of(leading[0]).data)
        if timestamp <= info.l1_timestamp + self.config.max_sequencer_drift:
            return True
        PAST_DRIFT_BLOCKS.inc()
        log.warning("L2 block at %d is %ds past L1 origin #%d, beyond the sequencer drift (%ds): deposits only, pool "
                    "transactions wait for the next origin", timestamp, timestamp - info.l1_timestamp, info.l1_number,
                    self.config.max_sequencer_drift)  # fmt: skip
        return False

    def block_inputs(self, parent: BlockAPI, timestamp: int) -> list[SignedTransactionAPI]:
        """The deposits that must open the L2 block after ``parent`` at ``timestamp``."""
        current = origin_of(parent) if parent.number > 0 else self.genesis_origin()
        if current is None:
            raise RuntimeError(f"L2 block #{parent.number} records no L1 origin: not a block of this rollup")
        info = dataclasses.replace(current, sequence_number=current.sequence_number + 1)  # same epoch
        deposits: list = []
        candidate = self._next_origin(current, timestamp)
        if candidate is not None:
            try:
                deposits = deposits_in_block(self.l1, self.config.deposit_portal, candidate.ref.hash)
                info = self.l1_info(candidate, 0)  # a new epoch
            except (L1Unavailable, L1RpcError) as exc:
                log.warning("cannot read deposits of L1 block #%d, staying on the origin: %s",
                            candidate.ref.number, exc)  # fmt: skip
        if deposits:
            log.info("epoch L1 #%d: %d deposit(s)", info.l1_number, len(deposits))
        return [deposit_transaction(info.deposit()), *(deposit_transaction(d) for d in deposits)]
