"""Exact integer GEMM on CPUs: int8 values held as int16, products summed in int32 (numba).

``np.int32(s + np.int32(x) * np.int32(y))`` over int16 inputs is the pattern LLVM turns into
``vpmaddwd`` on AVX2 (16 multiply-adds per instruction, twice float32 FMA's 8), so on CPUs without
VNNI this beats a float32 GEMM of the same shape; integer sums are exact in any order, so threads and
tiling cannot change a bit. A sum of K products of |value| <= 127 stays below 2^31 while K <= MAX_K.

:func:`gemm` computes ``out = a @ b.T`` in tiles of 4 rows x 2 columns (8 accumulators: each loaded
element of ``b`` meets 4 rows of ``a``); rows that do not fill a tile take one dot product per output.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lorachain.sidecar import cpu_kernels  # noqa: F401 (selects numba's OpenMP threading layer first)

MAX_K = (2**31 - 1) // (127 * 127)  # 133,144: longer contractions would overflow int32

_OPTIONS = {"cache": True, "nogil": True}


@njit(inline="always", **_OPTIONS)
def dot(x, y) -> int:
    """``sum(x * y)`` of int8-valued vectors (any numeric dtype), exact in int32 for len <= MAX_K."""
    s = np.int32(0)
    for k in range(x.shape[0]):
        s = np.int32(s + np.int32(x[k]) * np.int32(y[k]))
    return s


@njit(inline="always", **_OPTIONS)
def _tile_4x2(a, b, out, m: int, n: int) -> None:
    s00 = s10 = s20 = s30 = s01 = s11 = s21 = s31 = np.int32(0)
    for k in range(a.shape[1]):
        y0, y1 = np.int32(b[n, k]), np.int32(b[n + 1, k])
        x0, x1, x2, x3 = np.int32(a[m, k]), np.int32(a[m + 1, k]), np.int32(a[m + 2, k]), np.int32(a[m + 3, k])
        s00 = np.int32(s00 + x0 * y0)
        s10 = np.int32(s10 + x1 * y0)
        s20 = np.int32(s20 + x2 * y0)
        s30 = np.int32(s30 + x3 * y0)
        s01 = np.int32(s01 + x0 * y1)
        s11 = np.int32(s11 + x1 * y1)
        s21 = np.int32(s21 + x2 * y1)
        s31 = np.int32(s31 + x3 * y1)
    out[m, n], out[m + 1, n], out[m + 2, n], out[m + 3, n] = s00, s10, s20, s30
    out[m, n + 1], out[m + 1, n + 1], out[m + 2, n + 1], out[m + 3, n + 1] = s01, s11, s21, s31


@njit(parallel=True, **_OPTIONS)
def gemm(a, b, out) -> None:
    """``out = a @ b.T`` for int16 ``a`` [M, K] and ``b`` [N, K] (values in -127..127), int32 ``out`` [M, N]."""
    rows, cols = a.shape[0], b.shape[0]
    tiled_rows = rows // 4 * 4
    for pair in prange((cols + 1) // 2):
        n = 2 * pair
        if n + 1 < cols:
            for m in range(0, tiled_rows, 4):
                _tile_4x2(a, b, out, m, n)
            first_loose = tiled_rows
        else:
            first_loose = 0  # an odd last column: dot products only
        for m in range(first_loose, rows):
            for j in range(n, min(n + 2, cols)):
                out[m, j] = dot(a[m], b[j])
