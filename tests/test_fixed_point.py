"""The integer primitives of the exact engine against Python's exact integers."""

from __future__ import annotations

import math
import random

import pytest
import torch

from lorachain.sidecar.exact_matmul import ExactMatmul, self_test
from lorachain.sidecar.fixed_point import (
    EXP2_TABLE,
    F_EXP,
    bit_length,
    div_round,
    exp2_neg,
    isqrt,
    quantize_rows,
    rshift_round,
)


def test_isqrt_matches_math_isqrt():
    rng = random.Random(1)
    values = [0, 1, 2, 3, 4, 15, 16, 17, (1 << 62) - 1, 1 << 62] + [
        rng.randrange(1 << rng.randrange(1, 63)) for _ in range(2000)
    ]
    got = isqrt(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [math.isqrt(v) for v in values]


def test_bit_length_matches_python():
    values = [0, 1, 2, 255, 256, (1 << 40) + 3, (1 << 53) + 1, (1 << 60) - 1, (1 << 62), (1 << 63) - 1]
    assert bit_length(torch.tensor(values)).tolist() == [v.bit_length() for v in values]


def test_rounding_rules():
    x = torch.tensor([-6, -5, -3, -2, 2, 3, 5, 6])
    assert rshift_round(x, 1).tolist() == [-3, -2, -1, -1, 1, 2, 3, 3]  # halves go up
    assert rshift_round(x, torch.tensor([1, 1, 1, 1, 0, 0, -1, -1])).tolist() == [-3, -2, -1, -1, 2, 3, 10, 12]
    assert div_round(torch.tensor([7, -7, 5]), torch.tensor([2, 2, 10])).tolist() == [4, -3, 1]


def test_exp2_table_is_correctly_rounded_and_monotonic():
    assert EXP2_TABLE[0] == 1 << F_EXP
    assert all(a > b for a, b in zip(EXP2_TABLE.tolist(), EXP2_TABLE[1:].tolist(), strict=False))
    assert exp2_neg(torch.tensor([0, 1 << F_EXP, 3 << F_EXP, 70 << F_EXP])).tolist() == [65536, 32768, 8192, 0]


def test_quantize_rows_is_row_local():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(-(1 << 20), 1 << 20, (8, 64), generator=gen)
    q, m, e = quantize_rows(x)
    assert int(q.abs().max()) <= 127
    for i in range(8):
        qi, mi, ei = quantize_rows(x[i : i + 1])
        assert torch.equal(qi, q[i : i + 1]) and int(mi) == int(m[i]) and int(ei) == int(e[i])


@pytest.mark.parametrize("dtype", [torch.int16, torch.float32, torch.float64])
def test_exact_gemm_self_test_passes_on_this_machine(dtype):
    assert self_test(torch.device("cpu"), dtype)


@pytest.mark.parametrize("kind", ["int16", "float32", "float64"])
def test_exact_gemm_long_contractions_and_odd_shapes(monkeypatch, kind):
    monkeypatch.setenv("LORACHAIN_EXACT_GEMM", kind)
    mm = ExactMatmul("cpu")
    assert mm.dtype == getattr(torch, kind)
    a = torch.full((3, 3000), 127, dtype=torch.int64)  # float32 needs chunks of 1024 here
    w = torch.full((5, 3000), -127, dtype=torch.int64)
    assert mm.linear(a, mm.weights(w)).tolist() == [[-127 * 127 * 3000] * 5] * 3
    gen = torch.Generator().manual_seed(5)
    for m, k, n in ((1, 7, 1), (4, 64, 2), (5, 33, 3), (9, 300, 17), (33, 256, 64)):  # tiles and leftovers
        a, w = torch.randint(-127, 128, (m, k), generator=gen), torch.randint(-127, 128, (n, k), generator=gen)
        assert torch.equal(mm.linear(a, mm.weights(w)), a @ w.t())


def test_exact_gemm_kind_is_checked(monkeypatch):
    monkeypatch.setenv("LORACHAIN_EXACT_GEMM", "int8")
    with pytest.raises(ValueError, match="LORACHAIN_EXACT_GEMM"):
        ExactMatmul("cpu")
    from lorachain.sidecar.int_gemm import MAX_K

    monkeypatch.setenv("LORACHAIN_EXACT_GEMM", "int16")
    mm = ExactMatmul("cpu")
    with pytest.raises(ValueError, match="exceeds"):
        mm.product(torch.zeros(1, MAX_K + 1, dtype=torch.int16), torch.zeros(1, MAX_K + 1, dtype=torch.int16))
