"""Bit-exactness of the exact engine: 200 prompts x 16 adapters across batch mixes, thread counts,
process restarts and adapter registration orders; artifacts, adapters and bad input."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numba
import pytest
import torch

from lorachain.sidecar.adapters import parse_adapter
from lorachain.sidecar.artifact import artifact_path, convert_checkpoint, load_model, parse_model
from lorachain.sidecar.checkpoint import load_checkpoint
from lorachain.sidecar.commitment import inference_commitment
from lorachain.sidecar.exact_engine import load_engine
from lorachain.sidecar.types import (
    CorruptArtifactError,
    DecodingParams,
    GenerationRequest,
    IncompatibleAdapterError,
    RequestError,
    UnknownAdapterError,
)
from tests.sidecar_fixtures import tiny_model, workload, write_peft_adapter

N_PROMPTS, N_ADAPTERS, NEW_TOKENS = 200, 16, 6


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("exact")
    model_dir = tiny_model(root)
    config = load_checkpoint(model_dir).config
    adapter_dirs = [
        write_peft_adapter(root / f"peft-{i}", config, rank=4 + 4 * (i % 4), seed=i,
                           targets=("q_proj", "v_proj") if i % 3 == 0 else ("q_proj", "k_proj", "v_proj", "o_proj",
                                                                           "gate_proj", "up_proj", "down_proj"))
        for i in range(N_ADAPTERS)
    ]  # fmt: skip
    cache = root / "cache"
    engine = load_engine(model_dir, adapters_dir=root / "adapters", cache=cache)
    ids = [engine.store.register(d).id for d in adapter_dirs]
    requests = workload(engine.tokenizer, ids, N_PROMPTS, NEW_TOKENS)
    alone = [engine.generate([r])[0] for r in requests]
    return {"root": root, "model_dir": model_dir, "cache": cache, "engine": engine, "adapter_dirs": adapter_dirs,
            "ids": ids, "requests": requests, "alone": alone}  # fmt: skip


def fingerprint(results) -> list[tuple]:
    return [(r.output_ids, r.commitment, r.finish_reason) for r in results]


def test_adapters_change_outputs(world):
    outputs = {r.output_ids for r, req in zip(world["alone"], world["requests"], strict=True) if req.adapter_id}
    base = world["engine"].generate([GenerationRequest(world["requests"][1].prompt_ids)])[0]
    assert len(outputs) > 20
    assert base.output_ids != world["alone"][1].output_ids or base.commitment != world["alone"][1].commitment


def test_batches_of_1_to_64_mixing_adapters_match_alone(world):
    engine, requests = world["engine"], world["requests"]
    order = list(range(N_PROMPTS))
    random.Random(3).shuffle(order)
    got: dict[int, object] = {}
    sizes = [1, 2, 3, 5, 8, 13, 21, 34, 64, 49]
    pos = 0
    for size in sizes:
        chunk = order[pos : pos + size]
        pos += size
        for i, result in zip(chunk, engine.generate([requests[i] for i in chunk]), strict=True):
            got[i] = result
    assert pos == N_PROMPTS
    assert fingerprint(got[i] for i in range(N_PROMPTS)) == fingerprint(world["alone"])


def test_one_thread_matches_all_threads(world):
    engine, requests = world["engine"], world["requests"]
    before = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        results = [r for s in range(0, N_PROMPTS, 64) for r in engine.generate(requests[s : s + 64])]
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])
    assert fingerprint(results) == fingerprint(world["alone"])


@pytest.mark.parametrize("gemm", ["float32", "float64"])
def test_every_gemm_kind_gives_the_same_bits(world, monkeypatch, gemm):
    """The int16 numba GEMM (CPU default), float32 (the GPU kind) and float64 (the fallback): same integers."""
    monkeypatch.setenv("LORACHAIN_EXACT_GEMM", gemm)
    engine = load_engine(world["model_dir"], adapters_dir=world["root"] / "adapters", cache=world["cache"])
    assert str(engine.mm.dtype) == f"torch.{gemm}" and engine.ops.q_dtype == engine.mm.dtype
    results = engine.generate(world["requests"][:64])
    assert fingerprint(results) == fingerprint(world["alone"][:64])


def test_continuous_batching_joins_mid_flight(world):
    """Requests that join a running batch between steps get the same tokens as alone."""
    engine, requests = world["engine"], world["requests"]
    seqs = [engine.start(r) for r in requests[:10]]
    engine.step(seqs)
    seqs += [engine.start(r) for r in requests[10:30]]
    while not all(s.done for s in seqs):
        engine.step([s for s in seqs if not s.done])
    assert fingerprint(engine.finish(s) for s in seqs) == fingerprint(world["alone"][:30])


RESTART_SCRIPT = """
import json, sys
from pathlib import Path
from lorachain.sidecar.exact_engine import load_engine
from lorachain.sidecar.types import DecodingParams, GenerationRequest
args = json.loads(sys.stdin.read())
engine = load_engine(args["model"], adapters_dir=args["adapters"], cache=Path(args["cache"]))
ids = [engine.store.register(d).id for d in args["adapter_dirs"]]
reqs = [
    GenerationRequest(tuple(r["prompt"]), r["adapter"], DecodingParams(**r["params"], seed=bytes.fromhex(r["seed"])))
    for r in args["requests"]
]
out = []
for s in range(0, len(reqs), 37):
    out += [[list(x.output_ids), x.commitment.hex()] for x in engine.generate(reqs[s : s + 37])]
