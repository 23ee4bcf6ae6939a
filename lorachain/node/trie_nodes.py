"""Decoded trie nodes, cached by hash.

A node's hash is the hash of its encoding, so a cached decoding can never go stale, whichever database
it was read from. The cached lists are shared: callers that edit nodes in place (py-trie does) must
take a copy, callers that never do (:mod:`trie_update`) use them as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rlp
from eth.constants import BLANK_ROOT_HASH

NODE_CACHE_SIZE = 100_000


class NodeCache:
    """hash -> decoded trie node, least recently used out first."""

    def __init__(self, size: int = NODE_CACHE_SIZE) -> None:
        self.size = size
        self.nodes: dict[bytes, Any] = {}

    def get(self, node_hash: bytes, read: Callable[[bytes], bytes]) -> Any:
        """The decoded node ``node_hash`` (``read`` fetches its encoding on a miss). Do not edit it."""
        node = self.nodes.pop(node_hash, None)
        if node is None:
            node = b"" if node_hash == BLANK_ROOT_HASH else rlp.decode(read(node_hash))
            if len(self.nodes) >= self.size:
                del self.nodes[next(iter(self.nodes))]
        self.nodes[node_hash] = node  # re-insert: most recently used last
        return node

    def put(self, node_hash: bytes, node: Any) -> None:
        """Remember a node just written (the next block reads it again)."""
        if node_hash not in self.nodes and len(self.nodes) >= self.size:
            del self.nodes[next(iter(self.nodes))]
        self.nodes[node_hash] = node


def encode_node(node: Any) -> bytes:
    """RLP of a decoded node (nested lists of bytes): ``rlp.encode`` without its generic sedes machinery.

    A list's byte-string items (32-byte hashes, empty slots, short values: nearly all of a trie node) are
    encoded in the loop, only nested lists recursively."""
    if node.__class__ is bytes:
        length = len(node)
        if length == 1 and node[0] < 0x80:
            return node
        return length_prefix(length, 0x80) + node
    parts = []
    for item in node:
        if item.__class__ is bytes:
            length = len(item)
            if length == 32:
                parts.append(b"\xa0" + item)
            elif length == 0:
                parts.append(b"\x80")
            elif length == 1 and item[0] < 0x80:
                parts.append(item)
            elif length < 56:
                parts.append(bytes((0x80 + length,)) + item)
            else:
                parts.append(length_prefix(length, 0x80) + item)
        else:
            parts.append(encode_node(item))
    payload = b"".join(parts)
    length = len(payload)
    return bytes((0xC0 + length,)) + payload if length < 56 else length_prefix(length, 0xC0) + payload


def encode_uint(value: int) -> bytes:
    """The rlp of an unsigned integer (pyrlp's ``big_endian_int``): ``encode_node(rlp_int(value))``, directly."""
    if value < 0x80:
        return bytes((value,)) if value else b"\x80"
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return length_prefix(len(raw), 0x80) + raw


def rlp_int(value: int) -> bytes:
    """An integer as rlp carries it: minimal big-endian bytes, empty for zero."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def length_prefix(length: int, offset: int) -> bytes:
    """The rlp prefix of a string (``offset`` 0x80) or list (0xC0) whose payload is ``length`` bytes long."""
    if length < 56:
        return bytes((offset + length,))
    size = rlp_int(length)
    return bytes((offset + 55 + len(size),)) + size


def copy_node(node: Any) -> Any:
    """A copy of a decoded node that may be edited in place."""
    if isinstance(node, list):
        return [copy_node(item) for item in node]
    return node


NODE_CACHE = NodeCache()


def trie_get(root_hash: bytes, key: bytes, read: Callable[[bytes], bytes]) -> bytes:
    """The value at ``key`` in the hexary trie ``root_hash`` (``b""`` where there is none).

    A read-only walk over the cached decoded nodes (never copied): what ``HexaryTrie.get`` returns, at a
    fraction of its cost, which matters most for keys that are not there (every new address an
    ``eth_call`` names). Paths are compared as hex digits, one per nibble."""
    path = key.hex()
    node = NODE_CACHE.get(root_hash, read)
    at = 0
    while node != b"":
        if len(node) == 17:  # branch
            if at == len(path):
                return node[16]
            child = node[int(path[at], 16)]
            at += 1
        else:  # leaf or extension: [hex-prefix encoded path, value or child]
            encoded, child = node
            prefix = encoded.hex()
            flag = int(prefix[0], 16)
            segment = prefix[1:] if flag & 1 else prefix[2:]
            if path[at : at + len(segment)] != segment:
                return b""
            at += len(segment)
            if flag & 2:  # leaf
                return child if at == len(path) else b""
        # a child is a node's hash, an embedded node (encoded in under 32 bytes), or nothing
        node = child if isinstance(child, list) or child == b"" else NODE_CACHE.get(child, read)
    return b""
