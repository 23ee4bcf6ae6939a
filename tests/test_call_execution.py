"""eth_call's own pieces: the call transaction stands in for py-evm's SpoofAttributes, and the memo key
keeps apart any two calls whose JSON differs."""

from __future__ import annotations

from eth._utils.spoof import SpoofAttributes
from eth.vm.forks.prague import PragueVM

from lorachain.node.execution import CallTransaction
from lorachain.node.rpc.eth import _call_key

SENDER = b"\x11" * 20


def _unsigned(**fields: object) -> object:
    base = {"chain_id": 901, "nonce": 0, "max_priority_fee_per_gas": 1, "max_fee_per_gas": 2, "gas": 100_000,
            "to": b"\x22" * 20, "value": 5, "data": b"\x01\x02", "access_list": [(b"\x33" * 20, (1, 2))]}  # fmt: skip
    return PragueVM.get_transaction_builder().new_unsigned_dynamic_fee_transaction(**{**base, **fields})


def test_call_transaction_reads_as_spoof_attributes() -> None:
    unsigned = _unsigned()
    ours, pyevm = CallTransaction(unsigned, SENDER), SpoofAttributes(unsigned, from_=SENDER)
    for name in ("sender", "type_id", "y_parity", "r", "s", "gas", "to", "value", "data", "nonce", "chain_id",
                 "access_list", "max_fee_per_gas", "max_priority_fee_per_gas", "intrinsic_gas"):  # fmt: skip
        assert getattr(ours, name) == getattr(pyevm, name), name
    assert ours.get_sender() == pyevm.get_sender() == SENDER
    copied = ours.copy(gas=21_000)
    assert (copied.gas, copied.sender, copied.data) == (21_000, SENDER, b"\x01\x02")
    assert ours.gas == 100_000


def test_call_key_tells_apart_what_json_tells_apart() -> None:
    block = b"\x00" * 32
    call = {"to": "0x" + "22" * 20, "data": "0x"}
    assert _call_key(block, call, None, None) == _call_key(block, dict(reversed(call.items())), None, None)
    variants = [{**call, "value": v} for v in (1, True, 1.0, "0x1", [1], {"a": 1})]
    keys = {_call_key(block, v, None, None) for v in variants}
    assert len(keys) == len(variants)
    assert _call_key(block, call, None, None) != _call_key(b"\x01" * 32, call, None, None)
    assert _call_key(block, call, {"0x" + "22" * 20: {"balance": "0x1"}}, None) != _call_key(block, call, None, None)
    assert _call_key(block, call, None, {"number": "0x5"}) != _call_key(block, call, None, None)
