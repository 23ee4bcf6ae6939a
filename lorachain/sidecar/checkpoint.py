"""Llama-family checkpoints in the Hugging Face folder layout: load, validate, save.

A checkpoint folder holds ``config.json``, ``tokenizer.json`` and the weights, either in one
``model.safetensors`` or in shards ``model-0000i-of-0000N.safetensors`` listed by
``model.safetensors.index.json``. Tensors keep their Hugging Face names and are loaded as float32.
Anything wrong with the folder raises :class:`CheckpointError` naming the file or tensor at fault.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save
from tokenizers import Tokenizer

from lorachain.sidecar.types import CheckpointError

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SHARD_RE = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")

# Architectures that are Llama underneath: pre-norm RMSNorm, RoPE, GQA attention, SwiGLU MLP.
LLAMA_LIKE_MODEL_TYPES = ("llama", "mistral", "qwen2")
LOADABLE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)  # buffers some old conversions saved; recomputed from rope_theta


@dataclass(frozen=True)
class LlamaConfig:
    """The subset of a Hugging Face ``LlamaConfig`` that the forward pass depends on."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    model_type: str = "llama"
    qkv_bias: bool = False  # q/k/v projections carry a bias (qwen2; llama with attention_bias)
    o_bias: bool = False  # o_proj carries a bias (llama with attention_bias)
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_json(cls, raw: Any) -> LlamaConfig:
        """Validate a parsed ``config.json``; raise :class:`CheckpointError` on anything unsupported."""
        if not isinstance(raw, dict):
            raise CheckpointError(f"{CONFIG_FILE}: expected a JSON object, got {type(raw).__name__}")
        model_type = raw.get("model_type", "llama")
        if model_type not in LLAMA_LIKE_MODEL_TYPES:
            raise CheckpointError(
                f"{CONFIG_FILE}: model_type {model_type!r} is not a Llama-architecture model "
                f"(supported: {', '.join(LLAMA_LIKE_MODEL_TYPES)})"
            )
        if raw.get("hidden_act", "silu") != "silu":
            raise CheckpointError(f"{CONFIG_FILE}: hidden_act {raw['hidden_act']!r} is not supported (only 'silu')")
        if raw.get("rope_scaling") is not None:
            raise CheckpointError(f"{CONFIG_FILE}: rope_scaling {raw['rope_scaling']!r} is not supported yet")
        if raw.get("mlp_bias"):
            raise CheckpointError(f"{CONFIG_FILE}: mlp_bias=true is not supported")

        heads = _int(raw, "num_attention_heads")
        attention_bias = _bool(raw, "attention_bias", False)
        config = cls(
            vocab_size=_int(raw, "vocab_size"),
            hidden_size=_int(raw, "hidden_size"),
            intermediate_size=_int(raw, "intermediate_size"),
            num_hidden_layers=_int(raw, "num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=_int(raw, "num_key_value_heads", heads),
            max_position_embeddings=min(_int(raw, "max_position_embeddings"), _sliding_window(raw)),
            rms_norm_eps=_float(raw, "rms_norm_eps", 1e-6),
            rope_theta=_float(raw, "rope_theta", 10000.0),
            tie_word_embeddings=_bool(raw, "tie_word_embeddings", False),
            model_type=model_type,
            qkv_bias=model_type == "qwen2" or attention_bias,
            o_bias=model_type != "qwen2" and attention_bias,
            bos_token_id=_optional_int(raw, "bos_token_id"),
            eos_token_ids=_token_ids(raw, "eos_token_id"),
        )
        if config.hidden_size % heads:
            raise CheckpointError(f"{CONFIG_FILE}: hidden_size {config.hidden_size} is not a multiple of {heads} heads")
        if heads % config.num_key_value_heads:
            raise CheckpointError(
                f"{CONFIG_FILE}: num_attention_heads {heads} is not a multiple of "
                f"num_key_value_heads {config.num_key_value_heads}"
            )
        if config.head_dim % 2:
            raise CheckpointError(f"{CONFIG_FILE}: head_dim {config.head_dim} must be even for RoPE")
        if raw.get("head_dim") not in (None, config.head_dim):
            raise CheckpointError(
                f"{CONFIG_FILE}: head_dim {raw['head_dim']} != hidden_size / num_attention_heads ({config.head_dim})"
            )
        return config

    def to_json(self) -> dict[str, Any]:
        """The ``config.json`` object (Hugging Face keys) that :meth:`from_json` reads back to this config."""
        raw: dict[str, Any] = {
            "architectures": ["Qwen2ForCausalLM" if self.model_type == "qwen2" else "LlamaForCausalLM"],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        }
        if self.model_type != "qwen2":
            raw["attention_bias"] = self.qkv_bias
        if self.bos_token_id is not None:
            raw["bos_token_id"] = self.bos_token_id
        if self.eos_token_ids:
            raw["eos_token_id"] = self.eos_token_ids[0] if len(self.eos_token_ids) == 1 else list(self.eos_token_ids)
        return raw


def expected_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint for ``config`` holds, in canonical order, with its shape."""
    h, kv = config.hidden_size, config.num_key_value_heads * config.head_dim
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (config.vocab_size, h)}
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (h,)
        for name, rows in (("q", h), ("k", kv), ("v", kv)):
            shapes[p + f"self_attn.{name}_proj.weight"] = (rows, h)
            if config.qkv_bias:
                shapes[p + f"self_attn.{name}_proj.bias"] = (rows,)
        shapes[p + "self_attn.o_proj.weight"] = (h, h)
        if config.o_bias:
            shapes[p + "self_attn.o_proj.bias"] = (h,)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "mlp.gate_proj.weight"] = (config.intermediate_size, h)
        shapes[p + "mlp.up_proj.weight"] = (config.intermediate_size, h)
        shapes[p + "mlp.down_proj.weight"] = (h, config.intermediate_size)
    shapes["model.norm.weight"] = (h,)
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (config.vocab_size, h)
    return shapes


@dataclass
class Checkpoint:
    """A loaded checkpoint: float32 tensors under their Hugging Face names, config and tokenizer."""

    path: Path
    config: LlamaConfig
    tensors: dict[str, torch.Tensor]
    tokenizer: Tokenizer


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load and validate the checkpoint folder at ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    config = LlamaConfig.from_json(_read_json(path / CONFIG_FILE))
    tokenizer = _load_tokenizer(path / TOKENIZER_FILE)
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise CheckpointError(
            f"{TOKENIZER_FILE} has {tokenizer.get_vocab_size()} tokens, more than vocab_size {config.vocab_size}"
        )
    tensors, origin = _load_weights(path)
    _drop_redundant_lm_head(config, tensors)
    check_tensors(config, tensors, origin)
    return Checkpoint(path=path, config=config, tensors=tensors, tokenizer=tokenizer)


def check_tensors(config: LlamaConfig, tensors: dict[str, torch.Tensor], origin: dict[str, str] | None = None) -> None:
    """Raise :class:`CheckpointError` unless ``tensors`` are exactly the finite tensors ``config`` needs."""
    origin = origin or {}
    expected = expected_shapes(config)

    def where(name: str) -> str:
        return f" in {origin[name]}" if name in origin else ""

    missing = [name for name in expected if name not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"missing tensor {missing[0]}{more}")
    extra = sorted(name for name in tensors if name not in expected)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise CheckpointError(f"unexpected tensor {extra[0]}{where(extra[0])}{more}")
    for name, shape in expected.items():
        tensor = tensors[name]
        if tuple(tensor.shape) != shape:
            raise CheckpointError(f"tensor {name}{where(name)} has shape {tuple(tensor.shape)}, expected {shape}")
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"tensor {name}{where(name)} holds NaN or infinite values")


def save_checkpoint(
    path: str | Path,
    config: LlamaConfig,
    tensors: dict[str, torch.Tensor],
    tokenizer: Tokenizer,
    shard_max_bytes: int | None = None,
) -> None:
    """Write a checkpoint folder that :func:`load_checkpoint` reads back bit-identically.

    Tensors are written in canonical order with fixed metadata, so equal inputs give equal bytes. With
    ``shard_max_bytes`` the weights are split into shards of at most that size (a tensor larger than the
    limit gets a shard of its own) and an index is written, as ``transformers`` does.
    """
    path = Path(path)
    check_tensors(config, tensors)
    path.mkdir(parents=True, exist_ok=True)
    for stale in [path / WEIGHTS_FILE, path / INDEX_FILE, *(p for p in path.iterdir() if SHARD_RE.fullmatch(p.name))]:
        stale.unlink(missing_ok=True)

    _write_json(path / CONFIG_FILE, config.to_json())
    (path / TOKENIZER_FILE).write_text(tokenizer.to_str(pretty=True), encoding="utf-8")

    ordered = {name: tensors[name].detach().contiguous() for name in expected_shapes(config)}
    if shard_max_bytes is None:
        (path / WEIGHTS_FILE).write_bytes(safetensors_save(ordered, metadata={"format": "pt"}))
        return
    shards = list(_split_shards(ordered, shard_max_bytes))
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards, start=1):
        filename = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        (path / filename).write_bytes(safetensors_save(shard, metadata={"format": "pt"}))
        weight_map.update(dict.fromkeys(shard, filename))
    total = sum(t.numel() * t.element_size() for t in ordered.values())
    _write_json(path / INDEX_FILE, {"metadata": {"total_size": total}, "weight_map": weight_map})


# --- helpers -------------------------------------------------------------------------------------


def _load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors of the folder as float32, and the file each came from."""
    if (path / WEIGHTS_FILE).is_file():
        files = {WEIGHTS_FILE: None}
    elif (path / INDEX_FILE).is_file():
        files = _read_index(path)
    else:
        raise CheckpointError(f"no {WEIGHTS_FILE} or {INDEX_FILE} in {path} (only safetensors weights are supported)")
    tensors: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for filename, listed in files.items():
        for name, tensor in _read_safetensors(path / filename):
            if listed is not None and name not in listed:
                raise CheckpointError(f"tensor {name} in {filename} is not listed in {INDEX_FILE}")
            if name in tensors:
                raise CheckpointError(f"tensor {name} appears in both {origin[name]} and {filename}")
            tensors[name], origin[name] = tensor, filename
        for name in sorted(listed or ()):
            if name not in tensors:
                raise CheckpointError(f"tensor {name} is listed in {INDEX_FILE} but missing from {filename}")
    return tensors, origin


def _read_index(path: Path) -> dict[str, set[str] | None]:
    """Map each shard file named by the index to the tensor names the index puts in it."""
    index = _read_json(path / INDEX_FILE)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{INDEX_FILE}: expected a 'weight_map' object of tensor name -> file name")
    files: dict[str, set[str] | None] = {}
    for name, filename in sorted(weight_map.items()):
        if "/" in filename or "\\" in filename or not (path / filename).is_file():
            raise CheckpointError(f"shard {filename} listed in {INDEX_FILE} is missing from {path}")
        files.setdefault(filename, set()).add(name)  # type: ignore[union-attr]
    return files


def _read_safetensors(file: Path) -> Iterator[tuple[str, torch.Tensor]]:
    try:
        with safe_open(file, framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open has no __iter__)
                if name.endswith(IGNORED_SUFFIXES):
                    continue
                tensor = f.get_tensor(name)
                if tensor.dtype not in LOADABLE_DTYPES:
                    raise CheckpointError(f"tensor {name} in {file.name} has dtype {tensor.dtype}, expected a float")
                yield name, tensor.to(torch.float32)
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises several types for truncated or garbled files
        raise CheckpointError(f"{file.name} is not a valid safetensors file: {exc}") from exc


def _drop_redundant_lm_head(config: LlamaConfig, tensors: dict[str, torch.Tensor]) -> None:
    """Tied checkpoints sometimes still store lm_head.weight; accept it when it is the embedding."""
    head, embed = tensors.get("lm_head.weight"), tensors.get("model.embed_tokens.weight")
    if config.tie_word_embeddings and head is not None and embed is not None and torch.equal(head, embed):
        del tensors["lm_head.weight"]


def _split_shards(tensors: dict[str, torch.Tensor], max_bytes: int) -> Iterator[dict[str, torch.Tensor]]:
    shard: dict[str, torch.Tensor] = {}
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shard and size + nbytes > max_bytes:
            yield shard
            shard, size = {}, 0
        shard[name] = tensor
        size += nbytes
    if shard:
        yield shard


def _load_tokenizer(file: Path) -> Tokenizer:
    if not file.is_file():
        raise CheckpointError(f"missing {file.name} in {file.parent} (sentencepiece tokenizer.model is not supported)")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as exc:
        raise CheckpointError(f"{file.name} is not a valid tokenizers file: {exc}") from exc


def _read_json(file: Path) -> Any:
    if not file.is_file():
        raise CheckpointError(f"missing {file.name} in {file.parent}")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file.name} is not valid JSON: {exc}") from exc


