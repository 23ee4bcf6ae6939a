"""The ``optimism_`` namespace op-node serves, as far as the execution node knows it (OP Stack chains only)."""

from __future__ import annotations

from typing import Any

from lorachain.node.node import Node
from lorachain.node.rollup.outputs import OUTPUT_VERSION_V0, output_at
from lorachain.node.rpc import codec
from lorachain.node.rpc.blocks import resolve_block


class OptimismApi:
    namespaces = ("optimism",)

    def __init__(self, node: Node) -> None:
        self.node = node

    def optimism_outputAtBlock(self, block: Any) -> dict[str, Any]:
        """The v0 output root of an L2 block, with the block's reference and the roots it commits to."""
        header = resolve_block(self.node, block)
        output = output_at(self.node.chain.chaindb.db, header.hash, header.state_root)
        return {
            "version": codec.data(OUTPUT_VERSION_V0),
            "outputRoot": codec.data(output.root),
            "blockRef": {
                "hash": codec.data(header.hash),
                "number": header.block_number,
                "parentHash": codec.data(header.parent_hash),
                "timestamp": header.timestamp,
            },
            "withdrawalStorageRoot": codec.data(output.withdrawal_storage_root),
            "stateRoot": codec.data(header.state_root),
        }
