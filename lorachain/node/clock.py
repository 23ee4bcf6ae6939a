"""Block timestamps: wall clock plus the devnet's time travel (evm_increaseTime, evm_setNextBlockTimestamp)."""

from __future__ import annotations

import time


class BlockClock:
    def __init__(self) -> None:
        self.offset = 0
        self._next: int | None = None

    def now(self) -> int:
        return int(time.time()) + self.offset

    def increase(self, seconds: int) -> int:
        self.offset += seconds
        return self.offset

    def set_next(self, timestamp: int | None) -> None:
        """Fix the next block's timestamp (None: back to the wall clock)."""
        self._next = timestamp

    def next_timestamp(self, parent_timestamp: int) -> int:
        """The next block's timestamp: strictly after the parent's (post-merge rule)."""
        if self._next is not None:
            chosen, self._next = self._next, None
            if chosen <= parent_timestamp:
                raise ValueError(
                    f"timestamp {chosen} is lower than or equal to previous block's timestamp {parent_timestamp}"
                )
            self.offset = chosen - int(time.time())
            return chosen
        return max(self.now(), parent_timestamp + 1)
