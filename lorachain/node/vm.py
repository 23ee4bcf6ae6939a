"""py-evm VMs with the node's faster block assembly; consensus behaviour is unchanged.

Hot spots of py-evm's block building and execution, replaced where py-evm looks them up:

- the ordered tries that commit to transactions, receipts and withdrawals are built bottom-up in one
  pass (:mod:`ordered_trie`, checked node-for-node against py-evm's builder in the tests) instead of by
  repeated inserts; py-evm calls that builder both to assemble and to validate a block, so the function
  is swapped where py-evm looks it up (``eth.vm.base`` and ``eth.db.chain``);
- Prague's deposit-request scan reads the receipts the VM just produced instead of reading them back
  from the receipt trie, and compares topics as numbers;
- decoded state-trie nodes are cached by hash. A node's hash is the hash of its encoding, so a cached
  decoding can never go stale; callers get a copy because py-evm's trie edits nodes in place;
- a deep copy of an rlp ``Serializable`` (and of a typed transaction or receipt, which wrap one) is the
  object itself. They are immutable (pyrlp freezes every field value), yet ``Serializable.copy`` deep-copies
  each unchanged field, so py-evm's many ``block.copy(header=...)`` and ``account.copy(balance=...)`` rebuilt
  every transaction of the block and every nested object, several times per block;
- a message call's EVM message is built without py-evm's debug line, an f-string evaluated whether or not
  debug logging is on that hex-encodes the callee's whole code and hashes the call data (every transaction
  and every ``eth_call``); a transaction's refund, fee and EIP-161 clean-up likewise skip four such lines;
- a typed transaction's sender is recovered from its encoding in one libsecp256k1 call (:mod:`tx_sender`;
  py-evm's own recovery decides whenever that module declines), for blocks read back from the store, imported
  or derived, as for transactions admitted over RPC;
- keccak-256 is the C extension called directly (:mod:`lorachain.hashing`), in py-evm and py-trie too;
- a block header's ``copy`` skips its constructor (pyrlp re-validates every field of every copy);
- a typed receipt is encoded directly (:mod:`receipt_encoding`), not through pyrlp's sedes machinery;
- a typed transaction or receipt remembers its encoding (they are immutable): a block's transactions were
  encoded three times over (transaction trie, block validation, storage) and its receipts twice;
- a receipt's logs bloom is computed, and checked, on integers (:mod:`bloom`), and a block is finalized
  without py-evm's debug f-string that rendered the whole block;
- the EVM runs the opcode table of :mod:`fast_opcodes` in that module's tighter loop (``FastOpcodeLoop``);
- pyrlp's field reads and keyword-argument merging take shortcuts (:mod:`pyrlp_shortcuts`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache, lru_cache
from typing import Any

import eth.db.chain
import eth.vm.base
from eth.abc import (
    BlockAndMetaWitness,
    BlockAPI,
    BlockHeaderAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    VirtualMachineAPI,
    WithdrawalAPI,
)
from eth.constants import EMPTY_SHA3
from eth.rlp.receipts import Receipt
from eth.vm.forks.berlin.receipts import TypedReceipt
from eth.vm.forks.berlin.transactions import TypedTransaction
from eth.vm.forks.cancun.constants import BLOB_TX_TYPE
from eth.vm.forks.prague.constants import DEPOSIT_CONTRACT_ADDRESS, DEPOSIT_EVENT_SIGNATURE_HASH, DEPOSIT_REQUEST_TYPE
from eth.vm.forks.spurious_dragon._utils import collect_touched_accounts
from eth.vm.forks.spurious_dragon.state import SpuriousDragonTransactionExecutor
from eth.vm.interrupt import EVMMissingData
from eth.vm.message import Message
from rlp.sedes.serializable import BaseSerializable, make_immutable
from trie import HexaryTrie

from lorachain import hashing
from lorachain.node import pyrlp_shortcuts
from lorachain.node.bloom import logs_bloom
from lorachain.node.fast_opcodes import FastOpcodeLoop, fast_opcodes
from lorachain.node.ordered_trie import ordered_trie_root_and_nodes
from lorachain.node.receipt_encoding import encode_receipt, is_plain_receipt
from lorachain.node.rollup.deposit_vm import NoDepositState
from lorachain.node.state_db import BatchedAccountDB
from lorachain.node.trie_nodes import NODE_CACHE, copy_node
from lorachain.node.tx_sender import REMEMBERED_ENCODING, recover_sender


def make_trie_root_and_nodes(items: Sequence[Any]) -> tuple[bytes, dict[bytes, bytes]]:
    """Drop-in for ``eth.db.trie.make_trie_root_and_nodes`` (same root, same nodes)."""
    return _trie_of_encoded(tuple(item.encode() for item in items))


@lru_cache(maxsize=32)  # a block's tx trie is built to assemble the block and again to validate it
def _trie_of_encoded(encoded: tuple[bytes, ...]) -> tuple[bytes, dict[bytes, bytes]]:
    return ordered_trie_root_and_nodes(encoded)


def _itself(self: Any, memo: Any = None) -> Any:
    return self


BaseSerializable.__deepcopy__ = _itself  # type: ignore[method-assign,assignment]
_pyrlp_copy = BaseSerializable.copy


def _copy(self: Any, *args: Any, **overrides: Any) -> Any:
    """pyrlp's ``copy``; a block header's without its constructor: a header ``__init__`` only fills in defaults
    for omitted fields and a copy omits none, while pyrlp's path deep-copies every field and merges and checks
    keyword arguments twice over (a block makes some ten header copies)."""
    if args or not isinstance(self, BlockHeaderAPI):
        return _pyrlp_copy(self, *args, **overrides)
    meta = self._meta
    if not all(name in meta.field_names for name in overrides):
        return _pyrlp_copy(self, **overrides)  # pyrlp's error for an unknown field
    new = object.__new__(type(self))
    for name, attr in zip(meta.field_names, meta.field_attrs, strict=True):
        setattr(new, attr, make_immutable(overrides[name]) if name in overrides else getattr(self, attr))
    return new


BaseSerializable.copy = _copy  # type: ignore[method-assign]
pyrlp_shortcuts.install()
TypedTransaction.__deepcopy__ = _itself  # type: ignore[attr-defined]
TypedReceipt.__deepcopy__ = _itself  # type: ignore[attr-defined]


def _remembering(encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def remembered(self: Any) -> bytes:
        encoded = self.__dict__.get(REMEMBERED_ENCODING)
        if encoded is None:
            encoded = self.__dict__[REMEMBERED_ENCODING] = encode(self)
        return encoded

    return remembered


def _typed_transaction_encode(self: Any) -> bytes:
    return bytes((self.type_id,)) + self._inner.encode()  # py-evm's, without eth-utils' to_bytes of the type


TypedTransaction.encode = _remembering(_typed_transaction_encode)  # type: ignore[method-assign]
_py_evm_typed_sender = TypedTransaction.get_sender


def _typed_sender(self: Any) -> bytes:
    sender = recover_sender(self.encode())
    return sender if sender is not None else _py_evm_typed_sender(self)


TypedTransaction.get_sender = _typed_sender  # type: ignore[method-assign]
_py_evm_typed_receipt_encode = TypedReceipt.encode


def _typed_receipt_encode(self: Any) -> bytes:
    inner = self._inner
    if is_plain_receipt(inner):
        return bytes((self.type_id,)) + encode_receipt(inner)
    return _py_evm_typed_receipt_encode(self)


TypedReceipt.encode = _remembering(_typed_receipt_encode)  # type: ignore[method-assign]

_py_evm_receipt_init = Receipt.__init__


def _receipt_init(self: Any, state_root: bytes, gas_used: int, logs: Sequence[Any], bloom: int | None = None) -> None:
    """py-evm's ``Receipt.__init__``, the bloom of its logs computed on integers (:mod:`bloom`); a plain receipt's
    four attributes set directly (pyrlp's constructor merges keyword arguments and makes each value immutable:
    only the list of logs needs it)."""
    logs = make_immutable(logs)
    if bloom is None:
        bloom = logs_bloom(logs)
    if type(self)._meta.field_attrs != _RECEIPT_ATTRIBUTES:  # a receipt type with other fields: pyrlp's way
        _py_evm_receipt_init(self, state_root, gas_used, logs, bloom)
        return
    self._state_root, self._gas_used, self._bloom, self._logs = state_root, gas_used, bloom, logs


_RECEIPT_ATTRIBUTES = Receipt._meta.field_attrs


Receipt.__init__ = _receipt_init  # type: ignore[method-assign]

eth.vm.base.make_trie_root_and_nodes = make_trie_root_and_nodes  # type: ignore[attr-defined]
eth.db.chain.make_trie_root_and_nodes = make_trie_root_and_nodes  # type: ignore[attr-defined]
hashing.install_in()  # py-evm's, py-trie's and eth-bloom's keccak: the C extension directly


def _cached_get_node(trie: HexaryTrie, node_hash: bytes) -> Any:
    if len(node_hash) != 32:  # blank or embedded node: nothing to look up
        return _uncached_get_node(trie, node_hash)
    return copy_node(NODE_CACHE.get(node_hash, trie.db.__getitem__))


_uncached_get_node = HexaryTrie.get_node
HexaryTrie.get_node = _cached_get_node  # type: ignore[method-assign]


class FastBlockAssembly:
    """Mixin for a py-evm VM class: remembers the receipts of the block it assembles; finalizes a block without
    py-evm's debug line (an f-string that renders the whole block, whether or not debug logging is on); checks
    a receipt's bloom on integers (:mod:`bloom`)."""

    _assembled: tuple[bytes, tuple[ReceiptAPI, ...]] | None = None

    @classmethod
    def validate_receipt(cls, receipt: ReceiptAPI) -> None:
        """py-evm's check that a receipt's bloom holds every log's address and topics (its errors, if not)."""
        expected = logs_bloom(receipt.logs)
        if receipt.bloom & expected != expected:
            super().validate_receipt(receipt)  # type: ignore[misc]

    def finalize_block(self, block: BlockAPI) -> BlockAndMetaWitness:
        """py-evm's ``VM.finalize_block``: block rewards (none after the merge), then the state persisted."""
        state = self.state  # type: ignore[attr-defined]
        if block.number > 0:
            snapshot = state.snapshot()
            try:
                self._assign_block_rewards(block)  # type: ignore[attr-defined]
            except EVMMissingData:
                state.revert(snapshot)
                raise
            state.commit(snapshot)
        meta_witness = state.persist()
        final_block = block.copy(header=block.header.copy(state_root=state.state_root))
        return BlockAndMetaWitness(final_block, meta_witness)

    def set_block_transactions_and_withdrawals(
        self,
        base_block: BlockAPI,
        new_header: BlockHeaderAPI,
        transactions: Sequence[SignedTransactionAPI],
        receipts: Sequence[ReceiptAPI],
        withdrawals: Sequence[WithdrawalAPI] | None = None,
    ) -> BlockAPI:
        block = super().set_block_transactions_and_withdrawals(  # type: ignore[misc]
            base_block, new_header, transactions, receipts, withdrawals
        )
        self._assembled = (block.header.receipt_root, tuple(receipts))
        return block

    def process_deposit_request_data(self, block: BlockAPI) -> None:
        """Prague's scan of the block's receipts for deposit-contract events (EIP-6110), as py-evm's, on the
        receipts just made where this VM assembled the block, and comparing a log's first topic as a number
        (py-evm converts every topic of every log with eth-utils' ``to_bytes`` first)."""
        assembled = self._assembled
        if assembled is not None and assembled[0] == block.header.receipt_root:
            receipts: Sequence[ReceiptAPI] = assembled[1]
        else:
            receipts = block.get_receipts(self.chaindb)  # type: ignore[attr-defined]
        block.block_requests.append(DEPOSIT_REQUEST_TYPE + deposit_request_data(receipts))  # type: ignore[attr-defined]


