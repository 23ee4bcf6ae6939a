"""Canonical safetensors bytes: the same tensors and metadata always serialize to the same bytes.

``safetensors`` writes its ``__metadata__`` map in hash-map order, which changes from process to process;
artifacts are named by the keccak256 of their bytes, so the header is rewritten as sorted, compact JSON
(padded with spaces to a multiple of 8 bytes, as the format allows). The tensor data is untouched.
"""

from __future__ import annotations

import json

import torch
from safetensors.torch import save as safetensors_save


def canonical_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    raw = safetensors_save({k: v.contiguous() for k, v in sorted(tensors.items())}, metadata=metadata)
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + size :]
