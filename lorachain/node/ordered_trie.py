"""Fast root and nodes of an "ordered" Merkle-Patricia trie (keys rlp(0), rlp(1), …).

Blocks commit to their transactions, receipts and withdrawals with such tries. Building them by
repeated ``HexaryTrie.set`` re-encodes every path on every insert; here the trie is built once,
bottom-up, from the sorted keys. ``tests/test_ordered_trie.py`` checks it against py-evm's builder.
"""

from __future__ import annotations

from collections.abc import Sequence

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth_utils import keccak

Node = list  # a decoded trie node: [path, value] (leaf/extension) or 17 items (branch)


def _hex_prefix(nibbles: Sequence[int], leaf: bool) -> bytes:
    flag = 2 if leaf else 0
    prefixed = [flag + 1, *nibbles] if len(nibbles) % 2 else [flag, 0, *nibbles]
    return bytes(prefixed[i] * 16 + prefixed[i + 1] for i in range(0, len(prefixed), 2))


def _nibbles(key: bytes) -> tuple[int, ...]:
    out = []
    for byte in key:
        out.append(byte >> 4)
        out.append(byte & 0x0F)
    return tuple(out)


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}

    def ref(self, node: Node) -> bytes | Node:
        """How a parent refers to ``node``: inline if its encoding is short, else by hash."""
        encoded = rlp.encode(node)
        if len(encoded) < 32:
            return node
        digest = keccak(encoded)
        self.nodes[digest] = encoded
        return digest

    def build(self, items: list[tuple[tuple[int, ...], bytes]], depth: int) -> Node:
        if len(items) == 1:
            key, value = items[0]
            return [_hex_prefix(key[depth:], leaf=True), value]
        first, last = items[0][0], items[-1][0]
        shared = 0
        limit = min(len(first), len(last)) - depth
        while shared < limit and first[depth + shared] == last[depth + shared]:
            shared += 1
        if shared:
            child = self.build(items, depth + shared)
            return [_hex_prefix(first[depth : depth + shared], leaf=False), self.ref(child)]
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


def ordered_trie_root_and_nodes(values: Sequence[bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    """Root hash and hash -> encoded-node map of the trie {rlp(i): values[i]}."""
    if not values:
        return BLANK_ROOT_HASH, {}
    items = sorted((_nibbles(rlp.encode(index)), value) for index, value in enumerate(values))
    builder = _Builder()
    root = builder.build(items, 0)
    encoded = rlp.encode(root)
    digest = keccak(encoded)
    builder.nodes[digest] = encoded
    return digest, builder.nodes
