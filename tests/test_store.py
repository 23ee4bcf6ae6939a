"""The LMDB store and its PendingWrites overlay; a chain's state survives close/reopen."""

from __future__ import annotations

import time

import lmdb
import pytest
from eth_account import Account
from eth_utils import to_canonical_address

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import devnet_genesis, parse_genesis
from lorachain.node.chain import Blockchain
from lorachain.node.store import SYNC_MODES, LmdbStore, PendingWrites

RECIPIENT = "0x" + "42" * 20


@pytest.fixture
def store(tmp_path):
    db = LmdbStore(tmp_path / "db", map_size=1 << 26)
    yield db
    db.close()


# -- LmdbStore -----------------------------------------------------------------------------------


def test_set_get_delete_and_missing_keys(store: LmdbStore) -> None:
    store[b"a"] = b"1"
    assert store[b"a"] == b"1"
    assert store.exists(b"a")
    assert b"a" in store
    with pytest.raises(KeyError):
        store[b"missing"]
    assert not store.exists(b"missing")
    assert store.get(b"missing") is None
    del store[b"a"]
    assert not store.exists(b"a")
    with pytest.raises(KeyError):
        store[b"a"]
    with pytest.raises(KeyError):
        del store[b"a"]


def test_read_then_write_then_read_sees_the_new_value(store: LmdbStore) -> None:
    """The long-lived read transaction must be renewed after every write."""
    store[b"k"] = b"old"
    assert store[b"k"] == b"old"  # opens the long-lived reader
    assert not store.exists(b"new")
    store[b"k"] = b"new"
    assert store[b"k"] == b"new"
    store.write_batch({b"new": b"x", b"k": b"newer"})
    assert store[b"k"] == b"newer"
    assert store.exists(b"new")
    del store[b"new"]
    assert not store.exists(b"new")
    # The same through a PendingWrites commit (the path blocks take).
    overlay = PendingWrites(store)
    assert store[b"k"] == b"newer"
    overlay[b"k"] = b"committed"
    overlay.commit()
    assert store[b"k"] == b"committed"


def test_iterate_prefix_in_key_order_and_across_writes(store: LmdbStore) -> None:
    store.write_batch({b"p:2": b"b", b"p:1": b"a", b"q:1": b"z", b"p:3": b"c", b"o:9": b"y"})
    assert list(store.iterate_prefix(b"p:")) == [(b"p:1", b"a"), (b"p:2", b"b"), (b"p:3", b"c")]
    assert list(store.iterate_prefix(b"zz")) == []
    iterator = store.iterate_prefix(b"p:")
    assert next(iterator) == (b"p:1", b"a")
    store[b"p:4"] = b"d"  # a write while iterating: the iterator keeps its own snapshot
    assert [key for key, _ in iterator] == [b"p:2", b"p:3"]
    assert [key for key, _ in store.iterate_prefix(b"p:")] == [b"p:1", b"p:2", b"p:3", b"p:4"]


def test_write_batch_is_all_or_nothing(store: LmdbStore) -> None:
    store[b"keep"] = b"v0"
    with pytest.raises(lmdb.BadValsizeError):
        # An empty key is invalid in LMDB: the whole transaction must abort.
        store.write_batch({b"keep": b"v1", b"added": b"x", b"": b"bad"})
    assert store[b"keep"] == b"v0"
    assert not store.exists(b"added")


def test_reopen_after_close_keeps_data(tmp_path) -> None:
    path = tmp_path / "db"
    first = LmdbStore(path, map_size=1 << 26)
    first.write_batch({b"a": b"1", b"b": b"2"})
    first[b"c"] = b"3"
    del first[b"b"]
    first.close()
    second = LmdbStore(path, map_size=1 << 26)
    try:
        assert second[b"a"] == b"1"
        assert second[b"c"] == b"3"
        assert not second.exists(b"b")
    finally:
        second.close()


@pytest.mark.parametrize("sync", SYNC_MODES)
def test_every_sync_mode_keeps_commits_across_reopen(tmp_path, sync: str) -> None:
    path = tmp_path / "db"
    first = LmdbStore(path, map_size=1 << 26, sync=sync, sync_interval_s=0.01)
    first.write_batch({b"k%d" % i: b"v%d" % i for i in range(100)})
    time.sleep(0.05)  # the background flush runs meanwhile ("data", "none")
    first[b"last"] = b"x"
    first.close()  # "data" and "none" flush on close
    second = LmdbStore(path, map_size=1 << 26, sync=sync)
    try:
        assert second[b"k99"] == b"v99" and second[b"last"] == b"x"
    finally:
        second.close()


