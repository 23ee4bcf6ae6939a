"""The logs bloom on integers (lorachain/node/bloom.py) against eth-bloom, and py-evm's receipts and receipt check
with it installed (lorachain/node/vm.py)."""

from __future__ import annotations

import random

import pytest
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth_bloom import BloomFilter
from eth_utils import ValidationError

from lorachain.genesis.genesis import devnet_genesis, parse_genesis
from lorachain.node.bloom import item_bits, logs_bloom, may_contain

RNG = random.Random(7)


def _random_logs(count: int) -> list[Log]:
    return [
        Log(RNG.randbytes(20), tuple(RNG.getrandbits(256) for _ in range(RNG.randrange(5))), RNG.randbytes(3))
        for _ in range(count)
    ]


def _eth_bloom(logs: list[Log]) -> BloomFilter:
    return BloomFilter.from_iterable(item for log in logs for item in log.bloomables)


def test_item_bits_are_eth_blooms() -> None:
    for length in (0, 1, 20, 32, 77):
        item = RNG.randbytes(length)
        assert item_bits(item) == int(BloomFilter.from_iterable([item]))
        assert 1 <= bin(item_bits(item)).count("1") <= 3


def test_logs_bloom_and_membership_agree_with_eth_bloom() -> None:
    for count in (0, 1, 3, 40):
        logs = _random_logs(count)
        reference = _eth_bloom(logs)
        assert logs_bloom(logs) == int(reference)
        assert all(may_contain(logs_bloom(logs), item) for log in logs for item in log.bloomables)
        for _ in range(50):
            absent = RNG.randbytes(20)
            assert may_contain(int(reference), absent) == (absent in reference)


def test_receipts_carry_the_same_bloom_and_a_bad_one_is_refused() -> None:
    logs = _random_logs(6)
    receipt = Receipt(b"\x01", 21_000, logs)  # lorachain.node.vm computes the bloom
    assert receipt.bloom == int(_eth_bloom(logs))
    vm_class = parse_genesis(devnet_genesis()).chain_class().get_vm_class_for_block_number(1)
    vm_class.validate_receipt(receipt)
    with pytest.raises(ValidationError, match="not present in the provided bloom filter"):
        vm_class.validate_receipt(Receipt(b"\x01", 21_000, logs, bloom=0))
