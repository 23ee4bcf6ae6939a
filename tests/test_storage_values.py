"""Storage slot values read and written directly (BatchedAccountStorageDB) as py-evm's AccountStorageDB does."""

from __future__ import annotations

import random

import pytest
import rlp
from eth.constants import BLANK_ROOT_HASH
from eth.db.atomic import AtomicDB
from eth.db.storage import AccountStorageDB

from lorachain.node.state_db import BatchedAccountStorageDB, _decode_slot_value

ADDRESS = b"\x42" * 20
VALUES = [1, 0x7F, 0x80, 0xFF, 0x100, 2**64, 2**255, 2**256 - 1]


@pytest.mark.parametrize("value", VALUES)
def test_slot_values_decode_as_pyrlp(value: int) -> None:
    encoded = rlp.encode(value)
    assert _decode_slot_value(encoded) == value == rlp.decode(encoded, sedes=rlp.sedes.big_endian_int)


@pytest.mark.parametrize("bad", [b"\x81\x05", b"\x82\x00\x01", b"\xc1\x01"])
def test_non_canonical_values_raise_as_pyrlp(bad: bytes) -> None:
    with pytest.raises(Exception) as pyrlps:
        rlp.decode(bad, sedes=rlp.sedes.big_endian_int)
    with pytest.raises(pyrlps.type):
        _decode_slot_value(bad)


def test_gets_sets_and_roots_match_py_evm() -> None:
    rng = random.Random(9)
    ours = BatchedAccountStorageDB(AtomicDB(), BLANK_ROOT_HASH, ADDRESS)
    theirs = AccountStorageDB(AtomicDB(), BLANK_ROOT_HASH, ADDRESS)
    for _ in range(400):
        slot = rng.choice([0, 1, 2, 0xFF, 2**40, 2**256 - 1, rng.randrange(64)])
        if rng.random() < 0.6:
            value = rng.choice([0, 0, *VALUES, rng.randrange(2**256)])
            ours.set(slot, value)
            theirs.set(slot, value)
        assert ours.get(slot) == theirs.get(slot)
        assert ours.get(slot, from_journal=False) == theirs.get(slot, from_journal=False)
    ours.make_storage_root()
    theirs.make_storage_root()
    assert ours.get_changed_root() == theirs.get_changed_root() != BLANK_ROOT_HASH
