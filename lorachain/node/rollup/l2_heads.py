"""The node's safe and finalized L2 blocks: one home for the ``safe``/``finalized`` block tags of ``eth_`` methods
and for ``optimism_syncStatus``.

- the sequencer: *safe* is the last of its blocks whose batch was read back from L1 (:class:`SafeHeadTracker`);
- the validator: *safe* is what derivation has reached (``Deriver.safe_head``); gossiped blocks beyond it are
  unsafe;
- both: *finalized* is the safe head as of the L1's finalized block (:class:`Finality`), never above safe.

Reading L1 costs round trips, so the block tags use a view at most ``max_age_s`` old; where the L1 cannot be read
they answer from what was read last (a safe head never moves forward without L1). ``optimism_syncStatus`` always
takes a fresh view. A plain devnet node (no rollup role) has no heads: its tags mean ``latest``, as on Hardhat and
Anvil.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from eth.abc import BlockHeaderAPI

from lorachain.node.chain import Blockchain
from lorachain.node.rollup.l1_client import L1Client, L1RpcError, L1Unavailable
from lorachain.node.rollup.safe_head import Finality, SafeHeadTracker

TAG_MAX_AGE_S = 0.5  # block tags: a view of L1 at most this old


@dataclass(frozen=True)
class HeadsView:
    """The L2 heads and the L1 blocks they were read against (raw ``eth_getBlockByNumber`` objects or None)."""

    safe: BlockHeaderAPI
    finalized: BlockHeaderAPI
    next_l1: int  # the next L1 block derivation (or the safe-head tracker) reads
    head_l1: dict[str, Any] | None
    safe_l1: dict[str, Any] | None
    finalized_l1: dict[str, Any] | None
    taken_at: float


class L2Heads:
    """Safe and finalized heads of a sequencer (``tracker``) or a validator (``deriver``)."""

    def __init__(self, chain: Blockchain, l1: L1Client, tracker: SafeHeadTracker | None = None,
                 deriver: Any = None, max_age_s: float = TAG_MAX_AGE_S) -> None:  # fmt: skip
        if (tracker is None) == (deriver is None):
            raise ValueError("L2Heads needs exactly one of a safe-head tracker (sequencer) or a deriver (validator)")
        self.chain, self.l1, self.tracker, self.deriver, self.max_age_s = chain, l1, tracker, deriver, max_age_s
        self.finality = tracker.finality if tracker is not None else Finality(chain.header_by_number(0))
        self._started_at = chain.head  # a validator's head at start: what it derived before is not tracked
        self._last: HeadsView | None = None

    @classmethod
    def of(cls, chain: Blockchain, sequencer: Any = None, deriver: Any = None) -> L2Heads | None:
        """The heads of a node with these roles (None for a node that is neither a sequencer nor a validator)."""
        if deriver is not None:
            return cls(chain, deriver.l1, deriver=deriver)
        if sequencer is not None:
            return cls(chain, sequencer.l1, tracker=SafeHeadTracker(sequencer.config, sequencer.l1, chain,
                                                                    da=sequencer.da))  # fmt: skip
        return None

    def view(self) -> HeadsView:
        """A fresh view: the tracker steps through the L1 blocks not read yet, then L1's tags are read (oldest
        first, so that as L1 moves on, finalized <= safe <= head). Raises L1Unavailable / L1RpcError."""
        if self.tracker is not None:
            self.tracker.step()
            safe, next_l1 = self.tracker.safe, self.tracker.next_l1
        else:
            safe, next_l1 = self.deriver.safe_head, self.deriver.next_l1
            if safe.hash != self._started_at.hash or safe.block_number == 0:
                self.finality.record(next_l1 - 1, safe)
        finalized_l1, safe_l1, head_l1 = (self._l1_tag(tag) for tag in ("finalized", "safe", "latest"))
        finalized = self.finality.update(int(finalized_l1["number"], 16) if finalized_l1 else 0)
        if not self.chain.is_canonical(finalized) or finalized.block_number > safe.block_number:
            finalized = safe if self.chain.is_canonical(safe) else self.chain.header_by_number(0)
        self._last = HeadsView(safe, finalized, next_l1, head_l1, safe_l1, finalized_l1, time.monotonic())
        return self._last

    def tag(self, name: str) -> BlockHeaderAPI:
        """The block of the ``safe`` or ``finalized`` tag: from a view at most ``max_age_s`` old, else from the
        last one (L1 unreadable); a head a rewind made non-canonical falls back to the newest canonical one."""
        last = self._last
        if last is None or time.monotonic() - last.taken_at > self.max_age_s:
            with contextlib.suppress(L1Unavailable, L1RpcError):  # L1 unreadable: answer from the last view
                last = self.view()
        if name == "safe":
            header = last.safe if last is not None else self._current_safe()
        elif name == "finalized":
            header = last.finalized if last is not None else self.finality.finalized
        else:
            raise ValueError(f"not a head tag: {name}")
        if self.chain.is_canonical(header):
            return header
        current = self._current_safe()
        return current if self.chain.is_canonical(current) else self.chain.header_by_number(0)

    def _current_safe(self) -> BlockHeaderAPI:
        return self.tracker.safe if self.tracker is not None else self.deriver.safe_head

    def _l1_tag(self, tag: str) -> dict[str, Any] | None:
        try:
            return self.l1.call("eth_getBlockByNumber", tag, False)
        except L1RpcError:
            if tag == "latest":
                raise
            return None  # an L1 without safe/finalized blocks
