"""Projected LoRA gradients in integer arithmetic: the features DataInf attribution scores.

For a token sequence and the positions whose next-token loss counts, the loss gradient with respect to
the LoRA matrices of the last layer's down projection (``y = W x + B A x``) is

  dL/dB = sum_t delta_t (A x_t)^T        dL/dA = sum_t (B^T delta_t) x_t^T

where ``x_t`` is the down projection's input and ``delta_t = dL/dy_t`` is the error of the softmax
(``p_t - onehot(y_t)``) brought back through the LM head and the final RMSNorm (its radial term, small
against the rest, is dropped). Both are projected LoGra-style: ``delta_t`` and ``x_t`` go through fixed
Rademacher (+-1) matrices before the outer products, so the features are ``[P_h dL/dB ; dL/dA P_i^T]``,
``PROJ_HIDDEN * r + r * PROJ_INNER`` numbers. The inputs are the exact engine's integers
(:meth:`ExactEngine.trace`) and every step is int64 with fixed shifts, so a query's features are the same
on every machine, which is what lets a validator recompute an attribution bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from eth_utils import keccak

from lorachain.sidecar.fixed_point import (
    F_HIDDEN,
    F_PROB,
    LOG2E,
    bit_length,
    div_round,
    exp2_neg,
    isqrt,
    rshift_round,
)
from lorachain.sidecar.quantize import QuantizedMatrix

PROJ_HIDDEN = 128  # rows of the projection of delta_t (hidden size -> PROJ_HIDDEN)
PROJ_INNER = 128  # rows of the projection of x_t (intermediate size -> PROJ_INNER)
FEATURE_SHIFT = 0  # the outer-product sums fit int64 as they are (|feature| < 2^40 on the devnet model)
PROJECTION_DOMAIN = b"lorachain-attribution-projection-v1"
DOWN = "down"
MARGIN = True  # differentiate TRAK's margin, not the loss (see softmax_error)


@dataclass(frozen=True)
class FeatureLayout:
    """Where the two LoRA tensors' projected gradients sit in a feature vector."""

    rank: int

    @property
    def blocks(self) -> tuple[slice, slice]:
        b = PROJ_HIDDEN * self.rank
        return slice(0, b), slice(b, b + self.rank * PROJ_INNER)

    @property
    def size(self) -> int:
        return (PROJ_HIDDEN + PROJ_INNER) * self.rank


def rademacher(rows: int, cols: int, label: bytes) -> torch.Tensor:
    """A fixed +-1 int64 matrix: the bits of ``keccak(domain, label, counter)`` in order."""
    need = rows * cols
    stream = bytearray()
    counter = 0
    while len(stream) * 8 < need:
        stream += keccak(PROJECTION_DOMAIN + label + counter.to_bytes(4, "big"))
        counter += 1
    bits = torch.tensor(list(stream), dtype=torch.int64)
    bits = ((bits[:, None] >> torch.arange(8)) & 1).reshape(-1)[:need]
    return (bits * 2 - 1).reshape(rows, cols)


def transposed_product(v: torch.Tensor, w: QuantizedMatrix) -> torch.Tensor:
    """``v @ W`` (F_HIDDEN rows over W's output channels) for a quantized matrix, in F_HIDDEN."""
    q, c = w.q.to(torch.int64), w.c.to(torch.int64)
    vc = rshift_round(v * c, 16)
    return rshift_round((vc @ q) * 16129, w.shift + F_HIDDEN - 16)


def product(qx: torch.Tensor, mantissa: torch.Tensor, exponent: torch.Tensor, w: QuantizedMatrix) -> torch.Tensor:
    """``x @ W.T`` in F_HIDDEN for row-quantized activations ``x = qx * m * 2^e / 127``."""
    acc = qx.to(torch.int64) @ w.q.to(torch.int64).T
    return rshift_round(rshift_round(acc * w.c.to(torch.int64), 16) * mantissa, w.shift - 16 - exponent)