_DEPOSIT_TOPIC = int.from_bytes(DEPOSIT_EVENT_SIGNATURE_HASH, "big")
assert DEPOSIT_EVENT_SIGNATURE_HASH[0] != 0  # so a topic equals the hash's bytes exactly when it equals its number


def deposit_request_data(receipts: Sequence[ReceiptAPI]) -> bytes:
    """The deposit requests of a block (EIP-6110): fields of each deposit-contract ``DepositEvent``, in order."""
    data = b""
    for receipt in receipts:
        for log in receipt.logs:
            if log.address == DEPOSIT_CONTRACT_ADDRESS and log.topics and log.topics[0] == _DEPOSIT_TOPIC:
                event = log.data
                data += event[192:240] + event[288:320] + event[352:360] + event[416:512] + event[544:552]
    return data


class QuietMessageBuilder:
    """Mixin for a fork's transaction executor: py-evm's ``build_evm_message`` for message calls (not
    creations, not blob transactions, which keep py-evm's own): the same fee charge, nonce step, EIP-7702
    authorizations (``calc_message_refund``, before the callee's code is read, as py-evm does), delegated
    code and message, without the debug line."""

    def build_evm_message(self, transaction: Any) -> Message:
        if not transaction.to or getattr(transaction, "type_id", None) == BLOB_TX_TYPE:
            return super().build_evm_message(transaction)  # type: ignore[misc]
        state = self.vm_state  # type: ignore[attr-defined]
        sender = transaction.sender
        fee = transaction.gas * state.get_gas_price(transaction)
        if fee:  # a zero charge is no change: the nonce step below touches the account anyway
            state.delta_balance(sender, -fee)
        state.increment_nonce(sender)
        refund = self.calc_message_refund(transaction)  # type: ignore[attr-defined]
        code, delegation = self.get_code_at_address(transaction.to)  # type: ignore[attr-defined]
        return Message(gas=transaction.gas - transaction.intrinsic_gas, to=transaction.to, sender=sender,
                       value=transaction.value, data=transaction.data, code=code, refund=refund,
                       is_delegation=delegation is not None)  # fmt: skip


