"""L2 fee rules of an OP Stack chain: where the fees of a non-deposit transaction go.

- the base fee (``baseFee * gasUsed``) is not burnt but credited to the BaseFeeVault;
- the priority fee goes to the block's coinbase, the SequencerFeeVault (as on L1);
- the L1 data fee is charged to the sender with the gas and credited to the L1FeeVault (not refunded):

      l1Fee = (zeroBytes * 4 + nonZeroBytes * 16) * (16 * l1BaseFee * baseFeeScalar
              + blobBaseFee * blobBaseFeeScalar) / 16e6

  over the transaction's full signed EIP-2718 encoding (Ecotone; ``../shared/specs/op-stack.md``), with
  the L1 parameters read from the L1Block predeploy's storage, where each block's L1-info deposit wrote
  them. Fjord's FastLZ-based size estimate is not applied yet.

A sender must afford ``gas * maxFeePerGas + value + l1Fee``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp
from eth.abc import ComputationAPI, SignedTransactionAPI, StateAPI
from eth_utils import ValidationError

from lorachain.node.rollup.l1_info import L1_BLOCK_ADDRESS

BASE_FEE_VAULT = bytes.fromhex("4200000000000000000000000000000000000019")
L1_FEE_VAULT = bytes.fromhex("420000000000000000000000000000000000001a")
SEQUENCER_FEE_VAULT = bytes.fromhex("4200000000000000000000000000000000000011")

# L1Block storage (OP Stack layout, contracts/src/l2/L1Block.sol)
_BASEFEE_SLOT, _SCALARS_SLOT, _BLOB_BASEFEE_SLOT = 1, 3, 7


@dataclass(frozen=True)
class L1FeeParams:
    l1_base_fee: int
    blob_base_fee: int
    base_fee_scalar: int
    blob_base_fee_scalar: int

    @classmethod
    def read(cls, state: StateAPI) -> L1FeeParams:
        scalars = state.get_storage(L1_BLOCK_ADDRESS, _SCALARS_SLOT)
        return cls(
            l1_base_fee=state.get_storage(L1_BLOCK_ADDRESS, _BASEFEE_SLOT),
            blob_base_fee=state.get_storage(L1_BLOCK_ADDRESS, _BLOB_BASEFEE_SLOT),
            base_fee_scalar=(scalars >> 96) & 0xFFFFFFFF,
            blob_base_fee_scalar=(scalars >> 64) & 0xFFFFFFFF,
        )

    def l1_gas_used(self, encoded_tx: bytes) -> int:
        zeros = encoded_tx.count(0)
        return zeros * 4 + (len(encoded_tx) - zeros) * 16

    def l1_fee(self, encoded_tx: bytes) -> int:
        scaled = 16 * self.l1_base_fee * self.base_fee_scalar + self.blob_base_fee * self.blob_base_fee_scalar
        return self.l1_gas_used(encoded_tx) * scaled // 16_000_000


def signed_encoding(transaction: SignedTransactionAPI) -> bytes:
    """The EIP-2718 bytes of a signed transaction (legacy: its RLP)."""
    if getattr(transaction, "type_id", None) is None:
        return rlp.encode(transaction)
    return transaction.encode()


class L2FeeExecutor:
    """Transaction-executor mixin: the L1 fee is checked and bought with the gas, the vaults credited.

    Only transactions that went through validation pay (signed transactions in a block): deposits and
    ``eth_call``'s message calls skip validation, pay no L1 fee and burn no base fee (their price is zero).
    """

    _charged: tuple[SignedTransactionAPI, int] | None = None  # (the validated transaction, its L1 fee)

    def _l1_fee_of(self, transaction: SignedTransactionAPI) -> int | None:
        charged = self._charged
        return charged[1] if charged is not None and charged[0] is transaction else None

    def validate_transaction(self, transaction: SignedTransactionAPI) -> None:
        super().validate_transaction(transaction)  # type: ignore[misc]
        state: StateAPI = self.vm_state  # type: ignore[attr-defined]
        l1_fee = L1FeeParams.read(state).l1_fee(signed_encoding(transaction))
        cost = transaction.gas * transaction.max_fee_per_gas + transaction.value + l1_fee
        balance = state.get_balance(transaction.sender)
        if balance < cost:
            raise ValidationError(
                f"insufficient funds for gas * price + value + l1 fee: address 0x{transaction.sender.hex()} "
                f"have {balance} want {cost}"
            )
        self._charged = (transaction, l1_fee)

    def build_evm_message(self, transaction: SignedTransactionAPI) -> Any:
        l1_fee = self._l1_fee_of(transaction)
        if l1_fee:
            self.vm_state.delta_balance(transaction.sender, -l1_fee)  # type: ignore[attr-defined]
        return super().build_evm_message(transaction)  # type: ignore[misc]

    def finalize_computation(self, transaction: SignedTransactionAPI, computation: ComputationAPI) -> ComputationAPI:
        computation = super().finalize_computation(transaction, computation)  # type: ignore[misc]
        l1_fee = self._l1_fee_of(transaction)
        if l1_fee is None:
            return computation
        state: StateAPI = self.vm_state  # type: ignore[attr-defined]
        gas_remaining = computation.get_gas_remaining()
        refund = self.calculate_gas_refund(computation, transaction.gas - gas_remaining)  # type: ignore[attr-defined]
        gas_used = transaction.gas - gas_remaining - refund + computation.data_floor_gas
        base_fee = state.execution_context.base_fee_per_gas
        if base_fee:
            state.delta_balance(BASE_FEE_VAULT, gas_used * base_fee)
        if l1_fee:
            state.delta_balance(L1_FEE_VAULT, l1_fee)
        return computation
