"""The execution node: chain + txpool + block production + dev tooling, behind one object.

The JSON-RPC layer talks only to :class:`Node`. Everything runs on one asyncio loop: py-evm is
CPU-bound Python, so a block is built in one go between requests, and the transactions that arrived
meanwhile go into the next block together (automine batches naturally under load).

Automine answers the senders waiting for inclusion as soon as their transactions have run, and then seals the
block (roots, header, commit): their next transactions travel while it seals. Until it is committed every
JSON-RPC call waits at :attr:`Node.committed` (the dispatcher's barrier), so no client ever reads a chain that
lacks a block whose transactions it was told are mined.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth.abc import BlockHeaderAPI, SignedTransactionAPI, StateAPI
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth_account import Account
from eth_utils import to_canonical_address

from lorachain.genesis.accounts import dev_accounts
from lorachain.hashing import keccak
from lorachain.node import metrics, tx_sender
from lorachain.node.chain import DEV_EDIT_EXTRA_DATA, Blockchain, BuiltBlock, ChainError, ExecutedBlock
from lorachain.node.clock import BlockClock
from lorachain.node.events import EventBus
from lorachain.node.impersonation import sign_as
from lorachain.node.tx_decoding import decode_transaction
from lorachain.node.txpool import TxPool, TxPoolError

log = logging.getLogger("lorachain.node")

MINING_AUTO, MINING_INTERVAL, MINING_MANUAL = "auto", "interval", "manual"


@dataclass
class NodeConfig:
    mining: str = MINING_AUTO
    block_time: float = 2.0
    coinbase: bytes = b"\x00" * 20
    gas_limit: int | None = None
    allow_unprotected_txs: bool = False
    unlocked_keys: dict[bytes, bytes] = field(default_factory=dict)  # address -> private key
    wait_for_inclusion: float = 5.0  # automine: sendRawTransaction returns once mined (as Hardhat)
    automine_linger: float = 0.005  # automine: longest wait for more arrivals before building
    automine_quiet: float = 0.0  # automine: build once no transaction arrived for this long (0: one loop pass)
    retry_after_s: float = 2.0  # automine: when nothing pending could be included, try again after this
    sequencer: Any = None  # an OP Stack sequencer: the deposits that open each block (rollup.sequencer)
    deriver: Any = None  # a validator: derives the chain from L1 + DA (rollup.derivation) instead of mining
    divergence_report: Any = None  # where a validator writes the report of the first divergent block
    fault: str | None = None  # test-only faulty sequencer: "tamper-state" credits 1 wei the batch does not show
    p2p: Any = None  # a p2p.service.GossipService: the sequencer publishes its blocks, validators read them
    unsafe: Any = None  # a validator's p2p.unsafe.UnsafeBlocks: gossiped blocks applied ahead of derivation


def _release(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _tamper_state(state: StateAPI) -> None:
    """A lying sequencer's edit (tests only): value out of nowhere, which no batch carries."""
    state.delta_balance(b"\x7a" * 20, 1)


def _l2_heads(chain: Blockchain, config: NodeConfig) -> Any:
    if config.sequencer is None and config.deriver is None:
        return None
    from lorachain.node.rollup.l2_heads import L2Heads  # rollup code only where a rollup role is configured

    return L2Heads.of(chain, sequencer=config.sequencer, deriver=config.deriver)


@dataclass
class Snapshot:
    head_hash: bytes
    clock_offset: int


