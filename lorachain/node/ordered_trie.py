"""Fast root and nodes of an "ordered" Merkle-Patricia trie (keys rlp(0), rlp(1), …).

Blocks commit to their transactions, receipts and withdrawals with such tries. Building them by
repeated ``HexaryTrie.set`` re-encodes every path on every insert; here the trie is built once,
bottom-up, from the sorted keys. ``tests/test_ordered_trie.py`` checks it against py-evm's builder.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import rlp
from eth.constants import BLANK_ROOT_HASH

from lorachain.hashing import keccak
from lorachain.node.trie_nodes import encode_node

Node = list  # a decoded trie node: [path, value] (leaf/extension) or 17 items (branch)


def hex_prefix(path: bytes, leaf: bool) -> bytes:
    """The hex-prefix encoding of a nibble path (one nibble per byte), flagged leaf or extension."""
    flag = 2 if leaf else 0
    prefixed = bytes((flag + 1,)) + path if len(path) % 2 else bytes((flag, 0)) + path
    return bytes(prefixed[i] * 16 + prefixed[i + 1] for i in range(0, len(prefixed), 2))


def nibbles(key: bytes) -> bytes:
    """``key`` as nibbles, one per byte (high nibble first)."""
    return key.hex().encode().translate(_HEX_TO_NIBBLE)


_HEX_TO_NIBBLE = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}

    def ref(self, node: Node) -> bytes | Node:
        """How a parent refers to ``node``: inline if its encoding is short, else by hash."""
        encoded = encode_node(node)
        if len(encoded) < 32:
            return node
        digest = keccak(encoded)
        self.nodes[digest] = encoded
        return digest

    def build(self, items: list[tuple[bytes, bytes]], depth: int) -> Node:
        if len(items) == 1:
            key, value = items[0]
            return [_leaf_path(key[depth:]), value]
        first, last = items[0][0], items[-1][0]
        shared = 0
        limit = min(len(first), len(last)) - depth
        while shared < limit and first[depth + shared] == last[depth + shared]:
            shared += 1
        if shared:
            child = self.build(items, depth + shared)
            return [_extension_path(first[depth : depth + shared]), self.ref(child)]
        branch: Node = [b""] * 17
        start = 0
        if len(items[0][0]) == depth:  # a key ends here: its value sits in the branch
            branch[16] = items[0][1]
            start = 1
        index = start
        while index < len(items):
            nibble = items[index][0][depth]
            end = index
            while end < len(items) and items[end][0][depth] == nibble:
                end += 1
            branch[nibble] = self.ref(self.build(items[index:end], depth + 1))
            index = end
        return branch


@lru_cache(maxsize=64)
def _sorted_keys(count: int) -> tuple[tuple[bytes, int], ...]:
    """(nibbles of rlp(i), i) for i < count, in key order: the same for every trie of ``count`` items."""
    return tuple(sorted((nibbles(rlp.encode(index)), index) for index in range(count)))


# The paths of an ordered trie come from few keys (rlp of small integers): their encodings are remembered.
_leaf_path = lru_cache(maxsize=4096)(lambda path: hex_prefix(path, leaf=True))
_extension_path = lru_cache(maxsize=4096)(lambda path: hex_prefix(path, leaf=False))


def ordered_trie_root_and_nodes(values: Sequence[bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    """Root hash and hash -> encoded-node map of the trie {rlp(i): values[i]}."""
    if not values:
        return BLANK_ROOT_HASH, {}
    items = [(key, values[index]) for key, index in _sorted_keys(len(values))]
    builder = _Builder()
    root = builder.build(items, 0)
    encoded = encode_node(root)
    digest = keccak(encoded)
    builder.nodes[digest] = encoded
    return digest, builder.nodes
