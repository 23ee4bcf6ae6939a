"""DataInf influence (Kwon et al., ICLR 2024) on projected LoRA gradients, scored in exact integers.

Per LoRA tensor (a block ``l`` of the feature vector) with training gradients ``g_il`` (i = 1..n):

  lambda_l = 0.1 * mean_i(mean(g_il^2))
  M_l = (1 / lambda_l) * (I - (1/n) * sum_i g_il g_il^T / (lambda_l + ||g_il||^2))

``M_l`` does not depend on the query, so ``u_k = M g_k`` is computed once per adapter version
(:func:`precompute`, float64, off chain) and published quantized to integers in the training record.
A query with gradient ``v`` then scores every example with one matrix-vector product:
``helpfulness(k) = v . u_k`` (= minus DataInf's influence on the query's loss: positive means training
on ``k`` lowered it). :func:`scores` computes that product exactly: ``|u| < 2^U_BITS``, the query is
brought below ``2^QUERY_BITS`` by a shift, and with at most ``2^MAX_DIM_BITS`` dimensions every partial sum
is an integer below 2^53, so float64 BLAS gives the exact integer whatever its summation order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

U_BITS = 20
QUERY_BITS = 20
MAX_DIM_BITS = 12  # 2^(20 + 20 + 12) = 2^52 < 2^53
LAMBDA_FACTOR = 0.1


def precompute(features: np.ndarray, blocks: Sequence[slice], train_rows: Sequence[int]) -> np.ndarray:
    """``u_k = M g_k`` for every row ``k`` of ``features`` (float64), ``M`` built from ``train_rows``."""
    g = np.asarray(features, dtype=np.float64)
    train = g[np.asarray(train_rows, dtype=np.int64)]
    if len(train) == 0:
        raise ValueError("DataInf needs at least one training example")
    out = np.empty_like(g)
    n = len(train)
    for block in blocks:
        t = train[:, block]
        lam = LAMBDA_FACTOR * float(np.mean(t * t))
        if lam <= 0.0:
            out[:, block] = 0.0
            continue
        denom = lam + np.einsum("ij,ij->i", t, t)
        s = (t / denom[:, None]).T @ t  # sum_i g_i g_i^T / (lambda + ||g_i||^2)
        out[:, block] = (g[:, block] - (g[:, block] @ s) / n) / lam
    return out


def quantize(u: np.ndarray) -> tuple[np.ndarray, int]:
    """Integers ``round(u * 2^shift)`` (int32) with one shift for the whole matrix, ``|q| < 2^U_BITS``."""
    peak = float(np.abs(u).max()) if u.size else 0.0
    if peak == 0.0:
        return np.zeros(u.shape, dtype=np.int32), 0
    shift = U_BITS - 1 - int(np.floor(np.log2(peak)))
    q = np.rint(np.ldexp(u, shift))
    while np.abs(q).max() >= 1 << U_BITS:  # float log2 may be off by one at a power of two
        shift -= 1
        q = np.rint(np.ldexp(u, shift))
    return q.astype(np.int32), shift


def normalize_query(v: np.ndarray) -> np.ndarray:
    """The query gradient shifted right (rounding half up) until ``|v| < 2^QUERY_BITS``; int64."""
    v = np.asarray(v, dtype=np.int64)
    peak = int(np.abs(v).max()) if v.size else 0
    shift = max(0, peak.bit_length() - (QUERY_BITS - 1))
    if shift == 0:
        return v
    return (v + (1 << (shift - 1))) >> shift


def scores(u_exact: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``u @ v`` exactly (int64): ``u_exact`` is the quantized matrix as float64, ``v`` a normalized query."""
    if u_exact.shape[1] > 1 << MAX_DIM_BITS:
        raise ValueError(f"at most {1 << MAX_DIM_BITS} feature dimensions score exactly")
    q = normalize_query(v)
    return (u_exact @ q.astype(np.float64)).astype(np.int64)


def top_helpful(score: np.ndarray, eligible: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The ``k`` eligible rows with the largest positive scores as ``(row, score)``, ties by row."""
    rows = np.flatnonzero(eligible & (score > 0))
    order = np.lexsort((rows, -score[rows]))[:k]
    return [(int(rows[i]), int(score[rows[i]])) for i in order]
