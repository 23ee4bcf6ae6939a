"""Exact integer fee splitting by weight (largest-remainder method).

The rule (mirrored bit for bit by the Solidity splitter in InferenceRouter):

1. ``W = sum(w_i)`` over all payees; ``W == 0`` is an error.
2. Every payee ``i`` gets ``base_i = floor(total * w_i / W)`` and has remainder ``r_i = (total * w_i) mod W``.
3. ``leftover = total - sum(base_i)`` units remain; ``0 <= leftover < number of payees with r_i > 0``.
4. Payees are ranked by ``r_i`` descending, ties by payee id ascending; the first ``leftover`` payees of
   that ranking get one more unit each.
5. The result lists every payee (weight 0 included, amount 0) sorted by payee id ascending; the amounts
   sum exactly to ``total``.
"""

from __future__ import annotations

from collections.abc import Sequence


def _check_int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must be non-negative, got {value}")
    return value


def payee_key(datanet_id: int, index: int) -> int:
    """The id InferenceRouter's split ranks a contribution by: (datanetId, index) in lexicographic order."""
    return (datanet_id << 128) | index


def split_exact(total: int, weights: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Split ``total`` base units over ``(payee id, weight)`` pairs; returns ``(payee id, amount)`` by id.

    See the module docstring for the exact rule. Raises ``ValueError`` for a negative total, id or weight,
    a duplicate id, or a zero total weight (which includes an empty ``weights``).
    """
    _check_int(total, "total")
    seen: set[int] = set()
    for pair in weights:
        if len(pair) != 2:
            raise ValueError(f"each weight must be a (payee id, weight) pair, got {pair!r}")
        payee, weight = pair
        _check_int(payee, "payee id")
        _check_int(weight, f"weight of payee {payee}")
        if payee in seen:
            raise ValueError(f"duplicate payee id {payee}")
        seen.add(payee)
    ordered = sorted(weights)
    total_weight = sum(weight for _, weight in ordered)
    if total_weight == 0:
        raise ValueError("total weight is zero: nothing to split by")

    amounts: dict[int, int] = {}
    remainders: list[tuple[int, int]] = []
    for payee, weight in ordered:
        base, remainder = divmod(total * weight, total_weight)
        amounts[payee] = base
        remainders.append((-remainder, payee))
    leftover = total - sum(amounts.values())
    remainders.sort()
    for _, payee in remainders[:leftover]:
        amounts[payee] += 1
    return [(payee, amounts[payee]) for payee, _ in ordered]
