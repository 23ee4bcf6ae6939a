"""Deposit transactions inside py-evm: decoding in blocks, execution by the OP Stack rules, receipts.

py-evm learns the 0x7E type where it looks typed transactions and receipts up (its Prague classes), so
blocks holding deposits decode and encode on every chain; whether they are *valid* is the VM's call:
:func:`op_stack_vm` makes a VM that executes them, every other VM refuses them.

Execution (``../shared/specs/op-stack.md``, OP Stack protocol/deposits.md, Regolith and Canyon rules):

- ``mint`` is credited to ``from`` first and survives everything that follows;
- no nonce check, no signature, no fee: the gas price is zero, so nothing is bought, refunded, burnt or
  paid to the coinbase; the sender's nonce still increments;
- an execution that reverts or fails in the EVM keeps the post-mint state and its actual gas used;
- a deposit that cannot run at all (gas below its intrinsic gas) reverts to the post-mint state, bumps
  the nonce, fails, and uses its whole gas limit;
- ``isSystemTx`` deposits are invalid (Regolith);
- the receipt carries ``depositNonce`` (the sender's nonce before) and ``depositReceiptVersion`` 1.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from eth.abc import BlockHeaderAPI, ComputationAPI, ReceiptAPI, SignedTransactionAPI, StateAPI
from eth.rlp.logs import Log
from eth.validation import validate_gas_limit
from eth.vm.forks.berlin.transactions import calculate_txn_intrinsic_gas_berlin
from eth.vm.forks.prague.receipts import PragueTypedReceipt
from eth.vm.forks.prague.transactions import PragueTypedTransaction
from eth_utils import ValidationError

from lorachain.node.rollup.deposits import DEPOSIT_TX_TYPE, DepositReceipt, DepositTx
from lorachain.node.rollup.eip1559 import Eip1559Params
from lorachain.node.rollup.l2_fees import L2FeeExecutor


class DepositPayload:
    """The body of ``TypedTransaction(0x7E, ...)``: a :class:`DepositTx` seen through py-evm's tx API."""

    def __init__(self, deposit: DepositTx) -> None:
        self.deposit = deposit

    # -- codec (the format's home is lorachain.node.rollup.deposits) -----------------------------
    @classmethod
    def decode(cls, payload: bytes) -> DepositPayload:
        return cls(DepositTx.decode(bytes((DEPOSIT_TX_TYPE,)) + bytes(payload)))

    def encode(self) -> bytes:
        return self.deposit.encode()[1:]

    # -- the fields py-evm reads -----------------------------------------------------------------
    def get_sender(self) -> bytes:
        return self.deposit.sender

    @property
    def to(self) -> bytes:
        return self.deposit.to or b""

    @property
    def value(self) -> int:
        return self.deposit.value

    @property
    def gas(self) -> int:
        return self.deposit.gas

    @property
    def data(self) -> bytes:
        return self.deposit.data

    @property
    def mint(self) -> int:
        return self.deposit.mint

    @property
    def source_hash(self) -> bytes:
        return self.deposit.source_hash

    @property
    def is_system_tx(self) -> bool:
        return self.deposit.is_system_tx

    nonce = 0  # deposits carry none (JSON-RPC shows the receipt's depositNonce)
    chain_id = None
    gas_price = max_fee_per_gas = max_priority_fee_per_gas = max_fee_per_blob_gas = 0
    y_parity = v = r = s = 0
    access_list: tuple = ()
    authorization_list: tuple = ()
    blob_versioned_hashes: tuple = ()

    def get_intrinsic_gas(self) -> int:
        return calculate_txn_intrinsic_gas_berlin(self)  # type: ignore[arg-type]

    def get_message_for_signing(self) -> bytes:
        raise ValidationError("deposit transactions are not signed")

    def check_signature_validity(self) -> None:
        """Deposits carry no signature: nothing to check."""

    def is_signature_valid(self) -> bool:
        return True

    def validate(self) -> None:
        if self.deposit.is_system_tx:
            raise ValidationError("system deposit transactions are invalid since Regolith")

    def make_receipt(self, status: bytes, gas_used: int, log_entries: Any) -> DepositReceipt:
        logs = [Log(address, topics, data) for address, topics, data in log_entries]
        return DepositReceipt(status, gas_used, logs)  # the deposit nonce is filled in by the VM

    def copy(self, **overrides: Any) -> DepositPayload:
        if overrides:
            raise ValidationError("deposit transactions are immutable")
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DepositPayload) and other.deposit == self.deposit

    def __hash__(self) -> int:
        return hash(self.deposit)

    def __repr__(self) -> str:
        return f"DepositPayload(0x{self.deposit.hash.hex()})"


