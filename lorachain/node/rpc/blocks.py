"""Resolving JSON-RPC block parameters (tags, numbers, EIP-1898 objects) to headers."""

from __future__ import annotations

from typing import Any

from eth.abc import BlockHeaderAPI
from eth.exceptions import HeaderNotFound

from lorachain.node.node import Node
from lorachain.node.rpc.codec import parse_hash, parse_quantity
from lorachain.node.rpc.errors import invalid_params, server_error

TAGS = ("latest", "pending", "earliest", "safe", "finalized")


def resolve_block(node: Node, param: Any, arg: str = "block") -> BlockHeaderAPI:
    """The header a block parameter names; geth's "header not found" if there is none."""
    chain = node.chain
    if param is None:
        return chain.head
    if isinstance(param, dict):
        if "blockHash" in param:
            block_hash = parse_hash(param["blockHash"], arg)
            try:
                header = chain.header_by_hash(block_hash)
            except HeaderNotFound:
                raise server_error(f"header for hash 0x{block_hash.hex()} not found") from None
            if param.get("requireCanonical") and not chain.is_canonical(header):
                raise server_error(f"hash 0x{block_hash.hex()} is not currently canonical")
            return header
        if "blockNumber" in param:
            return resolve_block(node, param["blockNumber"], arg)
        raise invalid_params(f"invalid {arg}: need blockHash or blockNumber")
    if isinstance(param, str) and param in TAGS:
        return node.resolve_tag(param)
    if isinstance(param, str) and len(param) == 66:
        return resolve_block(node, {"blockHash": param}, arg)
    number = parse_quantity(param, arg)
    try:
        return chain.header_by_number(number)
    except HeaderNotFound:
        raise server_error("header not found") from None


def block_number_or_none(node: Node, param: Any) -> BlockHeaderAPI | None:
    """For getBlockByNumber-style calls: None (JSON null) for a block beyond the head."""
    if isinstance(param, str) and param in TAGS:
        return node.resolve_tag(param)
    number = parse_quantity(param, "block number")
    try:
        return node.chain.header_by_number(number)
    except HeaderNotFound:
        return None
