"""The ``optimism_`` namespace op-node serves, as far as the execution node knows it (OP Stack chains only).

- ``optimism_outputAtBlock(block)``: the v0 output root of an L2 block.
- ``optimism_syncStatus()``: op-node's ``SyncStatus`` object. L1 block refs are ``{hash, number, parentHash,
  timestamp}``, L2 block refs add ``l1origin {hash, number}`` and ``sequenceNumber`` (numbers as JSON numbers,
  as op-node writes them). ``head_l1``, ``safe_l1`` and ``finalized_l1`` are the L1 node's ``latest``,
  ``safe`` and ``finalized`` blocks (a zero ref where the L1 has none); ``current_l1`` is the last L1 block
  derivation has read; ``unsafe_l2`` is the node's head. ``safe_l2``: on the validator its derived safe head; on
  the sequencer the last of its blocks whose batch was read back from L1 (:mod:`rollup.safe_head`).
  ``finalized_l2``: the safe head as of the L1's finalized block. Without interop and span batches,
  ``pending_safe_l2`` and ``local_safe_l2`` equal ``safe_l2``, ``cross_unsafe_l2`` equals ``unsafe_l2``, and the
  deprecated ``current_l1_finalized`` equals ``finalized_l1``.
- ``optimism_rollupConfig()``: the rollup.json the node loaded. ``optimism_version()``: the node's version.

The last three need a rollup role (``--rollup-config``); an OP Stack chain run without one answers them as
geth answers an unknown method (-32601).
"""

from __future__ import annotations

from typing import Any

from eth.abc import BlockHeaderAPI

from lorachain import __version__
from lorachain.node.node import Node
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.l1_client import L1Client, L1RpcError, L1Unavailable
from lorachain.node.rollup.outputs import OUTPUT_VERSION_V0, output_at
from lorachain.node.rollup.sequencer import origin_of
from lorachain.node.rpc import codec
from lorachain.node.rpc.blocks import resolve_block
from lorachain.node.rpc.errors import METHOD_NOT_FOUND, RpcError, server_error

ZERO_HASH = "0x" + "00" * 32
ZERO_L1_REF = {"hash": ZERO_HASH, "number": 0, "parentHash": ZERO_HASH, "timestamp": 0}


def _l1_ref(raw: dict[str, Any] | None) -> dict[str, Any]:
    if raw is None:
        return dict(ZERO_L1_REF)
    return {"hash": raw["hash"], "number": int(raw["number"], 16), "parentHash": raw["parentHash"],
            "timestamp": int(raw["timestamp"], 16)}  # fmt: skip


class OptimismApi:
    namespaces = ("optimism",)

    def __init__(self, node: Node) -> None:
        self.node = node
        role = node.config.sequencer or node.config.deriver
        self.rollup: RollupConfig | None = role.config if role is not None else None
        self.l1: L1Client | None = role.l1 if role is not None else None
        self.heads = node.heads  # lorachain.node.rollup.l2_heads: the same heads the block tags use

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

    # -- op-node's rollup-node API ---------------------------------------------------------------
    def _rollup(self, method: str) -> RollupConfig:
        if self.rollup is None:
            raise RpcError(METHOD_NOT_FOUND, f"the method {method} does not exist/is not available")
        return self.rollup

    def optimism_rollupConfig(self) -> dict[str, Any]:
        return self._rollup("optimism_rollupConfig").to_json()

    def optimism_version(self) -> str:
        self._rollup("optimism_version")
        return f"v{__version__}-lorachain"

    def optimism_syncStatus(self) -> dict[str, Any]:
        rollup = self._rollup("optimism_syncStatus")
        assert self.l1 is not None
        assert self.heads is not None
        unsafe = self.node.chain.head
        try:
            heads = self.heads.view()
            current_l1 = _l1_ref(self.l1.block_by_number(max(heads.next_l1 - 1, rollup.genesis_l1.number)))
        except (L1Unavailable, L1RpcError) as exc:
            raise server_error(f"the L1 node cannot be read: {exc}") from None
        safe, finalized = heads.safe, heads.finalized
        finalized_l1, safe_l1, head_l1 = (_l1_ref(raw) for raw in (heads.finalized_l1, heads.safe_l1, heads.head_l1))
        safe_ref, unsafe_ref = self._l2_ref(safe), self._l2_ref(unsafe)
        return {
            "current_l1": current_l1,
            "current_l1_finalized": finalized_l1,
            "head_l1": head_l1,
            "safe_l1": safe_l1,
            "finalized_l1": finalized_l1,
            "unsafe_l2": unsafe_ref,
            "safe_l2": safe_ref,
            "finalized_l2": self._l2_ref(finalized),
            "pending_safe_l2": safe_ref,
            "cross_unsafe_l2": unsafe_ref,
            "local_safe_l2": safe_ref,
        }

    def _l2_ref(self, header: BlockHeaderAPI) -> dict[str, Any]:
        assert self.rollup is not None
        if header.block_number == 0:
            origin_hash, origin_number, sequence = self.rollup.genesis_l1.hash, self.rollup.genesis_l1.number, 0
        else:
            info = origin_of(self.node.chain.block_by_header(header))
            if info is None:
                raise server_error(f"L2 block #{header.block_number} records no L1 origin")
            origin_hash, origin_number, sequence = info.l1_block_hash, info.l1_number, info.sequence_number
        return {
            "hash": codec.data(header.hash),
            "number": header.block_number,
            "parentHash": codec.data(header.parent_hash),
            "timestamp": header.timestamp,
            "l1origin": {"hash": codec.data(origin_hash), "number": origin_number},
            "sequenceNumber": sequence,
        }
