"""The exact engine's element-wise steps, behind one interface with two implementations.

:class:`TorchOps` composes the torch functions of :mod:`lorachain.sidecar.fixed_point` (the definition; any
device). :class:`NumbaOps` runs the same integer arithmetic as fused CPU kernels
(:mod:`lorachain.sidecar.cpu_kernels`), several times faster for the small batches of decoding. Both give
the same integers; the engine picks NumbaOps on CPU unless ``LORACHAIN_EXACT_OPS=torch``.
"""

from __future__ import annotations

import os

import torch

from lorachain.sidecar.exact_matmul import exact_f64_matmul
from lorachain.sidecar.fixed_point import (
    F_HIDDEN,
    F_PROB,
    F_QKV,
    HIDDEN_LIMIT,
    QKV_LIMIT,
    apply_rope,
    div_round,
    quantize_rows,
    rms_norm,
    rshift_round,
    silu_mul,
    softmax_weights,
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

    def requant_heads(self, acc, c, shift, m, e, bias, delta, cos, sin, positions, head_dim, rotate) -> torch.Tensor:
        """A q/k/v projection's GEMM result straight to (rotated) F_QKV heads."""
        return self.to_heads(self.requant(acc, c, shift, m, e, bias, delta), cos, sin, positions, head_dim, rotate)

    def store_kv(self, keys, values, layer: int, slots, positions, k, v) -> None:
        """Write each row's key and value heads [M, kv, d] into the pool at (its slot, ``layer``, its position)."""
        keys[slots, layer, :, positions] = k.to(keys.dtype)
        values[slots, layer, :, positions] = v.to(values.dtype)

    def mlp_quantize(self, gate: tuple, up: tuple, m, e) -> Quantized:
        """``(acc, c, shift, delta)`` of the gate and up projections -> quantized ``silu(gate) * up``."""
        (acc_g, c_g, shift_g, delta_g), (acc_u, c_u, shift_u, delta_u) = gate, up
        g = self.requant(acc_g, c_g, shift_g, m, e, None, delta_g)
        u = self.requant(acc_u, c_u, shift_u, m, e, None, delta_u)
        return self.silu_quantize(g, u)

    def lora_mid(self, acc, slots, a_c, a_shift, m, e, n_slots: int, rank: int) -> Quantized:
        """From ``x @ A_all.T`` [M, slots * r] to the B GEMM's input: each row keeps its own slot's r values,
        requantized with its adapter's A multipliers and quantized per row, in an otherwise zero row."""
        rows = torch.arange(acc.shape[0], device=acc.device)
        own = acc.view(-1, n_slots, rank)[rows, slots]  # [M, r]
        t = requantize(own, a_c[slots], a_shift[slots][:, None], m, e)
        qt, mt, et = quantize_rows(t)
        sparse = torch.zeros(acc.shape[0], n_slots, rank, dtype=torch.int64, device=acc.device)
        sparse[rows, slots] = qt
        return sparse.view(acc.shape[0], -1), mt, et

    def lora_out(self, acc, slots, b_c, b_shift, m, e) -> torch.Tensor:
        """The LoRA term of each row from ``t_sparse @ B_all.T``, with its own adapter's B multipliers."""
        return requantize(acc, b_c[slots], b_shift[slots][:, None], m, e)

    def lora_delta(self, qx, slots, module, m, e, mm) -> torch.Tensor:
        """``scaling * B (A x)`` per row with the row's own adapter: two segmented GEMMs over all adapters."""
        a_all, a_c, a_shift, b_all, b_c, b_shift, n_slots, rank = module[:8]
        sparse, mt, et = self.lora_mid(mm.product(qx, a_all), slots, a_c, a_shift, m, e, n_slots, rank)
        return self.lora_out(mm.product(sparse, b_all), slots, b_c, b_shift, mt, et)

    def attend(self, q, keys, values, layer: int, slots, positions, group: int, multiplier: int) -> torch.Tensor:
        """Causal attention of each row over its own sequence's cache: q [M, heads, d] -> [M, heads * d].

        Row i attends to positions 0..positions[i] of slot slots[i] (its own key included). Scores are exact
        integer dot products (F_QKV^2), turned into base-2 exponents by ``multiplier`` = log2(e)/sqrt(d) in
        F_EXP; softmax weights come from the exp2 table, probabilities are F_PROB integers, and the weighted
        sum of values is exact before rounding to F_HIDDEN. Positions past a row's end get weight 0.
        """
        rows, heads, head_dim = q.shape
        longest = int(positions.max()) + 1
        k = keys[slots, layer, :, :longest].to(torch.int64)  # [M, kv, L, d]
        v = values[slots, layer, :, :longest].to(torch.int64)
        qg = q.view(rows, -1, group, head_dim)  # [M, kv, group, d]
        scores = exact_f64_matmul(qg, k.transpose(2, 3))  # [M, kv, group, L]
        log2_units = rshift_round(scores * multiplier, 2 * F_QKV)
        valid = (torch.arange(longest, device=q.device)[None, :] <= positions[:, None])[:, None, None, :]
        weights = softmax_weights(log2_units, valid)
        probs = div_round(weights << F_PROB, weights.sum(-1, keepdim=True))
        out = rshift_round(exact_f64_matmul(probs, v), F_PROB + F_QKV - F_HIDDEN)  # [M, kv, group, d]
        return out.reshape(rows, heads * head_dim)


_EMPTY_VEC = torch.empty(0, dtype=torch.int64)
_EMPTY_MAT = torch.empty(0, 0, dtype=torch.int64)


class NumbaOps:
    """The same arithmetic as fused numba kernels on CPU tensors (q comes out as float32 for the GEMM)."""

    name = "numba"

    def __init__(self, q_dtype: torch.dtype = torch.float32) -> None:
        from lorachain.sidecar import cpu_kernels

        self.k = cpu_kernels
        self.q_dtype = q_dtype  # the dtype the GEMM takes, so quantized activations need no conversion

    def _outputs(self, rows: int, cols: int) -> Quantized:
        return (
            torch.empty(rows, cols, dtype=self.q_dtype),
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

    def requant_heads(self, acc, c, shift, m, e, bias, delta, cos, sin, positions, head_dim, rotate) -> torch.Tensor:
        out = torch.empty(acc.shape[0], acc.shape[1] // head_dim, head_dim, dtype=torch.int64)
        self.k.requant_heads(acc.numpy(), c.numpy(), shift, m.numpy(), e.numpy(), _vec(bias), _mat(delta), cos.numpy(),
                             sin.numpy(), positions.numpy(), head_dim, rotate, out.numpy())  # fmt: skip
        return out

    def store_kv(self, keys, values, layer: int, slots, positions, k, v) -> None:
        self.k.store_kv(keys.numpy(), values.numpy(), layer, slots.numpy(), positions.numpy(), k.numpy(), v.numpy())

    def mlp_quantize(self, gate: tuple, up: tuple, m, e) -> Quantized:
        (acc_g, c_g, shift_g, delta_g), (acc_u, c_u, shift_u, delta_u) = gate, up
        q, m_out, e_out = self._outputs(*acc_g.shape)
        self.k.mlp_quantize(acc_g.numpy(), c_g.numpy(), shift_g, _mat(delta_g), acc_u.numpy(), c_u.numpy(), shift_u,
                            _mat(delta_u), m.numpy(), e.numpy(), q.numpy(), m_out.numpy(), e_out.numpy())  # fmt: skip
        return q, m_out, e_out

    def lora_mid(self, acc, slots, a_c, a_shift, m, e, n_slots: int, rank: int) -> Quantized:
        sparse, mt, et = self._outputs(acc.shape[0], n_slots * rank)
        self.k.lora_mid(acc.numpy(), slots.numpy(), a_c.numpy(), a_shift.numpy(), m.numpy(), e.numpy(), n_slots, rank,
                        sparse.numpy(), mt.numpy(), et.numpy())  # fmt: skip
        return sparse, mt, et

    def lora_out(self, acc, slots, b_c, b_shift, m, e) -> torch.Tensor:
        out = torch.empty(acc.shape, dtype=torch.int64)
        self.k.lora_out(acc.numpy(), slots.numpy(), b_c.numpy(), b_shift.numpy(), m.numpy(), e.numpy(), out.numpy())
        return out

    def lora_delta(self, qx, slots, module, m, e, mm) -> torch.Tensor:
        """The same integers by a per-row kernel that touches only the row's own adapter."""
        a_all, a_c, a_shift, _, b_c, b_shift, n_slots, rank, b_rows = module
        out = torch.empty(qx.shape[0], b_rows.shape[2], dtype=torch.int64)
        a_q = a_all.view(n_slots, rank, -1)
        self.k.lora_rows(qx.contiguous().numpy(), slots.numpy(), a_q.numpy(), a_c.numpy(), a_shift.numpy(),
                         m.numpy(), e.numpy(), b_rows.numpy(), b_c.numpy(), b_shift.numpy(), out.numpy())  # fmt: skip
        return out

    def attend(self, q, keys, values, layer: int, slots, positions, group: int, multiplier: int) -> torch.Tensor:
        out = torch.empty(q.shape[0], q.shape[1] * q.shape[2], dtype=torch.int64)
        self.k.attend(q.contiguous().numpy(), keys.numpy(), values.numpy(), layer, slots.numpy(), positions.numpy(),
                      group, multiplier, out.numpy())  # fmt: skip
        return out


def _vec(t: torch.Tensor | None):
    return (_EMPTY_VEC if t is None else t).numpy()


def _mat(t: torch.Tensor | None):
    return (_EMPTY_MAT if t is None else t.contiguous()).numpy()


def select_ops(device: torch.device, q_dtype: torch.dtype = torch.float32) -> TorchOps | NumbaOps:
    """NumbaOps on CPU (unless ``LORACHAIN_EXACT_OPS=torch`` or numba is missing), TorchOps elsewhere.
    ``q_dtype``: the dtype the GEMM takes quantized activations in."""
    choice = os.environ.get("LORACHAIN_EXACT_OPS", "auto")
    if device.type == "cpu" and choice in ("auto", "numba"):
        try:
            return NumbaOps(q_dtype)
        except ImportError:
            if choice == "numba":
                raise
    return TorchOps()
