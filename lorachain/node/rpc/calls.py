"""Call objects, state overrides and block overrides from JSON-RPC into :mod:`execution`."""

from __future__ import annotations

from typing import Any

from eth.abc import BlockHeaderAPI, StateAPI

from lorachain.node.execution import CallParams
from lorachain.node.rpc.codec import parse_address, parse_data, parse_hash, parse_quantity
from lorachain.node.rpc.errors import invalid_params

_CALL_FIELDS = {
    "from", "to", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value", "data", "input",
    "nonce", "accessList", "type", "chainId", "blobVersionedHashes", "maxFeePerBlobGas",
    "authorizationList",
}  # fmt: skip


def parse_call(obj: Any) -> CallParams:
    if not isinstance(obj, dict):
        raise invalid_params("invalid argument 0: expected a transaction object")
    unknown = set(obj) - _CALL_FIELDS
    if unknown:
        raise invalid_params(f"invalid argument 0: json: unknown field {sorted(unknown)[0]!r}")
    params = CallParams()
    if obj.get("from") is not None:
        params.sender = parse_address(obj["from"], "argument 0: from")
    if obj.get("to") is not None:
        params.to = parse_address(obj["to"], "argument 0: to")
    for key, attr in (
        ("gas", "gas"),
        ("gasPrice", "gas_price"),
        ("maxFeePerGas", "max_fee_per_gas"),
        ("maxPriorityFeePerGas", "max_priority_fee_per_gas"),
        ("nonce", "nonce"),
    ):
        if obj.get(key) is not None:
            setattr(params, attr, parse_quantity(obj[key], f"argument 0: {key}"))
    if obj.get("value") is not None:
        params.value = parse_quantity(obj["value"], "argument 0: value")
    data_field = obj.get("input") if obj.get("input") is not None else obj.get("data")
    if obj.get("input") is not None and obj.get("data") is not None and obj["input"] != obj["data"]:
        raise invalid_params(
            'both "data" and "input" are set and not equal. Please use "input" to pass transaction call data'
        )
    if data_field is not None:
        params.data = parse_data(data_field, "argument 0: input")
    if params.gas_price is not None and (params.max_fee_per_gas is not None or params.max_priority_fee_per_gas):
        raise invalid_params("both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
    for entry in obj.get("accessList") or []:
        if not isinstance(entry, dict):
            raise invalid_params("invalid argument 0: accessList entries are objects")
        slots = [int.from_bytes(parse_hash(k, "storage key"), "big") for k in entry.get("storageKeys", [])]
        params.access_list.append((parse_address(entry.get("address"), "accessList address"), slots))
    return params


def apply_state_overrides(state: StateAPI, overrides: Any) -> None:
    """geth's StateOverride: balance, nonce, code, state (replace all) or stateDiff (patch)."""
    if overrides is None:
        return
    if not isinstance(overrides, dict):
        raise invalid_params("invalid argument 2: state override must be an object")
    for addr_hex, fields in overrides.items():
        addr = parse_address(addr_hex, "state override address")
        if not isinstance(fields, dict):
            raise invalid_params("invalid argument 2: account override must be an object")
        if "state" in fields and "stateDiff" in fields:
            raise invalid_params(f"account {addr_hex} has both 'state' and 'stateDiff'")
        if fields.get("balance") is not None:
            state.set_balance(addr, parse_quantity(fields["balance"], "balance"))
        if fields.get("nonce") is not None:
            state.set_nonce(addr, parse_quantity(fields["nonce"], "nonce"))
        if fields.get("code") is not None:
            state.set_code(addr, parse_data(fields["code"], "code"))
        if fields.get("state") is not None:
            state.delete_storage(addr)
            _set_slots(state, addr, fields["state"])
        if fields.get("stateDiff") is not None:
            _set_slots(state, addr, fields["stateDiff"])


def _set_slots(state: StateAPI, addr: bytes, slots: Any) -> None:
    if not isinstance(slots, dict):
        raise invalid_params("storage override must be an object of slot -> value")
    for key, value in slots.items():
        slot = int.from_bytes(parse_hash(key, "storage slot"), "big")
        state.set_storage(addr, slot, int.from_bytes(parse_hash(value, "storage value"), "big"))


_BLOCK_OVERRIDES = {
    "number": "block_number",
    "time": "timestamp",
    "gasLimit": "gas_limit",
    "feeRecipient": "coinbase",
    "coinbase": "coinbase",
    "prevRandao": "mix_hash",
    "random": "mix_hash",
    "baseFeePerGas": "base_fee_per_gas",
    "baseFee": "base_fee_per_gas",
    "difficulty": "difficulty",
}


def block_overrides(header: BlockHeaderAPI, overrides: Any) -> dict[str, Any]:
    """Header fields to substitute in the call's block context."""
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise invalid_params("invalid argument 3: block overrides must be an object")
    fields: dict[str, Any] = {}
    for key, value in overrides.items():
        attr = _BLOCK_OVERRIDES.get(key)
        if attr is None:
            raise invalid_params(f"invalid argument 3: unknown block override {key!r}")
        if attr == "coinbase":
            fields[attr] = parse_address(value, key)
        elif attr == "mix_hash":
            fields[attr] = parse_hash(value, key)
        else:
            fields[attr] = parse_quantity(value, key)
        if attr == "base_fee_per_gas" and not hasattr(header, "base_fee_per_gas"):
            raise invalid_params("baseFee override before London")
    return fields


def storage_slot(param: Any) -> int:
    """A storage position: any hex string of up to 32 bytes (geth is lenient here)."""
    if not isinstance(param, str) or not param.startswith(("0x", "0X")) or len(param) > 66:
        raise invalid_params("invalid argument 1: storage slot must be hex of at most 32 bytes")
    try:
        return int(param[2:] or "0", 16)
    except ValueError:
        raise invalid_params("invalid argument 1: storage slot must be hex") from None
