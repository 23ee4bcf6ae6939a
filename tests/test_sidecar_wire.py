"""The node <-> sidecar msgpack format: round trips and malformed input."""

from __future__ import annotations

import pytest

from lorachain.sidecar import wire
from lorachain.sidecar.types import (
    CorruptArtifactError,
    DecodingParams,
    GenerationRequest,
    GenerationResult,
    RequestError,
    SidecarError,
    UnknownAdapterError,
)

REQUEST = GenerationRequest(
    (1, 2, 3), "0x" + "ab" * 32,
    DecodingParams(max_new_tokens=9, temperature_milli=700, top_k=5, top_p_milli=800, seed=b"\x07" * 32, stop_ids=(4,)),
)  # fmt: skip
RESULT = GenerationResult((5, 6), "stop", b"\x01" * 32, b"\x02" * 32, (b"\x03" * 32,), 3)


def test_request_round_trip():
    assert wire.decode_request(wire.unpack(wire.pack(wire.encode_request(REQUEST)))) == REQUEST
    minimal = wire.decode_request({"prompt_ids": [1]})
    assert minimal == GenerationRequest((1,), None, DecodingParams())


def test_result_round_trip():
    assert wire.decode_result(wire.unpack(wire.pack(wire.encode_result(RESULT)))) == RESULT


def test_batch_keeps_valid_entries_and_reports_bad_ones():
    decoded = wire.decode_batch({"requests": [wire.encode_request(REQUEST), {"prompt_ids": "x"}]})
    assert decoded[0] == REQUEST and isinstance(decoded[1], RequestError)


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ([1, 2], "must be a map"),
        ({"prompt_ids": []}, "must not be empty"),
        ({"prompt_ids": [1, "2"]}, "list of integers"),
        ({"prompt_ids": [True]}, "list of integers"),
        ({"prompt_ids": [1], "adapter_id": 5}, "adapter_id"),
        ({"prompt_ids": [1], "max_new_tokens": 1.5}, "max_new_tokens"),
        ({"prompt_ids": [1], "seed": b"short"}, "seed"),
        ({"prompt_ids": [1], "seed": "0x" + "00" * 32}, "seed"),
        ({"prompt_ids": [1], "stop_ids": list(range(17))}, "at most 16"),
        ({"prompt_ids": [1], "temperature": 1}, "unknown request fields"),
        ({"prompt_ids": list(range(wire.MAX_PROMPT_IDS + 1))}, "at most"),
    ],
)
def test_malformed_requests(obj, words):
    with pytest.raises(RequestError, match=words):
        wire.decode_request(obj)


def test_malformed_bodies_and_batches():
    with pytest.raises(RequestError, match="msgpack"):
        wire.unpack(b"\xc1\xff\x00")
    with pytest.raises(RequestError, match="requests"):
        wire.decode_batch({"requests": []})
    with pytest.raises(RequestError, match="requests"):
        wire.decode_batch({"nope": 1})
    with pytest.raises(RequestError, match="32 bytes"):
        wire.decode_result({**wire.encode_result(RESULT), "commitment": b"\x00"})
    with pytest.raises(RequestError, match="one weight per adapter"):
        wire.decode_merge({"adapter_ids": ["a", "b"], "weights_milli": [1]})


def test_node_side_messages():
    batch = wire.unpack(wire.pack(wire.encode_batch([REQUEST, REQUEST])))
    assert wire.decode_batch(batch) == [REQUEST, REQUEST]
    answer = wire.unpack(wire.pack(wire.encode_batch_results([RESULT, UnknownAdapterError("no such adapter")])))
    result, error = wire.decode_batch_results(answer)
    assert result == RESULT and isinstance(error, UnknownAdapterError) and error.code == "unknown_adapter"
    assert wire.decode_load(wire.encode_load("/tmp/a")) == "/tmp/a"
    assert wire.decode_unload(wire.encode_unload("0xab")) == "0xab"
    assert wire.decode_merge(wire.encode_merge(["0x1", "0x2"], [300, 700])) == (["0x1", "0x2"], [300, 700])
    for bad in ({"path": ""}, {"path": "a\x00b"}, {"path": "x" * 5000}, {"path": 5}, ["path"]):
        with pytest.raises(RequestError):
            wire.decode_load(bad)


@pytest.mark.parametrize(
    "change",
    [
        {"finish_reason": "eos"},
        {"prompt_tokens": "3"},
        {"prompt_tokens": 0},
        {"adapter_hashes": b"\x03" * 32},
        {"output_ids": [1, None]},
        {"model_hash": "0x" + "00" * 32},
    ],
)
def test_malformed_results(change):
    with pytest.raises(RequestError):
        wire.decode_result({**wire.encode_result(RESULT), **change})


def test_malformed_results_missing_fields_and_batches():
    body = wire.encode_result(RESULT)
    del body["commitment"]
    with pytest.raises(RequestError, match="commitment"):
        wire.decode_result(body)
    with pytest.raises(RequestError, match="map"):
        wire.decode_result([1])
    with pytest.raises(RequestError, match="results"):
        wire.decode_batch_results({"results": 5})


def test_error_round_trip():
    err = wire.decode_error(wire.unpack(wire.pack(wire.encode_error(CorruptArtifactError("bad file")))), status=422)
    assert isinstance(err, CorruptArtifactError) and str(err) == "bad file" and err.status == 422
    odd = wire.decode_error({"error": {"message": "m", "type": "T", "code": "rate_limited"}}, status=429)
    assert type(odd) is SidecarError and (odd.code, odd.status) == ("rate_limited", 429)
    with pytest.raises(RequestError, match="error body"):
        wire.decode_error({"error": {"message": 1}})


def test_error_body():
    err = wire.encode_error(RequestError("bad thing"))
    assert err == {"error": {"message": "bad thing", "type": "RequestError", "code": "bad_request"}}
    assert wire.encode_error(ValueError("secret"))["error"]["message"] == "internal error"
