"""``trie_nodes.trie_get`` (the read-only lookup the account reads use) against py-trie's ``HexaryTrie.get``."""

from __future__ import annotations

import random

import pytest
from eth_utils import keccak
from trie import HexaryTrie

from lorachain.node.trie_nodes import trie_get


@pytest.mark.parametrize("seed", range(6))
def test_lookup_equals_py_trie_for_present_and_absent_keys(seed: int) -> None:
    rng = random.Random(seed)
    db: dict[bytes, bytes] = {}
    trie = HexaryTrie(db)
    hashed = seed % 2 == 0  # account-style 32-byte keys, or short keys whose nodes embed in their parents

    def random_key() -> bytes:
        return keccak(rng.randbytes(8)) if hashed else rng.randbytes(rng.randint(1, 3))

    keys = [random_key() for _ in range(rng.randint(1, 300))]
    for key in keys:
        trie[key] = rng.randbytes(rng.choice([1, 3, 40]))  # short values make nodes under 32 bytes: embedded
    for key in keys[: len(keys) // 3]:
        del trie[key]  # deletions collapse branches into extensions
    probes = keys + [random_key() for _ in range(300)]
    probes += [key[:-1] for key in keys if len(key) > 1]  # a prefix of a present key stops inside a path
    for key in probes:
        assert trie_get(trie.root_hash, key, db.__getitem__) == trie.get(key), key.hex()


def test_an_empty_trie_holds_nothing() -> None:
    trie = HexaryTrie({})
    assert trie_get(trie.root_hash, keccak(b"x"), {}.__getitem__) == b""
