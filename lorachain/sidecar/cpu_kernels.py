"""Fused CPU kernels (numba) for the exact engine's element-wise integer steps.

Each kernel computes, in one pass over a row, exactly the integers that a chain of functions of
:mod:`lorachain.sidecar.fixed_point` computes with many small torch operations; the torch functions stay
the definition (and run on GPUs), and ``tests/test_cpu_kernels.py`` checks the two agree bit for bit on
random and extreme inputs. Integer arithmetic in numba is int64 with Python's floor division and
arithmetic shifts, the same rules as torch's int64 tensors.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from lorachain.sidecar.fixed_point import (
    EXP2_TABLE,
    EXP_LUT_BITS,
    F_EXP,
    F_HIDDEN,
    F_PROB,
    F_QKV,
    F_ROPE,
    HIDDEN_LIMIT,
    INT8_MAX,
    LOG2E,
    MLP_LIMIT,
    QKV_LIMIT,
    SCALE_MANTISSA_BITS,
)

# The OpenMP layer shares torch's OpenMP runtime; numba's own workqueue threads fight torch's GEMM threads
# for the cores (measured: 2x slower decoding on 2 cores).
if numba.config.THREADING_LAYER == "default":
    try:
        from numba.np.ufunc import omppool  # noqa: F401 (only probing that the layer loads)

        numba.config.THREADING_LAYER = "omp"
    except ImportError:
        pass

_EXP2 = EXP2_TABLE.numpy().copy()


def _sigmoid_table() -> np.ndarray:
    """``[whole, frac] -> round(2^32 / (2^16 + exp2_table[frac] >> whole))``: the positive-side sigmoid of
    :func:`lorachain.sidecar.fixed_point.sigmoid` for every exp2 input it can see, so the kernels look the
    quotient up instead of dividing. Past the last row the exponential is 0 and the quotient is 2^16."""
    one = 1 << F_EXP
    rows = int(_EXP2.max()).bit_length() + 1
    table = np.empty((rows, _EXP2.shape[0]), dtype=np.int64)
    for whole in range(rows):
        den = one + (_EXP2.astype(np.int64) >> whole)
        table[whole] = (2 * (1 << (2 * F_EXP)) + den) // (2 * den)
    assert table[-1].min() == table[-1].max() == one  # the exponential is 0 from here on
    return table


_SIGMOID = _sigmoid_table()
_CACHE = {"cache": True, "nogil": True}
_PARALLEL = {"cache": True, "nogil": True, "parallel": True}


@njit(**_CACHE)
def _rshift_round(x: int, s: int) -> int:
    if s <= 0:
        return x << -s
    return (x + (1 << (s - 1))) >> s


@njit(**_CACHE)
def _div_round(num: int, den: int) -> int:
    """``floor((2 num + den) / (2 den))`` for den > 0, exactly: a float64 quotient as the first guess (64-bit
    integer division is the slowest instruction in these kernels), then integer steps to the exact value."""
    top, bottom = 2 * num + den, 2 * den
    q = np.int64(math.floor(np.float64(top) / np.float64(bottom)))
    while q * bottom > top:
        q -= 1
    while (q + 1) * bottom <= top:
        q += 1
    return q


@njit(**_CACHE)
def _div_round_by(num: int, den: int, half_inverse: float) -> int:
    """:func:`_div_round` with ``half_inverse = 0.5 / den`` precomputed for a divisor shared by many
    numerators: the first guess multiplies instead of dividing; the integer steps make it exact."""
    top, bottom = 2 * num + den, 2 * den
    q = np.int64(math.floor(np.float64(top) * half_inverse))
    while q * bottom > top:
        q -= 1
    while (q + 1) * bottom <= top:
        q += 1
    return q


@njit(**_CACHE)
def _bit_length(x: int) -> int:
    n = 0
    while x > 0:
        x >>= 1
        n += 1
    return n


@njit(**_CACHE)
def _isqrt(x: int) -> int:
    r = np.int64(math.sqrt(np.float64(x)))
    if r * r > x:
        r -= 1
    if r * r > x:
        r -= 1
    if (r + 1) * (r + 1) <= x:
        r += 1
    if (r + 1) * (r + 1) <= x:
        r += 1
    return r


@njit(**_CACHE)
def _clamp(x: int, limit: int) -> int:
    return min(max(x, -limit), limit)


@njit(**_CACHE)
def _quantize_row(y, q_out, row: int, m_out, e_out) -> None:
    """quantize_rows for one row of int64 ``y`` into float32 ``q_out[row]``."""
    amax = 1
    for j in range(y.shape[0]):
        amax = max(amax, abs(y[j]))
    e = max(_bit_length(amax) - SCALE_MANTISSA_BITS, 0)
    m = -((-amax) >> e)
    scale = m << e
    half_inverse = 0.5 / np.float64(scale)
    for j in range(y.shape[0]):
        q_out[row, j] = _clamp(_div_round_by(y[j] * INT8_MAX, scale, half_inverse), INT8_MAX)
    m_out[row, 0] = m
    e_out[row, 0] = e


@njit(**_PARALLEL)
def quantize(x, q_out, m_out, e_out) -> None:
    """``quantize_rows(x)`` with q as float32 (ready for the exact GEMM)."""
    for row in prange(x.shape[0]):
        _quantize_row(x[row], q_out, row, m_out, e_out)


@njit(**_PARALLEL)
def norm_quantize(h, gamma, eps_q40: int, q_out, m_out, e_out) -> None:
    """``quantize_rows(rms_norm(h, gamma, eps_q40))``."""
    dim = h.shape[1]
    for row in prange(h.shape[0]):
        y = np.empty(dim, dtype=np.int64)
        amax = 0
        for j in range(dim):
            amax = max(amax, abs(h[row, j]))
        k = _bit_length(amax) - 24
        ss = 0
        for j in range(dim):
            v = _rshift_round(h[row, j], k)
            ss += v * v
        mean_sq = ss // dim
        eps = _rshift_round(eps_q40, 40 - 2 * F_HIDDEN + 2 * k)
        rms = max(_isqrt(mean_sq + eps), 1)
        den = rms << max(k, 0)
        half_inverse = 0.5 / np.float64(den)
        for j in range(dim):
            num = _rshift_round(h[row, j] * gamma[j], min(k, 0))
            y[j] = _clamp(_div_round_by(num, den, half_inverse), HIDDEN_LIMIT)
        _quantize_row(y, q_out, row, m_out, e_out)


@njit(**_CACHE)
def _requant(acc: float, c: int, shift: int, m: int, e: int) -> int:
    return _rshift_round(_rshift_round(np.int64(acc) * c, 16) * m, shift - 16 - e)


@njit(**_PARALLEL)
def requant(acc, c, shift: int, m, e, bias, delta, out) -> None:
    """``requantize(acc, c, shift, m, e) (+ bias) (+ delta)`` into int64 ``out``; bias/delta may be empty."""
    has_bias, has_delta = bias.shape[0] > 0, delta.shape[0] > 0
    for row in prange(acc.shape[0]):
        for j in range(acc.shape[1]):
            y = _requant(acc[row, j], c[j], shift, m[row, 0], e[row, 0])
            if has_bias:
                y += bias[j]
            if has_delta:
                y += delta[row, j]
            out[row, j] = y


@njit(**_PARALLEL)
def residual_add(x, acc, c, shift: int, m, e, bias, delta) -> None:
    """``x = clamp(x + requantize(...) (+ bias) (+ delta))`` in place."""
    has_bias, has_delta = bias.shape[0] > 0, delta.shape[0] > 0
    for row in prange(acc.shape[0]):
        for j in range(acc.shape[1]):
            y = _requant(acc[row, j], c[j], shift, m[row, 0], e[row, 0])
            if has_bias:
                y += bias[j]
            if has_delta:
                y += delta[row, j]
            x[row, j] = _clamp(x[row, j] + y, HIDDEN_LIMIT)


@njit(**_PARALLEL)
def to_heads(y, cos, sin, positions, head_dim: int, rotate: bool, out) -> None:
    """F_HIDDEN projections -> clamped F_QKV heads, rotated by RoPE at ``positions`` when ``rotate``."""
    half = head_dim // 2
    heads = y.shape[1] // head_dim
    for row in prange(y.shape[0]):
        pos = positions[row]
        for h in range(heads):
            base = h * head_dim
            for j in range(head_dim):
                out[row, h, j] = _clamp(_rshift_round(y[row, base + j], F_HIDDEN - F_QKV), QKV_LIMIT)
            if rotate:
                for j in range(half):
                    x1, x2 = out[row, h, j], out[row, h, j + half]
                    cj, sj = cos[pos, j], sin[pos, j]
                    out[row, h, j] = _clamp(_rshift_round(x1 * cj - x2 * sj, F_ROPE), QKV_LIMIT)
                    out[row, h, j + half] = _clamp(_rshift_round(x2 * cj + x1 * sj, F_ROPE), QKV_LIMIT)


@njit(**_CACHE)
def _exp2_neg(d: int) -> int:
    whole = min(d >> F_EXP, 62)
    frac = (d & ((1 << F_EXP) - 1)) >> (F_EXP - EXP_LUT_BITS)
    return _EXP2[frac] >> whole


@njit(**_CACHE)
def _silu_mul(gate: int, up: int) -> int:
    """``silu_mul`` of one F_HIDDEN gate/up pair (see :func:`lorachain.sidecar.fixed_point.silu_mul`)."""
    g = _clamp(gate, MLP_LIMIT)
    u = _clamp(up, MLP_LIMIT)
    d = _rshift_round(abs(g) * LOG2E, F_HIDDEN)
    whole = min(d >> F_EXP, _SIGMOID.shape[0] - 1)
    positive = _SIGMOID[whole, (d & ((1 << F_EXP) - 1)) >> (F_EXP - EXP_LUT_BITS)]
    sig = positive if g >= 0 else (1 << F_EXP) - positive
    silu = _rshift_round(g * sig, F_EXP)
    return _clamp(_rshift_round(silu * u, F_HIDDEN), HIDDEN_LIMIT)


@njit(**_PARALLEL)
def silu_quantize(gate, up, q_out, m_out, e_out) -> None:
    """``quantize_rows(silu_mul(gate, up))`` for F_HIDDEN int64 gate and up."""
    for row in prange(gate.shape[0]):
        y = np.empty(gate.shape[1], dtype=np.int64)
        for j in range(gate.shape[1]):
            y[j] = _silu_mul(gate[row, j], up[row, j])
        _quantize_row(y, q_out, row, m_out, e_out)


@njit(**_CACHE)
def store_kv(keys, values, layer: int, slots, positions, k, v) -> None:
    """``keys[slots[i], layer, :, positions[i]] = k[i]`` (and the same for values) for every row i."""
    for row in range(k.shape[0]):
        slot, pos = slots[row], positions[row]
        for h in range(k.shape[1]):
            for j in range(k.shape[2]):
                keys[slot, layer, h, pos, j] = k[row, h, j]
                values[slot, layer, h, pos, j] = v[row, h, j]


@njit(cache=True, nogil=True, fastmath=True)
def _dot_f64(x, y) -> float:
    """A dot product of integer-valued vectors whose every partial sum is an integer below 2^53: exact in
    float64, so the reassociation fastmath allows (SIMD lanes) cannot change it."""
    total = 0.0
    for j in range(x.shape[0]):
        total += x[j] * np.float64(y[j])
    return total


@njit(cache=True, nogil=True, fastmath=True)
def _axpy_f64(acc, p: float, y) -> None:
    """``acc += p * y`` for integer-valued float64 ``acc`` (exact below 2^53, as in :func:`_dot_f64`)."""
    for j in range(acc.shape[0]):
        acc[j] += p * np.float64(y[j])


@njit(**_PARALLEL)
def attend(q, keys, values, layer: int, slots, positions, group: int, multiplier: int, out) -> None:
    """Causal attention of each row over its own sequence's cache (see ``TorchOps.attend``).

    Scores (|q|, |k| < 2^18, 64-term sums < 2^42) and the weighted sums of values (< 2^53, see
    ``MAX_CONTEXT``) are integers that float64 holds exactly, so they run as SIMD float64 loops."""
    heads, head_dim = q.shape[1], q.shape[2]
    context = keys.shape[3]
    for row in prange(q.shape[0]):
        u = np.empty(context, dtype=np.int64)
        w = np.empty(context, dtype=np.int64)
        qf = np.empty(head_dim, dtype=np.float64)
        acc = np.empty(head_dim, dtype=np.float64)
        slot, end = slots[row], positions[row] + 1
        for h in range(heads):
            g = h // group
            for j in range(head_dim):
                qf[j] = np.float64(q[row, h, j])
            top = -(1 << 62)
            for t in range(end):
                s = np.int64(_dot_f64(qf, keys[slot, layer, g, t]))
                u[t] = _rshift_round(s * multiplier, 2 * F_QKV)
                top = max(top, u[t])
            total = 0
            for t in range(end):
                w[t] = _exp2_neg(top - u[t])
                total += w[t]
            acc[:] = 0.0
            half_inverse = 0.5 / np.float64(total)
            for t in range(end):
                p = _div_round_by(w[t] << F_PROB, total, half_inverse)
                _axpy_f64(acc, np.float64(p), values[slot, layer, g, t])
            for j in range(head_dim):
                out[row, h * head_dim + j] = _rshift_round(np.int64(acc[j]), F_PROB + F_QKV - F_HIDDEN)


@njit(**_PARALLEL)
def requant_heads(acc, c, shift: int, m, e, bias, delta, cos, sin, positions, head_dim: int, rotate: bool, out):
    """``to_heads(requant(...))`` in one pass: a q/k/v projection straight to (rotated) F_QKV heads."""
    has_bias, has_delta = bias.shape[0] > 0, delta.shape[0] > 0
    half = head_dim // 2
    heads = acc.shape[1] // head_dim
    for row in prange(acc.shape[0]):
        pos = positions[row]
        for h in range(heads):
            base = h * head_dim
            for j in range(head_dim):
                y = _requant(acc[row, base + j], c[base + j], shift, m[row, 0], e[row, 0])
                if has_bias:
                    y += bias[base + j]
                if has_delta:
                    y += delta[row, base + j]
                out[row, h, j] = _clamp(_rshift_round(y, F_HIDDEN - F_QKV), QKV_LIMIT)
            if rotate:
                for j in range(half):
                    x1, x2 = out[row, h, j], out[row, h, j + half]
                    cj, sj = cos[pos, j], sin[pos, j]
                    out[row, h, j] = _clamp(_rshift_round(x1 * cj - x2 * sj, F_ROPE), QKV_LIMIT)
                    out[row, h, j + half] = _clamp(_rshift_round(x2 * cj + x1 * sj, F_ROPE), QKV_LIMIT)


@njit(**_PARALLEL)
def mlp_quantize(acc_g, c_g, shift_g: int, delta_g, acc_u, c_u, shift_u: int, delta_u, m, e, q_out, m_out, e_out):
    """``silu_quantize(requant(gate), requant(up))`` in one pass."""
    has_dg, has_du = delta_g.shape[0] > 0, delta_u.shape[0] > 0
    for row in prange(acc_g.shape[0]):
        y = np.empty(acc_g.shape[1], dtype=np.int64)
        for j in range(acc_g.shape[1]):
            g = _requant(acc_g[row, j], c_g[j], shift_g, m[row, 0], e[row, 0])
            u = _requant(acc_u[row, j], c_u[j], shift_u, m[row, 0], e[row, 0])
            if has_dg:
                g += delta_g[row, j]
            if has_du:
                u += delta_u[row, j]
            y[j] = _silu_mul(g, u)
        _quantize_row(y, q_out, row, m_out, e_out)


@njit(**_PARALLEL)
def lora_mid(acc, slots, a_c, a_shift, m, e, n_slots: int, rank: int, sparse, m_out, e_out) -> None:
    """The middle of the LoRA path (see ``TorchOps.lora_mid``): each row keeps its own slot's ``A x``,
    requantized and quantized, placed in a zero row of ``n_slots * rank`` (float32) for the B GEMM."""
    for row in prange(acc.shape[0]):
        slot = slots[row]
        t = np.empty(rank, dtype=np.int64)
        for j in range(rank):
            t[j] = _requant(acc[row, slot * rank + j], a_c[slot, j], a_shift[slot], m[row, 0], e[row, 0])
        amax = 1
        for j in range(rank):
            amax = max(amax, abs(t[j]))
        ex = max(_bit_length(amax) - SCALE_MANTISSA_BITS, 0)
        mant = -((-amax) >> ex)
        for j in range(n_slots * rank):
            sparse[row, j] = 0
        for j in range(rank):
            sparse[row, slot * rank + j] = _clamp(_div_round(t[j] * INT8_MAX, mant << ex), INT8_MAX)
        m_out[row, 0] = mant
        e_out[row, 0] = ex


@njit(**_PARALLEL)
def lora_out(acc, slots, b_c, b_shift, m, e, out) -> None:
    """The LoRA term of each row from the B GEMM, with its own adapter's multipliers."""
    for row in prange(acc.shape[0]):
        slot = slots[row]
        for j in range(acc.shape[1]):
            out[row, j] = _requant(acc[row, j], b_c[slot, j], b_shift[slot], m[row, 0], e[row, 0])


