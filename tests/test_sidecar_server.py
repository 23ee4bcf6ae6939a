"""The sidecar over real sockets: a `lorachain sidecar` subprocess driven by a urllib HTTP client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

from lorachain.sidecar.checkpoint import LlamaConfig, load_checkpoint
from tests.conftest import free_port
from tests.sidecar_fixtures import start_sidecar, tiny_model, write_peft_adapter

MSGPACK = {"Content-Type": "application/msgpack"}


@dataclass
class Reply:
    status_code: int
    headers: Any
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def events(self) -> list[str]:
        """The ``data:`` payloads of a server-sent event stream."""
        return [line[6:] for line in self.text.splitlines() if line.startswith("data: ")]


def http(method: str, url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 60) -> Reply:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.headers, error.read())


def get(url: str) -> Reply:
    return http("GET", url)


def post_json(url: str, body: Any) -> Reply:
    return http("POST", url, json.dumps(body).encode(), {"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    root = tmp_path_factory.mktemp("sidecar")
    model_dir = tiny_model(root)
    config = load_checkpoint(model_dir).config
    # Written while nothing else runs: one adapter made by peft itself (save_pretrained), besides the fixture's.
    from lorachain.sidecar.lora_factory import make_lora_adapter

    peft_made = make_lora_adapter(model_dir, root / "peft-made", seed=3, rank=4)
    proc, url = start_sidecar(model_dir, root, free_port())
    adapters = [write_peft_adapter(root / f"peft-{i}", config, rank=8, seed=i) for i in range(3)]
    yield {"url": url, "proc": proc, "root": root, "adapters": adapters, "config": config, "peft_made": peft_made}
    proc.terminate()
    proc.wait(timeout=20)


METRIC_NAMES = (
    "lorachain_sidecar_queue_depth",
    "lorachain_sidecar_running_sequences",
    "lorachain_sidecar_generated_tokens_total",
    "lorachain_sidecar_prompt_tokens_total",
    'lorachain_sidecar_requests_total{outcome="ok"}',
    "lorachain_sidecar_request_seconds_bucket",
    "lorachain_sidecar_step_seconds_bucket",
    "lorachain_sidecar_adapter_hits_device_total",
    "lorachain_sidecar_adapter_hits_host_total",
    "lorachain_sidecar_adapter_loads_disk_total",
    "lorachain_sidecar_adapter_evictions_total",
    "lorachain_sidecar_adapters_registered",
    "lorachain_sidecar_adapters_host_resident",
)


def metric(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels) in Prometheus text."""
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


def mp_post(url: str, obj) -> Reply:
    return http("POST", url, msgpack.packb(obj, use_bin_type=True), MSGPACK)


def mp(response: Reply):
    assert response.headers["Content-Type"].startswith("application/msgpack"), response.text
    return msgpack.unpackb(response.content, raw=False)


@pytest.fixture(scope="module")
def adapter_ids(sidecar):
    ids = []
    for folder in sidecar["adapters"]:
        r = mp_post(sidecar["url"] + "/v1/lorachain/adapters/load", {"path": str(folder)})
        assert r.status_code == 200
        ids.append(mp(r)["id"])
    return ids


def test_generate_alone_equals_in_a_batch(sidecar, adapter_ids):
    url = sidecar["url"]
    reqs = [{"prompt_ids": [3, 4, 5, i], "adapter_id": adapter_ids[i % 3] if i % 4 else None, "max_new_tokens": 6}
            for i in range(8)]  # fmt: skip
    alone = [mp(mp_post(url + "/v1/lorachain/generate", r)) for r in reqs]
    batch = mp(mp_post(url + "/v1/lorachain/generate_batch", {"requests": reqs}))["results"]
    assert batch == alone
    assert all(len(r["output_ids"]) == 6 and len(r["commitment"]) == 32 for r in alone)
    assert alone[1]["adapter_hashes"] == [bytes.fromhex(adapter_ids[1][2:])]


def test_concurrent_requests_are_batched_and_all_succeed(sidecar, adapter_ids):
    url = sidecar["url"]
    reqs = [{"prompt_ids": [7, i + 1], "adapter_id": adapter_ids[i % 3], "max_new_tokens": 8} for i in range(20)]
    expected = [mp(mp_post(url + "/v1/lorachain/generate", r)) for r in reqs[:3]]
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda r: mp_post(url + "/v1/lorachain/generate", r), reqs))
    assert all(r.status_code == 200 for r in results)
    assert [mp(r) for r in results[:3]] == expected
    metrics = get(url + "/metrics").text
    for name in METRIC_NAMES:
        assert f"\n{name}" in metrics, name
    assert metric(metrics, "lorachain_sidecar_adapter_hits_device_total") > 0
    assert metric(metrics, 'lorachain_sidecar_requests_total{outcome="ok"}') >= 23
    steps = metric(metrics, "lorachain_sidecar_step_seconds_count")
    assert steps < metric(metrics, "lorachain_sidecar_generated_tokens_total")  # fewer steps than tokens: batching