class QuietFinalizer:
    """Mixin for a fork's transaction executor (Spurious Dragon onwards): py-evm's ``finalize_computation``
    (Frontier's refund and coinbase fee, then EIP-161's clearing of touched empty accounts) step for step,
    without its debug lines (f-strings hex-encoding addresses, evaluated whether or not debug logging is on).

    The gas price is the computation's transaction context's (py-evm builds the same context from the same
    transaction and state a second time), and a touched account with a nonce, balance or code is passed over
    after one read, since EIP-161 clears only accounts that exist and have none of the three."""

    def finalize_computation(self, transaction: Any, computation: Any) -> Any:
        state = self.vm_state  # type: ignore[attr-defined]
        gas_price = computation.transaction_context.gas_price
        gas_remaining = computation.get_gas_remaining()
        gas_used = transaction.gas - gas_remaining
        gas_refund = self.calculate_gas_refund(computation, gas_used)  # type: ignore[attr-defined]
        floor = self.calc_data_floor_gas(transaction, gas_used, gas_refund)  # type: ignore[attr-defined]
        computation.data_floor_gas = floor
        refund_amount = (gas_refund + gas_remaining - floor) * gas_price
        if refund_amount:
            state.delta_balance(computation.msg.sender, refund_amount)
        fee = (transaction.gas - gas_remaining - gas_refund + floor) * state.get_tip(transaction)
        state.delta_balance(state.coinbase, fee)  # touches the coinbase even for a zero fee (EIP-161)
        for account in computation.get_accounts_for_deletion():
            state.delete_account(account)
        accounts = state._account_db
        for account in collect_touched_accounts(computation):
            held = accounts._get_account(account)
            if held.nonce or held.balance or held.code_hash != EMPTY_SHA3:
                continue  # not empty: EIP-161 keeps it
            if state.account_exists(account) and state.account_is_empty(account):
                state.delete_account(account)
        return computation