def test_unknown_sync_mode_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown sync mode 'sometimes'"):
        LmdbStore(tmp_path / "db", map_size=1 << 26, sync="sometimes")


# -- PendingWrites -------------------------------------------------------------------------------


def test_pending_writes_visible_only_after_commit(store: LmdbStore) -> None:
    store[b"base"] = b"0"
    overlay = PendingWrites(store)
    overlay[b"base"] = b"1"
    overlay[b"new"] = b"2"
    # The overlay sees its own writes ...
    assert overlay[b"base"] == b"1"
    assert overlay[b"new"] == b"2"
    assert overlay.exists(b"new")
    # ... the store does not, until commit.
    assert store[b"base"] == b"0"
    assert not store.exists(b"new")
    other = PendingWrites(store)
    assert other[b"base"] == b"0"
    assert not other.exists(b"new")
    overlay.commit()
    assert store[b"base"] == b"1"
    assert store[b"new"] == b"2"
    assert other[b"base"] == b"1"  # other overlays read through to the committed data
    assert overlay.changes == {}
    assert overlay[b"new"] == b"2"  # and the overlay itself still reads (from the store now)


def test_pending_writes_discard_drops_everything(store: LmdbStore) -> None:
    store[b"base"] = b"0"
    overlay = PendingWrites(store)
    overlay[b"base"] = b"1"
    overlay[b"new"] = b"2"
    del overlay[b"base"]
    overlay.discard()
    assert overlay[b"base"] == b"0"
    assert not overlay.exists(b"new")
    overlay.commit()  # nothing left to write
    assert store[b"base"] == b"0"
    assert not store.exists(b"new")


def test_pending_writes_deletes(store: LmdbStore) -> None:
    store.write_batch({b"a": b"1", b"b": b"2"})
    overlay = PendingWrites(store)
    del overlay[b"a"]
    assert not overlay.exists(b"a")
    assert b"a" not in overlay
    with pytest.raises(KeyError):
        overlay[b"a"]
    with pytest.raises(KeyError):
        del overlay[b"a"]  # already deleted in the overlay
    with pytest.raises(KeyError):
        del overlay[b"never"]
    assert store[b"a"] == b"1"  # not yet
    # Delete then re-set: the value wins.
    del overlay[b"b"]
    overlay[b"b"] = b"again"
    assert overlay[b"b"] == b"again"
    # Set then delete a key that only the overlay has.
    overlay[b"tmp"] = b"t"
    del overlay[b"tmp"]
    assert not overlay.exists(b"tmp")
    overlay.commit()
    assert not store.exists(b"a")
    assert store[b"b"] == b"again"
    assert not store.exists(b"tmp")


def test_pending_writes_commit_is_atomic(store: LmdbStore) -> None:
    store[b"a"] = b"before"
    overlay = PendingWrites(store)
    overlay[b"a"] = b"after"
    overlay[b"b"] = b"new"
    overlay[b""] = b"invalid"  # LMDB refuses empty keys, mid-commit
    with pytest.raises(lmdb.Error):
        overlay.commit()
    assert store[b"a"] == b"before"
    assert not store.exists(b"b")
    # The failed commit kept the changes; after fixing the bad one it goes through.
    del overlay.changes[b""]
    overlay.commit()
    assert store[b"a"] == b"after"
    assert store[b"b"] == b"new"


def test_pending_writes_stores_copies_of_values(store: LmdbStore) -> None:
    overlay = PendingWrites(store)
    value = bytearray(b"abc")
    overlay[b"k"] = value
    value[0] = ord("z")
    assert overlay[b"k"] == b"abc"
    overlay.commit()
    assert store[b"k"] == b"abc"


def test_atomic_view_batches_land_in_the_overlay(store: LmdbStore) -> None:
    overlay = PendingWrites(store)
    view = overlay.atomic_view()
    with view.atomic_batch() as batch:
        batch[b"x"] = b"1"
        batch[b"y"] = b"2"
    assert overlay[b"x"] == b"1"
    assert not store.exists(b"x")
    overlay.commit()
    assert store[b"y"] == b"2"


