"""The chain: py-evm blocks and state over the LMDB store, with atomic block commits.

One object owns the database. Reads (headers, blocks, receipts, state) go straight to LMDB; every
write that a block makes goes through a :class:`PendingWrites` overlay and lands in one LMDB
transaction together with the new canonical head.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rlp
from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    ComputationAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
)
from eth.chains.base import Chain
from eth.constants import GENESIS_PARENT_HASH
from eth.db.chain import ChainDB
from eth.db.schema import SchemaV1
from eth.exceptions import BlockNotFound, HeaderNotFound, TransactionNotFound
from eth.vm.chain_context import ChainContext
from eth_typing import Hash32
from eth_utils import ValidationError

from lorachain.genesis.genesis import Genesis, GenesisError, parse_genesis
from lorachain.node.impersonation import ImpersonatedTransaction
from lorachain.node.impersonation import record_key as impersonation_key
from lorachain.node.state_db import FLAT_ACCOUNTS
from lorachain.node.store import LmdbStore, PendingWrites
from lorachain.precompiles.attribution import ATTRIBUTION_ADDRESS, AttributionPrecompile
from lorachain.precompiles.inference import INFERENCE_ADDRESS, InferencePrecompile, SidecarUnavailable, block_ai_budget

GENESIS_KEY = b"lorachain:genesis"
# extraData of a devnet block that carries a state edit (anvil_setBalance, …) instead of transactions.
DEV_EDIT_EXTRA_DATA = b"lorachain:dev-state-edit"


class ChainError(Exception):
    """A request the chain cannot serve (unknown block, bad import, …)."""


@dataclass
class BuiltBlock:
    """The outcome of building one block."""

    block: BlockAPI | None  # None: nothing to include and ``skip_empty`` asked for no block
    receipts: tuple[ReceiptAPI, ...]
    computations: tuple[ComputationAPI, ...]
    rejected: list[tuple[SignedTransactionAPI, str]] = field(default_factory=list)
    deferred: list[SignedTransactionAPI] = field(default_factory=list)
    unavailable: list[tuple[SignedTransactionAPI, str]] = field(default_factory=list)  # deferred: no sidecar


class HandedHeadersChainDB(ChainDB):
    """py-evm's ``ChainDB``, answering lookups by hash from headers handed to it before reading the store.

    The builder hands it the parent it builds on: py-evm's block validation reads the parent back by hash
    (twice; py-evm caches the second decode), and decoding a stored header through pyrlp's backwards-compatible
    sedes costs ~50 µs.
    """

    def __init__(self, db: Any) -> None:
        super().__init__(db)
        self._handed: dict[bytes, BlockHeaderAPI] = {}

    def hand(self, header: BlockHeaderAPI) -> None:
        """Answer lookups of ``header.hash`` with ``header`` (which must be stored: a committed block's)."""
        self._handed[header.hash] = header

    def get_block_header_by_hash(self, block_hash: Hash32) -> BlockHeaderAPI:
        header = self._handed.get(block_hash)
        return header if header is not None else super().get_block_header_by_hash(block_hash)


@dataclass(frozen=True)
class ExecutedBlock:
    """A block whose transactions have run (receipts final) but whose roots are not yet computed nor
    anything committed: :meth:`Blockchain.execute_block`'s result, for :meth:`Blockchain.seal_block`."""

    transactions: tuple[SignedTransactionAPI, ...]  # those included, in order
    outcome: BuiltBlock  # receipts, computations, rejected and deferred; its ``block`` is set once sealed
    parent_hash: bytes
    header: BlockHeaderAPI  # with the block's gas used and bloom, its roots not yet filled in
    vm: Any
    chain: Chain
    overlay: PendingWrites


@dataclass(frozen=True)
class TxLocation:
    block_hash: bytes
    block_number: int
    index: int


class LRU(OrderedDict):
    """A small least-recently-used map."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class Blockchain:
    """Blocks, receipts and state of one chain, persisted in one datadir."""

    def __init__(self, store: LmdbStore, genesis: Genesis) -> None:
        self.store = store
        self.genesis = genesis
        # The AI precompile is part of the chain's rules on every node; it reaches a sidecar once one is
        # attached (``inference.client``), and until then leaves AI transactions in the pool.
        self.inference = InferencePrecompile(client=None)
        self.attribution = AttributionPrecompile(self.inference)  # shares the sidecar and the sources
        self.chain_class: type[Chain] = genesis.chain_class(
            {INFERENCE_ADDRESS: self.inference, ATTRIBUTION_ADDRESS: self.attribution}
        ).configure(chaindb_class=HandedHeadersChainDB)
        self._reader = self.chain_class(PendingWrites(store).atomic_view())
        self.chaindb: ChainDB = self._reader.chaindb  # type: ignore[assignment]
        self.chain_context = ChainContext(genesis.chain_id)
        self._head: BlockHeaderAPI = self.chaindb.get_canonical_head()
        self._blocks = LRU(256)
        self._receipts = LRU(256)
        self._scratch = LRU(8)

    # -- lifecycle -------------------------------------------------------------------------------
    @classmethod
    def initialize(cls, datadir: str | Path, genesis: Genesis, sync: str = "full") -> Blockchain:
        """Open ``datadir``, writing ``genesis`` if the store is new (or checking it matches); ``sync``: how
        durable each commit is (:mod:`lorachain.node.store`)."""
        store = LmdbStore(Path(datadir) / "chaindata", sync=sync)
        try:
            stored = store[GENESIS_KEY]
        except KeyError:
            stored = None
        if stored is not None:
            existing = parse_genesis(json.loads(stored))
            if existing.chain_id != genesis.chain_id or existing.raw != genesis.raw:
                store.close()
                raise GenesisError(
                    f"datadir {datadir} already holds a different genesis (chain id {existing.chain_id})"
                )
            return cls(store, existing)
        overlay = PendingWrites(store)
        genesis.chain_class().from_genesis(overlay.atomic_view(), genesis.header_params(), genesis.state())
        overlay[GENESIS_KEY] = json.dumps(genesis.raw, sort_keys=True).encode()
        overlay.commit()
        return cls(store, genesis)

    @classmethod
    def open(cls, datadir: str | Path, sync: str = "full") -> Blockchain:
        """Open an initialised datadir."""
        path = Path(datadir) / "chaindata"
        if not (path / "data.mdb").exists():
            raise ChainError(f"{datadir} holds no chain: run `lorachain init` first")
        store = LmdbStore(path, sync=sync)
        try:
            raw = json.loads(store[GENESIS_KEY])
        except KeyError as exc:
            store.close()
            raise ChainError(f"{datadir} holds no genesis") from exc
        return cls(store, parse_genesis(raw))

    def close(self) -> None:
        self.store.close()

    # -- reads -----------------------------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        return self.genesis.chain_id

    @property
    def head(self) -> BlockHeaderAPI:
        return self._head

    def header_by_number(self, number: int) -> BlockHeaderAPI:
        if number < 0 or number > self._head.block_number:
            raise HeaderNotFound(number)
        return self.chaindb.get_canonical_block_header_by_number(number)

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI:
        return self.chaindb.get_block_header_by_hash(block_hash)

    def is_canonical(self, header: BlockHeaderAPI) -> bool:
        if header.block_number > self._head.block_number:
            return False
        return self.chaindb.get_canonical_block_hash(header.block_number) == header.hash

    def block_by_header(self, header: BlockHeaderAPI) -> BlockAPI:
        block = self._blocks.get(header.hash)
        if block is None:
            vm_class = self.chain_class.get_vm_class(header)
            block = vm_class.get_block_class().from_header(header=header, chaindb=self.chaindb)
            block = self._with_impersonated_senders(block)
            self._blocks.put(header.hash, block)
        return block

    def _with_impersonated_senders(self, block: BlockAPI) -> BlockAPI:
        wrapped = []
        changed = False
        for tx in block.transactions:
            try:
                sender = self.store[impersonation_key(tx.hash)]
            except KeyError:
                wrapped.append(tx)
                continue
            wrapped.append(ImpersonatedTransaction(tx, sender))
            changed = True
        return block.copy(transactions=wrapped) if changed else block

    @staticmethod
    def encode_block(block: BlockAPI) -> bytes:
        """The block's consensus RLP (impersonated transactions as their stand-in signed form)."""
        plain = [tx.signed if isinstance(tx, ImpersonatedTransaction) else tx for tx in block.transactions]
        if any(p is not t for p, t in zip(plain, block.transactions, strict=True)):
            block = block.copy(transactions=plain)
        return rlp.encode(block)

    def receipts(self, block: BlockAPI) -> tuple[ReceiptAPI, ...]:
        receipts = self._receipts.get(block.hash)
        if receipts is None:
            receipts = block.get_receipts(self.chaindb)
            self._receipts.put(block.hash, receipts)
        return receipts

    def tx_location(self, tx_hash: bytes) -> TxLocation | None:
        try:
            number, index = self.chaindb.get_transaction_index(tx_hash)
        except TransactionNotFound:
            return None
        if number > self._head.block_number:
            return None
        header = self.header_by_number(number)
        transactions = self.block_by_header(header).transactions
        if index >= len(transactions) or transactions[index].hash != tx_hash:
            return None  # a stale lookup from a dropped block: the slot now holds another tx
        return TxLocation(block_hash=header.hash, block_number=number, index=index)

    def state_at(self, header: BlockHeaderAPI, **context_overrides: Any) -> StateAPI:
        """A fresh, throw-away state at ``header``'s post-state, with ``header``'s block context."""
        context_header = header.copy(**context_overrides) if context_overrides else header
        vm_class = self.chain_class.get_vm_class(header)
        return vm_class.build_state(self.chaindb.db, context_header, self.chain_context, self._previous_hashes(header))

    @contextmanager
    def scratch_state(self, header: BlockHeaderAPI, **context_overrides: Any) -> Iterator[StateAPI]:
        """A state at ``header`` for calls: changes made inside the ``with`` are reverted after it.

        The state object is kept (per block and context) so its account and trie caches stay warm
        across calls; every use runs inside a journal snapshot that is always reverted.
        """
        key = (header.hash, tuple(sorted(context_overrides.items())))
        state = self._scratch.get(key)
        if state is None:
            state = self.state_at(header, **context_overrides)
            self._scratch.put(key, state)
        snapshot = state.snapshot()
        try:
            yield state
        finally:
            try:
                state.revert(snapshot)
            except Exception:  # py-evm refuses some reverts (e.g. CREATE2 + SELFDESTRUCT): start afresh
                self._scratch.pop(key, None)

    def _previous_hashes(self, header: BlockHeaderAPI) -> Iterable[bytes]:
        """Ancestor hashes of ``header``, parent first, computed lazily (for BLOCKHASH)."""
        return _AncestorHashes(self, header)

    # -- writes ----------------------------------------------------------------------------------
    def build_block(
        self,
        transactions: Sequence[SignedTransactionAPI],
        *,
        timestamp: int,
        coinbase: bytes,
        mix_hash: bytes,
        gas_limit: int | None = None,
        extra_data: bytes = b"",
        parent_beacon_block_root: bytes = b"\x00" * 32,
        state_edits: Callable[[StateAPI], None] | None = None,
        skip_empty: bool = False,
        strict: bool = False,
    ) -> BuiltBlock:
        """Execute ``transactions`` in order on top of the head and commit the block atomically.

        Transactions that fail validation are returned in ``rejected`` with the reason; those that
        do not fit in the gas left, or need an AI sidecar this node cannot reach (also listed in
        ``unavailable``), are returned in ``deferred``. With ``skip_empty`` a block that would include
        no transaction is not committed (``block`` is None); with ``strict`` a block that cannot include
        every transaction is not committed either (:class:`ChainError`).
        """
        executed = self.execute_block(
            transactions,
            timestamp=timestamp,
            coinbase=coinbase,
            mix_hash=mix_hash,
            gas_limit=gas_limit,
            extra_data=extra_data,
            parent_beacon_block_root=parent_beacon_block_root,
            state_edits=state_edits,
        )
        if skip_empty and not executed.transactions:
            return executed.outcome
        if strict and (executed.outcome.rejected or executed.outcome.deferred):  # derivation: all or nothing
            problems = [f"0x{tx.hash.hex()}: {reason}" for tx, reason in executed.outcome.rejected]
            problems += [f"0x{tx.hash.hex()}: deferred" for tx in executed.outcome.deferred]
            raise ChainError("the block cannot hold every transaction: " + "; ".join(problems))
        return self.seal_block(executed)

    def execute_block(
        self,
        transactions: Sequence[SignedTransactionAPI],
        *,
        timestamp: int,
        coinbase: bytes,
        mix_hash: bytes,
        gas_limit: int | None = None,
        extra_data: bytes = b"",
        parent_beacon_block_root: bytes = b"\x00" * 32,
        state_edits: Callable[[StateAPI], None] | None = None,
    ) -> ExecutedBlock:
        """The first half of :meth:`build_block`: run ``transactions`` on top of the head, in memory.

        Every receipt is final once this returns; :meth:`seal_block` then computes the roots and commits.
        Nothing is written until then, so an executed block that is never sealed leaves no trace.
        """
        parent = self._head
        if timestamp <= parent.timestamp:
            raise ChainError(f"block timestamp {timestamp} must exceed parent's {parent.timestamp}")
        FLAT_ACCOUNTS.reset(parent.state_root)  # a no-op unless the head moved by other means
        overlay = PendingWrites(self.store)
        chain = self.chain_class(overlay.atomic_view())
        chain.chaindb.hand(parent)  # type: ignore[attr-defined]  # block validation reads it, twice
        header_fields: dict[str, Any] = {
            "timestamp": timestamp,
            "coinbase": coinbase,
            "mix_hash": mix_hash,
            "extra_data": extra_data,
            "gas_limit": gas_limit if gas_limit is not None else parent.gas_limit,
        }
        vm_class = self.chain_class.get_vm_class_for_block_number(parent.block_number + 1)
        if hasattr(parent, "parent_beacon_block_root"):
            header_fields["parent_beacon_block_root"] = parent_beacon_block_root
        header = vm_class.create_header_from_parent(parent, **header_fields)
        vm = chain.get_vm(header)
        vm.block_preprocessing(vm.get_block())
        if state_edits is not None:  # devnet cheat codes (anvil_setBalance, …): part of this block
            state_edits(vm.state)
            vm.state.lock_changes()

        included: list[SignedTransactionAPI] = []
        receipts: list[ReceiptAPI] = []
        computations: list[ComputationAPI] = []
        outcome = BuiltBlock(block=None, receipts=(), computations=())
        gas_used = 0
        bloom = 0
        waiting_senders: set[bytes] = set()  # a deferred tx holds back its sender's later nonces
        with block_ai_budget():
            for tx in transactions:
                if gas_used + tx.gas > header.gas_limit or tx.sender in waiting_senders:
                    outcome.deferred.append(tx)
                    continue
                try:
                    # A light view of the header with this block's gas so far: py-evm reads only
                    # gas_used/gas_limit/fees from it, and copying a real header per tx is costly.
                    receipt, computation = _apply_transaction(vm, _HeaderView(header, gas_used), tx)
                except ValidationError as exc:
                    outcome.rejected.append((tx, str(exc)))
                    continue
                except SidecarUnavailable as exc:  # no block may hold a result this node could not compute
                    outcome.deferred.append(tx)
                    outcome.unavailable.append((tx, str(exc)))
                    waiting_senders.add(tx.sender)
                    continue
                gas_used = receipt.gas_used
                bloom |= receipt.bloom
                included.append(tx)
                receipts.append(receipt)
                computations.append(computation)
        outcome.receipts = tuple(receipts)
        outcome.computations = tuple(computations)
        return ExecutedBlock(
            transactions=tuple(included),
            outcome=outcome,
            parent_hash=parent.hash,
            header=header.copy(gas_used=gas_used, bloom=bloom),
            vm=vm,
            chain=chain,
            overlay=overlay,
        )

    def seal_block(self, executed: ExecutedBlock) -> BuiltBlock:
        """The second half of :meth:`build_block`: the block's roots and header, then one atomic commit."""
        if executed.parent_hash != self._head.hash:
            raise ChainError("the head moved since this block was executed: execute it again")
        vm = executed.vm
        included = list(executed.transactions)
        receipts = list(executed.outcome.receipts)
        block = vm.set_block_transactions_and_withdrawals(
            vm.get_block(), executed.header, included, receipts, withdrawals=()
        )
        block = vm.block_postprocessing(block)
        final = vm.mine_block(block).block
        executed.chain.chaindb.persist_block(final)
        for tx in included:
            if isinstance(tx, ImpersonatedTransaction):
                executed.overlay[impersonation_key(tx.hash)] = tx.sender
        executed.overlay.commit()
        self._head = final.header
        self._blocks.put(final.hash, final)
        self._receipts.put(final.hash, executed.outcome.receipts)
        executed.outcome.block = final
        return executed.outcome

    def import_block(self, block: BlockAPI) -> BlockAPI:
        """Validate and execute a block from elsewhere (RLP import, sync) and commit it atomically."""
        for tx in block.transactions:
            tx_chain_id = _signed_chain_id(tx)
            if tx_chain_id is not None and tx_chain_id != self.chain_id:
                raise ChainError(
                    f"invalid block #{block.number}: transaction 0x{tx.hash.hex()}: "
                    f"invalid chain id for signer: have {tx_chain_id} want {self.chain_id}"
                )
        FLAT_ACCOUNTS.reset(self._head.state_root)
        overlay = PendingWrites(self.store)
        chain = self.chain_class(overlay.atomic_view())
        try:
            with block_ai_budget():
                result = chain.import_block(block, perform_validation=True)
        except (ValidationError, HeaderNotFound, BlockNotFound) as exc:
            if block.header.extra_data == DEV_EDIT_EXTRA_DATA:
                raise ChainError(
                    f"block #{block.number} carries a devnet state edit (anvil_set*/hardhat_set*), which is "
                    "not a transaction and cannot be re-executed elsewhere"
                ) from exc
            raise ChainError(f"invalid block #{block.number} {block.hash.hex()}: {exc}") from exc
        overlay.commit()
        self._head = chain.chaindb.get_canonical_head()
        return result.imported_block

    def set_head(self, header: BlockHeaderAPI) -> None:
        """Make ``header`` (a known block) the canonical head, dropping its canonical descendants.

        The dropped blocks stay stored (by hash) but lose their transaction-hash lookups, so their
        transactions read as unknown again, as after a reorg; py-evm rewrites the number lookups as
        new blocks extend the new head.
        """
        overlay = PendingWrites(self.store)
        orphans = [self.header_by_number(n) for n in range(header.block_number + 1, self._head.block_number + 1)]
        ChainDB._set_as_canonical_chain_head(overlay, header, GENESIS_PARENT_HASH)
        for orphan_header in orphans:
            orphan = self.block_by_header(orphan_header)
            for tx in orphan.transactions:
                key = SchemaV1.make_transaction_hash_to_block_lookup_key(tx.hash)
                if key in overlay:
                    del overlay[key]
        overlay.commit()
        self._head = header
        self._scratch.clear()
        FLAT_ACCOUNTS.reset(header.state_root)


class _AncestorHashes:
    """A re-iterable, lazy view of up to 256 ancestor hashes, newest first."""

    def __init__(self, chain: Blockchain, header: BlockHeaderAPI) -> None:
        self._chain = chain
        self._header = header

    def __iter__(self) -> Iterator[bytes]:
        current = self._header
        for _ in range(256):
            if current.block_number == 0:
                return
            yield current.parent_hash
            current = self._chain.header_by_hash(current.parent_hash)


class _HeaderView:
    """``header`` with another ``gas_used`` (read-only duck type for VM.apply_transaction)."""

    __slots__ = ("_header", "gas_used")

    def __init__(self, header: BlockHeaderAPI, gas_used: int) -> None:
        self._header = header
        self.gas_used = gas_used

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_header":  # copy/pickle probes before __init__
            raise AttributeError(name)
        return getattr(self._header, name)


def _apply_transaction(vm: Any, header: Any, tx: SignedTransactionAPI) -> tuple[ReceiptAPI, ComputationAPI]:
    """py-evm's ``VM.apply_transaction``, except that a transaction whose AI call could not reach the
    sidecar is undone entirely (py-evm would leave its gas purchase and nonce in the state)."""
    vm.validate_transaction_against_header(header, tx)
    vm.state.lock_changes()  # as py-evm: the previous transaction's changes become permanent
    snapshot = vm.state.snapshot()
    try:
        computation = vm.state.apply_transaction(tx)
    except SidecarUnavailable:
        vm.state.revert(snapshot)
        raise
    receipt = vm.make_receipt(header, tx, computation, vm.state)
    vm.validate_receipt(receipt)
    return receipt, computation


def _signed_chain_id(tx: SignedTransactionAPI) -> int | None:
    """The chain id a transaction was signed for (None for a pre-EIP-155 legacy transaction)."""
    type_id = getattr(tx, "type_id", None)
    if type_id is not None:
        return tx.chain_id
    v = tx.v
    return None if v in (27, 28) else (v - 35) // 2
