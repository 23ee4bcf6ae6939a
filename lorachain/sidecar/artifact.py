"""The canonical quantized model artifact: one safetensors file, named and verified by its keccak256.

Converting a Hugging Face checkpoint (:func:`convert_checkpoint`) gives int8 weights with per-channel
multipliers, fixed-point norm weights and biases, the RoPE tables, and the tokenizer (in the metadata).
The artifact's hash is the model's identity on chain; every node executes the artifact, never the float
checkpoint. :func:`load_model` re-hashes the bytes, so a corrupted or substituted file is refused.

Tensor names: ``embed.q/.c/.lm_c`` (tied head) or ``lm_head.q/.c``, ``layers.{i}.{q,k,v,o,gate,up,down}.{q,c}``,
``layers.{i}.{q,k,v,o}.bias``, ``layers.{i}.{input,post}_norm``, ``norm``, ``rope.cos``, ``rope.sin``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from eth_utils import keccak
from safetensors.torch import load as safetensors_load
from tokenizers import Tokenizer

from lorachain.sidecar.canonical import canonical_safetensors
from lorachain.sidecar.checkpoint import CONFIG_FILE, INDEX_FILE, TOKENIZER_FILE, Checkpoint, LlamaConfig
from lorachain.sidecar.fixed_point import F_HIDDEN, rope_tables
from lorachain.sidecar.quantize import QuantizedMatrix, quantize_embedding, quantize_matrix, quantize_vector
from lorachain.sidecar.types import CorruptArtifactError

FORMAT = "lorachain-int8-v1"
PROJECTIONS = {
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "o": "self_attn.o_proj",
    "gate": "mlp.gate_proj",
    "up": "mlp.up_proj",
    "down": "mlp.down_proj",
}
CONVERTER_VERSION = "2"  # bump when conversion changes its output, so cached artifacts are rebuilt
DEFAULT_CACHE = Path(os.environ.get("LORACHAIN_CACHE", "~/.cache/lorachain")).expanduser()


@dataclass
class QuantizedModel:
    """A loaded artifact: config, integer tensors, matrix shifts, tokenizer and the 32-byte hash."""

    config: LlamaConfig
    tensors: dict[str, torch.Tensor]
    shifts: dict[str, int]
    tokenizer_json: str
    hash: bytes

    def matrix(self, name: str) -> QuantizedMatrix:
        return QuantizedMatrix(q=self.tensors[f"{name}.q"], c=self.tensors[f"{name}.c"], shift=self.shifts[name])

    @property
    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_str(self.tokenizer_json)

    @property
    def eps_q40(self) -> int:
        return round(self.config.rms_norm_eps * 2**40)


def convert_checkpoint(ckpt: Checkpoint) -> tuple[bytes, bytes]:
    """Quantize a loaded checkpoint; return ``(artifact bytes, hash)``. Same checkpoint, same bytes."""
    cfg, t = ckpt.config, ckpt.tensors
    out: dict[str, torch.Tensor] = {}
    shifts: dict[str, int] = {}

    def put_matrix(name: str, w: torch.Tensor) -> None:
        m = quantize_matrix(w)
        out[f"{name}.q"], out[f"{name}.c"], shifts[name] = m.q, m.c, m.shift

    embed = t["model.embed_tokens.weight"]
    out["embed.q"], out["embed.c"], shifts["embed"] = quantize_embedding(embed)
    put_matrix("lm_head", embed if cfg.tie_word_embeddings else t["lm_head.weight"])
    for i in range(cfg.num_hidden_layers):
        prefix = f"model.layers.{i}."
        for short, hf in PROJECTIONS.items():
            put_matrix(f"layers.{i}.{short}", t[prefix + hf + ".weight"])
            bias = t.get(prefix + hf + ".bias")
            if bias is not None:
                out[f"layers.{i}.{short}.bias"] = quantize_vector(bias, F_HIDDEN)
        out[f"layers.{i}.input_norm"] = quantize_vector(t[prefix + "input_layernorm.weight"])
        out[f"layers.{i}.post_norm"] = quantize_vector(t[prefix + "post_attention_layernorm.weight"])
    out["norm"] = quantize_vector(t["model.norm.weight"])
    out["rope.cos"], out["rope.sin"] = rope_tables(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta)
    metadata = {
        "format": FORMAT,
        "config": json.dumps(cfg.to_json(), sort_keys=True),
        "shifts": json.dumps(shifts, sort_keys=True),
        "tokenizer": ckpt.tokenizer.to_str(),
    }
    blob = canonical_safetensors(out, metadata)
    return blob, keccak(blob)


def parse_model(blob: bytes, expected_hash: bytes | None = None) -> QuantizedModel:
    """Decode artifact bytes; raise :class:`CorruptArtifactError` if they are not a valid artifact."""
    digest = keccak(blob)
    if expected_hash is not None and digest != expected_hash:
        raise CorruptArtifactError(f"model artifact hash 0x{digest.hex()} != expected 0x{expected_hash.hex()}")
    try:
        metadata = safetensors_metadata(blob)
        if metadata.get("format") != FORMAT:
            raise CorruptArtifactError(f"not a {FORMAT} model artifact (format {metadata.get('format')!r})")
        config = LlamaConfig.from_json(json.loads(metadata["config"]))
        shifts = {k: int(v) for k, v in json.loads(metadata["shifts"]).items()}
        tensors = safetensors_load(blob)
        tokenizer_json = metadata["tokenizer"]
    except CorruptArtifactError:
        raise
    except Exception as exc:
        raise CorruptArtifactError(f"malformed model artifact: {exc}") from exc
    return QuantizedModel(config=config, tensors=tensors, shifts=shifts, tokenizer_json=tokenizer_json, hash=digest)


def safetensors_metadata(blob: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors buffer (its JSON header)."""
    if len(blob) < 8:
        raise CorruptArtifactError("artifact is shorter than a safetensors header")
    size = int.from_bytes(blob[:8], "little")
    if size > len(blob) - 8:
        raise CorruptArtifactError("artifact header runs past the end of the file")
    return json.loads(blob[8 : 8 + size]).get("__metadata__", {})


