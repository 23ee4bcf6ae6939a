"""The sidecar over real sockets: a `lorachain sidecar` subprocess driven by HTTP clients."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import msgpack
import pytest
import requests

from lorachain.sidecar.checkpoint import LlamaConfig, load_checkpoint
from tests.conftest import free_port
from tests.sidecar_fixtures import tiny_model, write_peft_adapter

MSGPACK = {"Content-Type": "application/msgpack"}


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    root = tmp_path_factory.mktemp("sidecar")
    model_dir = tiny_model(root)
    config = load_checkpoint(model_dir).config
    port = free_port()
    log = open(root / "sidecar.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "lorachain.cli", "sidecar", "--model", str(model_dir), "--port", str(port),
         "--adapters", str(root / "adapters"), "--cache", str(root / "cache"), "--served-model-name", "tiny"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError((root / "sidecar.log").read_text())
    adapters = [write_peft_adapter(root / f"peft-{i}", config, rank=8, seed=i) for i in range(3)]
    yield {"url": url, "proc": proc, "root": root, "adapters": adapters, "config": config}
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def mp_post(url: str, obj, **kwargs) -> requests.Response:
    return requests.post(url, data=msgpack.packb(obj, use_bin_type=True), headers=MSGPACK, timeout=60, **kwargs)


def mp(response: requests.Response):
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
    metrics = requests.get(url + "/metrics", timeout=10).text
    for name in ("lorachain_sidecar_queue_depth", "lorachain_sidecar_generated_tokens_total",
                 "lorachain_sidecar_adapters_hits_device", "lorachain_sidecar_step_seconds_bucket"):  # fmt: skip
        assert name in metrics
    running = [line for line in metrics.splitlines() if line.startswith("lorachain_sidecar_step_seconds_count")]
    tokens = [line for line in metrics.splitlines() if line.startswith("lorachain_sidecar_generated_tokens_total")]
    assert float(running[0].split()[-1]) < float(tokens[0].split()[-1])  # fewer steps than tokens: batching


def test_model_and_adapter_info(sidecar, adapter_ids):
    url = sidecar["url"]
    info = mp(requests.get(url + "/v1/lorachain/model", timeout=10))
    assert info["name"] == "tiny" and info["model_hash"].startswith("0x") and info["context_length"] == 128
    a = mp(requests.get(url + f"/v1/lorachain/adapters/{adapter_ids[0]}", timeout=10))
    assert a["id"] == adapter_ids[0] and a["rank"] == 8
    models = requests.get(url + "/v1/models", timeout=10).json()["data"]
    assert {m["id"] for m in models} >= set(adapter_ids) and models[0]["name"] == "tiny"


def test_openai_completions_chat_and_streaming(sidecar, adapter_ids):
    url = sidecar["url"]
    body = {"model": "tiny", "prompt": "Alice lives in", "max_tokens": 10, "temperature": 0}
    plain = requests.post(url + "/v1/completions", json=body, timeout=60).json()
    choice = plain["choices"][0]
    assert plain["object"] == "text_completion" and plain["usage"]["completion_tokens"] == 10
    assert choice["lorachain"]["commitment"].startswith("0x")
    with requests.post(url + "/v1/completions", json={**body, "stream": True}, timeout=60, stream=True) as r:
        events = [line[6:] for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == choice["text"]
    assert chunks[-1]["choices"][0]["lorachain"]["commitment"] == choice["lorachain"]["commitment"]

    chat = {"model": adapter_ids[0], "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 6,
            "temperature": 0.7, "seed": 42}  # fmt: skip
    first = requests.post(url + "/v1/chat/completions", json=chat, timeout=60).json()
    again = requests.post(url + "/v1/chat/completions", json=chat, timeout=60).json()
    assert first["object"] == "chat.completion" and first["choices"][0]["message"]["role"] == "assistant"
    assert first["choices"][0]["lorachain"] == again["choices"][0]["lorachain"]  # seeded sampling is reproducible
    with requests.post(url + "/v1/chat/completions", json={**chat, "stream": True}, timeout=60, stream=True) as r:
        events = [line[6:] for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
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
        ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "bot", "content": "x"}]}, 400, "bad_request"),
        ("/v1/nope", {}, 404, "not_found"),
    ]  # fmt: skip
    for path, body, status, code in json_cases:
        r = requests.post(url + path, json=body, timeout=30)
        assert r.status_code == status, (path, body, r.text)
        assert r.json()["error"]["code"] == code
    r = requests.post(url + "/v1/completions", data=b"{not json", timeout=30)
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    r = requests.post(url + "/v1/completions", data=b"x" * (9 << 20), timeout=30)
    assert r.status_code == 413

    msgpack_cases = [
        ("/v1/lorachain/generate", {"prompt_ids": [1], "adapter_id": unknown}, 404, "unknown_adapter"),
        ("/v1/lorachain/generate", {"prompt_ids": [1] * 500}, 400, "bad_request"),
        ("/v1/lorachain/generate", {"prompt_ids": [1], "max_new_tokens": 10**6}, 400, "bad_request"),
        ("/v1/lorachain/generate", {"prompt_ids": [10**9]}, 400, "bad_request"),
        ("/v1/lorachain/generate", {"prompt_ids": "abc"}, 400, "bad_request"),
        ("/v1/lorachain/adapters/load", {"path": "/nonexistent"}, 400, "bad_request"),
        ("/v1/lorachain/adapters/unload", {"adapter_id": unknown}, 404, "unknown_adapter"),
    ]
    for path, body, status, code in msgpack_cases:
        r = mp_post(url + path, body)
        assert r.status_code == status, (path, r.content)
        assert mp(r)["error"]["code"] == code
    r = requests.post(url + "/v1/lorachain/generate", data=b"\xc1\x00garbage", headers=MSGPACK, timeout=30)
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

    assert requests.get(url + "/health", timeout=10).json()["status"] == "ok"
    ok = mp(mp_post(url + "/v1/lorachain/generate", {"prompt_ids": [3, 4], "adapter_id": adapter_ids[0]}))
    assert len(ok["output_ids"]) == 32
    assert sidecar["proc"].poll() is None


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