def _write_json(file: Path, obj: Any) -> None:
    file.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _sliding_window(raw: dict) -> int | float:
    """Mistral (and qwen2 with use_sliding_window) attend to a window of past tokens; the context is
    capped at the window, inside which full causal attention and windowed attention agree."""
    if raw.get("model_type") == "qwen2" and not raw.get("use_sliding_window"):
        return math.inf
    return math.inf if raw.get("sliding_window") is None else _int(raw, "sliding_window")


def _int(raw: dict, key: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if value is None:
        raise CheckpointError(f"{CONFIG_FILE}: missing {key}")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CheckpointError(f"{CONFIG_FILE}: {key} must be a positive integer, got {value!r}")
    return value


def _optional_int(raw: dict, key: str) -> int | None:
    value = raw.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise CheckpointError(f"{CONFIG_FILE}: {key} must be a token id, got {value!r}")
    return value


def _token_ids(raw: dict, key: str) -> tuple[int, ...]:
    """An id or a list of ids (Llama 3 lists several end-of-sequence tokens)."""
    value = raw.get(key)
    values = value if isinstance(value, list) else [value]
    ids = tuple(v for v in values if v is not None)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ids):
        raise CheckpointError(f"{CONFIG_FILE}: {key} must be a token id or a list of them, got {value!r}")
    return ids


def _float(raw: dict, key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise CheckpointError(f"{CONFIG_FILE}: {key} must be a positive number, got {value!r}")
    return float(value)


def _bool(raw: dict, key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise CheckpointError(f"{CONFIG_FILE}: {key} must be true or false, got {value!r}")
    return value
