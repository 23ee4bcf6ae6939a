"""A receipt's consensus encoding, written directly: ``rlp([status, cumulative gas, bloom, logs])``.

py-evm encodes a receipt through pyrlp's sedes machinery (field validation, sedes inference per value): most of
what building a block's receipt trie costs, two thirds of ``set_block_transactions_and_withdrawals``. The byte
layout is fixed by the yellow paper and EIP-2718: status (or pre-Byzantium state root) as a byte string, the
cumulative gas as a minimal big-endian integer, the 2048-bit bloom as 256 bytes, and each log as
``[address, [32-byte topics], data]``. ``tests/test_receipt_encoding.py`` checks it byte for byte against py-evm.
"""

from __future__ import annotations

from typing import Any

from eth.rlp.receipts import Receipt

from lorachain.node.trie_nodes import encode_node, rlp_int

RECEIPT_FIELDS = ("state_root", "gas_used", "bloom", "logs")


def is_plain_receipt(receipt: Any) -> bool:
    """A receipt with exactly py-evm's four fields (not, say, an OP deposit receipt with its nonce)."""
    return isinstance(receipt, Receipt) and tuple(type(receipt)._meta.field_names) == RECEIPT_FIELDS


def encode_receipt(receipt: Receipt) -> bytes:
    """``rlp.encode(receipt)`` for a plain receipt (see :func:`is_plain_receipt`)."""
    logs = [[log.address, [topic.to_bytes(32, "big") for topic in log.topics], log.data] for log in receipt.logs]
    return encode_node([receipt.state_root, rlp_int(receipt.gas_used), receipt.bloom.to_bytes(256, "big"), logs])