@njit(inline="always", **_CACHE)
def _dot(x, w) -> int:
    """A dot product of int8-valued vectors (int16 or float32), exact in int32 while the length stays below
    133,144 (127^2 * length < 2^31); integer sums do not depend on the order SIMD lanes add them in."""
    s = np.int32(0)
    for k in range(x.shape[0]):
        s = np.int32(s + np.int32(x[k]) * np.int32(w[k]))
    return s


@njit(**_PARALLEL)
def lora_rows(qx, slots, a_q, a_c, a_shift, m, e, b_t, b_c, b_shift, out) -> None:
    """Each row's LoRA term with only its own adapter (a BGMV kernel): the same integers as the segmented
    GEMMs of ``TorchOps.lora_mid``/``lora_out``, without multiplying by the other adapters' zeros.

    qx, a_q [slots, r, in] and b_t [slots, r, out] (B transposed) hold int8 values (as int16 or float32);
    slot 0 is "no adapter". ``A x`` is r dot products; ``B t`` adds r scaled rows of B.T, so its inner loop
    runs along the output (long, contiguous) rather than along r. Integer sums: any order gives the same.
    """
    rank, fan_out = a_q.shape[1], b_t.shape[2]
    for row in prange(qx.shape[0]):
        slot = slots[row]
        if slot == 0:
            for n in range(fan_out):
                out[row, n] = 0
            continue
        t = np.empty(rank, dtype=np.int64)
        for j in range(rank):
            t[j] = _requant(_dot(qx[row], a_q[slot, j]), a_c[slot, j], a_shift[slot], m[row, 0], e[row, 0])
        amax = 1
        for j in range(rank):
            amax = max(amax, abs(t[j]))
        ex = max(_bit_length(amax) - SCALE_MANTISSA_BITS, 0)
        mant = -((-amax) >> ex)
        acc = np.zeros(fan_out, dtype=np.int32)
        for j in range(rank):
            qt = np.int32(_clamp(_div_round(t[j] * INT8_MAX, mant << ex), INT8_MAX))
            b_row = b_t[slot, j]
            for n in range(fan_out):
                acc[n] = np.int32(acc[n] + qt * np.int32(b_row[n]))
        for n in range(fan_out):
            out[row, n] = _requant(acc[n], b_c[slot, n], b_shift[slot], mant, ex)
