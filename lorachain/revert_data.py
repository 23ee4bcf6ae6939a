"""Solidity's revert payloads: ``Error(string)`` (``require``/``revert("...")``) and ``Panic(uint256)``.

The one home of this format: the node decodes it for JSON-RPC errors and traces, the precompiles encode
it for their revert reasons.
"""

from __future__ import annotations

import eth_abi

ERROR_SELECTOR = bytes.fromhex("08c379a0")
PANIC_SELECTOR = bytes.fromhex("4e487b71")
PANIC_REASONS = {
    0x01: "assert(false)",
    0x11: "arithmetic underflow or overflow",
    0x12: "division or modulo by zero",
    0x21: "enum overflow",
    0x22: "invalid encoded storage byte array accessed",
    0x31: "out-of-bounds array access; popping on an empty array",
    0x32: "out-of-bounds access of an array or bytesN",
    0x41: "out of memory",
    0x51: "uninitialized function",
}


def encode_error(reason: str) -> bytes:
    """``Error(reason)``, as ``revert(reason)`` in Solidity returns it."""
    return ERROR_SELECTOR + eth_abi.encode(["string"], [reason])


def revert_reason(data: bytes) -> str | None:
    """Decode a Solidity ``Error(string)`` or ``Panic(uint256)`` payload, if it is one."""
    try:
        if data[:4] == ERROR_SELECTOR:
            return eth_abi.decode(["string"], data[4:])[0]
        if data[:4] == PANIC_SELECTOR:
            code = eth_abi.decode(["uint256"], data[4:])[0]
            return PANIC_REASONS.get(code, f"unknown panic code: {code:#x}")
    except Exception:
        return None
    return None
