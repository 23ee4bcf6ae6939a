"""Exact integer matrix products on fast floating-point kernels, with a start-up self-test.

A float GEMM is exact when every input and every partial sum is an integer the format represents
exactly: then no rounding ever happens, so the order of additions (threads, blocking, FMA, split-K,
batch size, device) cannot change the result. For int8 x int8 products (|value| <= 127):

  * float32 has 24-bit significands, so a dot product of length K <= 1024 stays below 127^2 * 1024 < 2^24;
    longer products are cut into chunks of 1024 whose exact results are summed in int64;
  * float64 has 53-bit significands; it is used for the attention products, whose bounds are checked
    by the callers' formats (see :mod:`lorachain.sidecar.fixed_point`).

On this project's CI CPUs (AVX2, no VNNI) ``torch._int_mm`` falls back to a slow reference loop
(~15x slower than float32 GEMM), so float32 is the fast path on CPU; on GPUs float32 GEMM runs on tensor
cores (TF32 keeps 10 significand bits, enough for int8 inputs). Faster still on CPUs is the int16 x int16
-> int32 kernel of :mod:`lorachain.sidecar.int_gemm` (integer sums: exact in any order), the default there.
:func:`self_test` checks every kind on the machine at start-up against an int64 reference, adversarial
inputs included, and :class:`ExactMatmul` falls back to float64 (exact for K < 2^38) if anything differs.

``LORACHAIN_EXACT_GEMM`` = ``int16`` | ``float32`` | ``float64`` picks a kind (default: int16 on CPUs
where numba is installed, float32 elsewhere); every kind gives the same integers.
"""

from __future__ import annotations

import logging
import os

import torch

F32_CHUNK = 1024

log = logging.getLogger(__name__)


def _reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.to("cpu", torch.int64) @ b.to("cpu", torch.int64).t()).to(a.device)


def self_test(device: torch.device, dtype: torch.dtype) -> bool:
    """True if ``dtype`` GEMM on ``device`` reproduces int64 products of int8 values exactly."""
    gen = torch.Generator().manual_seed(1234)
    cases = []
    for m, k, n in ((1, 256, 64), (7, 688, 96), (33, F32_CHUNK, 128), (64, 300, 17)):
        full = torch.full((m, k), 127, dtype=torch.int64)
        cases.append((full, torch.full((n, k), 127, dtype=torch.int64)))
        cases.append((-full, torch.full((n, k), 127, dtype=torch.int64)))
        cases.append((torch.randint(-127, 128, (m, k), generator=gen), torch.randint(-127, 128, (n, k), generator=gen)))
    for a, b in cases:
        if dtype == torch.int16:
            got = _int16_product(a.to(torch.int16), b.to(torch.int16))
        else:
            got = _chunked(a.to(device, dtype), b.to(device, dtype))
        if not torch.equal(got.cpu().to(torch.int64), _reference(a, b).cpu()):
            return False
    return True


def _int16_product(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``a @ w.T`` for int16 CPU tensors as int32 (numba kernel; K <= int_gemm.MAX_K)."""
    from lorachain.sidecar import int_gemm

    if a.shape[-1] > int_gemm.MAX_K:
        raise ValueError(f"contraction of {a.shape[-1]} exceeds the int16 kernel's {int_gemm.MAX_K}")
    a = a.contiguous()
    out = torch.empty(a.shape[0], w.shape[0], dtype=torch.int32)
    int_gemm.gemm(a.numpy(), w.numpy(), out.numpy())
    return out


def _numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _preferred_dtype(device: torch.device) -> torch.dtype:
    choice = os.environ.get("LORACHAIN_EXACT_GEMM", "auto")
    kinds = {"int16": torch.int16, "float32": torch.float32, "float64": torch.float64}
    if choice in kinds:
        if kinds[choice] == torch.int16 and device.type != "cpu":
            raise ValueError("LORACHAIN_EXACT_GEMM=int16 runs on CPUs only")
        return kinds[choice]
    if choice != "auto":
        raise ValueError(f"LORACHAIN_EXACT_GEMM must be int16, float32, float64 or auto, not {choice!r}")
    return torch.int16 if device.type == "cpu" and _numba_available() else torch.float32


def _chunked(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``a @ w.T`` as int64, in exact chunks of the contraction dimension."""
    k = a.shape[-1]
    if a.dtype == torch.float64 or k <= F32_CHUNK:
        return (a @ w.t()).to(torch.int64)
    total = None
    for start in range(0, k, F32_CHUNK):
        part = (a[..., start : start + F32_CHUNK] @ w[:, start : start + F32_CHUNK].t()).to(torch.int64)
        total = part if total is None else total + part
    return total


class ExactMatmul:
    """int8-valued GEMMs for one device, in the fastest kind that passes the self-test here (int16 numba
    kernel on CPUs, float32 on GPUs), else float64."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # exact for int8 inputs; checked below
        preferred = _preferred_dtype(self.device)
        self.dtype = preferred if self_test(self.device, preferred) else torch.float64
        if self.dtype != preferred:
            log.warning("%s GEMM on %s is not exact for int8 values; using float64", preferred, self.device)
            if not self_test(self.device, torch.float64):
                raise RuntimeError(f"no exact GEMM on {self.device}: float64 failed the self-test")

    def weights(self, q: torch.Tensor) -> torch.Tensor:
        """An int8 weight matrix [N, K] in the form :meth:`linear` takes."""
        return q.to(self.device, self.dtype).contiguous()

    def linear(self, x_q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x_q @ w.T`` for int8-valued ``x_q`` [M, K] (any int or float dtype) and prepared ``w``: int64 [M, N]."""
        if self.dtype == torch.int16:
            return _int16_product(x_q.to(torch.int16), w).to(torch.int64)
        return _chunked(x_q.to(self.dtype), w)

    def product(self, x_q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Like :meth:`linear` but without the final conversion: int32, float (integer-valued) or int64."""
        if self.dtype == torch.int16:
            return _int16_product(x_q.to(torch.int16), w)
        if x_q.shape[-1] <= F32_CHUNK or self.dtype == torch.float64:
            return x_q.to(self.dtype) @ w.t()
        return _chunked(x_q.to(self.dtype), w)


def exact_f64_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` of int64 tensors whose every partial sum is below 2^53 in magnitude (callers guarantee it)."""
    return torch.matmul(a.to(torch.float64), b.to(torch.float64)).to(torch.int64)
