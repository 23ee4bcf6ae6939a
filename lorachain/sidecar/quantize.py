"""Float tensors to the exact engine's integers: per-output-channel int8 weights and fixed-point vectors.

Quantization runs once, when a checkpoint or adapter is converted into an artifact; the engine only ever
reads the integers. It uses element-wise float64 operations (correctly rounded under IEEE 754 on every
machine) and maxima, never reductions whose order could matter, so a checkpoint converts to the same
bytes everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lorachain.sidecar.fixed_point import F_GAMMA, F_HIDDEN, INT8_MAX

SCALE_BITS = 22  # the largest channel multiplier of a matrix lies in [2^22, 2^23)


@dataclass(frozen=True)
class QuantizedMatrix:
    """``W[j] ~= q[j] * c[j] * 2^-shift * 16129 / 2^F_HIDDEN``: the layout :func:`requantize` reads.

    ``q`` int8 [N, K]; ``c`` int64 [N]; for activations ``x = qx * m * 2^e / 127`` (F_HIDDEN), the product
    ``x @ W.T`` in F_HIDDEN is ``(qx @ q.T) * c * m * 2^(e - shift)``.
    """

    q: torch.Tensor
    c: torch.Tensor
    shift: int


def quantize_matrix(w: torch.Tensor, multiplier: float = 1.0) -> QuantizedMatrix:
    """Symmetric int8 per output row of ``w`` [N, K]; ``multiplier`` scales the represented matrix."""
    w64 = w.detach().to(torch.float64)
    amax = w64.abs().amax(dim=1)
    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
    q = torch.round(w64 * INT8_MAX / safe[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    # W = q * amax / 127; with x = qx * s / 127 in F_HIDDEN the product in F_HIDDEN is acc * s * amax / 127^2.
    real = amax * multiplier / (INT8_MAX * INT8_MAX)
    top = float(real.max()) if real.numel() else 0.0
    shift = SCALE_BITS - math.frexp(top)[1] + 1 if top > 0 else 0
    c = torch.round(real * 2.0**shift).to(torch.int64)
    return QuantizedMatrix(q=q, c=c, shift=shift)


def quantize_embedding(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-row int8 embedding table: ``h = round(q * c / 2^shift)`` is the row in F_HIDDEN."""
    w64 = w.detach().to(torch.float64)
    amax = w64.abs().amax(dim=1)
    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
    q = torch.round(w64 * INT8_MAX / safe[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    real = amax * (1 << F_HIDDEN) / INT8_MAX
    top = float(real.max()) if real.numel() else 0.0
    shift = SCALE_BITS - math.frexp(top)[1] + 1 if top > 0 else 0
    return q, torch.round(real * 2.0**shift).to(torch.int64), shift


def quantize_vector(v: torch.Tensor, frac_bits: int = F_GAMMA) -> torch.Tensor:
    """A float vector (norm weights, biases) in fixed point with ``frac_bits`` fractional bits."""
    return torch.round(v.detach().to(torch.float64) * (1 << frac_bits)).to(torch.int64)


def dequantize_matrix(m: QuantizedMatrix) -> torch.Tensor:
    """The float64 matrix ``m`` represents (exact: every step is a power-of-two or small-integer product)."""
    return m.q.to(torch.float64) * (m.c.to(torch.float64) * 2.0**-m.shift * INT8_MAX)[:, None]
