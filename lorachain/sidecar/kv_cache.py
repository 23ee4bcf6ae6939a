"""The key/value cache of all sequences in flight: one pool of slots, one slot per sequence.

Keys and values are F_QKV integers (|v| < 2^18), stored as int32 in ``[slots, layers, kv_heads, context,
head_dim]``. A sequence holds its slot from ``acquire`` until ``release``; the pool doubles when it runs out.
Keeping every cache in one tensor lets attention for a whole batch read it without stacking copies.
"""

from __future__ import annotations

import torch


class KVPool:
    def __init__(self, layers: int, kv_heads: int, context: int, head_dim: int, device: torch.device, slots: int = 4):
        self.shape = (layers, kv_heads, context, head_dim)
        self.device = device
        self.keys = torch.zeros(slots, *self.shape, dtype=torch.int32, device=device)
        self.values = torch.zeros_like(self.keys)
        self._free = list(range(slots - 1, -1, -1))

    @property
    def capacity(self) -> int:
        return self.keys.shape[0]

    def acquire(self) -> int:
        if not self._free:
            self._grow()
        return self._free.pop()

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def in_use(self) -> int:
        return self.capacity - len(self._free)

    def _grow(self) -> None:
        old = self.capacity
        keys = torch.zeros(2 * old, *self.shape, dtype=torch.int32, device=self.device)
        values = torch.zeros_like(keys)
        keys[:old], values[:old] = self.keys, self.values
        self.keys, self.values = keys, values
        self._free.extend(range(2 * old - 1, old - 1, -1))