# -- a chain over the store ----------------------------------------------------------------------


def _transfer(chain: Blockchain, key: bytes, nonce: int, value: int):
    signed = Account.sign_transaction(
        {"to": RECIPIENT, "value": value, "gas": 21000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
         "nonce": nonce, "chainId": chain.chain_id, "type": 2},
        key,
    )  # fmt: skip
    vm_class = chain.chain_class.get_vm_class_for_block_number(chain.head.block_number + 1)
    return vm_class.get_transaction_builder().decode(bytes(signed.raw_transaction))


def test_build_block_then_reopen_restores_head_receipts_and_state(tmp_path) -> None:
    sender = dev_accounts()[0]
    chain = Blockchain.initialize(tmp_path, parse_genesis(devnet_genesis()))
    txs = [_transfer(chain, sender.private_key, n, 1000 + n) for n in range(3)]
    built = chain.build_block(txs, timestamp=chain.head.timestamp + 12, coinbase=b"\x01" * 20, mix_hash=b"\x02" * 32)
    assert not built.rejected and not built.deferred
    assert len(built.block.transactions) == 3
    second = chain.build_block(
        [_transfer(chain, sender.private_key, 3, 7)],
        timestamp=chain.head.timestamp + 12,
        coinbase=b"\x01" * 20,
        mix_hash=b"\x03" * 32,
    )
    head = chain.head
    assert head.block_number == 2 and head.hash == second.block.hash
    receipts = [r.gas_used for r in chain.receipts(built.block)]
    sender_balance = chain.state_at(head).get_balance(to_canonical_address(sender.address))
    chain.close()

    reopened = Blockchain.open(tmp_path)
    try:
        assert reopened.head.hash == head.hash
        assert reopened.head.state_root == head.state_root
        assert reopened.header_by_number(1).hash == built.block.hash
        block = reopened.block_by_header(reopened.header_by_number(1))
        assert [tx.hash for tx in block.transactions] == [tx.hash for tx in txs]
        assert [r.gas_used for r in reopened.receipts(block)] == receipts == [21000, 42000, 63000]
        location = reopened.tx_location(txs[2].hash)
        assert location is not None and (location.block_number, location.index) == (1, 2)
        state = reopened.state_at(reopened.head)
        assert state.get_balance(to_canonical_address(RECIPIENT)) == 1000 + 1001 + 1002 + 7
        assert state.get_nonce(to_canonical_address(sender.address)) == 4
        assert state.get_balance(to_canonical_address(sender.address)) == sender_balance
        assert state.get_balance(b"\x01" * 20) > 0  # the coinbase got the tips
    finally:
        reopened.close()


def test_rejected_block_leaves_no_trace(tmp_path) -> None:
    """A build that fails (timestamp not after the parent) commits nothing."""
    from lorachain.node.chain import ChainError

    chain = Blockchain.initialize(tmp_path, parse_genesis(devnet_genesis()))
    genesis_hash = chain.head.hash
    with pytest.raises(ChainError):
        chain.build_block([], timestamp=chain.head.timestamp, coinbase=b"\x00" * 20, mix_hash=b"\x00" * 32)
    chain.close()
    reopened = Blockchain.open(tmp_path)
    try:
        assert reopened.head.hash == genesis_hash
    finally:
        reopened.close()


def test_the_map_grows_when_a_commit_finds_it_full(tmp_path) -> None:
    import os

    path = tmp_path / "db"
    db = LmdbStore(path, map_size=1 << 20)  # 1 MiB: the batches below need several times that
    batches = [{os.urandom(32): os.urandom(500) for _ in range(2000)} for _ in range(4)]
    db[b"before"] = b"kept"
    assert db[b"before"] == b"kept"  # a read transaction is open across the growth below
    for batch in batches:
        db.write_batch(batch)
    assert db.env.info()["map_size"] > 1 << 20
    assert all(db[key] == value for batch in batches for key, value in batch.items())
    db.close()
    reopened = LmdbStore(path, map_size=1 << 20)  # a smaller request: LMDB keeps the data's size
    assert reopened[b"before"] == b"kept"
    assert all(reopened[key] == value for key, value in batches[-1].items())
    reopened.close()
