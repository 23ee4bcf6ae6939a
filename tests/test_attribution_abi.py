"""The attribution precompile's ABI and gas formula, and the sidecar's attribute messages: round trips, bad input."""

from __future__ import annotations

import eth_abi
import pytest

from lorachain.precompiles.abi import InferenceCall, PrecompileInputError
from lorachain.precompiles.attribution import ATTRIBUTION_BASE_GAS, GAS_PER_TOKEN, attribution_gas
from lorachain.precompiles.attribution_abi import (
    INPUT_TYPES,
    MAX_TOP_K,
    AttributionOutput,
    AttributionQuery,
    Contribution,
    Method,
)
from lorachain.sidecar import wire
from lorachain.sidecar.types import RequestError

ROOT = b"\x33" * 32


def _query(**changes) -> AttributionQuery:
    fields = {"inference_input": InferenceCall((b"\x11" * 32,), (), "Q: hi A:", 8).encode(), "output_ids": (5, 6, 7),
              "commitment": b"\x44" * 32, "record_hash": b"\x55" * 32, "datanet_ids": (1, 2),
              "snapshot_roots": (ROOT, b"\x66" * 32), "method": Method.SPANS, "top_k": 4}  # fmt: skip
    fields.update(changes)
    return AttributionQuery(**fields)


def test_query_and_output_round_trip():
    query = _query()
    assert AttributionQuery.decode(query.encode()) == query
    output = AttributionOutput(Method.INFLUENCE, (Contribution(1, 4, 900, b"\x07" * 32),
                                                  Contribution(2, 0, 2**200, b"\x08" * 32)))  # fmt: skip
    assert AttributionOutput.decode(output.encode()) == output
    assert AttributionOutput.decode(AttributionOutput(Method.BM25, ()).encode()).contributions == ()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"top_k": 0}, "topK"),
        ({"top_k": MAX_TOP_K + 1}, "topK"),
        ({"record_hash": b"\x00" * 32}, "no training record"),
        ({"output_ids": ()}, "no output tokens"),
        ({"datanet_ids": (1,)}, "differ in length"),
        ({"datanet_ids": (), "snapshot_roots": ()}, "1..16 datanets"),
    ],
    ids=["top-k-zero", "top-k-large", "no-record", "no-output", "ragged", "no-datanets"],
)
def test_query_rejections(changes, reason):
    with pytest.raises(PrecompileInputError, match=reason):
        AttributionQuery.decode(_query(**changes).encode())


def test_unknown_method_and_garbage_are_refused():
    q = _query()
    raw = eth_abi.encode(INPUT_TYPES, [q.inference_input, [1], q.commitment, q.record_hash, [1], [ROOT], 9, 4])
    with pytest.raises(PrecompileInputError, match="unknown attribution method"):
        AttributionQuery.decode(raw)
    with pytest.raises(PrecompileInputError, match="malformed"):
        AttributionQuery.decode(b"\x01\x02")


def test_gas_grows_with_tokens_model_and_record():
    base = attribution_gas(10, 1_000_000, 100, 2048)
    assert base == ATTRIBUTION_BASE_GAS + GAS_PER_TOKEN * 10 + 200 * 2
    assert attribution_gas(20, 1_000_000, 100, 2048) - base == GAS_PER_TOKEN * 10
    assert attribution_gas(10, 3_000_000, 100, 2048) > base
    assert attribution_gas(10, 1_000_000, 10_000, 2048) > base
    assert attribution_gas(10, 1_000_000, 100, 0) == ATTRIBUTION_BASE_GAS + GAS_PER_TOKEN * 10 + 2


def test_sidecar_attribute_messages_round_trip_and_reject():
    request = wire.AttributeRequest(b"\x01" * 32, "0x" + "ab" * 32, (1, 2), (3,), 1, 8, ((4, ROOT),))
    assert wire.decode_attribute(wire.unpack(wire.pack(wire.encode_attribute(request)))) == request
    rows = [(1, 0, 5, b"\x09" * 32)]
    assert wire.decode_attribution(wire.unpack(wire.pack(wire.encode_attribution(2, rows)))) == (2, rows)
    bad = wire.encode_attribute(request)
    for field, value in (("record", b"short"), ("top_k", 0), ("snapshots", []), ("method", 300), ("output_ids", "x")):
        with pytest.raises(RequestError):
            wire.decode_attribute({**bad, field: value})
    for entry in ([1, 2], [1, 2, 3], [1, 2, 3, b"short"], [1, -2, 3, b"\x09" * 32]):
        with pytest.raises(RequestError):
            wire.decode_attribution({"method": 1, "contributions": [entry]})
