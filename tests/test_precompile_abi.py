"""The inference precompile's ABI, gas formula and revert payloads: round trips and bad input."""

from __future__ import annotations

import eth_abi
import pytest

from lorachain.precompiles.abi import INPUT_TYPES, InferenceCall, InferenceOutput, PrecompileInputError
from lorachain.precompiles.inference import AI_BASE_GAS, GAS_PER_MERGED_ADAPTER, inference_gas, model_units
from lorachain.revert_data import encode_error, revert_reason

A, B = b"\x11" * 32, b"\x22" * 32


def test_call_round_trips():
    for call in (
        InferenceCall(prompt="Q: hi A:"),
        InferenceCall((A,), (), "adapter", 7, 1500, 40, 900, b"\x05" * 32),
        InferenceCall((A, B), (250, 750), "merged ✓ unicode", 1, 0, 0, 1000, b"\xff" * 32),
    ):
        assert InferenceCall.decode(call.encode()) == call


def test_output_round_trips():
    out = InferenceOutput("Paris.", (9, 8, 7), b"\x01" * 32, b"\x02" * 32, 5, 3)
    assert InferenceOutput.decode(out.encode()) == out


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (InferenceCall(prompt=""), "prompt is empty"),
        (InferenceCall((A, B), (500,), "x"), "one weight per adapter"),
        (InferenceCall((A, B), (500, 400), "x"), "sum to 1000"),
        (InferenceCall((A, B), (1000, 0), "x"), "positive"),
        (InferenceCall((A, A), (500, 500), "x"), "listed twice"),
        (InferenceCall(prompt="x", max_new_tokens=0), "at least 1"),
        (InferenceCall(prompt="x", top_p_milli=1001), "topPMilli"),
        (InferenceCall(tuple(bytes([i]) * 32 for i in range(17)), (), "x"), "at most 16 adapters"),
        (InferenceCall(prompt="x" * 16_385), "exceeds 16384 bytes"),
    ],
)
def test_bad_calls_are_refused_with_a_reason(call, reason):
    with pytest.raises(PrecompileInputError, match=reason):
        InferenceCall.decode(call.encode())


def test_malformed_bytes_are_refused():
    for data in (b"", b"\x00" * 31, b"\x12" * 100, InferenceCall(prompt="ok").encode()[:-40]):
        with pytest.raises(PrecompileInputError, match="malformed input"):
            InferenceCall.decode(data)
    bad_utf8 = eth_abi.encode(INPUT_TYPES, [[], [], "", 1, 0, 0, 1000, b"\x00" * 32])
    # patch the (empty) string's length to 2 and its bytes to invalid UTF-8
    offset = int.from_bytes(bad_utf8[64:96], "big")
    bad_utf8 = bad_utf8[:offset] + (2).to_bytes(32, "big") + b"\xff\xfe" + b"\x00" * 30
    with pytest.raises(PrecompileInputError, match="malformed input"):
        InferenceCall.decode(bad_utf8)


def test_gas_formula():
    assert model_units(1) == 1 and model_units(3_400_000) == 4 and model_units(7_000_000_000) == 7000
    one = InferenceCall((A,), (), "x", max_new_tokens=32)
    assert inference_gas(one, prompt_tokens=20, parameters=3_400_000) == AI_BASE_GAS + 4 * (8 * 20 + 32 * 32)
    merged = InferenceCall((A, B), (500, 500), "x", max_new_tokens=32)
    assert inference_gas(merged, 20, 3_400_000) == inference_gas(one, 20, 3_400_000) + 2 * GAS_PER_MERGED_ADAPTER
    assert inference_gas(one, 21, 3_400_000) > inference_gas(one, 20, 3_400_000)


def test_revert_payload_round_trips():
    assert revert_reason(encode_error("unknown adapter 0x11")) == "unknown adapter 0x11"
    assert encode_error("x")[:4].hex() == "08c379a0"
