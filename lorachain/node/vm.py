"""py-evm VMs with the node's faster block assembly; consensus behaviour is unchanged.

Two hot spots of py-evm's block building are replaced: the transaction/receipt/withdrawal tries are
built bottom-up in one pass (:mod:`ordered_trie`) instead of by repeated inserts, and Prague's deposit
request scan reads the receipts the VM just made instead of reading them back from the trie.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI, VirtualMachineAPI, WithdrawalAPI

from lorachain.node.ordered_trie import ordered_trie_root_and_nodes


class _BlockWithReceipts:
    """A block that answers ``get_receipts`` from memory (everything else from the block)."""

    def __init__(self, block: BlockAPI, receipts: tuple[ReceiptAPI, ...]) -> None:
        self._block = block
        self._receipts = receipts

    def get_receipts(self, chaindb: Any) -> tuple[ReceiptAPI, ...]:
        return self._receipts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._block, name)


class FastBlockAssembly:
    """Mixin for a py-evm VM class."""

    _assembled: tuple[bytes, tuple[ReceiptAPI, ...]] | None = None

    def set_block_transactions_and_withdrawals(
        self,
        base_block: BlockAPI,
        new_header: BlockHeaderAPI,
        transactions: Sequence[SignedTransactionAPI],
        receipts: Sequence[ReceiptAPI],
        withdrawals: Sequence[WithdrawalAPI] | None = None,
    ) -> BlockAPI:
        tx_root, tx_nodes = ordered_trie_root_and_nodes([tx.encode() for tx in transactions])
        self.chaindb.persist_trie_data_dict(tx_nodes)  # type: ignore[attr-defined]
        receipt_root, receipt_nodes = ordered_trie_root_and_nodes([r.encode() for r in receipts])
        self.chaindb.persist_trie_data_dict(receipt_nodes)  # type: ignore[attr-defined]
        block_fields: dict[str, Any] = {"transactions": transactions}
        header_fields: dict[str, Any] = {"transaction_root": tx_root, "receipt_root": receipt_root}
        if withdrawals:
            withdrawals_root, withdrawal_nodes = ordered_trie_root_and_nodes([w.encode() for w in withdrawals])
            self.chaindb.persist_trie_data_dict(withdrawal_nodes)  # type: ignore[attr-defined]
            block_fields["withdrawals"] = withdrawals
            header_fields["withdrawals_root"] = withdrawals_root
        block_fields["header"] = new_header.copy(**header_fields)
        self._assembled = (receipt_root, tuple(receipts))
        return base_block.copy(**block_fields)

    def process_deposit_request_data(self, block: BlockAPI) -> None:
        assembled = self._assembled
        if assembled is not None and assembled[0] == block.header.receipt_root:
            block = _BlockWithReceipts(block, assembled[1])  # type: ignore[assignment]
        super().process_deposit_request_data(block)  # type: ignore[misc]


@cache
def fast_vm(vm_class: type[VirtualMachineAPI]) -> type[VirtualMachineAPI]:
    """``vm_class`` with :class:`FastBlockAssembly` (same fork, same rules)."""
    return type(vm_class.__name__, (FastBlockAssembly, vm_class), {})