print(json.dumps({"ids": ids, "results": out, "ops": engine.ops.name, "gemm": str(engine.mm.dtype)}))
"""


def test_restarted_process_with_adapters_registered_in_reverse_order(world, tmp_path):
    """A fresh process, a fresh adapter directory, adapters converted again in another order, and what a GPU
    runs (the torch reference ops and float32 GEMMs) instead of the numba kernels and int16 GEMM: same bits."""

    def encode(r: GenerationRequest) -> dict:
        p = r.params
        params = {"max_new_tokens": p.max_new_tokens, "temperature_milli": p.temperature_milli, "top_k": p.top_k,
                  "top_p_milli": p.top_p_milli}  # fmt: skip
        return {"prompt": list(r.prompt_ids), "adapter": r.adapter_id, "params": params, "seed": p.seed.hex()}

    payload = {
        "model": str(world["model_dir"]),
        "adapters": str(tmp_path / "adapters"),
        "cache": str(tmp_path / "fresh-cache"),  # converts the checkpoint again in the new process
        "adapter_dirs": [str(d) for d in reversed(world["adapter_dirs"])],
        "requests": [encode(r) for r in world["requests"]],
    }
    env = {**os.environ, "LORACHAIN_EXACT_OPS": "torch", "LORACHAIN_EXACT_GEMM": "float32"}
    proc = subprocess.run([sys.executable, "-c", RESTART_SCRIPT], input=json.dumps(payload), capture_output=True,
                          text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert world["engine"].ops.name == "numba" and out["ops"] == "torch"
    assert world["engine"].mm.dtype == torch.int16 and out["gemm"] == "torch.float32"
    assert out["ids"] == list(reversed(world["ids"]))
    assert out["results"] == [[list(r.output_ids), r.commitment.hex()] for r in world["alone"]]


def test_commitment_covers_every_input(world):
    engine = world["engine"]
    req, result = world["requests"][1], world["alone"][1]
    adapter_hashes = (bytes.fromhex(req.adapter_id[2:]),)
    assert result.commitment == inference_commitment(engine.model_hash, adapter_hashes, req.prompt_ids,
                                                     result.output_ids, req.params)  # fmt: skip
    other = DecodingParams(max_new_tokens=NEW_TOKENS + 1)
    assert result.commitment != inference_commitment(engine.model_hash, adapter_hashes, req.prompt_ids,
                                                     result.output_ids, other)  # fmt: skip
    assert result.commitment != inference_commitment(engine.model_hash, (), req.prompt_ids, result.output_ids,
                                                     req.params)  # fmt: skip


def test_sampling_depends_on_seed_only(world):
    engine = world["engine"]
    prompt = world["requests"][3].prompt_ids

    def run(seed: int):
        params = DecodingParams(max_new_tokens=12, temperature_milli=1500, seed=seed.to_bytes(32, "big"))
        return engine.generate([GenerationRequest(prompt, params=params)])[0].output_ids

    assert run(1) == run(1)
    assert len({run(s) for s in range(6)}) > 1


def test_model_artifact_is_deterministic_and_verified(world, tmp_path):
    ckpt = load_checkpoint(world["model_dir"])
    blob1, hash1 = convert_checkpoint(ckpt)
    blob2, hash2 = convert_checkpoint(load_checkpoint(world["model_dir"]))
    assert hash1 == hash2 == world["engine"].model_hash and blob1 == blob2
    model = parse_model(blob1, hash1)
    assert model.config == ckpt.config and model.tokenizer_json == ckpt.tokenizer.to_str()
    corrupted = bytearray(blob1)
    corrupted[-5] ^= 0xFF
    with pytest.raises(CorruptArtifactError, match="hash"):
        parse_model(bytes(corrupted), hash1)
    with pytest.raises(CorruptArtifactError):
        parse_model(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json", None)
    # A cached artifact file loads by path and is checked against its name.
    path = artifact_path(world["cache"], hash1)
    assert load_model(path).hash == hash1
    bad = tmp_path / path.name
    bad.write_bytes(bytes(corrupted))
    with pytest.raises(CorruptArtifactError):
        load_model(bad)


def test_adapter_artifacts_round_trip_and_merge_deterministically(world):
    store = world["engine"].store
    a, b = world["ids"][1], world["ids"][2]
    adapter = store.get(a)
    blob = (store.directory / f"{a}.safetensors").read_bytes()
    again = parse_adapter(blob, adapter.hash)
    assert again.id == a and again.modules.keys() == adapter.modules.keys()
    assert store.register(world["adapter_dirs"][1]).id == a  # idempotent: same folder, same id
    merged1 = store.merge([a, b], [700, 300])
    merged2 = store.merge([a, b], [700, 300])
    assert merged1.id == merged2.id and merged1.rank == adapter.rank + store.get(b).rank
    assert store.merge([a, b], [300, 700]).id != merged1.id
    result = world["engine"].generate([GenerationRequest(world["requests"][1].prompt_ids, merged1.id)])[0]
    assert result.adapter_hashes == (bytes.fromhex(merged1.id[2:]),)


def test_bad_requests_get_clear_errors(world):
    engine = world["engine"]
    context = engine.context_length
    cases = [
        (GenerationRequest(()), RequestError, "empty"),
        (GenerationRequest((1,) * context), RequestError, "context"),
        (GenerationRequest((1, 2), params=DecodingParams(max_new_tokens=context)), RequestError, "max_new_tokens"),
        (GenerationRequest((1, 2), params=DecodingParams(max_new_tokens=0)), RequestError, "max_new_tokens"),
        (GenerationRequest((engine.config.vocab_size,)), RequestError, "token ids"),
        (GenerationRequest((1,), "0x" + "ab" * 32), UnknownAdapterError, "unknown adapter"),
        (GenerationRequest((1,), "not-an-id"), RequestError, "adapter id"),
        (GenerationRequest((1,), params=DecodingParams(seed=b"short")), RequestError, "seed"),
        (GenerationRequest((1,), params=DecodingParams(top_p_milli=0)), RequestError, "top_p"),
    ]
    for request, error, words in cases:
        with pytest.raises(error, match=words):
            engine.start(request)
    assert engine.generate([world["requests"][0]])[0] == world["alone"][0]  # still serving, unchanged


def test_bad_adapters_are_refused_and_the_store_is_unharmed(world, tmp_path):
    store = world["engine"].store
    before = store.ids()
    from lorachain.sidecar.checkpoint import LlamaConfig

    other = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)  # fmt: skip
    with pytest.raises(IncompatibleAdapterError, match="do not fit"):
        store.register(write_peft_adapter(tmp_path / "other", other, rank=4, seed=1))
    corrupt = write_peft_adapter(tmp_path / "corrupt", world["engine"].config, rank=4, seed=2)
    data = (corrupt / "adapter_model.safetensors").read_bytes()
    (corrupt / "adapter_model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArtifactError):
        store.register(corrupt)
    (corrupt / "adapter_config.json").write_text("{nope")
    with pytest.raises(RequestError, match="JSON"):
        store.register(corrupt)
    with pytest.raises(RequestError, match="does not exist"):
        store.register(tmp_path / "missing")
    assert store.ids() == before
    assert world["engine"].generate([world["requests"][1]])[0] == world["alone"][1]


def test_cli_convert_prints_the_artifact_hash(world, tmp_path):
    cli = [sys.executable, "-m", "lorachain.cli", "model", "convert"]
    proc = subprocess.run([*cli, "--model", str(world["model_dir"]), "--cache", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model_hash"] == "0x" + world["engine"].model_hash.hex()
    assert Path(out["artifact"]).is_file()
    bad = subprocess.run([sys.executable, "-m", "lorachain.cli", "model", "convert", "--model", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 1 and "does not exist" in bad.stderr


def test_torch_reference_ops_give_the_same_bits(world):
    """The fused CPU kernels (LoRA per-row kernel included) against the torch definition, end to end."""
    from lorachain.sidecar.exact_ops import TorchOps

    engine, requests = world["engine"], world["requests"][:64]
    fast_ops = engine.ops
    engine.ops = TorchOps()
    try:
        results = engine.generate(requests)
    finally:
        engine.ops = fast_ops
    assert fast_ops.name == "numba"
    assert fingerprint(results) == fingerprint(world["alone"][:64])
