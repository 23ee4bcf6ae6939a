"""Batched updates of a hexary Merkle-Patricia trie: every changed node is encoded and hashed once.

py-trie's ``HexaryTrie.set`` re-encodes, re-hashes and stores the whole path from the root on every
insert, so a block that touches a dozen accounts rebuilds the top of the state trie a dozen times.
Here the updates are applied to decoded nodes in memory first and the changed nodes are hashed once,
bottom-up, at the end (as geth and reth commit their tries). The root and the nodes written are those
py-trie would produce; ``tests/test_trie_update.py`` checks that against ``HexaryTrie`` on random
insert/update/delete sequences.

Nodes are the decoded RLP of the yellow paper: ``b""`` (blank), ``[path, value]`` (leaf or
extension, told apart by the hex-prefix flag) and 17-item branches. A child is referenced by its
32-byte hash, or embedded as a list when its encoding is shorter than 32 bytes. Decoded nodes are never
edited in place: every change builds a new list, so cached decodings stay valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from eth.constants import BLANK_ROOT_HASH

from lorachain.hashing import keccak
from lorachain.node.ordered_trie import hex_prefix, nibbles
from lorachain.node.trie_nodes import NODE_CACHE, encode_node

Node = Any  # b"" | list (leaf, extension or branch) | bytes (a 32-byte hash, not yet loaded)
NodeLoader = Callable[[bytes], Node]  # hash -> decoded node (never edited here)


def node_loader(db: Mapping[bytes, bytes]) -> NodeLoader:
    """Decoded nodes of ``db``, through the shared cache of decoded nodes."""
    read = db.__getitem__
    return lambda node_hash: NODE_CACHE.get(node_hash, read)


class MissingNode(KeyError):
    """The trie refers to a node the database does not hold."""


def _decode_hp(encoded: bytes) -> tuple[bytes, bool]:
    """(nibbles, is_leaf) of a hex-prefix encoded path."""
    flag = encoded[0] >> 4
    path = nibbles(encoded[1:])
    if flag & 1:
        path = bytes((encoded[0] & 0x0F,)) + path
    return path, bool(flag & 2)


def _leaf(path: bytes, value: bytes) -> list:
    return [hex_prefix(path, leaf=True), value]


def _extension(path: bytes, child: Node) -> list:
    return [hex_prefix(path, leaf=False), child]


def _common_prefix_length(a: bytes, b: bytes) -> int:
    limit = min(len(a), len(b))
    i = 0
    while i < limit and a[i] == b[i]:
        i += 1
    return i


class TrieUpdate:
    """A trie at ``root_hash`` plus pending changes; :meth:`commit` gives the new root and nodes."""

    def __init__(self, load: NodeLoader, root_hash: bytes = BLANK_ROOT_HASH) -> None:
        self._load = load
        self._root: Node = b"" if root_hash == BLANK_ROOT_HASH else root_hash

    # -- loading ---------------------------------------------------------------------------------
    def _resolve(self, node: Node) -> Node:
        if isinstance(node, bytes) and len(node) == 32:
            try:
                return self._load(node)
            except KeyError as exc:
                raise MissingNode(node) from exc
        return node

    # -- edits -----------------------------------------------------------------------------------
    def update(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Set each key to its value; ``None`` or ``b""`` deletes the key (as py-trie does)."""
        root = self._root
        for key, value in items:
            path = nibbles(key)
            root = self._put(root, path, value) if value else self._delete(root, path)
        self._root = root

    def _put(self, node: Node, path: bytes, value: bytes) -> Node:
        node = self._resolve(node)
        if node == b"":
            return _leaf(path, value)
        if len(node) == 17:
            branch = list(node)
            if path:
                branch[path[0]] = self._put(node[path[0]], path[1:], value)
            else:
                branch[16] = value
            return branch
        node_path, is_leaf = _decode_hp(node[0])
        shared = _common_prefix_length(node_path, path)
        if is_leaf and shared == len(node_path) == len(path):
            return _leaf(path, value)
        if not is_leaf and shared == len(node_path):
            return _extension(node_path, self._put(node[1], path[shared:], value))
        # The paths part at ``shared``: a branch there holds the old node's rest and the new value.
        branch = [b""] * 17
        old_rest = node_path[shared:]
        if is_leaf:
            if old_rest:
                branch[old_rest[0]] = _leaf(old_rest[1:], node[1])
            else:
                branch[16] = node[1]
        elif len(old_rest) == 1:
            branch[old_rest[0]] = node[1]
        else:
            branch[old_rest[0]] = _extension(old_rest[1:], node[1])
        new_rest = path[shared:]
        if new_rest:
            branch[new_rest[0]] = _leaf(new_rest[1:], value)
        else:
            branch[16] = value
        return _extension(path[:shared], branch) if shared else branch

    def _delete(self, node: Node, path: bytes) -> Node:
        resolved = self._resolve(node)
        if resolved == b"":
            return node
        if len(resolved) == 17:
            if path:
                child = resolved[path[0]]
                new_child = self._delete(child, path[1:])
                if new_child is child:
                    return node
                branch = list(resolved)
                branch[path[0]] = new_child
            else:
                if resolved[16] == b"":
                    return node
                branch = list(resolved)
                branch[16] = b""
            return self._normalize_branch(branch)
        node_path, is_leaf = _decode_hp(resolved[0])
        if is_leaf:
            return b"" if node_path == path else node
        if path[: len(node_path)] != node_path:
            return node
        child = resolved[1]
        new_child = self._delete(child, path[len(node_path) :])
        if new_child is child:
            return node
        return self._join(node_path, new_child)

    def _normalize_branch(self, branch: list) -> Node:
        """A branch left with one entry collapses into a leaf or an extension."""
        used = [i for i in range(16) if branch[i] != b""]
        if len(used) + (branch[16] != b"") >= 2:
            return branch
        if not used:
            return _leaf(b"", branch[16]) if branch[16] != b"" else b""
        index = used[0]
        return self._join(bytes((index,)), branch[index])

    def _join(self, prefix: bytes, child: Node) -> Node:
        """``prefix`` followed by ``child``, merged into one node where the child is a leaf/extension."""
        resolved = self._resolve(child)
        if resolved == b"":
            return b""
        if len(resolved) == 17:
            return _extension(prefix, child)  # keep the branch's reference: it did not change
        child_path, is_leaf = _decode_hp(resolved[0])
        if is_leaf:
            return _leaf(prefix + child_path, resolved[1])
        return _extension(prefix + child_path, resolved[1])

    # -- commit ----------------------------------------------------------------------------------
    def commit(self) -> tuple[bytes, dict[bytes, bytes]]:
        """The new root hash and the new nodes (hash -> encoding) it needs; the root stays usable."""
        nodes: dict[bytes, bytes] = {}
        root = self._root
        if isinstance(root, bytes):
            return (BLANK_ROOT_HASH if root == b"" else root), nodes
        root = self._encode_children(root, nodes)
        encoded = encode_node(root)
        root_hash = keccak(encoded)
        nodes[root_hash] = encoded
        NODE_CACHE.put(root_hash, root)
        self._root = root_hash
        return root_hash, nodes

    def _ref(self, node: Node, nodes: dict[bytes, bytes]) -> Node:
        if isinstance(node, bytes):  # blank, or a hash of an unchanged subtree
            return node
        node = self._encode_children(node, nodes)
        encoded = encode_node(node)
        if len(encoded) < 32:
            return node
        digest = keccak(encoded)
        nodes[digest] = encoded
        NODE_CACHE.put(digest, node)
        return digest

    def _encode_children(self, node: list, nodes: dict[bytes, bytes]) -> list:
        if len(node) == 17:
            return [*(self._ref(child, nodes) for child in node[:16]), node[16]]
        if node[0][0] & 0x20:  # leaf: the second item is a value
            return node
        return [node[0], self._ref(node[1], nodes)]


def updated_root(
    load: NodeLoader, root_hash: bytes, items: Iterable[tuple[bytes, bytes | None]]
) -> tuple[bytes, dict[bytes, bytes]]:
    """Root and new nodes of the trie at ``root_hash`` after ``items`` (key, value-or-None)."""
    update = TrieUpdate(load, root_hash)
    update.update(items)
    return update.commit()