class Node:
    """One chain, one pool, one block producer."""

    def __init__(self, chain: Blockchain, config: NodeConfig | None = None) -> None:
        self.chain = chain
        self.config = config or NodeConfig()
        self.events = EventBus()
        self._past_drift = False  # a sequencer's last block was past its origin's drift: pool transactions wait
        self.heads = _l2_heads(chain, self.config)  # safe/finalized of a rollup node; None for a plain devnet
        self.clock = BlockClock()
        self.pool = TxPool(
            chain_id=chain.chain_id,
            state_provider=lambda: self.chain.state_at(self.chain.head),
            base_fee_provider=self.next_base_fee,
            block_gas_limit=lambda: self.config.gas_limit or self.chain.head.gas_limit,
            allow_unprotected=self.config.allow_unprotected_txs,
        )
        self.snapshots: dict[int, Snapshot] = {}
        self.impersonated: set[bytes] = set()
        self._next_snapshot = 0
        self._next_base_fee: tuple[bytes, int] | None = None
        self._wake = asyncio.Event()
        self._inclusion: dict[bytes, list[asyncio.Future[None]]] = {}  # tx hash -> its senders' waiters
        self.committed = asyncio.Event()  # clear while an executed block, already announced, is being sealed
        self.committed.set()
        self._producer: asyncio.Task[None] | None = None
        self.started_at = time.time()
        metrics.HEAD.set(chain.head.block_number)
        metrics.POOL_PENDING.set_function(lambda: self.pool.counts()[0])
        metrics.POOL_QUEUED.set_function(lambda: self.pool.counts()[1])

    @classmethod
    def with_dev_accounts(cls, chain: Blockchain, config: NodeConfig | None = None) -> Node:
        config = config or NodeConfig()
        for acct in dev_accounts():
            config.unlocked_keys[to_canonical_address(acct.address)] = acct.private_key
        return cls(chain, config)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.config.p2p is not None:
            if self.config.unsafe is not None:
                self.config.unsafe.loop = asyncio.get_running_loop()
            self.config.p2p.start()
        if self.config.deriver is not None:
            self._producer = asyncio.get_running_loop().create_task(self._derive_loop())
            return
        if self.config.mining == MINING_AUTO:
            self._producer = asyncio.get_running_loop().create_task(self._automine_loop())
        elif self.config.mining == MINING_INTERVAL:
            self._producer = asyncio.get_running_loop().create_task(self._interval_loop())

    async def stop(self) -> None:
        if self.config.p2p is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.config.p2p.stop)
        if self._producer is not None:
            self._producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._producer
        self.chain.close()

    async def _derive_loop(self, poll_s: float = 0.5) -> None:
        """A validator's block source: one L1 block at a time, on the loop (RPC reads see whole blocks), handing
        the loop back after each derived L2 block: an L1 block may carry a channel of hundreds of L2 blocks (the
        batcher's ``--max-blocks``), seconds of execution during which RPC requests (several loop turns each)
        and gossip would otherwise wait; a catching-up validator then stopped answering JSON-RPC within
        clients' timeouts."""
        deriver = self.config.deriver
        while True:
            try:
                before = self.chain.head.block_number
                with contextlib.closing(deriver.step_blocks()) as blocks:
                    for _ in blocks:
                        self.pool.reset()
                        await asyncio.sleep(0)  # RPC requests and gossiped blocks, between two derived blocks
                caught_up = deriver.stalled is not None or (  # held back by missing DA data: poll, don't spin
                    deriver.next_l1 > deriver.l1.block_number() - deriver.config.l1_confirmations)  # fmt: skip
                if self.chain.head.block_number != before:
                    self.pool.reset()
                if self.config.unsafe is not None:
                    self.config.unsafe.on_head_changed()  # gossiped blocks kept for a parent derivation just made
            except Exception:
                log.exception("derivation step failed; will retry")
                caught_up = True
            if deriver.divergence is not None and self.config.divergence_report is not None:
                self.config.divergence_report.write_text(json.dumps(deriver.divergence, indent=2) + "\n")
                log.error("derivation stopped at the divergence; report in %s", self.config.divergence_report)
                return
            await asyncio.sleep(poll_s if caught_up else 0)

    async def _automine_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._gather_arrivals()
            while self._has_executable():
                built = await self._mine_announcing_early()
                # nothing could be included (e.g. no AI sidecar), or nothing may be (past the sequencer drift)
                if built is None or built.block is None or self._past_drift:
                    asyncio.get_running_loop().call_later(self.config.retry_after_s, self._wake.set)
                    break
                await self._gather_arrivals()

    async def _gather_arrivals(self) -> None:
        """Let transactions already on the wire join the next block (bounded by ``automine_linger``).

        Senders are answered before their block is sealed (:meth:`_mine_announcing_early`), so under load
        their next transactions arrive while it seals: by default the block is built as soon as a pass of
        the event loop admits nothing new. A positive ``automine_quiet`` waits until the pool has been quiet
        that long instead (bigger blocks for clients slower to answer, at about that much latency; with
        0.5 ms, the earlier default, the JSON-RPC benchmark's workload B ran ~15 % slower).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.automine_linger
        size = -1
        while size != len(self.pool) and loop.time() < deadline:
            size = len(self.pool)
            await asyncio.sleep(0)
            if size == len(self.pool):
                await asyncio.sleep(self.config.automine_quiet)

    async def _interval_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.block_time)
            self._produce_safely()

    def _produce_safely(self, skip_empty: bool = False) -> BuiltBlock | None:
        try:
            return self.mine(skip_empty=skip_empty)
        except Exception:
            log.exception("block production failed; will retry")
            return None

    async def _mine_announcing_early(self) -> BuiltBlock | None:
        """``mine(skip_empty=True)``, answering the senders waiting for inclusion before the block is sealed
        (see the module's docstring); None if production failed."""
        try:
            executed, executing_s = self._execute()
            if not executed.transactions:
                return executed.outcome
            self.committed.clear()
            try:
                self._release_waiters(executed.transactions)
                await asyncio.sleep(0)  # their answers go out now: the waiters were woken before this task
                return self._seal(executed, executing_s)
            finally:
                self.committed.set()
        except Exception:
            log.exception("block production failed; will retry")
            return None

    def _has_executable(self) -> bool:
        return next(iter(self.pool.ordered_pending()), None) is not None

    # -- fees ------------------------------------------------------------------------------------
    def next_base_fee(self) -> int:
        head = self.chain.head
        if self._next_base_fee is None or self._next_base_fee[0] != head.hash:
            vm_class = self.chain.chain_class.get_vm_class_for_block_number(head.block_number + 1)
            if hasattr(head, "base_fee_per_gas"):  # London onwards: the EIP-1559 rule on the parent alone
                rule = getattr(vm_class, "expected_base_fee", calculate_expected_base_fee_per_gas)
                base_fee = rule(head)
            else:  # the next block may start London (or still lack a base fee): let its fork decide
                child = vm_class.create_header_from_parent(head, timestamp=head.timestamp + 1)
                base_fee = getattr(child, "base_fee_per_gas", 0) or 0
            self._next_base_fee = (head.hash, base_fee)
        return self._next_base_fee[1]

    # -- transactions ----------------------------------------------------------------------------
    def decode_transaction(self, raw: bytes) -> SignedTransactionAPI:
        vm_class = self.chain.chain_class.get_vm_class_for_block_number(self.chain.head.block_number + 1)
        try:
            tx = decode_transaction(vm_class.get_transaction_builder(), raw)
        except Exception as exc:
            raise TxPoolError(f"rlp: invalid transaction encoding ({type(exc).__name__}: {exc})") from exc
        tx_sender.prime(tx, raw)
        return tx

    def submit(self, raw: bytes) -> tuple[bytes, bool]:
        """Admit a signed transaction; returns (hash, executable-now)."""
        tx = self.decode_transaction(raw)
        try:
            executable = self.pool.add(tx, len(raw))
        except TxPoolError:
            metrics.TX_REJECTED.inc()
            raise
        metrics.TX_RECEIVED.inc()
        self.events.publish("pending_tx", tx.hash)
        if executable:
            self._wake.set()
        return tx.hash, executable

    async def submit_and_wait(self, raw: bytes) -> bytes:
        """Submit; in automine mode return once the transaction has run in its block (calls made after that
        wait for the block's commit, :attr:`committed`)."""
        tx_hash, executable = self.submit(raw)
        if executable:
            await self._wait_for_inclusion(tx_hash)
        return tx_hash

    async def _wait_for_inclusion(self, tx_hash: bytes) -> None:
        """In automine mode, wait (at most ``wait_for_inclusion`` seconds) until the transaction has run in
        the block being built. Each waiter has its own future, so a cancelled one (a client gone) leaves the
        others be, and its wake-up is a single step of the loop (see :meth:`_mine_announcing_early`)."""
        if self.config.mining != MINING_AUTO or self.config.wait_for_inclusion <= 0:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiters = self._inclusion.setdefault(tx_hash, [])
        waiters.append(future)
        timer = loop.call_later(self.config.wait_for_inclusion, _release, future)
        try:
            await future
        finally:
            timer.cancel()
            if future in waiters:
                waiters.remove(future)
                if not waiters and self._inclusion.get(tx_hash) is waiters:
                    del self._inclusion[tx_hash]

    def _release_waiters(self, transactions: Sequence[SignedTransactionAPI]) -> None:
        for tx in transactions:
            for future in self._inclusion.pop(tx.hash, ()):
                _release(future)

    async def send_impersonated(self, sender: bytes, tx_fields: dict[str, Any]) -> bytes:
        """Admit a transaction from an impersonated account (no key needed, devnet only)."""
        vm_class = self.chain.chain_class.get_vm_class_for_block_number(self.chain.head.block_number + 1)
        tx = sign_as(vm_class, sender, tx_fields)
        executable = self.pool.add(tx, len(tx.encode()))  # type: ignore[arg-type]
        self.events.publish("pending_tx", tx.hash)
        if executable:
            self._wake.set()
            await self._wait_for_inclusion(tx.hash)
        return tx.hash

    def find_transaction(self, tx_hash: bytes) -> SignedTransactionAPI | None:
        """A transaction by hash: from the canonical chain, else from the pool, else None."""
        location = self.chain.tx_location(tx_hash)
        if location is None:
            return self.pool.get(tx_hash)
        block = self.chain.block_by_header(self.chain.header_by_hash(location.block_hash))
        return block.transactions[location.index]

    def sign_with_unlocked(self, sender: bytes, tx_fields: dict[str, Any]) -> bytes:
        key = self.config.unlocked_keys.get(sender)
        if key is None:
            raise TxPoolError("unknown account")
        return bytes(Account.sign_transaction(tx_fields, key).raw_transaction)

    # -- blocks ----------------------------------------------------------------------------------
    def set_mining_mode(self, mode: str) -> None:
        """Switch between automine, interval and manual block production at run time."""
        if self._producer is not None:
            self._producer.cancel()
            self._producer = None
        self.config.mining = mode
        self.start()
        if mode == MINING_AUTO:
            self._wake.set()

    def edit_state(self, edit: Callable[[StateAPI], None]) -> BuiltBlock:
        """Apply a devnet state edit (anvil_set*) in an empty block of its own, so it is persisted.

        Such a block cannot be re-executed from its contents alone (the edit is not a transaction), so
        a chain with edits cannot be re-imported elsewhere; that is inherent to devnet cheat codes.
        """
        return self.mine(state_edits=edit, include_pool=False, extra_data=DEV_EDIT_EXTRA_DATA)

    def mine(
        self,
        timestamp: int | None = None,
        state_edits: Callable[[StateAPI], None] | None = None,
        include_pool: bool = True,
        extra_data: bytes = b"",
        skip_empty: bool = False,
    ) -> BuiltBlock:
        """Build one block from the pool's executable transactions and commit it (with ``skip_empty``,
        only if it includes one)."""
        executed, executing_s = self._execute(timestamp, state_edits, include_pool, extra_data)
        if skip_empty and not executed.transactions:
            return executed.outcome
        return self._seal(executed, executing_s)

    def _execute(
        self,
        timestamp: int | None = None,
        state_edits: Callable[[StateAPI], None] | None = None,
        include_pool: bool = True,
        extra_data: bytes = b"",
    ) -> tuple[ExecutedBlock, float]:
        """Run the next block's transactions (nothing committed yet); drop those the block rejected."""
        started = time.perf_counter()
        if self.config.sequencer is not None:  # an L1 reorg took the head's L1 origin: back to a canonical one
            self.config.sequencer.reset_on_l1_reorg(self)
        head = self.chain.head
        ts = timestamp if timestamp is not None else self.clock.next_timestamp(head.timestamp)
        mix_hash = keccak(head.mix_hash + head.hash)
        leading = []  # an L2 block opens with its L1-info deposit and its epoch's user deposits
        if self.config.sequencer is not None:
            leading = self.config.sequencer.block_inputs(self.chain.block_by_header(head), ts)
            self._past_drift = not self.config.sequencer.takes_transactions(leading, ts)
            include_pool = include_pool and not self._past_drift
            if self.config.fault == "tamper-state" and state_edits is None:
                state_edits = _tamper_state
        executed = self.chain.execute_block(
            leading + (list(self.pool.ordered_pending()) if include_pool else []),
            timestamp=ts,
            coinbase=self.config.coinbase,
            mix_hash=mix_hash,
            gas_limit=self.config.gas_limit,
            state_edits=state_edits,
            extra_data=extra_data,
        )
        for tx, reason in executed.outcome.unavailable:
            log.warning("tx 0x%s stays in the pool: %s", tx.hash.hex(), reason)
        for tx, reason in executed.outcome.rejected:
            log.warning("dropping tx 0x%s from the pool: %s", tx.hash.hex(), reason)
            self.pool.remove(tx.hash)
        return executed, time.perf_counter() - started

    def _seal(self, executed: ExecutedBlock, executing_s: float) -> BuiltBlock:
        """Commit an executed block; then the pool, the metrics, the waiters and the subscribers learn of it."""
        started = time.perf_counter()
        built = self.chain.seal_block(executed)
        assert built.block is not None
        for tx in built.block.transactions:
            self.pool.remove(tx.hash)
        self.pool.reset()
        elapsed = executing_s + time.perf_counter() - started  # the block's own work, not the wait between
        metrics.observe_block(built, elapsed)
        log.info(
            "block #%d 0x%s txs=%d gas=%d in %.1f ms",
            built.block.number,
            built.block.hash.hex()[:12],
            len(built.block.transactions),
            built.block.header.gas_used,
            elapsed * 1000,
        )
        self._release_waiters(built.block.transactions)  # evm_mine and interval blocks; automine released them
        self.events.publish("block", built)
        if self.config.p2p is not None and self.config.sequencer is not None:
            try:
                self.config.p2p.publish_block(built.block)
            except Exception:  # gossip is best effort: the block is committed, and batched to L1 regardless
                log.exception("publishing block #%d on p2p failed", built.block.number)
        return built

    # -- dev tooling (evm_* / anvil_*) -----------------------------------------------------------
    def snapshot(self) -> int:
        self._next_snapshot += 1
        self.snapshots[self._next_snapshot] = Snapshot(self.chain.head.hash, self.clock.offset)
        return self._next_snapshot

    def revert(self, snapshot_id: int) -> bool:
        snap = self.snapshots.get(snapshot_id)
        if snap is None:
            return False
        for later in [k for k in self.snapshots if k >= snapshot_id]:
            del self.snapshots[later]
        self.set_head(self.chain.header_by_hash(snap.head_hash))
        self.clock.offset = snap.clock_offset
        return True

    def set_head(self, header: BlockHeaderAPI) -> None:
        self.chain.set_head(header)
        self.pool.clear()
        metrics.HEAD.set(header.block_number)
        self.events.publish("reorg", header)

    def resolve_tag(self, tag: str) -> BlockHeaderAPI:
        head = self.chain.head
        if tag in ("safe", "finalized") and self.heads is not None:
            return self.heads.tag(tag)  # a rollup node: what L1 makes safe, and what the L1's finality finalizes
        if tag in ("latest", "pending", "safe", "finalized"):
            return head
        if tag == "earliest":
            return self.chain.header_by_number(0)
        raise ChainError(f"unknown block tag {tag}")
