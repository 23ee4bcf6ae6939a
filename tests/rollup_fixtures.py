"""Shared by the rollup tests: an OP Stack devnet genesis (config.optimism) with extra accounts."""

from __future__ import annotations

from typing import Any

from lorachain.genesis.genesis import devnet_genesis
from lorachain.node.rollup.l1_info import L1_BLOCK_ADDRESS
from lorachain.toolchain.solc import load_artifact


def op_genesis(extra_alloc: dict[bytes, str] | None = None) -> dict[str, Any]:
    """The devnet genesis as an OP Stack chain with the L1Block predeploy; ``extra_alloc`` maps addresses to
    runtime code (hex)."""
    raw = devnet_genesis(with_predeploys=False)
    raw["config"]["optimism"] = {"eip1559Elasticity": 6, "eip1559Denominator": 50}
    l1_block = load_artifact("L1Block")["deployedBytecode"]
    raw["alloc"]["0x" + L1_BLOCK_ADDRESS.hex()] = {"balance": "0x0", "code": l1_block}
    for address, code in (extra_alloc or {}).items():
        raw["alloc"]["0x" + address.hex()] = {"balance": "0x0", "code": code}
    return raw
