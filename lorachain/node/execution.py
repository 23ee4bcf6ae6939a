"""Message calls that are not transactions on chain: eth_call, eth_estimateGas, eth_createAccessList.

Calls run on a throw-away state with the nonce, balance-for-gas and EOA checks skipped, as geth's
``DoCall`` does. Errors carry geth's wording; a revert keeps its return data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth.abc import ComputationAPI, StateAPI, VirtualMachineAPI
from eth.constants import DEFAULT_SPOOF_R, DEFAULT_SPOOF_S, DEFAULT_SPOOF_Y_PARITY
from eth.exceptions import OutOfGas, Revert

from lorachain.revert_data import revert_reason

RPC_GAS_CAP = 50_000_000


@dataclass
class CallParams:
    """The fields of a call object (JSON-RPC ``TransactionArgs``), decoded."""

    sender: bytes = b"\x00" * 20
    to: bytes | None = None
    gas: int | None = None
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    value: int = 0
    data: bytes = b""
    nonce: int | None = None
    access_list: list[tuple[bytes, list[int]]] = field(default_factory=list)

    @property
    def fee_given(self) -> bool:
        return any(v is not None for v in (self.gas_price, self.max_fee_per_gas, self.max_priority_fee_per_gas))


class ExecutionError(Exception):
    """A call failed; ``data`` holds the revert payload (may be empty)."""

    def __init__(self, message: str, data: bytes = b"", reverted: bool = False) -> None:
        super().__init__(message)
        self.data = data
        self.reverted = reverted


def computation_error(computation: ComputationAPI) -> ExecutionError:
    """geth's message for a failed computation."""
    error = computation.error
    if isinstance(error, Revert):
        data = bytes(computation.output)
        reason = revert_reason(data)
        message = f"execution reverted: {reason}" if reason is not None else "execution reverted"
        return ExecutionError(message, data=data, reverted=True)
    if isinstance(error, OutOfGas):
        return ExecutionError("out of gas")
    text = str(error) or type(error).__name__
    return ExecutionError(text)


def build_call_transaction(vm_class: type[VirtualMachineAPI], state: StateAPI, params: CallParams) -> Any:
    """An unsigned transaction with a spoofed sender, for execution without a signature."""
    builder = vm_class.get_transaction_builder()
    # A call's nonce field is never read (a creation's address comes from the state's nonce): no lookup.
    nonce = params.nonce if params.nonce is not None else 0
    gas = params.gas if params.gas is not None else RPC_GAS_CAP
    if params.gas_price is not None:
        max_fee = tip = params.gas_price
    else:
        max_fee = params.max_fee_per_gas or 0
        tip = params.max_priority_fee_per_gas if params.max_priority_fee_per_gas is not None else 0
        if params.max_fee_per_gas is None and tip:
            max_fee = tip + (state.base_fee or 0)
    unsigned = builder.new_unsigned_dynamic_fee_transaction(
        chain_id=state.execution_context.chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=min(tip, max_fee),
        max_fee_per_gas=max_fee,
        gas=gas,
        to=params.to if params.to is not None else b"",
        value=params.value,
        data=params.data,
        access_list=[(addr, tuple(slots)) for addr, slots in params.access_list],
    )
    return CallTransaction(unsigned, params.sender)


class CallTransaction:
    """An unsigned transaction executed as if ``sender`` had signed it: py-evm's ``SpoofAttributes`` (the
    sender, the type id, placeholder signature values), with the fields execution reads copied once so
    that each read is a plain attribute rather than a ``__getattr__`` round trip."""

    _COPIED = ("gas", "to", "value", "data", "nonce", "access_list", "max_fee_per_gas",
               "max_priority_fee_per_gas", "intrinsic_gas", "chain_id")  # fmt: skip

    def __init__(self, unsigned: Any, sender: bytes) -> None:
        self._unsigned = unsigned
        self.sender = sender
        self.type_id = getattr(unsigned, "_type_id", None)
        self.y_parity, self.r, self.s = DEFAULT_SPOOF_Y_PARITY, DEFAULT_SPOOF_R, DEFAULT_SPOOF_S
        for name in self._COPIED:
            if hasattr(unsigned, name):
                setattr(self, name, getattr(unsigned, name))

    def get_sender(self) -> bytes:
        return self.sender

    def copy(self, **changes: Any) -> CallTransaction:
        return CallTransaction(self._unsigned.copy(**changes), self.sender)

    def __getattr__(self, name: str) -> Any:  # anything not set here: the unsigned transaction's own
        return getattr(self._unsigned, name)


def execute(state: StateAPI, tx: Any) -> ComputationAPI:
    """Run ``tx`` on ``state`` without the sender checks that signed transactions get.

    The post-execution bookkeeping of a real transaction (gas refund to the sender, fee to the
    coinbase, touched-account cleanup) is skipped: it cannot change the call's output, success or
    gas figures, and the caller throws the state away.
    """
    executor = state.get_transaction_executor()
    message = executor.build_evm_message(tx)
    computation = executor.build_computation(message, tx)
    if hasattr(state, "_transient_storage"):
        state.clear_transient_storage()  # EIP-1153: transient storage lives for one transaction
    return computation


def gas_used(tx: Any, computation: ComputationAPI) -> int:
    """Gas a transaction would be charged (after refunds), as in its receipt."""
    used = tx.intrinsic_gas + computation.get_gas_used()
    refund = min(computation.get_gas_refund(), used // 5)
    return used - refund


def touched_state(state: StateAPI) -> dict[bytes, set[int]]:
    """Addresses and storage slots warmed (EIP-2929) so far in ``state``'s current transaction."""
    journal = state._account_db._journal_accessed_state  # type: ignore[attr-defined]
    touched: dict[bytes, set[int]] = {}
    for key in journal._journal._current_values:
        if len(key) == 20:
            touched.setdefault(bytes(key), set())
        elif len(key) > 20:
            touched.setdefault(bytes(key[:20]), set()).add(int.from_bytes(key[20:], "big"))
    return touched
