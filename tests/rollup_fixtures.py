"""Shared by the rollup tests: an OP Stack devnet genesis (config.optimism) with extra accounts."""

from __future__ import annotations

from typing import Any

from lorachain.rollup_cli import op_stack_genesis


def op_genesis(extra_alloc: dict[bytes, str] | None = None) -> dict[str, Any]:
    """The devnet genesis as an OP Stack chain with the L1Block predeploy; ``extra_alloc`` maps addresses to
    runtime code (hex)."""
    raw = op_stack_genesis(with_predeploys=False)
    for address, code in (extra_alloc or {}).items():
        raw["alloc"]["0x" + address.hex()] = {"balance": "0x0", "code": code}
    return raw