def test_model_and_adapter_info(sidecar, adapter_ids):
    url = sidecar["url"]
    info = mp(get(url + "/v1/lorachain/model"))
    assert info["name"] == "tiny" and info["model_hash"].startswith("0x") and info["context_length"] == 128
    a = mp(get(url + f"/v1/lorachain/adapters/{adapter_ids[0]}"))
    assert a["id"] == adapter_ids[0] and a["rank"] == 8
    models = get(url + "/v1/models").json()["data"]
    assert {m["id"] for m in models} >= set(adapter_ids) and models[0]["name"] == "tiny"


def test_openai_completions_chat_and_streaming(sidecar, adapter_ids):
    url = sidecar["url"]
    body = {"model": "tiny", "prompt": "Alice lives in", "max_tokens": 10, "temperature": 0}
    plain = post_json(url + "/v1/completions", body).json()
    choice = plain["choices"][0]
    assert plain["object"] == "text_completion" and plain["usage"]["completion_tokens"] == 10
    assert choice["lorachain"]["commitment"].startswith("0x")
    streamed = post_json(url + "/v1/completions", {**body, "stream": True})
    assert streamed.headers["Content-Type"].startswith("text/event-stream")
    events = streamed.events()
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]
    assert chunks[-1]["choices"][0]["lorachain"]["commitment"] == choice["lorachain"]["commitment"]

    chat = {"model": adapter_ids[0], "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 6,
            "temperature": 0.7, "seed": 42}  # fmt: skip
    first = post_json(url + "/v1/chat/completions", chat).json()
    again = post_json(url + "/v1/chat/completions", chat).json()
    assert first["object"] == "chat.completion" and first["choices"][0]["message"]["role"] == "assistant"
    assert first["choices"][0]["lorachain"] == again["choices"][0]["lorachain"]  # seeded sampling is reproducible
    events = post_json(url + "/v1/chat/completions", {**chat, "stream": True}).events()
    deltas = [json.loads(e)["choices"][0]["delta"] for e in events[:-1]]
    assert deltas[0] == {"role": "assistant"}
    assert "".join(d.get("content", "") for d in deltas) == first["choices"][0]["message"]["content"]