def dequantize_rows(qx: torch.Tensor, mantissa: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """``qx * m * 2^e / 127`` rounded, in F_HIDDEN."""
    return div_round(qx.to(torch.int64) * (mantissa << exponent), torch.full_like(mantissa, 127))


def softmax_error(logits: torch.Tensor, targets: torch.Tensor, margin: bool = False) -> torch.Tensor:
    """``p - onehot(target)`` per row, in F_PROB, from F_HIDDEN logits (exp2 table, exact division).

    With ``margin``, the gradient of TRAK's margin ``log(p_y / (1 - p_y))`` instead: ``p`` renormalized over the
    other tokens, minus the target's one-hot. It does not vanish once the model has fit the target, which the
    loss gradient does (the facts a trained adapter knows best would otherwise leave the weakest trace)."""
    log2_units = rshift_round(logits * LOG2E, F_HIDDEN)  # F_EXP
    top = log2_units.amax(dim=-1, keepdim=True)
    weights = exp2_neg(top - log2_units)
    rows = torch.arange(len(targets))
    if margin:
        weights[rows, targets] = 0
    probs = div_round(weights << F_PROB, weights.sum(dim=-1, keepdim=True).clamp(min=1))
    probs[rows, targets] -= 1 << F_PROB
    return probs


def norm_backward(grad: torch.Tensor, hidden: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``grad * gamma / rms(hidden)`` per row (F_HIDDEN in, F_HIDDEN out), the RMSNorm's tangential part."""
    dim = hidden.shape[-1]
    k = bit_length(hidden.abs().amax(dim=-1, keepdim=True)) - 24
    scaled = rshift_round(hidden, k)
    rms = isqrt((scaled * scaled).sum(dim=-1, keepdim=True) // dim).clamp(min=1)  # units 2^(k - F)
    num = rshift_round(grad * gamma.to(torch.int64), k.clamp(max=0))
    return div_round(num, rms << k.clamp(min=0))


class GradientFeatures:
    """Computes projected LoRA gradients for one engine (model) and one of its adapters."""

    def __init__(self, engine, adapter_id: str) -> None:
        adapter = engine.store.get(adapter_id)
        layer = engine.config.num_hidden_layers - 1
        if (layer, DOWN) not in adapter.modules:
            raise ValueError("attribution needs a LoRA on the last layer's down_proj (target 'down_proj')")
        self.engine = engine
        self.adapter_id = adapter_id
        self.lora_a, self.lora_b = (
            QuantizedMatrix(m.q.cpu(), m.c.cpu(), m.shift) for m in adapter.modules[(layer, DOWN)]
        )
        self.layout = FeatureLayout(adapter.rank)
        tensors, shifts = engine.model.tensors, engine.model.shifts
        self.head = QuantizedMatrix(tensors["lm_head.q"].cpu(), tensors["lm_head.c"].cpu(), shifts["lm_head"])
        self.gamma = tensors["norm"].cpu().to(torch.int64)
        cfg = engine.config
        self.proj_hidden = rademacher(PROJ_HIDDEN, cfg.hidden_size, b"hidden")
        self.proj_inner = rademacher(PROJ_INNER, cfg.intermediate_size, b"inner")

    def features(self, token_ids: Sequence[int], first_target: int = 1, margin: bool = MARGIN) -> torch.Tensor:
        """int64 features of the loss on ``token_ids[first_target:]`` (each predicted from its prefix)."""
        if not 1 <= first_target < len(token_ids):
            raise ValueError("no target tokens to differentiate")
        trace = self.engine.trace(list(token_ids), self.adapter_id)
        rows = torch.arange(first_target - 1, len(token_ids) - 1)
        targets = torch.tensor(token_ids[first_target:], dtype=torch.int64)
        logits = trace["logits"].cpu().to(torch.int64)[rows]
        qx, m, e = (t.cpu().to(torch.int64)[rows] for t in trace["down_in"])
        hidden = trace["hidden"].cpu().to(torch.int64)[rows]
        error = rshift_round(softmax_error(logits, targets, margin), F_PROB - F_HIDDEN)  # F_HIDDEN
        delta = norm_backward(transposed_product(error, self.head), hidden, self.gamma)  # dL/dy_t, F_HIDDEN
        a_x = product(qx, m, e, self.lora_a)  # A x_t [T, r]
        b_delta = transposed_product(delta, self.lora_b)  # B^T delta_t [T, r]
        x = dequantize_rows(qx, m, e)  # [T, inner]
        grad_b = (self.proj_hidden @ delta.T) @ a_x  # [PROJ_HIDDEN, r]
        grad_a = b_delta.T @ (x @ self.proj_inner.T)  # [r, PROJ_INNER]
        return rshift_round(torch.cat([grad_b.reshape(-1), grad_a.reshape(-1)]), FEATURE_SHIFT)
