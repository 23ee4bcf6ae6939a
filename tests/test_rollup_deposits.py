"""Deposit transactions, deposit receipts, source hashes and L1-info calldata."""

from __future__ import annotations

import os

import pytest
import rlp
from eth.rlp.logs import Log
from eth_utils import keccak

from lorachain.node.rollup.deposits import (
    DepositError,
    DepositReceipt,
    DepositTx,
    l1_info_source_hash,
    upgrade_source_hash,
    user_deposit_source_hash,
)
from lorachain.node.rollup.l1_info import (
    ECOTONE_SIZE,
    ISTHMUS_SIZE,
    L1_BLOCK_ADDRESS,
    L1_INFO_DEPOSITOR,
    L1BlockInfo,
    L1InfoError,
)


def test_source_hashes() -> None:
    # The published source hash of Isthmus' L1Block deployment (OP Stack specs, isthmus/derivation.md).
    assert upgrade_source_hash("Isthmus: L1 Block Deployment").hex() == (
        "3b2d0821ca2411ad5cd3595804d1213d15737188ae4cbd58aa19c821a6c211bf"
    )
    block = os.urandom(32)
    assert user_deposit_source_hash(block, 3) == keccak(bytes(32) + keccak(block + (3).to_bytes(32, "big")))
    assert l1_info_source_hash(block, 3) == keccak((1).to_bytes(32, "big") + keccak(block + (3).to_bytes(32, "big")))
    assert user_deposit_source_hash(block, 3) != l1_info_source_hash(block, 3)  # domains keep them apart


def test_deposit_round_trip_and_hash() -> None:
    tx = DepositTx(os.urandom(32), os.urandom(20), os.urandom(20), 10**18, 5, 100_000, False, b"\x01\x02")
    encoded = tx.encode()
    assert encoded[0] == 0x7E
    assert rlp.decode(encoded[1:])[3] == (10**18).to_bytes(8, "big")
    assert DepositTx.decode(encoded) == tx
    assert tx.hash == keccak(encoded)
    create = DepositTx(os.urandom(32), os.urandom(20), None, 0, 0, 50_000, False, b"\x60\x00")
    assert DepositTx.decode(create.encode()).to is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "type byte"),
        (b"\x02" + rlp.encode([]), "type byte"),
        (b"\x7e" + rlp.encode([b"\x01" * 32]), "malformed"),
        (b"\x7e" + rlp.encode([b"\x01" * 32, b"\x02" * 20, b"\x03" * 5, 0, 0, 1, False, b""]), "20 bytes"),
        (b"\x7e" + rlp.encode([b"\x01" * 32, b"\x02" * 20, b"", 0, 0, 2**64, False, b""]), "64 bits"),
    ],
)
def test_malformed_deposits(data: bytes, message: str) -> None:
    with pytest.raises(DepositError, match=message):
        DepositTx.decode(data)


def test_deposit_receipt_round_trip() -> None:
    logs = (Log(os.urandom(20), (int.from_bytes(os.urandom(32), "big"),), b"data"),)
    receipt = DepositReceipt(b"\x01", 123_456, logs, deposit_nonce=7)
    encoded = receipt.encode_typed()
    assert encoded[0] == 0x7E
    fields = rlp.decode(encoded[1:])
    assert len(fields) == 6 and fields[4] == b"\x07" and fields[5] == b"\x01"  # depositNonce, version 1
    assert DepositReceipt.decode_typed(encoded) == receipt
    assert receipt.bloom_filter.__contains__(logs[0].address)
    with pytest.raises(DepositError):
        DepositReceipt.decode_typed(encoded[:-3])


def _info(**extra: int) -> L1BlockInfo:
    return L1BlockInfo(
        base_fee_scalar=1368,
        blob_base_fee_scalar=810949,
        sequence_number=3,
        l1_timestamp=1_700_000_012,
        l1_number=19_000_000,
        base_fee=7 * 10**9,
        blob_base_fee=1,
        l1_block_hash=os.urandom(32),
        batcher_hash=bytes(12) + os.urandom(20),
        **extra,
    )


def test_l1_info_ecotone_layout() -> None:
    info = _info()
    data = info.encode()
    assert len(data) == ECOTONE_SIZE and data[:4].hex() == "440a5e20"
    assert data[4:8] == (1368).to_bytes(4, "big") and data[8:12] == (810949).to_bytes(4, "big")
    assert data[12:20] == (3).to_bytes(8, "big") and data[36:68] == (7 * 10**9).to_bytes(32, "big")
    assert data[100:132] == info.l1_block_hash and data[132:] == info.batcher_hash
    assert L1BlockInfo.decode(data) == info
    deposit = info.deposit()
    assert (deposit.sender, deposit.to, deposit.gas, deposit.mint, deposit.is_system_tx) == (
        L1_INFO_DEPOSITOR, L1_BLOCK_ADDRESS, 1_000_000, 0, False)  # fmt: skip
    assert deposit.source_hash == l1_info_source_hash(info.l1_block_hash, 3)


def test_l1_info_isthmus_layout_and_refusals() -> None:
    info = _info(operator_fee_scalar=5, operator_fee_constant=1000)
    data = info.encode()
    assert len(data) == ISTHMUS_SIZE and data[:4].hex() == "098999be"
    assert data[164:168] == (5).to_bytes(4, "big") and data[168:] == (1000).to_bytes(8, "big")
    assert L1BlockInfo.decode(data) == info
    with pytest.raises(L1InfoError):
        L1BlockInfo.decode(data[:-1])
    with pytest.raises(L1InfoError):
        L1BlockInfo.decode(b"\x00\x00\x00\x00" + data[4:ECOTONE_SIZE])
