"""Choosing the next token from integer logits: greedy, or sampled from a counter-based integer RNG.

Greedy takes the largest logit, the lowest token id among equals. Sampling draws from the integer softmax
(:func:`lorachain.sidecar.fixed_point.softmax_weights`) of ``logits / temperature`` after top-k and top-p,
with the random number ``keccak256(seed || step)`` reduced modulo the total weight, so the same seed
(e.g. derived from a block hash, transaction hash and call index) always draws the same tokens.
"""

from __future__ import annotations

import torch
from eth_utils import keccak

from lorachain.sidecar.fixed_point import F_HIDDEN, LOG2E, div_round, rshift_round, softmax_weights
from lorachain.sidecar.types import DecodingParams


def greedy_rows(logits: torch.Tensor) -> torch.Tensor:
    """Per row, the index of the largest value; the lowest index wins ties (whatever the device's argmax does)."""
    top = logits.amax(dim=-1, keepdim=True)
    ids = torch.arange(logits.shape[-1], device=logits.device)
    return torch.where(logits == top, ids, logits.shape[-1]).amin(dim=-1)


def greedy(logits: torch.Tensor) -> int:
    """Index of the largest value in a 1-D integer tensor; the lowest index wins ties."""
    return int(greedy_rows(logits))


def counter_random(seed: bytes, step: int) -> int:
    """A 256-bit random integer for decoding step ``step`` of a request seeded by ``seed``."""
    return int.from_bytes(keccak(seed + step.to_bytes(8, "big")), "big")


def sample(logits: torch.Tensor, params: DecodingParams, step: int) -> int:
    """Draw a token from integer logits (F_HIDDEN) as ``params`` say; see the module docstring."""
    if params.temperature_milli == 0:
        return greedy(logits)
    logits = logits.to("cpu", torch.int64)
    # Order by (logit desc, id asc): a stable sort of ids by descending logit.
    order = torch.sort(-logits, stable=True).indices
    if params.top_k:
        order = order[: params.top_k]
    scaled = div_round(logits[order] * 1000, torch.tensor(params.temperature_milli))
    weights = softmax_weights(rshift_round(scaled * LOG2E, F_HIDDEN))  # 2^16 for the top token
    cumulative = torch.cumsum(weights, 0)
    total = int(cumulative[-1])
    if params.top_p_milli < 1000:
        keep = int((cumulative * 1000 < params.top_p_milli * total).sum()) + 1
        cumulative, total = cumulative[:keep], int(cumulative[keep - 1])
    draw = counter_random(params.seed, step) % total
    index = int((cumulative <= draw).sum())
    return int(order[index])
