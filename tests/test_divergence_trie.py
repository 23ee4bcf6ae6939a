"""The divergence report's trie walk: the first differing key of two state tries, in key order, where one
trie's nodes are only known through proofs (as the sequencer's are, through eth_getProof)."""

from __future__ import annotations

import random

import pytest
import rlp
from eth_utils import keccak
from trie import HexaryTrie

from lorachain.node.rollup.divergence import _grind, _nibbles, _Side, first_trie_difference


def _trie(items: dict[bytes, bytes]) -> tuple[HexaryTrie, dict]:
    db: dict = {}
    trie = HexaryTrie(db)
    for key, value in items.items():
        trie[key] = value
    return trie, db


def _proof_side(trie: HexaryTrie, width: int) -> tuple[_Side, list[int]]:
    """A side whose nodes come only from proofs of keys ground to the path wanted (and how many were asked)."""
    known: dict[bytes, bytes] = {}
    asked: list[int] = []

    def fetch(ref: bytes, path: tuple[int, ...]) -> bytes | None:
        if ref not in known:
            asked.append(len(path))
            for node in trie.get_proof(keccak(_grind(path, width))):
                encoded = rlp.encode(node)
                known[keccak(encoded)] = encoded
        return known.get(ref)

    return _Side(trie.root_hash, fetch), asked


def _local_side(trie: HexaryTrie, db: dict) -> _Side:
    return _Side(trie.root_hash, lambda ref, path: db.get(ref))


def _accounts(count: int, seed: int) -> dict[bytes, bytes]:
    rng = random.Random(seed)
    return {keccak(rng.randbytes(20)): rlp.encode([rng.randrange(10), rng.randrange(10**20)]) for _ in range(count)}


@pytest.mark.parametrize("count", [1, 3, 40], ids=["one-account", "three-accounts", "forty-accounts"])
def test_an_extra_key_a_changed_value_and_a_missing_key_are_found_first_in_key_order(count: int) -> None:
    base = _accounts(count, seed=count)
    extra = keccak(b"\x7a" * 20)  # the key tamper-state's account has
    changed = sorted(base)[len(base) // 2]
    cases = {
        "extra": ({**base, extra: rlp.encode([0, 1])}, extra, None),
        "changed": ({**base, changed: rlp.encode([9, 9])}, changed, base[changed]),
        "missing": ({k: v for k, v in base.items() if k != changed}, changed, base[changed]),
    }
    ours, our_db = _trie(base)
    for name, (items, key, our_value) in cases.items():
        theirs, _ = _trie(items)
        side, asked = _proof_side(theirs, 20)
        found = first_trie_difference(_local_side(ours, our_db), side)
        assert found is not None, name
        path, mine, yours = found
        assert path == _nibbles(key), name
        assert mine == our_value and yours == items.get(key), name
        assert all(depth <= 5 for depth in asked)


def test_the_smallest_of_several_differing_keys_is_named() -> None:
    base = _accounts(20, seed=7)
    extras = [keccak(bytes([i]) * 20) for i in range(5)]
    ours, our_db = _trie(base)
    theirs, _ = _trie({**base, **{key: b"\x01" for key in extras}})
    side, _ = _proof_side(theirs, 32)
    path, mine, yours = first_trie_difference(_local_side(ours, our_db), side)
    assert path == _nibbles(min(extras)) and mine is None and yours == b"\x01"


def test_equal_tries_have_no_difference() -> None:
    ours, db = _trie(_accounts(10, seed=1))
    theirs, _ = _trie(_accounts(10, seed=1))
    assert first_trie_difference(_local_side(ours, db), _proof_side(theirs, 20)[0]) is None


class _FakeSequencer:
    """eth_getProof and eth_getBlockByNumber over a state trie (as the sequencer's JSON-RPC answers them)."""

    def __init__(self, state: HexaryTrie, storage: dict[bytes, HexaryTrie]) -> None:
        self.state, self.storage, self.proofs = state, storage, 0

    def call(self, method: str, *params):
        if method == "eth_getBlockByNumber":
            return {"stateRoot": "0x" + self.state.root_hash.hex()}
        assert method == "eth_getProof"
        self.proofs += 1
        address = bytes.fromhex(params[0][2:])
        storage = self.storage.get(address, HexaryTrie({}))
        slots = [keccak(bytes.fromhex(slot[2:])) for slot in params[1]]
        return {
            "accountProof": _hex_nodes(self.state.get_proof(keccak(address))),
            "storageProof": [{"proof": _hex_nodes(storage.get_proof(slot))} for slot in slots],
        }


def _hex_nodes(proof) -> list[str]:
    return ["0x" + rlp.encode(node).hex() for node in proof]


def _state(accounts: dict[bytes, tuple[int, int, dict[int, int]]], db: dict) -> tuple[HexaryTrie, dict]:
    """A state trie of ``address -> (nonce, balance, storage)`` in ``db``, and the storage tries."""
    state, storages = HexaryTrie(db), {}
    for address, (nonce, balance, slots) in accounts.items():
        storage = HexaryTrie(db)
        for slot, value in slots.items():
            storage[keccak(slot.to_bytes(32, "big"))] = rlp.encode(value)
        storages[address] = storage
        state[keccak(address)] = rlp.encode([nonce, balance, storage.root_hash, keccak(b"")])
    return state, storages


def _diff(ours: dict, theirs: dict, touched: list[bytes]) -> tuple[dict | None, _FakeSequencer]:
    from types import SimpleNamespace

    from lorachain.node.rollup.divergence import StateTrieDiff

    our_db: dict = {}
    our_state, _ = _state(ours, our_db)
    their_state, their_storage = _state(theirs, {})
    sequencer = _FakeSequencer(their_state, their_storage)
    txs = [SimpleNamespace(sender=address, to=b"") for address in touched]
    block = SimpleNamespace(number=1, transactions=txs,
                            header=SimpleNamespace(state_root=our_state.root_hash, coinbase=b"\x00" * 20))  # fmt: skip
    chain = SimpleNamespace(chaindb=SimpleNamespace(db=our_db), receipts=lambda block: [])
    return StateTrieDiff(chain, block, sequencer).first_difference(), sequencer


def test_a_balance_out_of_nowhere_is_named_by_account_hash() -> None:
    accounts = {bytes([i]) * 20: (i, 10**18, {}) for i in range(1, 25)}
    tampered = b"\x7a" * 20  # what --fault tamper-state credits
    found, _ = _diff(accounts, {**accounts, tampered: (0, 1, {})}, touched=[bytes([1]) * 20])
    assert found["account_hash"] == "0x" + keccak(tampered).hex() and found["address"] is None
    assert found["derived"] is None and found["sequencer"]["balance"] == "0x1"


def test_a_changed_slot_of_a_touched_account_is_named_by_address_and_slot_hash() -> None:
    contract = b"\x5f" * 20
    accounts = {bytes([i]) * 20: (1, 5, {}) for i in range(1, 10)}
    ours = {**accounts, contract: (1, 0, {0: 7, 1: 8, 2: 9})}
    theirs = {**accounts, contract: (1, 0, {0: 7, 1: 80, 2: 9})}
    found, _ = _diff(ours, theirs, touched=[contract])
    assert found["address"] == "0x" + contract.hex() and found["fields"] == ["storageRoot"]
    assert found["storage"] == {"slot_hash": "0x" + keccak((1).to_bytes(32, "big")).hex(), "derived": "0x8",
                                "sequencer": "0x50"}  # fmt: skip
