"""The direct receipt encoding (lorachain.node.receipt_encoding) is py-evm's, byte for byte."""

from __future__ import annotations

import random

import rlp
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth.vm.forks.prague.receipts import PragueReceiptBuilder
from eth.vm.forks.prague.receipts import PragueTypedReceipt as TypedReceipt

from lorachain.node import vm  # noqa: F401  (installs the direct encoding on typed receipts)
from lorachain.node.receipt_encoding import encode_receipt, is_plain_receipt
from lorachain.node.rollup.deposits import DEPOSIT_TX_TYPE, DepositReceipt


def _receipts(rng: random.Random) -> list[Receipt]:
    out = []
    for _ in range(60):
        logs = [
            Log(
                bytes(rng.randrange(256) for _ in range(20)),
                tuple(
                    rng.randrange(2**256) if rng.random() < 0.8 else rng.randrange(256) for _ in range(rng.randrange(5))
                ),
                bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 31, 55, 56, 300]))),
            )
            for _ in range(rng.choice([0, 0, 1, 2, 7]))
        ]
        bloom = rng.randrange(2**2048) if rng.random() < 0.7 else 0
        gas = rng.choice([0, 1, 127, 128, 21000, 2**63, rng.randrange(2**64)])
        out.append(Receipt(rng.choice([b"", b"\x01"]), gas, logs, bloom))
    return out


def test_direct_encoding_equals_py_evms() -> None:
    for receipt in _receipts(random.Random(11)):
        assert is_plain_receipt(receipt)
        assert encode_receipt(receipt) == rlp.encode(receipt)


def test_typed_receipts_encode_and_decode_as_py_evm_does() -> None:
    for type_id, receipt in zip([1, 2, 4] * 20, _receipts(random.Random(12)), strict=False):
        typed = TypedReceipt(type_id, receipt)
        encoded = typed.encode()
        assert encoded == bytes([type_id]) + rlp.encode(receipt)
        assert PragueReceiptBuilder.decode(encoded) == typed
        assert typed.encode() is encoded  # remembered


def test_other_receipt_kinds_are_left_to_py_evm() -> None:
    receipt = DepositReceipt(b"\x01", 21000, [], deposit_nonce=7)  # an OP deposit's, with its nonce and version
    assert not is_plain_receipt(receipt)
    typed = TypedReceipt(DEPOSIT_TX_TYPE, receipt)
    assert typed.encode() == bytes([DEPOSIT_TX_TYPE]) + rlp.encode(receipt)
