"""The fused CPU kernels against the torch definitions, bit for bit, on random and extreme inputs."""

from __future__ import annotations

import pytest
import torch

from lorachain.sidecar.exact_ops import NumbaOps, TorchOps
from lorachain.sidecar.fixed_point import HIDDEN_LIMIT, rope_tables

torch_ops, numba_ops = TorchOps(), NumbaOps()
GEN = torch.Generator().manual_seed(11)


def rand(shape, limit):
    return torch.randint(-limit, limit + 1, shape, generator=GEN)


def hidden_cases(rows=9, cols=96):
    x = rand((rows, cols), 1 << 20)
    x[0] = 0  # an all-zero row
    x[1] = HIDDEN_LIMIT  # the largest values the residual stream holds
    x[2] = -HIDDEN_LIMIT
    x[3] = rand((cols,), 3)  # tiny values
    x[4, 5] = HIDDEN_LIMIT  # one outlier
    return x


def same(a, b) -> bool:
    if isinstance(a, tuple):
        return all(same(x, y) for x, y in zip(a, b, strict=True))
    return torch.equal(a.to(torch.int64), b.to(torch.int64))


def test_norm_quantize_and_quantize():
    x = hidden_cases()
    gamma = torch.randint(0, 1 << 14, (96,), generator=GEN)
    for eps in (0, 11, 1 << 30):
        assert same(numba_ops.norm_quantize(x, gamma, eps), torch_ops.norm_quantize(x, gamma, eps))
    assert same(numba_ops.quantize(x), torch_ops.quantize(x))


@pytest.mark.parametrize("acc_dtype", [torch.float32, torch.int64])
def test_requant_and_residual_add(acc_dtype):
    acc = rand((7, 40), 127 * 127 * 256).to(acc_dtype)
    c = torch.randint(1 << 20, 1 << 23, (40,), generator=GEN)
    m = torch.randint(1, 1 << 16, (7, 1), generator=GEN)
    e = torch.randint(0, 15, (7, 1), generator=GEN)
    bias, delta = rand((40,), 1 << 16), rand((7, 40), 1 << 16)
    for args in ((None, None), (bias, None), (None, delta), (bias, delta)):
        assert same(numba_ops.requant(acc, c, 38, m, e, *args), torch_ops.requant(acc, c, 38, m, e, *args))
        x = hidden_cases(7, 40)
        expected = torch_ops.residual_add(x.clone(), acc, c, 38, m, e, *args)
        assert same(numba_ops.residual_add(x.clone(), acc, c, 38, m, e, *args), expected)


def test_to_heads_with_and_without_rope():
    cos, sin = rope_tables(16, 32, 10000.0)
    y = hidden_cases(9, 64)
    positions = torch.tensor([0, 1, 5, 31, 7, 7, 2, 30, 3])
    for rotate in (True, False):
        assert same(numba_ops.to_heads(y, cos, sin, positions, 16, rotate),
                    torch_ops.to_heads(y, cos, sin, positions, 16, rotate))  # fmt: skip


def test_silu_quantize():
    gate, up = hidden_cases(), hidden_cases().flip(0)
    gate[5] = rand((96,), 1 << 30)  # beyond the clamp
    assert same(numba_ops.silu_quantize(gate, up), torch_ops.silu_quantize(gate, up))


def test_silu_table_matches_the_division_over_the_whole_gate_range():
    """The kernels look the sigmoid up in a table; sweep gates across every table row and column."""
    from lorachain.sidecar import cpu_kernels
    from lorachain.sidecar.fixed_point import F_HIDDEN, MLP_LIMIT, silu_mul

    gate = torch.cat([torch.arange(-(1 << 17), 1 << 17, 3), torch.linspace(-MLP_LIMIT, MLP_LIMIT, 60_000).long()])
    up = 1 << F_HIDDEN  # 1.0: the product is silu(gate) itself, before any quantization
    expected = silu_mul(gate, torch.full_like(gate, up)).tolist()
    assert [cpu_kernels._silu_mul(g, up) for g in gate.tolist()] == expected


def test_attend_matches_torch_over_a_shared_pool():
    from lorachain.sidecar.fixed_point import QKV_LIMIT

    slots, layers, kv, context, d, group = 5, 2, 2, 24, 16, 3
    keys = rand((slots, layers, kv, context, d), QKV_LIMIT).to(torch.int32)
    values = rand((slots, layers, kv, context, d), QKV_LIMIT).to(torch.int32)
    keys[1, 1] = QKV_LIMIT  # extreme: every key at the limit
    q = rand((8, kv * group, d), QKV_LIMIT)
    q[0] = -QKV_LIMIT
    row_slots = torch.tensor([1, 1, 1, 0, 4, 2, 3, 1])
    positions = torch.tensor([0, 1, 23, 5, 9, 23, 0, 12])
    for layer in range(layers):
        args = (q, keys, values, layer, row_slots, positions, group, 0x2E2A)
        assert torch.equal(numba_ops.attend(*args), torch_ops.attend(*args))


def test_lora_kernels_match_torch():
    n_slots, rank, rows, fan_out = 4, 8, 9, 40
    acc = rand((rows, n_slots * rank), 127 * 127 * 256).to(torch.float32)
    slots = torch.tensor([0, 1, 2, 3, 1, 1, 0, 3, 2])
    a_c = torch.randint(0, 1 << 23, (n_slots, rank), generator=GEN)
    a_c[0] = 0  # slot 0: no adapter
    a_shift = torch.tensor([0, 36, 40, 33])
    m = torch.randint(1, 1 << 16, (rows, 1), generator=GEN)
    e = torch.randint(0, 15, (rows, 1), generator=GEN)
    mid = numba_ops.lora_mid(acc, slots, a_c, a_shift, m, e, n_slots, rank)
    assert same(mid, torch_ops.lora_mid(acc, slots, a_c, a_shift, m, e, n_slots, rank))
    acc_b = rand((rows, fan_out), 127 * 127 * n_slots * rank).to(torch.float32)
    b_c = torch.randint(0, 1 << 23, (n_slots, fan_out), generator=GEN)
    b_shift = torch.tensor([0, 38, 35, 41])
    assert same(
        numba_ops.lora_out(acc_b, slots, b_c, b_shift, m, e), torch_ops.lora_out(acc_b, slots, b_c, b_shift, m, e)
    )


def test_store_kv_writes_the_same_cells_as_torch_indexing():
    pools = [torch.zeros(4, 2, 2, 8, 3, dtype=torch.int32) for _ in range(4)]
    slots, positions = torch.tensor([2, 0, 3]), torch.tensor([5, 0, 7])
    k, v = rand((3, 2, 3), 1 << 17), rand((3, 2, 3), 1 << 17)
    numba_ops.store_kv(pools[0], pools[1], 1, slots, positions, k, v)
    torch_ops.store_kv(pools[2], pools[3], 1, slots, positions, k, v)
    assert torch.equal(pools[0], pools[2]) and torch.equal(pools[1], pools[3])
    assert pools[0].count_nonzero() > 0 and torch.equal(pools[0][2, 1, :, 5], k[0].to(torch.int32))
