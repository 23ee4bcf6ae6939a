"""Integer arithmetic of the exact engine: fixed-point formats, rounding, per-row quantization, exp, sqrt.

Every function maps int64 tensors to int64 tensors with a fixed rounding rule, so its result is the same
number on any device, in any thread count, for any batch composition. Products of integers are formed
either in int64 or, for matrix products, by :mod:`lorachain.sidecar.exact_matmul`, which proves its results
exact. Constants that would need transcendental functions (the exp2 table, RoPE angles) are computed
once with Python's ``decimal`` module, whose results are correctly rounded everywhere.

Formats (value = integer * 2^-F):
  hidden states, linear inputs/outputs, logits: ``F_HIDDEN`` = 12 fractional bits;
  queries, keys, values: ``F_QKV`` = 10, clamped to ``QKV_LIMIT`` so attention sums stay below 2^53;
  base-2 exponents for exp: ``F_EXP`` = 16; probabilities: ``F_PROB`` = 15; RoPE tables: ``F_ROPE`` = 14.
"""

from __future__ import annotations

from decimal import Decimal, getcontext

import torch

F_HIDDEN = 12
F_QKV = 10
F_EXP = 16
F_PROB = 15
F_ROPE = 14
F_GAMMA = 12
QKV_LIMIT = (1 << 18) - 1  # |q|, |k|, |v| < 256.0
HIDDEN_LIMIT = (1 << 30) - 1  # |h| < 262144.0
MLP_LIMIT = (1 << 24) - 1  # |gate|, |up| < 4096.0 before their product
INT8_MAX = 127
SCALE_MANTISSA_BITS = 16  # per-row activation scales keep 16 significant bits
EXP_LUT_BITS = 10
LOG2E = 0x17154  # round(log2(e) * 2^16)

getcontext().prec = 60


def rshift_round(x: torch.Tensor, shift: torch.Tensor | int) -> torch.Tensor:
    """``round(x / 2^shift)`` with halves rounded up (toward +inf); ``shift`` may be per-element and <= 0."""
    if isinstance(shift, int):
        if shift <= 0:
            return x << -shift
        return (x + (1 << (shift - 1))) >> shift
    down = shift.clamp(min=0)
    return ((x << (-shift).clamp(min=0)) + _half(down)) >> down


_HALVES: dict[torch.device, torch.Tensor] = {}


def _half(shift: torch.Tensor) -> torch.Tensor:
    """``2^(shift - 1)`` for shift > 0 and 0 for shift == 0, by table lookup."""
    table = _HALVES.get(shift.device)
    if table is None:
        table = _HALVES[shift.device] = torch.tensor([0] + [1 << (i - 1) for i in range(1, 64)], device=shift.device)
    return table[shift]