# py-evm looks up typed transactions and receipts by type byte in these tables.
PragueTypedTransaction.decoders = {**PragueTypedTransaction.decoders, DEPOSIT_TX_TYPE: DepositPayload}  # type: ignore[dict-item]
PragueTypedReceipt.codecs = {**PragueTypedReceipt.codecs, DEPOSIT_TX_TYPE: DepositReceipt}  # type: ignore[dict-item]


def is_deposit(transaction: Any) -> bool:
    return getattr(transaction, "type_id", None) == DEPOSIT_TX_TYPE


def deposit_of(transaction: Any) -> DepositTx:
    """The deposit inside a py-evm deposit transaction."""
    return transaction._inner.deposit


def deposit_receipt_of(receipt: Any) -> DepositReceipt:
    """The Canyon fields' holder inside a py-evm deposit receipt."""
    return receipt._inner


def deposit_transaction(deposit: DepositTx) -> SignedTransactionAPI:
    """``deposit`` as a py-evm transaction, ready for a block."""
    return PragueTypedTransaction(DEPOSIT_TX_TYPE, DepositPayload(deposit))  # type: ignore[arg-type]


class DepositFailure(Exception):
    """A deposit that could not run at all (it is still included, as a failure)."""


class FailedDeposit:
    """What a deposit that could not run leaves behind, in the shape of a computation."""

    is_error = True
    is_success = False
    output = b""
    data_floor_gas = 0
    msg = None

    def __init__(self, gas: int, reason: str, deposit_nonce: int) -> None:
        self.error = DepositFailure(reason)
        self.deposit_gas_used = gas
        self.deposit_nonce = deposit_nonce

    def get_log_entries(self) -> tuple:
        return ()

    def get_gas_remaining(self) -> int:
        return 0

    def get_gas_used(self) -> int:
        return self.deposit_gas_used

    def get_gas_refund(self) -> int:
        return 0


def apply_deposit(state: StateAPI, transaction: SignedTransactionAPI) -> ComputationAPI | FailedDeposit:
    """Execute one deposit on ``state`` (see the module docstring for the rules)."""
    payload: DepositPayload = transaction._inner  # type: ignore[attr-defined]
    payload.validate()
    sender = payload.deposit.sender
    if payload.mint:
        state.delta_balance(sender, payload.mint)
    deposit_nonce = state.get_nonce(sender)
    snapshot = state.snapshot()
    if transaction.gas < transaction.intrinsic_gas:
        state.revert(snapshot)
        state.increment_nonce(sender)
        return FailedDeposit(transaction.gas, "intrinsic gas too low", deposit_nonce)
    executor = state.get_transaction_executor()
    message = executor.build_evm_message(transaction)  # gas price 0: buys nothing; bumps the nonce
    computation = executor.build_computation(message, transaction)
    computation = executor.finalize_computation(transaction, computation)  # no refund or fee at price 0
    state.commit(snapshot)
    if hasattr(state, "clear_transient_storage"):
        state.clear_transient_storage()  # EIP-1153: per transaction
    computation.deposit_nonce = deposit_nonce  # type: ignore[attr-defined]
    return computation