def test_bad_input_gets_4xx_and_the_server_keeps_serving(sidecar, adapter_ids):
    url = sidecar["url"]
    unknown = "0x" + "cd" * 32
    json_cases = [
        ("/v1/completions", {"model": unknown, "prompt": "x"}, 404, "unknown_model"),
        ("/v1/completions", {"model": "tiny", "prompt": "x " * 200}, 400, "bad_request"),  # longer than the context
        ("/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": 100000}, 400, "bad_request"),
        ("/v1/completions", {"model": "tiny", "prompt": 5}, 400, "bad_request"),
        ("/v1/completions", {"model": "tiny", "prompt": "x", "temperature": "hot"}, 400, "bad_request"),
        ("/v1/completions", {"model": "tiny", "prompt": "x", "n": 2}, 400, "bad_request"),
        ("/v1/completions", {"model": "tiny", "prompt": "x", "seed": 2**300}, 400, "bad_request"),
        ("/v1/completions", {"model": "tiny", "prompt": "x", "logprobs": 3}, 400, "bad_request"),
        ("/v1/completions", {"model": "tiny", "prompt": ["x"] * 65}, 400, "bad_request"),
        ("/v1/completions", {"model": "tiny", "prompt": ["x", "y"], "stream": True}, 400, "bad_request"),
        ("/v1/completions", {"model": "tiny", "prompt": "x", "stop": [5]}, 400, "bad_request"),
        ("/v1/completions", [1, 2], 400, "bad_request"),
        ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "bot", "content": "x"}]}, 400, "bad_request"),
        ("/v1/chat/completions", {"model": "tiny", "messages": "hi"}, 400, "bad_request"),
        ("/v1/nope", {}, 404, "not_found"),
    ]  # fmt: skip
    for path, body, status, code in json_cases:
        r = post_json(url + path, body)
        assert r.status_code == status, (path, body, r.text)
        assert r.json()["error"]["code"] == code
    r = http("POST", url + "/v1/completions", b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = http("GET", url + "/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = http("POST", url + "/v1/completions", b"x" * (9 << 20))
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    r = http("POST", url + "/v1/lorachain/generate", b"\x00" * (9 << 20), MSGPACK)
    assert r.status_code == 413 and mp(r)["error"]["code"] == "bad_request"

    msgpack_cases = [
        ("/v1/lorachain/generate", {"prompt_ids": [1], "adapter_id": unknown}, 404, "unknown_adapter"),
        ("/v1/lorachain/generate", {"prompt_ids": [1] * 500}, 400, "bad_request"),
        ("/v1/lorachain/generate", {"prompt_ids": [1], "max_new_tokens": 10**6}, 400, "bad_request"),
        ("/v1/lorachain/generate", {"prompt_ids": [10**9]}, 400, "bad_request"),
        ("/v1/lorachain/generate", {"prompt_ids": "abc"}, 400, "bad_request"),
        ("/v1/lorachain/adapters/load", {"path": "/nonexistent"}, 400, "bad_request"),
        ("/v1/lorachain/adapters/unload", {"adapter_id": unknown}, 404, "unknown_adapter"),
        ("/v1/lorachain/adapters/unload", {"adapter_id": 5}, 400, "bad_request"),
        ("/v1/lorachain/adapters/merge", {"adapter_ids": [unknown], "weights_milli": [1000]}, 404, "unknown_adapter"),
        ("/v1/lorachain/adapters/merge", {"adapter_ids": [], "weights_milli": []}, 400, "bad_request"),
        ("/v1/lorachain/generate_batch", {"requests": [{"prompt_ids": [1]}] * 300}, 400, "bad_request"),
    ]
    for path, body, status, code in msgpack_cases:
        r = mp_post(url + path, body)
        assert r.status_code == status, (path, r.content)
        assert mp(r)["error"]["code"] == code
    r = http("POST", url + "/v1/lorachain/generate", b"\xc1\x00garbage", MSGPACK)
    assert r.status_code == 400 and mp(r)["error"]["code"] == "bad_request"
    batch = mp(mp_post(url + "/v1/lorachain/generate_batch", {"requests": [{"prompt_ids": [1]}, {"prompt_ids": []}]}))
    assert "output_ids" in batch["results"][0] and batch["results"][1]["error"]["code"] == "bad_request"

    # An adapter for another base shape, and a corrupt adapter file, are refused; the store is unchanged.
    other = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)  # fmt: skip
    wrong = write_peft_adapter(sidecar["root"] / "wrong-shape", other, rank=4, seed=9)
    r = mp_post(url + "/v1/lorachain/adapters/load", {"path": str(wrong)})
    assert r.status_code == 422 and mp(r)["error"]["code"] == "incompatible_adapter"
    corrupt = write_peft_adapter(sidecar["root"] / "corrupt", sidecar["config"], rank=4, seed=10)
    (corrupt / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    r = mp_post(url + "/v1/lorachain/adapters/load", {"path": str(corrupt)})
    assert r.status_code == 422 and mp(r)["error"]["code"] == "corrupt_artifact"

    nulls = {"model": "tiny", "prompt": "x", "max_tokens": None, "n": None, "seed": None, "stop": None}
    assert len(post_json(url + "/v1/completions", nulls).json()["choices"][0]["lorachain"]["output_ids"]) == 16
    assert get(url + "/health").json()["status"] == "ok"
    ok = mp(mp_post(url + "/v1/lorachain/generate", {"prompt_ids": [3, 4], "adapter_id": adapter_ids[0]}))
    assert len(ok["output_ids"]) == 32
    assert sidecar["proc"].poll() is None


def test_adapter_saved_by_peft_serves_on_both_apis(sidecar):
    url = sidecar["url"]
    info = mp(mp_post(url + "/v1/lorachain/adapters/load", {"path": str(sidecar["peft_made"])}))
    assert info["rank"] == 4 and len(info["target_modules"]) == 7
    assert mp(mp_post(url + "/v1/lorachain/adapters/load", {"path": str(sidecar["peft_made"])}))["id"] == info["id"]
    native = mp(mp_post(url + "/v1/lorachain/generate", {"prompt_ids": [9, 8], "adapter_id": info["id"]}))
    assert native["adapter_hashes"] == [bytes.fromhex(info["id"][2:])]
    body = {"model": info["id"], "prompt": "Bob says", "max_tokens": 5, "temperature": 0}
    choice = post_json(url + "/v1/completions", body).json()["choices"][0]
    assert choice["lorachain"]["adapter_hashes"] == [info["id"]] and len(choice["lorachain"]["output_ids"]) == 5


def test_merge_and_unload(sidecar, adapter_ids):
    url = sidecar["url"]
    merged = mp(
        mp_post(url + "/v1/lorachain/adapters/merge", {"adapter_ids": adapter_ids[:2], "weights_milli": [500, 500]})
    )
    assert merged["rank"] == 16
    out = mp(
        mp_post(url + "/v1/lorachain/generate", {"prompt_ids": [5], "adapter_id": merged["id"], "max_new_tokens": 2})
    )
    assert out["adapter_hashes"] == [bytes.fromhex(merged["id"][2:])]
    assert mp(mp_post(url + "/v1/lorachain/adapters/unload", {"adapter_id": merged["id"]}))["unloaded"] == merged["id"]
    r = mp_post(url + "/v1/lorachain/generate", {"prompt_ids": [5], "adapter_id": merged["id"]})
    assert r.status_code == 404