def artifact_path(cache: Path, digest: bytes) -> Path:
    return cache / "models" / f"0x{digest.hex()}.safetensors"


def load_model(model: str | Path, cache: Path = DEFAULT_CACHE) -> QuantizedModel:
    """The artifact for ``model``: an artifact file, or a checkpoint folder (converted once, then cached)."""
    model = Path(model)
    if model.is_file():
        expected = _hash_from_name(model)
        return parse_model(model.read_bytes(), expected)
    source_key = checkpoint_fingerprint(model)
    pointer = cache / "sources" / source_key
    if pointer.is_file():
        digest = bytes.fromhex(pointer.read_text().strip().removeprefix("0x"))
        path = artifact_path(cache, digest)
        if path.is_file():
            return parse_model(path.read_bytes(), digest)
    from lorachain.sidecar.checkpoint import load_checkpoint

    blob, digest = convert_checkpoint(load_checkpoint(model))
    write_atomic(artifact_path(cache, digest), blob)
    write_atomic(pointer, f"0x{digest.hex()}\n".encode())
    return parse_model(blob, digest)


def checkpoint_fingerprint(folder: Path) -> str:
    """A cache key for a checkpoint folder: its config and tokenizer bytes, and each weight file's size and mtime."""
    h = hashlib.sha256(f"{FORMAT}/{CONVERTER_VERSION}".encode())
    for name in (CONFIG_FILE, TOKENIZER_FILE, INDEX_FILE):
        path = folder / name
        h.update(name.encode() + (path.read_bytes() if path.is_file() else b"-"))
    for path in sorted(folder.glob("*.safetensors")):
        stat = path.stat()
        h.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()


def _hash_from_name(path: Path) -> bytes | None:
    stem = path.name.removesuffix(".safetensors")
    if stem.startswith("0x") and len(stem) == 66:
        return bytes.fromhex(stem[2:])
    return None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