class DepositState:
    """State mixin: deposits run by the OP Stack rules (other transactions as before)."""

    def apply_transaction(self, transaction: SignedTransactionAPI) -> Any:
        if is_deposit(transaction):
            return apply_deposit(self, transaction)  # type: ignore[arg-type]
        return super().apply_transaction(transaction)  # type: ignore[misc]

    # London prices a transaction at min(maxFee, baseFee + tip); a deposit's price is zero, tip included.
    def get_gas_price(self, transaction: SignedTransactionAPI) -> int:
        return 0 if is_deposit(transaction) else super().get_gas_price(transaction)  # type: ignore[misc]

    def get_tip(self, transaction: SignedTransactionAPI) -> int:
        return 0 if is_deposit(transaction) else super().get_tip(transaction)  # type: ignore[misc]


class NoDepositState:
    """State mixin for chains without OP Stack rules: a deposit makes the block invalid."""

    def apply_transaction(self, transaction: SignedTransactionAPI) -> Any:
        if is_deposit(transaction):
            raise ValidationError("deposit transactions are only valid on OP Stack chains")
        return super().apply_transaction(transaction)  # type: ignore[misc]


class DepositVM:
    """VM mixin: deposits skip the fee checks against the header and get deposit receipts."""

    def validate_transaction_against_header(self, base_header: BlockHeaderAPI, transaction: Any) -> None:
        if is_deposit(transaction):
            if base_header.gas_used + transaction.gas > base_header.gas_limit:
                raise ValidationError(
                    f"Transaction exceeds gas limit: using {transaction.gas}, bringing total to "
                    f"{base_header.gas_used + transaction.gas}, but limit is {base_header.gas_limit}"
                )
            return
        super().validate_transaction_against_header(base_header, transaction)  # type: ignore[misc]

    @classmethod
    def finalize_gas_used(cls, transaction: Any, computation: Any) -> int:
        if isinstance(computation, FailedDeposit):
            return computation.deposit_gas_used
        return super().finalize_gas_used(transaction, computation)  # type: ignore[misc]

    @classmethod
    def make_receipt(
        cls, base_header: BlockHeaderAPI, transaction: Any, computation: Any, state: StateAPI
    ) -> ReceiptAPI:
        receipt = super().make_receipt(base_header, transaction, computation, state)  # type: ignore[misc]
        if is_deposit(transaction):
            receipt = receipt.copy(deposit_nonce=computation.deposit_nonce)
        return receipt


class Eip1559VM:
    """VM mixin: the base fee follows the chain's EIP-1559 parameters (``eip1559`` class attribute)."""

    eip1559: Eip1559Params = Eip1559Params()

    @classmethod
    def expected_base_fee(cls, parent: BlockHeaderAPI) -> int:
        return cls.eip1559.next_base_fee(parent)

    @classmethod
    def create_header_from_parent(cls, parent: BlockHeaderAPI, **fields: Any) -> BlockHeaderAPI:
        header = super().create_header_from_parent(parent, **fields)  # type: ignore[misc]
        if parent is None or not hasattr(parent, "base_fee_per_gas"):  # genesis, or the London fork block
            return header
        return header.copy(base_fee_per_gas=cls.expected_base_fee(parent))

    @classmethod
    def validate_gas(cls, header: BlockHeaderAPI, parent_header: BlockHeaderAPI) -> None:
        validate_gas_limit(header.gas_limit, parent_header.gas_limit)
        expected = cls.expected_base_fee(parent_header)
        if header.base_fee_per_gas != expected:
            raise ValidationError(
                f"Header has invalid base fee per gas (has {header.base_fee_per_gas}, expected {expected})"
            )


@cache
def op_stack_vm(vm_class: type, eip1559: Eip1559Params = Eip1559Params()) -> type:
    """``vm_class`` with the OP Stack rules: deposit transactions, the L2 fee rules (:mod:`l2_fees`) and the
    chain's EIP-1559 parameters."""
    state_class = vm_class._state_class  # type: ignore[attr-defined]
    executor_class = state_class.transaction_executor_class
    executor = type(executor_class.__name__, (L2FeeExecutor, executor_class), {})
    state = type(state_class.__name__, (DepositState, state_class), {"transaction_executor_class": executor})
    return type(vm_class.__name__, (DepositVM, Eip1559VM, vm_class), {"_state_class": state, "eip1559": eip1559})
