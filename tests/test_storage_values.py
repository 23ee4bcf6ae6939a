"""Storage slot values (BatchedAccountStorageDB) and accounts (BatchedAccountDB) read and written directly, as
py-evm's AccountStorageDB and AccountDB do."""

from __future__ import annotations

import random

import pytest
import rlp
from eth.constants import BLANK_ROOT_HASH
from eth.db.account import AccountDB
from eth.db.atomic import AtomicDB
from eth.db.backends.memory import MemoryDB
from eth.db.storage import AccountStorageDB
from eth.rlp.accounts import Account
from eth.vm.interrupt import MissingStorageTrieNode
from eth_utils import ValidationError

from lorachain.node.state_db import (
    BatchedAccountDB,
    BatchedAccountStorageDB,
    _account_fields,
    _decode_account,
    _decode_slot_value,
    _encode_account,
)

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


def test_accounts_encode_as_pyrlp() -> None:
    rng = random.Random(4)
    for _ in range(5000):
        nonce = rng.choice([0, 1, 0x7F, 0x80, 0xFF, 0x100, 2**64 - 1, rng.getrandbits(64)])
        balance = rng.choice([0, 1, 0x7F, 0x80, 2**256 - 1, rng.getrandbits(rng.randint(1, 256))])
        account = Account(nonce, balance, rng.randbytes(32), rng.randbytes(32))
        assert _encode_account(account) == rlp.encode(account, sedes=Account)


def test_account_edits_match_py_evm() -> None:
    """Balance deltas, nonce steps, code and touches: the same reads, errors and state roots as py-evm's."""
    rng = random.Random(12)
    addresses = [bytes([i]) * 20 for i in range(1, 6)]
    codes = [b"", b"\x60\x00", b"\x5f" * 40]
    ours, theirs = BatchedAccountDB(AtomicDB()), AccountDB(AtomicDB())
    for step in range(600):
        address = rng.choice(addresses)
        kind = rng.random()
        for db in (ours, theirs):
            rng_state = rng.getstate()
            if kind < 0.4:
                delta = rng.choice([1, 10**18, -1, -(10**18), -(2**256)])
                try:
                    outcome = ("ok", db.delta_balance(address, delta) if db is ours else
                               db.set_balance(address, db.get_balance(address) + delta))  # fmt: skip
                except ValidationError as exc:
                    outcome = ("error", str(exc))
            elif kind < 0.6:
                outcome = ("ok", db.increment_nonce(address))
            elif kind < 0.75:
                outcome = ("ok", db.set_code(address, rng.choice(codes)))
            elif kind < 0.9:
                outcome = ("ok", db.get_code(address))
            else:
                outcome = ("ok", db.touch_account(address))
            if db is ours:
                expected_state, ours_outcome = rng.getstate(), outcome
                rng.setstate(rng_state)
            else:
                assert outcome == ours_outcome, step
                assert rng.getstate() == expected_state
        for address in addresses:
            assert ours.get_balance(address) == theirs.get_balance(address)
            assert ours.get_nonce(address) == theirs.get_nonce(address)
            assert ours.get_code(address) == theirs.get_code(address)
        if step % 50 == 0:
            assert ours.make_state_root() == theirs.make_state_root()
    assert ours.make_state_root() == theirs.make_state_root()


def test_reads_of_a_stored_trie_match_py_evm() -> None:
    """Slots read from a committed storage trie (present and absent ones) as py-evm reads them; a missing trie
    node is py-evm's MissingStorageTrieNode."""

    def stored_trie(values: dict[int, int]) -> tuple[MemoryDB, bytes]:
        memory = MemoryDB()
        writer = AccountStorageDB(AtomicDB(memory), BLANK_ROOT_HASH, ADDRESS)
        for slot, value in values.items():
            writer.set(slot, value)
        writer.make_storage_root()
        root = writer.get_changed_root()
        writer.persist(AtomicDB(memory))
        return memory, root

    stored = {slot: slot * 7 + 1 for slot in [0, 1, 2, 3, 0xFF, 2**40, 2**255]}
    memory, root = stored_trie(stored)
    ours, theirs = (
        BatchedAccountStorageDB(AtomicDB(memory), root, ADDRESS),
        AccountStorageDB(AtomicDB(memory), root, ADDRESS),
    )
    for slot in [*stored, 4, 5, 2**40 + 1, 2**256 - 1]:
        assert ours.get(slot) == theirs.get(slot) == stored.get(slot, 0)
    memory, root = stored_trie({slot: value + 1 for slot, value in stored.items()})  # nodes not read (cached) yet
    del memory.kv_store[root]
    for storage in (
        BatchedAccountStorageDB(AtomicDB(memory), root, ADDRESS),
        AccountStorageDB(AtomicDB(memory), root, ADDRESS),
    ):
        with pytest.raises(MissingStorageTrieNode):
            storage.get(0)


def test_accounts_decode_as_pyrlp() -> None:
    """Canonical account encodings (read directly) and damaged ones (pyrlp's: value or error) alike."""
    rng = random.Random(21)

    def decoded(decode, encoded: bytes) -> tuple:
        try:
            account = decode(encoded)
        except Exception:
            return ("error",)
        return account.nonce, account.balance, account.storage_root, account.code_hash

    read_directly = 0
    for _ in range(5000):
        account = Account(rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.getrandbits(64)]),
                          rng.choice([0, 1, 0x7F, 0x80, rng.getrandbits(rng.randint(1, 256))]),
                          rng.randbytes(32), rng.randbytes(32))  # fmt: skip
        encoded = bytearray(rlp.encode(account))
        damage = rng.random()
        if damage < 0.3:
            encoded[rng.randrange(len(encoded))] = rng.randrange(256)
        elif damage < 0.4:
            encoded = encoded[: rng.randrange(len(encoded))]
        elif damage < 0.45:
            encoded += b"\x00"
        elif damage < 0.5:  # a small integer in a needless two-byte form, or the list in a needless long form
            items = [rlp.encode(account.nonce), rlp.encode(account.balance), rlp.encode(account.storage_root),
                     rlp.encode(account.code_hash)]  # fmt: skip
            if rng.random() < 0.5:
                items[1] = b"\x81\x05"
            body = b"".join(items)
            short = bytes([0xC0 + len(body)]) if len(body) < 56 else b"\xf8" + bytes([len(body)])
            encoded = bytearray(rng.choice([short, b"\xf8" + bytes([len(body)])])) + body
        encoded = bytes(encoded)
        read_directly += _account_fields(encoded) is not None
        assert decoded(_decode_account.__wrapped__, encoded) == decoded(lambda e: rlp.decode(e, sedes=Account), encoded)
    assert read_directly > 2000
