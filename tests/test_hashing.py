"""lorachain.hashing: the direct keccak path gives eth-utils' and eth-hash's digests for every argument kind."""

from __future__ import annotations

import eth.db.storage
import eth_bloom.bloom
import pytest
from eth_hash.auto import keccak as eth_hash_keccak
from eth_utils import keccak as eth_utils_keccak

from lorachain import hashing
from lorachain.node import vm  # noqa: F401  (installs the direct path in py-evm)

PREIMAGES = [b"", b"\x00", b"abc", bytes(range(256)) * 9]


@pytest.mark.parametrize("data", PREIMAGES)
def test_bytes_digest_as_eth_utils_and_eth_hash(data: bytes) -> None:
    assert hashing.keccak(data) == eth_utils_keccak(data) == hashing.keccak256(data) == eth_hash_keccak(data)


def test_other_arguments_take_eth_utils_path() -> None:
    assert hashing.keccak(text="number()") == eth_utils_keccak(text="number()")
    assert hashing.keccak(hexstr="0xdeadbeef") == eth_utils_keccak(hexstr="0xdeadbeef")
    assert hashing.keccak(258) == eth_utils_keccak(258)
    assert hashing.keccak(bytearray(b"abc")) == eth_utils_keccak(b"abc")
    assert hashing.keccak256(bytearray(b"abc")) == eth_hash_keccak(b"abc")
    with pytest.raises(TypeError):
        hashing.keccak(b"abc", text="abc")  # eth-utils' own check: exactly one input


def test_installed_where_py_evm_and_eth_bloom_look() -> None:
    assert eth.db.storage.keccak is hashing.keccak256
    assert eth_bloom.bloom.keccak_256 is hashing.keccak256