def div_round(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``round(num / den)`` for ``den > 0``, halves rounded up; exact integer division."""
    return torch.div(2 * num + den, 2 * den, rounding_mode="floor")


def bit_length(x: torch.Tensor) -> torch.Tensor:
    """Number of bits of non-negative int64 values (0 for 0).

    The float64 exponent is only an estimate (exact below 2^53, off by one at most above); the two integer
    comparisons make the result exact, so it cannot depend on the device's float conversion.
    """
    n = torch.frexp(x.to(torch.float64)).exponent.to(torch.int64).clamp(max=63)
    one = torch.ones_like(x)
    n = torch.where((n > 0) & ((one << (n - 1).clamp(min=0)) > x), n - 1, n)
    return torch.where((n < 63) & ((one << n.clamp(max=62)) <= x), n + 1, n)


def isqrt(x: torch.Tensor) -> torch.Tensor:
    """Floor square root of non-negative int64 values below 2^62.

    A float64 square root (correctly rounded under IEEE 754) gives an estimate within one of the answer;
    integer comparisons then make it exact.
    """
    r = torch.sqrt(x.to(torch.float64)).to(torch.int64)
    r = torch.where(r * r > x, r - 1, r)
    r = torch.where(r * r > x, r - 1, r)
    r = torch.where((r + 1) * (r + 1) <= x, r + 1, r)
    return torch.where((r + 1) * (r + 1) <= x, r + 1, r)


def row_scale(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A per-row scale ``mantissa * 2^exponent`` >= max|x| of the row, with a 16-bit mantissa."""
    amax = x.abs().amax(dim=-1, keepdim=True).clamp(min=1)
    exponent = (bit_length(amax) - SCALE_MANTISSA_BITS).clamp(min=0)
    mantissa = -((-amax) >> exponent)  # ceil, so the scale covers the row's maximum
    return mantissa, exponent


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantization of each row of ``x``: ``q = round(127 * x / scale)`` in [-127, 127].

    Returns ``(q, mantissa, exponent)``; the row's value is ``q * mantissa * 2^exponent / 127``.
    Each row depends on itself only, which is what keeps results independent of the batch.
    """
    mantissa, exponent = row_scale(x)
    q = div_round(x * INT8_MAX, mantissa << exponent)
    return q.clamp(-INT8_MAX, INT8_MAX), mantissa, exponent


def exp2_table() -> torch.Tensor:
    """``round(2^16 * 2^(-i / 1024))`` for i in 0..1023, correctly rounded by ``decimal``."""
    size = 1 << EXP_LUT_BITS
    values = [int((Decimal(2) ** (Decimal(-i) / size) * (1 << F_EXP)).to_integral_value()) for i in range(size)]
    return torch.tensor(values, dtype=torch.int64)


EXP2_TABLE = exp2_table()


_DEVICE_COPIES: dict[tuple[int, torch.device], torch.Tensor] = {}


def _on_device(table: torch.Tensor, device: torch.device) -> torch.Tensor:
    key = (id(table), device)
    if key not in _DEVICE_COPIES:
        _DEVICE_COPIES[key] = table.to(device)
    return _DEVICE_COPIES[key]


def exp2_neg(d: torch.Tensor) -> torch.Tensor:
    """``2^(-d / 2^16) * 2^16`` for ``d >= 0`` (a base-2 exponent in F_EXP fixed point), as an integer."""
    table = EXP2_TABLE if d.device.type == "cpu" else _on_device(EXP2_TABLE, d.device)
    whole = (d >> F_EXP).clamp(max=62)
    frac = (d & ((1 << F_EXP) - 1)) >> (F_EXP - EXP_LUT_BITS)
    return table[frac] >> whole


def softmax_weights(log2_units: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Unnormalized softmax weights ``2^(x - max)`` (F_EXP fixed point) of base-2 exponents along the last dim."""
    if valid is not None:
        log2_units = torch.where(valid, log2_units, torch.full_like(log2_units, -(1 << 60)))
    top = log2_units.amax(dim=-1, keepdim=True)
    weights = exp2_neg(top - log2_units)
    if valid is not None:
        weights = weights * valid
    return weights


def sigmoid(x: torch.Tensor, frac_bits: int) -> torch.Tensor:
    """``sigmoid(x / 2^frac_bits)`` in F_EXP fixed point, from the exp2 table."""
    d = rshift_round(x.abs() * LOG2E, frac_bits)  # |x| * log2(e) in F_EXP
    e = exp2_neg(d)  # 2^16 * exp(-|x|)
    positive = div_round(torch.full_like(e, 1 << (2 * F_EXP)), (1 << F_EXP) + e)
    return torch.where(x >= 0, positive, (1 << F_EXP) - positive)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` for F_HIDDEN inputs, in F_HIDDEN."""
    gate = gate.clamp(-MLP_LIMIT, MLP_LIMIT)
    up = up.clamp(-MLP_LIMIT, MLP_LIMIT)
    silu = rshift_round(gate * sigmoid(gate, F_HIDDEN), F_EXP)
    return rshift_round(silu * up, F_HIDDEN).clamp(-HIDDEN_LIMIT, HIDDEN_LIMIT)


def rms_norm(h: torch.Tensor, gamma: torch.Tensor, eps_q40: int) -> torch.Tensor:
    """RMSNorm of F_HIDDEN rows times ``gamma`` (F_GAMMA), in F_HIDDEN; ``eps_q40 = round(eps * 2^40)``.

    Each row is first brought to ~24 significant bits by a per-row shift ``k`` so the int64 sum of squares
    cannot overflow and the integer square root keeps its precision.
    """
    dim = h.shape[-1]
    k = bit_length(h.abs().amax(dim=-1, keepdim=True)) - 24  # h' = h * 2^-k has ~24 bits
    scaled = rshift_round(h, k)
    mean_sq = (scaled * scaled).sum(dim=-1, keepdim=True) // dim  # units 2^(2k - 2F)
    eps = rshift_round(torch.full_like(mean_sq, eps_q40), 40 - 2 * F_HIDDEN + 2 * k)
    rms = isqrt(mean_sq + eps).clamp(min=1)  # units 2^(k - F)
    # out = h * gamma / (rms * 2^k), in F_HIDDEN since h and rms carry the same 2^-F.
    num = rshift_round(h * gamma, k.clamp(max=0))  # multiply by 2^-k when k < 0
    den = rms << k.clamp(min=0)
    return div_round(num, den).clamp(-HIDDEN_LIMIT, HIDDEN_LIMIT)


def sin_cos_decimal(x: Decimal) -> tuple[Decimal, Decimal]:
    """sin and cos of ``x`` by Taylor series after reduction modulo 2*pi (60 significant digits)."""
    two_pi = 2 * PI
    x = x - two_pi * (x / two_pi).to_integral_value(rounding="ROUND_FLOOR")
    term, sin, cos = x, Decimal(0), Decimal(0)
    power, fact = Decimal(1), Decimal(1)
    for n in range(0, 120):
        if n > 0:
            power *= x
            fact *= n
        term = power / fact
        if n % 4 == 0:
            cos += term
        elif n % 4 == 1:
            sin += term
        elif n % 4 == 2:
            cos -= term
        else:
            sin -= term
        if n > 10 and abs(term) < Decimal(10) ** -55:
            break
    return sin, cos


PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")


def rope_tables(head_dim: int, context: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of ``pos * theta^(-2i/head_dim)`` in F_ROPE fixed point, shape [context, head_dim / 2]."""
    half = head_dim // 2
    inv_freq = [Decimal(repr(theta)) ** (Decimal(-2 * i) / head_dim) for i in range(half)]
    scale = Decimal(1 << F_ROPE)
    cos_rows, sin_rows = [], []
    for pos in range(context):
        pairs = [sin_cos_decimal(pos * f) for f in inv_freq]
        sin_rows.append([int((s * scale).to_integral_value()) for s, _ in pairs])
        cos_rows.append([int((c * scale).to_integral_value()) for _, c in pairs])
    return torch.tensor(cos_rows, dtype=torch.int64), torch.tensor(sin_rows, dtype=torch.int64)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate halves of each head vector (Hugging Face "rotate_half" layout); cos/sin broadcast over heads."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    out1 = rshift_round(x1 * cos - x2 * sin, F_ROPE)
    out2 = rshift_round(x2 * cos + x1 * sin, F_ROPE)
    return torch.cat([out1, out2], dim=-1)
