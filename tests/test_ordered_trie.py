"""The fast ordered-trie builder agrees with py-evm's (root and every node)."""

from __future__ import annotations

import random

import pytest
from eth.db.trie import _make_trie_root_and_nodes

from lorachain.node.ordered_trie import ordered_trie_root_and_nodes


@pytest.mark.parametrize("count", [0, 1, 2, 3, 15, 16, 17, 127, 128, 129, 255, 256, 300, 1000])
def test_matches_py_evm(count: int) -> None:
    rng = random.Random(count)
    values = tuple(rng.randbytes(rng.choice([1, 5, 31, 32, 33, 100, 300])) for _ in range(count))
    expected_root, expected_nodes = _make_trie_root_and_nodes(values)
    root, nodes = ordered_trie_root_and_nodes(values)
    assert root == expected_root
    assert nodes == expected_nodes


def test_short_values_embed_nodes() -> None:
    values = tuple(bytes([i]) for i in range(40))
    assert ordered_trie_root_and_nodes(values)[0] == _make_trie_root_and_nodes(values)[0]
