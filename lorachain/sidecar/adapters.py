"""LoRA adapters: peft folders in, canonical int8 adapter artifacts out, and deterministic merging.

A peft adapter (``adapter_config.json`` + ``adapter_model.safetensors``) holds, per target module, ``A``
[r, in] and ``B`` [out, r]; the module computes ``W x + scaling * B (A x)``. The artifact keeps A and B
quantized separately (the engine applies them unmerged, so one batch can mix adapters) with the scaling
folded into B's channel multipliers. Its keccak256 is the adapter's id.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from eth_utils import keccak
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load

from lorachain.sidecar.artifact import PROJECTIONS, safetensors_metadata
from lorachain.sidecar.canonical import canonical_safetensors
from lorachain.sidecar.checkpoint import LlamaConfig
from lorachain.sidecar.quantize import QuantizedMatrix, dequantize_matrix, quantize_matrix
from lorachain.sidecar.types import CorruptArtifactError, IncompatibleAdapterError, RequestError

FORMAT = "lorachain-lora-int8-v1"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
MAX_RANK = 1024
_HF_TO_SHORT = {hf.split(".")[-1]: short for short, hf in PROJECTIONS.items()}
_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+_proj)\.lora_([AB])(?:\.[\w-]+)?\.weight$")


@dataclass
class QuantizedAdapter:
    """A loaded adapter artifact: per-module (layer, projection) A and B matrices, and its facts."""

    hash: bytes
    modules: dict[tuple[int, str], tuple[QuantizedMatrix, QuantizedMatrix]]
    rank: int
    alpha: float
    base_shape: dict[str, int]
    nbytes: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return "0x" + self.hash.hex()

    def to(self, device: torch.device | str) -> QuantizedAdapter:
        moved = {
            key: tuple(QuantizedMatrix(q=m.q.to(device), c=m.c.to(device), shift=m.shift) for m in pair)
            for key, pair in self.modules.items()
        }
        return QuantizedAdapter(self.hash, moved, self.rank, self.alpha, self.base_shape, self.nbytes, self.meta)  # type: ignore[arg-type]


def base_shape(config: LlamaConfig) -> dict[str, int]:
    """The shapes an adapter must match: checked when an adapter meets a model."""
    return {
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "intermediate": config.intermediate_size,
        "kv": config.num_key_value_heads * config.head_dim,
    }


def module_dims(shape: dict[str, int], short: str) -> tuple[int, int]:
    """(in, out) features of a projection for a base of ``shape``."""
    h, m, kv = shape["hidden"], shape["intermediate"], shape["kv"]
    return {
        "q": (h, h),
        "k": (h, kv),
        "v": (h, kv),
        "o": (h, h),
        "gate": (h, m),
        "up": (h, m),
        "down": (m, h),
    }[short]


def convert_peft(folder: Path, config: LlamaConfig) -> tuple[bytes, bytes]:
    """Quantize the peft adapter in ``folder`` for a base model of ``config``: ``(artifact bytes, hash)``."""
    folder = Path(folder)
    raw = _read_peft_config(folder)
    rank, alpha = raw.get("r"), raw.get("lora_alpha", raw.get("r"))
    if not isinstance(rank, int) or not 1 <= rank <= MAX_RANK or not isinstance(alpha, int | float) or alpha <= 0:
        raise RequestError(f"{PEFT_CONFIG}: r must be an integer in 1..{MAX_RANK} and lora_alpha positive")
    for key, bad in (("use_dora", True), ("fan_in_fan_out", True)):
        if raw.get(key) == bad:
            raise RequestError(f"{PEFT_CONFIG}: {key}={bad} is not supported")
    for key in ("rank_pattern", "alpha_pattern", "modules_to_save"):
        if raw.get(key):
            raise RequestError(f"{PEFT_CONFIG}: {key} is not supported")
    if raw.get("bias", "none") != "none":
        raise RequestError(f"{PEFT_CONFIG}: bias={raw['bias']!r} is not supported (only 'none')")
    scaling = alpha / math.sqrt(rank) if raw.get("use_rslora") else alpha / rank

    tensors = _read_peft_weights(folder / PEFT_WEIGHTS)
    shape = base_shape(config)
    pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        match = _KEY.search(name)
        if not match or match.group(2) not in _HF_TO_SHORT:
            raise IncompatibleAdapterError(f"adapter tensor {name} does not target a Llama projection")
        layer, short = int(match.group(1)), _HF_TO_SHORT[match.group(2)]
        pairs.setdefault((layer, short), {})[match.group(3)] = tensor
    if not pairs:
        raise IncompatibleAdapterError(f"{PEFT_WEIGHTS} holds no LoRA tensors")
    modules = {}
    for (layer, short), ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise IncompatibleAdapterError(f"layer {layer} {short}_proj has lora_A without lora_B or the reverse")
        _check_module(shape, layer, short, ab["A"], ab["B"])
        modules[(layer, short)] = (quantize_matrix(ab["A"]), quantize_matrix(ab["B"], multiplier=scaling))
    return encode_adapter(modules, rank=rank, alpha=float(alpha), shape=shape)


def encode_adapter(
    modules: dict[tuple[int, str], tuple[QuantizedMatrix, QuantizedMatrix]], *, rank: int, alpha: float, shape: dict
) -> tuple[bytes, bytes]:
    """Serialize quantized modules as an adapter artifact: ``(bytes, keccak256)``."""
    out: dict[str, torch.Tensor] = {}
    shifts: dict[str, int] = {}
    for (layer, short), (a, b) in sorted(modules.items()):
        for part, m in (("A", a), ("B", b)):
            name = f"layers.{layer}.{short}.{part}"
            out[f"{name}.q"], out[f"{name}.c"], shifts[name] = m.q.contiguous(), m.c.contiguous(), m.shift
    metadata = {
        "format": FORMAT,
        "rank": str(rank),
        "alpha": repr(alpha),
        "base_shape": json.dumps(shape, sort_keys=True),
        "shifts": json.dumps(shifts, sort_keys=True),
    }
    blob = canonical_safetensors(out, metadata)
    return blob, keccak(blob)


def parse_adapter(blob: bytes, expected_hash: bytes | None = None) -> QuantizedAdapter:
    """Decode adapter artifact bytes, verifying the hash; :class:`CorruptArtifactError` if invalid."""
    digest = keccak(blob)
    if expected_hash is not None and digest != expected_hash:
        raise CorruptArtifactError(f"adapter artifact hash 0x{digest.hex()} != expected 0x{expected_hash.hex()}")
    try:
        meta = safetensors_metadata(blob)
        if meta.get("format") != FORMAT:
            raise CorruptArtifactError(f"not a {FORMAT} adapter artifact (format {meta.get('format')!r})")
        shifts = json.loads(meta["shifts"])
        tensors = safetensors_load(blob)
        modules = {}
        for name, shift in shifts.items():
            if not name.endswith(".A"):
                continue
            _, layer, short, _ = name.split(".")
            b_name = name[:-1] + "B"
            a = QuantizedMatrix(tensors[f"{name}.q"], tensors[f"{name}.c"], int(shift))
            b = QuantizedMatrix(tensors[f"{b_name}.q"], tensors[f"{b_name}.c"], int(shifts[b_name]))
            modules[(int(layer), short)] = (a, b)
        shape = json.loads(meta["base_shape"])
        for (layer, short), (a, b) in modules.items():
            _check_module(shape, layer, short, a.q, b.q)
        return QuantizedAdapter(
            hash=digest,
            modules=modules,
            rank=int(meta["rank"]),
            alpha=float(meta["alpha"]),
            base_shape=shape,
            nbytes=len(blob),
        )
    except (CorruptArtifactError, IncompatibleAdapterError):
        raise
    except Exception as exc:
        raise CorruptArtifactError(f"malformed adapter artifact: {exc}") from exc


def merge_adapters(adapters: list[QuantizedAdapter], weights_milli: list[int]) -> tuple[bytes, bytes]:
    """The weighted sum ``sum_i w_i * B_i A_i`` as one adapter (A stacked, B side by side): deterministic.

    The merged rank is the sum of the ranks, so the merge is exact up to the final re-quantization.
    """
    if not adapters or len(adapters) != len(weights_milli):
        raise RequestError("merge needs one weight per adapter and at least one adapter")
    if any(not -100_000 <= w <= 100_000 for w in weights_milli):
        raise RequestError("merge weights (milli) must lie in -100000..100000")
    shape = adapters[0].base_shape
    if any(a.base_shape != shape for a in adapters):
        raise IncompatibleAdapterError("adapters to merge were made for different base shapes")
    keys = sorted({key for a in adapters for key in a.modules})
    modules = {}
    for key in keys:
        blocks_a, blocks_b = [], []
        for adapter, w in zip(adapters, weights_milli, strict=True):
            pair = adapter.modules.get(key)
            if pair is None:
                continue
            blocks_a.append(dequantize_matrix(pair[0]))
            blocks_b.append(dequantize_matrix(pair[1]) * (w / 1000))
        modules[key] = (quantize_matrix(torch.cat(blocks_a, 0)), quantize_matrix(torch.cat(blocks_b, 1)))
    rank = max(a.q.shape[0] for a, _ in modules.values())
    if rank > MAX_RANK:
        raise RequestError(f"merged rank {rank} exceeds {MAX_RANK}")
    return encode_adapter(modules, rank=rank, alpha=float(rank), shape=shape)


def check_compatible(adapter: QuantizedAdapter, config: LlamaConfig) -> None:
    if adapter.base_shape != base_shape(config):
        raise IncompatibleAdapterError(
            f"adapter {adapter.id} was made for a base of shape {adapter.base_shape}, "
            f"this model is {base_shape(config)}"
        )


def _check_module(shape: dict, layer: int, short: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if not 0 <= layer < shape["layers"]:
        raise IncompatibleAdapterError(f"adapter targets layer {layer}; the base model has {shape['layers']}")
    fan_in, fan_out = module_dims(shape, short)
    r = a.shape[0]
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != fan_in or tuple(b.shape) != (fan_out, r) or r > MAX_RANK:
        raise IncompatibleAdapterError(
            f"layer {layer} {short}_proj: lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not fit "
            f"a [{fan_out} x {fan_in}] projection"
        )


def _read_peft_config(folder: Path) -> dict:
    path = folder / PEFT_CONFIG
    if not path.is_file():
        raise RequestError(f"no {PEFT_CONFIG} in {folder}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"{PEFT_CONFIG} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("peft_type", "LORA") != "LORA":
        raise RequestError(f"{PEFT_CONFIG}: not a LoRA adapter")
    return raw


def _read_peft_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise RequestError(f"no {PEFT_WEIGHTS} in {path.parent}")
    try:
        tensors = safetensors_load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as exc:
        raise CorruptArtifactError(f"{PEFT_WEIGHTS} is not a valid safetensors file: {exc}") from exc
    bad = [n for n, t in tensors.items() if not t.is_floating_point() or not torch.isfinite(t).all()]
    if bad:
        raise CorruptArtifactError(f"{PEFT_WEIGHTS}: tensor {bad[0]} is not finite floating point")
    return tensors
