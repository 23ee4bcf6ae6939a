"""lorachain/node/tx_decoding.py against py-evm's decoder: the same objects for random EIP-1559 transactions,
py-evm's decision (and error) for everything else and for every malformed input."""

from __future__ import annotations

import random

import pytest
import rlp
from eth_account import Account
from eth_utils import to_checksum_address

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import devnet_genesis, parse_genesis
from lorachain.node import tx_decoding
from lorachain.node.tx_decoding import decode_transaction

RNG = random.Random(11)
BUILDER = parse_genesis(devnet_genesis()).chain_class().get_vm_class_for_block_number(1).get_transaction_builder()
KEY = dev_accounts()[0].private_key


def _signed(**fields: object) -> bytes:
    base = {"type": 2, "chainId": 901, "nonce": RNG.randrange(2**64), "gas": RNG.randrange(21_000, 2**63),
            "maxFeePerGas": RNG.randrange(2**200), "maxPriorityFeePerGas": RNG.randrange(2**64),
            "value": RNG.choice((0, 1, RNG.randrange(2**255))), "data": RNG.randbytes(RNG.randrange(70)),
            "to": to_checksum_address(RNG.randbytes(20))}  # fmt: skip
    tx = {key: value for key, value in {**base, **fields}.items() if value is not None}  # "to": None creates
    return bytes(Account.sign_transaction(tx, KEY).raw_transaction)


def _fields(tx: object) -> tuple:
    return tuple(getattr(tx, name) for name in ("type_id", "chain_id", "nonce", "max_priority_fee_per_gas",
                 "max_fee_per_gas", "gas", "to", "value", "data", "access_list", "y_parity", "r", "s"))  # fmt: skip


@pytest.mark.parametrize("fields", [{}, {"to": None}, {"data": b""}, {"value": 0, "nonce": 0}, {"chainId": 1}])
def test_the_same_transaction_as_py_evm(fields: dict) -> None:
    for _ in range(20):
        raw = _signed(**fields)
        fast, reference = decode_transaction(BUILDER, raw), BUILDER.decode(raw)
        assert tx_decoding._dynamic_fee_without_access_list(BUILDER, raw) is not None  # the fast path ran
        assert type(fast) is type(reference) and type(fast._inner) is type(reference._inner)
        assert _fields(fast) == _fields(reference)
        assert fast.encode() == reference.encode() == raw
        assert fast.hash == reference.hash and fast.sender == reference.sender
        assert fast == reference
        fast.validate()  # py-evm's own checks accept it as they accept the reference


def test_other_kinds_are_py_evms() -> None:
    entry = {"address": to_checksum_address(b"\x11" * 20), "storageKeys": ["0x" + "22" * 32]}
    with_access_list = _signed(accessList=[entry])
    legacy_fields = {"nonce": 1, "gasPrice": 10**9, "gas": 21_000, "to": to_checksum_address(b"\x33" * 20),
                     "value": 5, "chainId": 901}  # fmt: skip
    legacy = bytes(Account.sign_transaction(legacy_fields, KEY).raw_transaction)
    for raw in (with_access_list, legacy):
        assert tx_decoding._dynamic_fee_without_access_list(BUILDER, raw) is None
        assert decode_transaction(BUILDER, raw) == BUILDER.decode(raw)


def _reencoded(raw: bytes, index: int, item: object) -> bytes:
    items = rlp.decode(raw[1:])
    items[index] = item
    return b"\x02" + rlp.encode(items)


def _malformed() -> list[bytes]:
    raw = _signed()
    items = rlp.decode(raw[1:])
    return [
        b"\x02",  # nothing after the type
        raw + b"\x00",  # bytes after the list
        raw[:-1],  # cut short
        _reencoded(raw, 1, b"\x00\x05"),  # a nonce with a leading zero
        _reencoded(raw, 10, b"\x00" + items[10]),  # r with a leading zero
        _reencoded(raw, 5, b"\x11" * 19),  # a 19-byte recipient
        _reencoded(raw, 5, [b"\x11" * 20]),  # a list for the recipient
        _reencoded(raw, 0, [b"\x01"]),  # a list for the chain id
        _reencoded(raw, 7, [b"data"]),  # a list for the data
        b"\x02" + rlp.encode(items[:11]),  # eleven fields
        b"\x02" + rlp.encode([*items, b""]),  # thirteen
        b"\x02" + rlp.encode(b"not a list"),
        b"\x02\xb8\x01\x05",  # a long-form prefix for a one-byte string: not canonical
    ]


@pytest.mark.parametrize("raw", _malformed())
def test_malformed_input_gets_py_evms_error(raw: bytes) -> None:
    assert tx_decoding._dynamic_fee_without_access_list(BUILDER, raw) is None
    with pytest.raises(Exception) as reference:
        BUILDER.decode(raw)
    with pytest.raises(type(reference.value)):
        decode_transaction(BUILDER, raw)