def _delta_balance(self: Any, address: bytes, delta: int) -> None:
    """``BaseState.delta_balance`` in one account-DB step (:meth:`BatchedAccountDB.delta_balance`)."""
    self._account_db.delta_balance(address, delta)


def _keep_system_contracts(state: Any) -> None:
    """py-evm's Cancun/Prague ``set_system_contracts`` (run on every state built) re-sets each system
    contract's code only where that very code is already there (``if not code != CONTRACT_CODE``): the
    state never changes, but each call reads and re-hashes the code and dirties the accounts."""


@cache
def fast_vm(vm_class: type[VirtualMachineAPI]) -> type[VirtualMachineAPI]:
    """``vm_class`` with :class:`FastBlockAssembly`, batched trie updates and the one-call opcode table
    (:mod:`fast_opcodes`) (same fork, same rules)."""
    state_class = vm_class._state_class  # type: ignore[attr-defined]
    base_computation = state_class.computation_class
    computation = type(base_computation.__name__, (FastOpcodeLoop, base_computation),
                       {"opcodes": fast_opcodes(base_computation.opcodes)})  # fmt: skip
    base_executor = state_class.transaction_executor_class
    quiet = (
        (QuietMessageBuilder, QuietFinalizer)
        if issubclass(base_executor, SpuriousDragonTransactionExecutor)
        else (QuietMessageBuilder,)
    )
    executor = type(base_executor.__name__, (*quiet, base_executor), {})
    state = type(
        state_class.__name__,
        (NoDepositState, state_class),
        {"account_db_class": BatchedAccountDB, "set_system_contracts": _keep_system_contracts,
         "computation_class": computation, "transaction_executor_class": executor, "delta_balance": _delta_balance},
    )  # fmt: skip
    return type(vm_class.__name__, (FastBlockAssembly, vm_class), {"_state_class": state})


def with_precompiles(
    vm_class: type[VirtualMachineAPI], extra: Mapping[bytes, Callable[[Any], Any]]
) -> type[VirtualMachineAPI]:
    """``vm_class`` whose computations also answer the precompiles in ``extra`` (address -> function).

    The new addresses join the fork's own precompiles everywhere py-evm looks them up, including the set
    it warms at the start of each transaction (EIP-2929).
    """
    if not extra:
        return vm_class
    state_class = vm_class._state_class  # type: ignore[attr-defined]
    computation_class = state_class.computation_class
    precompiles = {**computation_class.get_precompiles(), **extra}
    computation = type(computation_class.__name__, (computation_class,), {"_precompiles": precompiles})
    state = type(state_class.__name__, (state_class,), {"computation_class": computation})
    return type(vm_class.__name__, (vm_class,), {"_state_class": state})
