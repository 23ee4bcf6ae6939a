"""Test material for the sidecar: the tiny devnet model and random peft-format LoRA adapters."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from safetensors.torch import save_file

from lorachain.sidecar.checkpoint import LlamaConfig
from lorachain.sidecar.devnet_model import build_devnet_model
from lorachain.sidecar.types import DecodingParams, GenerationRequest

HF_MODULES = {
    "q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
    "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp",
}  # fmt: skip


def tiny_model(root: Path) -> Path:
    return build_devnet_model(root / "tiny-model", size="tiny")


def write_peft_adapter(
    folder: Path, config: LlamaConfig, *, rank: int, seed: int, targets: tuple[str, ...] = tuple(HF_MODULES),
    scale: float = 0.05,
) -> Path:  # fmt: skip
    """A peft LoRA folder with seeded random A and B (B is not zero, so the adapter changes outputs)."""
    gen = torch.Generator().manual_seed(seed)
    h, m = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * config.head_dim
    dims = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
            "gate_proj": (h, m), "up_proj": (h, m), "down_proj": (m, h)}  # fmt: skip
    tensors = {}
    for layer in range(config.num_hidden_layers):
        for name in targets:
            fan_in, fan_out = dims[name]
            prefix = f"base_model.model.model.layers.{layer}.{HF_MODULES[name]}.{name}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, fan_in, generator=gen) / fan_in**0.5
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(fan_out, rank, generator=gen) * scale
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config_json = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": list(targets),
                   "bias": "none", "base_model_name_or_path": "tiny"}  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(config_json))
    return folder


WORDS = ["Alice", "Bob", "lives", "in", "Paris", "the", "cat", "says", "Q:", "A:", "What", "is", "color"]


def workload(tokenizer, adapter_ids: list[str], count: int, new_tokens: int, seed: int = 7) -> list[GenerationRequest]:
    """``count`` seeded prompts spread over the adapters (every 17th on the base model, every 5th sampled)."""
    rng = random.Random(seed)
    requests = []
    for i in range(count):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 12)))
        adapter = None if i % 17 == 0 or not adapter_ids else adapter_ids[i % len(adapter_ids)]
        params = DecodingParams(max_new_tokens=new_tokens)
        if i % 5 == 0:
            params = DecodingParams(max_new_tokens=new_tokens, temperature_milli=800, top_k=40, top_p_milli=900,
                                    seed=i.to_bytes(32, "big"))  # fmt: skip
        requests.append(GenerationRequest(tuple(tokenizer.encode(text).ids), adapter, params))
    return requests


def start_sidecar(model_dir: Path, root: Path, port: int, timeout: float = 60.0):
    """``lorachain sidecar`` as a subprocess on ``port``; returns (process, url) once /health answers."""
    import subprocess
    import sys
    import time
    import urllib.request

    log = open(root / f"sidecar-{port}.log", "ab")  # noqa: SIM115 - owned by the subprocess
    proc = subprocess.Popen(
        [sys.executable, "-m", "lorachain.cli", "sidecar", "--model", str(model_dir), "--port", str(port),
         "--adapters", str(root / "adapters"), "--cache", str(root / "cache"), "--served-model-name", "tiny"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError((root / f"sidecar-{port}.log").read_text())
