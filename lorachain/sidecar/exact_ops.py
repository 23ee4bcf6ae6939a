"""The exact engine's element-wise steps, behind one interface with two implementations.

:class:`TorchOps` composes the torch functions of :mod:`lorachain.sidecar.fixed_point` (the definition; any
device). :class:`NumbaOps` runs the same integer arithmetic as fused CPU kernels
(:mod:`lorachain.sidecar.cpu_kernels`), several times faster for the small batches of decoding. Both give
the same integers; the engine picks NumbaOps on CPU unless ``LORACHAIN_EXACT_OPS=torch``.
"""

from __future__ import annotations

import os

import torch

from lorachain.sidecar.fixed_point import (
    F_HIDDEN,
    F_QKV,
    HIDDEN_LIMIT,
    QKV_LIMIT,
    apply_rope,
    quantize_rows,
    rms_norm,
    rshift_round,
    silu_mul,
)

Quantized = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # q, mantissa [M, 1], exponent [M, 1]


def requantize(acc: torch.Tensor, c: torch.Tensor, shift, mantissa: torch.Tensor, exponent: torch.Tensor):
    """``acc * c * mantissa * 2^(exponent - shift)`` rounded, in two steps that stay inside int64.

    ``acc`` is an int8 x int8 dot product, ``c``/``shift`` the weight's channel multipliers, and
    ``mantissa``/``exponent`` the row scale of the quantized activations (see ``quantize_rows``).
    """
    return rshift_round(rshift_round(acc.to(torch.int64) * c, 16) * mantissa, shift - 16 - exponent)


class TorchOps:
    """Reference implementation: torch int64 tensor operations on any device."""

    name = "torch"

    def norm_quantize(self, h: torch.Tensor, gamma: torch.Tensor, eps_q40: int) -> Quantized:
        return quantize_rows(rms_norm(h, gamma, eps_q40))

    def quantize(self, x: torch.Tensor) -> Quantized:
        return quantize_rows(x)

    def requant(self, acc, c, shift: int, m, e, bias=None, delta=None) -> torch.Tensor:
        y = requantize(acc, c, shift, m, e)
        if bias is not None:
            y = y + bias
        if delta is not None:
            y = y + delta
        return y

    def residual_add(self, x, acc, c, shift: int, m, e, bias=None, delta=None) -> torch.Tensor:
        return (x + self.requant(acc, c, shift, m, e, bias, delta)).clamp(-HIDDEN_LIMIT, HIDDEN_LIMIT)

    def to_heads(self, y, cos_table, sin_table, positions, head_dim: int, rotate: bool) -> torch.Tensor:
        out = rshift_round(y, F_HIDDEN - F_QKV).clamp(-QKV_LIMIT, QKV_LIMIT).view(y.shape[0], -1, head_dim)
        if rotate:
            cos, sin = cos_table[positions][:, None, :], sin_table[positions][:, None, :]
            out = apply_rope(out, cos, sin).clamp(-QKV_LIMIT, QKV_LIMIT)
        return out

    def silu_quantize(self, gate: torch.Tensor, up: torch.Tensor) -> Quantized:
        return quantize_rows(silu_mul(gate, up))


_EMPTY_VEC = torch.empty(0, dtype=torch.int64)
_EMPTY_MAT = torch.empty(0, 0, dtype=torch.int64)


class NumbaOps:
    """The same arithmetic as fused numba kernels on CPU tensors (q comes out as float32 for the GEMM)."""

    name = "numba"

    def __init__(self) -> None:
        from lorachain.sidecar import cpu_kernels

        self.k = cpu_kernels

    @staticmethod
    def _outputs(rows: int, cols: int) -> Quantized:
        return (
            torch.empty(rows, cols, dtype=torch.float32),
            torch.empty(rows, 1, dtype=torch.int64),
            torch.empty(rows, 1, dtype=torch.int64),
        )

    def norm_quantize(self, h, gamma, eps_q40: int) -> Quantized:
        q, m, e = self._outputs(*h.shape)
        self.k.norm_quantize(h.numpy(), gamma.numpy(), eps_q40, q.numpy(), m.numpy(), e.numpy())
        return q, m, e

    def quantize(self, x) -> Quantized:
        q, m, e = self._outputs(*x.shape)
        self.k.quantize(x.contiguous().numpy(), q.numpy(), m.numpy(), e.numpy())
        return q, m, e

    def requant(self, acc, c, shift: int, m, e, bias=None, delta=None) -> torch.Tensor:
        out = torch.empty(acc.shape, dtype=torch.int64)
        self.k.requant(acc.numpy(), c.numpy(), shift, m.numpy(), e.numpy(), _vec(bias), _mat(delta), out.numpy())
        return out

    def residual_add(self, x, acc, c, shift: int, m, e, bias=None, delta=None) -> torch.Tensor:
        self.k.residual_add(x.numpy(), acc.numpy(), c.numpy(), shift, m.numpy(), e.numpy(), _vec(bias), _mat(delta))
        return x

    def to_heads(self, y, cos_table, sin_table, positions, head_dim: int, rotate: bool) -> torch.Tensor:
        out = torch.empty(y.shape[0], y.shape[1] // head_dim, head_dim, dtype=torch.int64)
        self.k.to_heads(y.numpy(), cos_table.numpy(), sin_table.numpy(), positions.numpy(), head_dim, rotate,
                        out.numpy())  # fmt: skip
        return out

    def silu_quantize(self, gate, up) -> Quantized:
        q, m, e = self._outputs(*gate.shape)
        self.k.silu_quantize(gate.numpy(), up.numpy(), q.numpy(), m.numpy(), e.numpy())
        return q, m, e


def _vec(t: torch.Tensor | None):
    return (_EMPTY_VEC if t is None else t).numpy()


def _mat(t: torch.Tensor | None):
    return (_EMPTY_MAT if t is None else t.contiguous()).numpy()


def select_ops(device: torch.device) -> TorchOps | NumbaOps:
    """NumbaOps on CPU (unless ``LORACHAIN_EXACT_OPS=torch`` or numba is missing), TorchOps elsewhere."""
    choice = os.environ.get("LORACHAIN_EXACT_OPS", "auto")
    if device.type == "cpu" and choice in ("auto", "numba"):
        try:
            return NumbaOps()
        except ImportError:
            if choice == "numba":
                raise
    return TorchOps()
