// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title TrieProof
/// @notice Reads one value out of a Merkle-Patricia trie, given the trie's root and the nodes on the key's
///         path (as eth_getProof returns them: RLP-encoded, root first). Every node must hash to the reference
///         its parent holds. Children referenced inline (nodes whose encoding is under 32 bytes) are not
///         followed: in a trie keyed by 32-byte hashes they occur only some 50 nibbles deep.
library TrieProof {
    error InvalidProof(string reason);

    /// @notice The value stored under `key` (raw key bytes: a secure trie's caller passes keccak256(key)).
    function get(bytes memory key, bytes[] memory proof, bytes32 root) internal pure returns (bytes memory) {
        bytes memory path = _nibbles(key);
        uint256 consumed;
        bytes32 expected = root;
        for (uint256 i = 0; i < proof.length; i++) {
            bytes memory node = proof[i];
            if (keccak256(node) != expected) revert InvalidProof("a node does not hash to its reference");
            (uint256[17] memory offsets, uint256[17] memory lengths, bool[17] memory lists, uint256 count) = _items(node);
            if (count == 17) {
                if (consumed == path.length) return _slice(node, offsets[16], lengths[16]);
                uint8 nibble = uint8(path[consumed++]);
                expected = _reference(node, offsets[nibble], lengths[nibble], lists[nibble]);
            } else if (count == 2) {
                (bytes memory nodePath, bool leaf) = _hexPrefix(_slice(node, offsets[0], lengths[0]));
                if (consumed + nodePath.length > path.length) revert InvalidProof("key not in the trie");
                for (uint256 j = 0; j < nodePath.length; j++) {
                    if (path[consumed + j] != nodePath[j]) revert InvalidProof("key not in the trie");
                }
                consumed += nodePath.length;
                if (leaf) {
                    if (consumed != path.length) revert InvalidProof("key not in the trie");
                    return _slice(node, offsets[1], lengths[1]);
                }
                expected = _reference(node, offsets[1], lengths[1], lists[1]);
            } else {
                revert InvalidProof("a node is neither a branch nor a leaf or extension");
            }
        }
        revert InvalidProof("the proof ends before the key does");
    }

    function _reference(bytes memory node, uint256 offset, uint256 length, bool isList)
        private
        pure
        returns (bytes32 ref)
    {
        if (isList) revert InvalidProof("inline child nodes are not supported");
        if (length == 0) revert InvalidProof("key not in the trie");
        if (length != 32) revert InvalidProof("a child reference is not a 32-byte hash");
        assembly {
            ref := mload(add(add(node, 32), offset))
        }
    }

    /// @dev Offsets and lengths of the payloads of a list's items (strings: their content; lists: whole).
    function _items(bytes memory node)
        private
        pure
        returns (uint256[17] memory offsets, uint256[17] memory lengths, bool[17] memory lists, uint256 count)
    {
        (uint256 start, uint256 length, bool isList) = _header(node, 0);
        if (!isList || start + length != node.length) revert InvalidProof("a node is not one RLP list");
        uint256 position = start;
        while (position < node.length) {
            if (count == 17) revert InvalidProof("a node has more than 17 items");
            (uint256 itemStart, uint256 itemLength, bool itemIsList) = _header(node, position);
            offsets[count] = itemIsList ? position : itemStart;
            lengths[count] = itemIsList ? itemStart - position + itemLength : itemLength;
            lists[count] = itemIsList;
            position = itemStart + itemLength;
            count++;
        }
        if (position != node.length) revert InvalidProof("a node's items overrun it");
    }

    /// @dev (payload start, payload length, is a list) of the RLP item at `position`.
    function _header(bytes memory data, uint256 position) private pure returns (uint256, uint256, bool) {
        if (position >= data.length) revert InvalidProof("truncated RLP");
        uint8 prefix = uint8(data[position]);
        if (prefix < 0x80) return (position, 1, false);
        if (prefix <= 0xb7) return (position + 1, prefix - 0x80, false);
        if (prefix <= 0xbf) return _long(data, position, prefix - 0xb7, false);
        if (prefix <= 0xf7) return (position + 1, prefix - 0xc0, true);
        return _long(data, position, prefix - 0xf7, true);
    }

    function _long(bytes memory data, uint256 position, uint256 sizeBytes, bool isList)
        private
        pure
        returns (uint256, uint256, bool)
    {
        if (position + 1 + sizeBytes > data.length) revert InvalidProof("truncated RLP");
        uint256 length;
        for (uint256 i = 0; i < sizeBytes; i++) {
            length = (length << 8) | uint8(data[position + 1 + i]);
        }
        if (position + 1 + sizeBytes + length > data.length) revert InvalidProof("truncated RLP");
        return (position + 1 + sizeBytes, length, isList);
    }

    function _hexPrefix(bytes memory encoded) private pure returns (bytes memory nibbles, bool leaf) {
        if (encoded.length == 0) revert InvalidProof("empty node path");
        uint8 flag = uint8(encoded[0]) >> 4;
        leaf = flag >= 2;
        bool odd = flag % 2 == 1;
        nibbles = new bytes(encoded.length * 2 - (odd ? 1 : 2));
        uint256 n;
        if (odd) nibbles[n++] = bytes1(uint8(encoded[0]) & 0x0f);
        for (uint256 i = 1; i < encoded.length; i++) {
            nibbles[n++] = bytes1(uint8(encoded[i]) >> 4);
            nibbles[n++] = bytes1(uint8(encoded[i]) & 0x0f);
        }
    }

    function _nibbles(bytes memory key) private pure returns (bytes memory out) {
        out = new bytes(key.length * 2);
        for (uint256 i = 0; i < key.length; i++) {
            out[2 * i] = bytes1(uint8(key[i]) >> 4);
            out[2 * i + 1] = bytes1(uint8(key[i]) & 0x0f);
        }
    }

    function _slice(bytes memory data, uint256 offset, uint256 length) private pure returns (bytes memory out) {
        out = new bytes(length);
        for (uint256 i = 0; i < length; i++) {
            out[i] = data[offset + i];
        }
    }
}
