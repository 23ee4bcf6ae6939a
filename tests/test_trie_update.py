"""Batched trie updates give py-trie's root, and a trie py-trie can read back, on random edits."""

from __future__ import annotations

import os
import random

import pytest
import rlp
from eth.constants import BLANK_ROOT_HASH
from trie import HexaryTrie

from lorachain.node.trie_nodes import encode_node, encode_uint
from lorachain.node.trie_update import MissingNode, TrieUpdate, node_loader, updated_root


def _random_key(rng: random.Random, keys: list[bytes], shape: str) -> bytes:
    if keys and rng.random() < 0.4:
        return rng.choice(keys)
    if shape == "hashed":
        return rng.randbytes(32)
    if shape == "short":  # shared prefixes, keys that are prefixes of others, embedded nodes
        return rng.randbytes(rng.randint(0, 3))
    return bytes(rng.choice(b"\x00\x01\x10\x11") for _ in range(rng.randint(1, 4)))


def _random_value(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice([1, 2, 5, 31, 32, 33, 70]))


@pytest.mark.parametrize("shape", ["hashed", "short", "clustered"])
@pytest.mark.parametrize("seed", range(12))
def test_matches_py_trie(shape: str, seed: int) -> None:
    rng = random.Random(f"{shape}-{seed}")
    db: dict[bytes, bytes] = {}
    reference = HexaryTrie({})
    root = BLANK_ROOT_HASH
    keys: list[bytes] = []
    model: dict[bytes, bytes] = {}
    for _batch in range(25):
        items = []
        for _ in range(rng.randint(1, 12)):
            key = _random_key(rng, keys, shape)
            value = None if rng.random() < 0.35 else _random_value(rng)
            items.append((key, value))
            if value is None:
                model.pop(key, None)
                reference.delete(key)
            else:
                model[key] = value
                reference.set(key, value)
                keys.append(key)
        root, nodes = updated_root(node_loader(db), root, items)
        db.update(nodes)
        assert root == reference.root_hash
        readback = HexaryTrie(db, root)  # every node the new root needs was written
        for key, value in model.items():
            assert readback.get(key) == value


def test_empty_value_deletes_and_unchanged_root_writes_nothing() -> None:
    db: dict[bytes, bytes] = {}
    root, nodes = updated_root(node_loader(db), BLANK_ROOT_HASH, [(b"\x01" * 32, b"v" * 40)])
    db.update(nodes)
    assert updated_root(node_loader(db), root, [(b"\x02" * 32, None)]) == (root, {})  # absent key
    assert updated_root(node_loader(db), root, [(b"\x01" * 32, b"")])[0] == BLANK_ROOT_HASH


def test_missing_node_is_reported() -> None:
    update = TrieUpdate(node_loader({}), os.urandom(32))  # a root the database does not hold
    with pytest.raises(MissingNode):
        update.update([(b"\x05" * 32, b"y")])


@pytest.mark.parametrize(
    "node",
    [b"", b"\x00", b"\x7f", b"\x80", b"x" * 55, b"x" * 56, b"x" * 300, [], [b""] * 17],
)
def test_encode_node_is_rlp(node: object) -> None:
    assert encode_node(node) == rlp.encode(node)
    nested = [b"a" * 40, [node, [b"c" * 70]]]
    assert encode_node(nested) == rlp.encode(nested)


def test_random_nodes_encode_as_rlp() -> None:
    """Nested lists of every string shape (empty, one low byte, hashes, strings across the 55-byte edge) and
    list lengths across it too: branch nodes, leaves, embedded nodes and more."""
    rng = random.Random(11)

    def random_item(depth: int) -> object:
        if depth > 3 or rng.random() < 0.6:
            return rng.choice([b"", bytes([rng.randrange(0x80)]), bytes([0x80 + rng.randrange(0x80)]),
                               rng.randbytes(32), rng.randbytes(rng.randint(2, 70)), rng.randbytes(300)])  # fmt: skip
        return [random_item(depth + 1) for _ in range(rng.choice([0, 1, 2, 17, rng.randint(0, 40)]))]

    for _ in range(5000):
        node = random_item(0)
        assert encode_node(node) == rlp.encode(node)


def test_encode_uint_is_rlp() -> None:
    rng = random.Random(13)
    values = [
        0,
        1,
        0x7F,
        0x80,
        0xFF,
        0x100,
        2**64 - 1,
        2**256 - 1,
        2**448,
        *(rng.getrandbits(rng.randint(1, 500)) for _ in range(2000)),
    ]
    for value in values:
        assert encode_uint(value) == rlp.encode(value)
