"""The node <-> sidecar msgpack format: round trips and malformed input."""

from __future__ import annotations

import pytest

from lorachain.sidecar import wire
from lorachain.sidecar.types import DecodingParams, GenerationRequest, GenerationResult, RequestError

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


def test_error_body():
    err = wire.encode_error(RequestError("bad thing"))
    assert err == {"error": {"message": "bad thing", "type": "RequestError", "code": "bad_request"}}
    assert wire.encode_error(ValueError("secret"))["error"]["message"] == "internal error"
