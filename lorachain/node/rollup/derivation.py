"""Derivation: the L2 chain rebuilt from L1 + DA alone, block by block, and checked against the sequencer.

For each L1 block (``l1_confirmations`` behind the head): the batcher's frames (:mod:`retrieval`) join their
channels; a channel open for more than ``channel_timeout`` L1 blocks is dropped; complete channels are read
in the order they opened and their batches applied in order. A batch applies on top of the current head if

- its parent hash is the head's hash (an older batch, already applied, is skipped quietly);
- its timestamp is after the head's, and not before its epoch's L1 timestamp;
- it is within its sequencing window: ``epoch + seq_window_size >= `` the L1 block that carried it (its channel's
  completing block);
- its epoch is the head's epoch (same L1 block hash) or the next L1 block (which must extend it);
- it is within the sequencer drift (``timestamp <= epoch's L1 time + max_sequencer_drift``), or else is empty, keeps
  the head's epoch, and the next L1 block could not have been its origin (that block's time is after the batch's;
  an L1 block not there yet could not either);

and then the block is built from the same inputs the sequencer used: the L1-info deposit (the next sequence
number, or 0 and the new L1 block's attributes), the epoch's user deposits from the portal's logs (new epoch
only), and the batch's transactions. A block that cannot hold every transaction of its batch is not made
(``Blockchain.build_block(strict=True)``); a batch that breaks a rule is dropped with a log line naming the rule.

Forced inclusion (op-node's empty batches): once the L1 block read is ``seq_window_size`` blocks past the safe
head's epoch and its batches gave no block, a deposit-only block is derived at ``parent.timestamp + block_time``
on the same epoch, or on the next L1 block (with its deposits) if that block's time is not after it; again until
the epoch is inside the window (``lorachain_derivation_forced_empty_batches_total``). So deposits reach L2 even
when the sequencer or the batcher is down or censors them; the sequencer's later batches that do not build on
these blocks are dropped.

Deviation from op-node, on purpose for this chain: L2 timestamps follow the sequencer's batches instead of
``parent + block_time`` (the forced blocks use ``parent + block_time``), and span batches are not read.

Faults of the batcher's data are survived as the spec says, each with a log line and a metric: a malformed
batcher transaction is skipped whole (:mod:`retrieval`), an unreadable channel is dropped, a frame seen before
or past its channel's end is ignored, a batch already applied (posted twice) is skipped
(``lorachain_derivation_old_batches_total``). Data the DA server does not give (withheld: 404, or the server
down) holds derivation on that L1 block: nothing after it is read, the validator keeps serving its head and
asks again every round (``lorachain_derivation_da_unavailable_total``, ``lorachain_derivation_da_stalled``)
until the data appears.

With unsafe blocks from gossip (:mod:`lorachain.node.p2p`) the chain head runs ahead of the derived (safe) head,
which is kept in ``safe_head`` (and the state file). A batch applies on the safe head; where an unsafe block
already sits at that height, it is the derived block if it was built from exactly the derived inputs (parent,
timestamp, prevRandao, fee recipient, gas limit, extraData and the same transactions, deposits included: the
unsafe block was executed and its state root checked on import, so equal inputs give the same block and hash;
op-node's consolidation); otherwise the unsafe chain is dropped (reorg to the safe head), the derived block is
built, and the mismatch is recorded (``unsafe-divergence.json`` beside the state file, in the divergence
report's form; ``lorachain_derivation_unsafe_divergences_total``). Derivation goes on: the L1 + DA chain wins.

L1 reorgs, as op-node handles them: the L1 blocks read are remembered (a journal of ``channel_timeout`` +
``REORG_MARGIN`` blocks: each one's hash, and the safe head and resume point once it was read; kept in the state
file, so that a restart also sees a reorg that happened while it was down). Each round, the last block read must
still be canonical (the next L1 block's parent, or the block itself at the L1 head). If it is not, derivation
goes back to the newest block of the journal still canonical: its safe head becomes the safe head and the chain
head (unsafe blocks above are dropped), the channel bank is emptied and L1 is read again from its resume point,
as a restart does (``lorachain_derivation_l1_reorgs_total``, ``lorachain_derivation_l1_reorg_depth``). A reorg
deeper than the journal derives again from the rollup's genesis.

With a sequencer URL, every derived block is compared with the sequencer's block of that number; on the
first mismatch the validator stops deriving and keeps the divergence report (:mod:`divergence`): the block,
the header fields that differ, the first differing transaction, receipt, state key and AI output token.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from eth.exceptions import HeaderNotFound
from eth_utils import keccak
from prometheus_client import Counter, Gauge

from lorachain.da_client.client import DAClient
from lorachain.node import metrics
from lorachain.node.chain import Blockchain, ChainError
from lorachain.node.rollup.batches import BatchError, SingularBatch
from lorachain.node.rollup.channels import ChannelAssembler, ChannelError, decompress_channel, split_batches
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.deposit_vm import deposit_transaction
from lorachain.node.rollup.divergence import block_summary, divergence_report, explain, output_root_report
from lorachain.node.rollup.l1_client import L1Client
from lorachain.node.rollup.l1_deposits import deposits_in_block
from lorachain.node.rollup.l1_info import L1BlockInfo
from lorachain.node.rollup.l2_fees import SEQUENCER_FEE_VAULT
from lorachain.node.rollup.outputs import Output, output_at
from lorachain.node.rollup.retrieval import DataUnavailable, frames_in_l1_block
from lorachain.node.rollup.sequencer import Sequencer, origin_of

log = logging.getLogger("lorachain.derivation")

CHANNEL_TIMEOUT = 50  # L1 blocks (Granite)
REORG_MARGIN = 64  # L1 blocks remembered beyond the channel timeout: the deepest L1 reorg rewound precisely
STALL_LOG_EVERY_S = 30.0  # while the DA data is missing: a reminder this often
OUTPUT_POLL_S = 1.0  # the oracle's outputCount() is read at most this often
_OUTPUT_COUNT = keccak(b"outputCount()")[:4]
_GET_OUTPUT = keccak(b"getL2Output(uint256)")[:4]

__all__ = ["CHANNEL_TIMEOUT", "Deriver", "L1Journal", "L1Read", "OutputRootChecker", "divergence_report"]

DROPPED_CHANNELS = Counter("lorachain_derivation_dropped_channels_total", "Channels dropped (unreadable, timed out)",
                           ["reason"], registry=metrics.REGISTRY)  # fmt: skip
IGNORED_FRAMES = Counter("lorachain_derivation_ignored_frames_total",
                         "Frames ignored by the channel bank (seen before, or past the channel's last frame)",
                         registry=metrics.REGISTRY)  # fmt: skip
OLD_BATCHES = Counter("lorachain_derivation_old_batches_total", "Batches skipped as already applied (posted again)",
                      registry=metrics.REGISTRY)  # fmt: skip
DA_UNAVAILABLE = Counter("lorachain_derivation_da_unavailable_total", "Rounds held back by missing DA data",
                         registry=metrics.REGISTRY)  # fmt: skip
UNSAFE_DIVERGENCES = Counter("lorachain_derivation_unsafe_divergences_total",
                             "Derived blocks unlike the unsafe (gossiped) block at their height: reorged",
                             registry=metrics.REGISTRY)  # fmt: skip
OUTPUT_ROOTS_VERIFIED = Counter("lorachain_derivation_output_roots_verified_total",
                                "Output roots posted on L1 equal to the derived block's",
                                registry=metrics.REGISTRY)  # fmt: skip
OUTPUT_ROOT_MISMATCHES = Counter("lorachain_derivation_output_root_mismatches_total",
                                 "Output roots posted on L1 unlike the derived block's (derivation stops)",
                                 registry=metrics.REGISTRY)  # fmt: skip
DA_STALLED = Gauge("lorachain_derivation_da_stalled", "1 while derivation waits for DA data", registry=metrics.REGISTRY)
L1_REORGS = Counter("lorachain_derivation_l1_reorgs_total", "L1 reorgs of blocks derivation had read (rewound)",
                    registry=metrics.REGISTRY)  # fmt: skip
FORCED_EMPTY_BATCHES = Counter("lorachain_derivation_forced_empty_batches_total",
                               "Deposit-only blocks derived because the sequencing window of the epoch passed",
                               registry=metrics.REGISTRY)  # fmt: skip
L1_REORG_DEPTH = Gauge("lorachain_derivation_l1_reorg_depth", "L1 blocks read that the last L1 reorg replaced",
                       registry=metrics.REGISTRY)  # fmt: skip


@dataclass(frozen=True)
class L1Read:
    """An L1 block derivation has read: its hash, and the safe head and the resume point once it was read."""

    number: int
    hash: bytes
    safe_head: bytes
    resume_l1: int

    def to_json(self) -> list:
        return [self.number, "0x" + self.hash.hex(), "0x" + self.safe_head.hex(), self.resume_l1]

    @classmethod
    def from_json(cls, raw: list) -> L1Read:
        return cls(raw[0], bytes.fromhex(raw[1][2:]), bytes.fromhex(raw[2][2:]), raw[3])


class L1Journal:
    """The last ``size`` L1 blocks read, oldest first: where an L1 reorg left the chain that was read."""

    def __init__(self, size: int, entries: Iterable[L1Read] = ()) -> None:
        self.size = size
        self.entries: dict[int, L1Read] = {entry.number: entry for entry in entries}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, number: int) -> bool:
        return number in self.entries

    @property
    def tip(self) -> L1Read | None:
        return self.entries[next(reversed(self.entries))] if self.entries else None

    @property
    def oldest(self) -> L1Read | None:
        return self.entries[next(iter(self.entries))] if self.entries else None

    def record(self, entry: L1Read) -> None:
        self.entries[entry.number] = entry
        while len(self.entries) > self.size:
            del self.entries[next(iter(self.entries))]

    def forget_after(self, number: int) -> None:
        """Forget the blocks after ``number`` (they are read again)."""
        for later in [n for n in self.entries if n > number]:
            del self.entries[later]

    def check_tip(self, l1: L1Client) -> tuple[bool, dict | None]:
        """Whether the last block read is still canonical (the next block's parent, or the block itself at the
        L1 head), and the raw header of the L1 block after it (None at the L1 head or with nothing read)."""
        tip = self.tip
        if tip is None:
            return True, None
        after = l1.block_by_number(tip.number + 1)
        if after is not None:
            return bytes.fromhex(after["parentHash"][2:]) == tip.hash, after
        raw = l1.block_by_number(tip.number)
        return raw is not None and bytes.fromhex(raw["hash"][2:]) == tip.hash, None

    def rewind(self, l1: L1Client) -> L1Read | None:
        """Forget the blocks an L1 reorg replaced; the newest still canonical (the common ancestor), or None if
        every block remembered was replaced (then nothing is kept)."""
        for entry in reversed(list(self.entries.values())):
            raw = l1.block_by_number(entry.number)
            if raw is not None and bytes.fromhex(raw["hash"][2:]) == entry.hash:
                self.forget_after(entry.number)
                return entry
        self.entries.clear()
        return None


def _load_resume(path: Path, start: int) -> int:
    """The L1 block a restart reads from (saved after each L1 block): no batch before it is pending."""
    return json.loads(path.read_text())["resume_l1"] if path.exists() else start


def _load_safe(path: Path) -> bytes | None:
    """The safe head's hash a restart starts from (None in a state file from before unsafe blocks)."""
    safe = json.loads(path.read_text()).get("safe_head") if path.exists() else None
    return bytes.fromhex(safe[2:]) if safe else None


def _load_journal(path: Path) -> list[L1Read]:
    """The L1 blocks read before a restart (none in a state file from before L1 reorgs were handled)."""
    raw = json.loads(path.read_text()).get("l1_journal", []) if path.exists() else []
    return [L1Read.from_json(entry) for entry in raw]


def _save_resume(path: Path, resume_l1: int, safe_head: bytes | None = None, journal: Iterable[L1Read] = ()) -> None:
    tmp = path.with_suffix(".tmp")
    state: dict = {"resume_l1": resume_l1}
    if safe_head is not None:
        state["safe_head"] = "0x" + safe_head.hex()
    state["l1_journal"] = [entry.to_json() for entry in journal]
    with open(tmp, "w") as out:
        json.dump(state, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class OutputRootChecker:
    """The proposer's output roots on L1 (the L2OutputOracle) against the derived chain's own.

    Cheap enough to run every derivation round: ``outputCount()`` is read at most every ``poll_s`` seconds and a
    proposal (``getL2Output``) only once, when it appears; a proposal is checked once the safe head has reached
    its L2 block (its output computed as ``optimism_outputAtBlock`` does, :mod:`outputs`). A restart checks every
    proposal again (one call and one storage-root lookup each)."""

    def __init__(self, config: RollupConfig, l1: L1Client, chain: Blockchain, sequencer: L1Client | None = None,
                 poll_s: float = OUTPUT_POLL_S) -> None:  # fmt: skip
        self.l1, self.chain, self.sequencer, self.poll_s = l1, chain, sequencer, poll_s
        self.oracle = "0x" + config.output_oracle.hex()
        self.confirmations = config.l1_confirmations
        self.known = 0  # proposals read from the oracle
        self.pending: list[tuple[int, int, bytes]] = []  # (output index, L2 block, root) not yet checked
        self.verified = 0
        self._polled = float("-inf")

    def _call(self, data: bytes) -> bytes:
        tag = hex(max(self.l1.block_number() - self.confirmations, 0)) if self.confirmations else "latest"
        return bytes.fromhex(self.l1.call("eth_call", {"to": self.oracle, "data": "0x" + data.hex()}, tag)[2:])

    def poll(self) -> None:
        """Read proposals made since the last poll (at most every ``poll_s`` seconds)."""
        now = time.monotonic()
        if now - self._polled < self.poll_s:
            return
        self._polled = now
        count = int.from_bytes(self._call(_OUTPUT_COUNT), "big")
        while self.known < count:
            raw = self._call(_GET_OUTPUT + self.known.to_bytes(32, "big"))
            root, number = raw[:32], int.from_bytes(raw[64:96], "big")
            self.pending.append((self.known, number, root))
            self.known += 1

    def check(self, safe_number: int) -> dict | None:
        """Check the proposals whose L2 block is derived (at or below ``safe_number``); the report of the first
        mismatch, or None."""
        self.poll()
        while self.pending and self.pending[0][1] <= safe_number:
            index, number, posted = self.pending[0]
            header = self.chain.header_by_number(number)
            ours = output_at(self.chain.chaindb.db, header.hash, header.state_root)
            if ours.root != posted:
                OUTPUT_ROOT_MISMATCHES.inc()
                return output_root_report(index, number, posted, ours, self._candidates(number))
            self.pending.pop(0)
            self.verified += 1
            OUTPUT_ROOTS_VERIFIED.inc()
            log.info("output root #%d of L2 block #%d verified: 0x%s", index, number, posted.hex())
        return None

    def _candidates(self, number: int) -> dict[str, list[dict]]:
        """Known values of each output component, to find the posted root's preimage among: the neighbouring
        blocks' (a proposer off by one) and the sequencer's output of this block (a proposer following it)."""
        found: list[dict] = []
        for other in (number - 1, number + 1):
            if 0 <= other <= self.chain.head.block_number:
                header = self.chain.header_by_number(other)
                found.append({**_components(output_at(self.chain.chaindb.db, header.hash, header.state_root)),
                              "source": f"derived block #{other}"})  # fmt: skip
        if self.sequencer is not None:
            try:
                theirs = self.sequencer.call("optimism_outputAtBlock", hex(number))
                found.append({"stateRoot": theirs["stateRoot"], "withdrawalStorageRoot":
                              theirs["withdrawalStorageRoot"], "blockHash": theirs["blockRef"]["hash"],
                              "source": "the sequencer's optimism_outputAtBlock"})  # fmt: skip
            except Exception as exc:  # best effort: the report stands without it
                log.warning("the sequencer's output of #%d could not be read: %s", number, exc)
        return {name: found for name in ("stateRoot", "withdrawalStorageRoot", "blockHash")}


def _components(output: Output) -> dict:
    return {"stateRoot": "0x" + output.state_root.hex(), "withdrawalStorageRoot":
            "0x" + output.withdrawal_storage_root.hex(), "blockHash": "0x" + output.block_hash.hex()}  # fmt: skip


class Deriver:
    def __init__(
        self,
        config: RollupConfig,
        l1: L1Client,
        chain: Blockchain,
        state_path: Path,
        da: DAClient | None = None,
        sequencer: L1Client | None = None,
        channel_timeout: int = CHANNEL_TIMEOUT,
    ) -> None:
        self.config, self.l1, self.chain, self.da, self.sequencer = config, l1, chain, da, sequencer
        self.state_path = state_path
        self.next_l1 = _load_resume(state_path, config.genesis_l1.number)
        self.channel_timeout = channel_timeout
        self._channels: dict[bytes, tuple[ChannelAssembler, int]] = {}
        self._origins = Sequencer(config, l1)  # L1 origins and L1-info attributes, made as the sequencer makes them
        self.divergence: dict | None = None
        self.derived = 0
        self.dropped = 0
        self.forced = 0  # deposit-only blocks derived past the sequencing window
        self._inclusion = self.next_l1
        self.stalled: DataUnavailable | None = None  # the DA data derivation waits for
        self._stalled_since = self._stall_logged = 0.0
        self.safe_head = chain.head  # the last derived block (the head, unless unsafe blocks run ahead of it)
        saved = _load_safe(state_path)
        if saved is not None:
            try:
                self.safe_head = chain.header_by_hash(saved)
            except Exception:  # HeaderNotFound: an older datadir; the head is what was derived
                log.warning("safe head 0x%s of %s not in the chain: starting from the head", saved.hex(), state_path)
        self.unsafe_divergences: list[dict] = []
        self.outputs = (OutputRootChecker(config, l1, chain, sequencer)
                        if config.output_oracle != bytes(20) else None)  # fmt: skip
        self.journal = L1Journal(channel_timeout + REORG_MARGIN, _load_journal(state_path))  # the L1 blocks read
        self.l1_reorgs = 0

    # -- one L1 block ----------------------------------------------------------------------------
    def step(self) -> int:
        """Read the next L1 block if it is confirmed; the number of L2 blocks derived from it. Then the output
        roots proposed on L1 for blocks derived so far are checked (:class:`OutputRootChecker`)."""
        return sum(self.step_blocks())

    def step_blocks(self) -> Iterator[int]:
        """:meth:`step`, one L2 block at a time: yields 1 after each block derived, so that the node's loop can
        answer RPC requests and apply gossip between the blocks of one L1 block (a channel of a few hundred
        blocks takes seconds to execute). Between two yields the chain and the safe head are whole: the head is a
        derived block and ``next_l1`` is already past the L1 block being read (that block's data is what the safe
        head is derived from); if the step fails, ``next_l1`` goes back to that L1 block, to be read again."""
        yield from self._step()
        if self.outputs is not None and self.divergence is None:
            report = self.outputs.check(self.safe_head.block_number)
            if report is not None:
                self.divergence = report
                log.error("OUTPUT ROOT MISMATCH: output #%d on L1 for L2 block #%d is 0x%s, the derived block's is "
                          "%s; first differing component %s; derivation stops here", report["output_index"],
                          report["block"], report["posted_output_root"][2:], report["derived_output_root"],
                          report["first_differing_component"])  # fmt: skip

    def _step(self) -> Iterator[int]:
        if self.divergence is not None:
            return
        canonical, after_tip = self.journal.check_tip(self.l1)
        if not canonical:  # an L1 reorg: rewound; the next round reads L1 again from the resume point
            self._rewind()
            return
        number = self.next_l1
        if number > self.l1.block_number() - self.config.l1_confirmations:
            return
        block_hash = None  # the hash of L1 block `number`, read before its frames (a reorg in between is seen later)
        tip = self.journal.tip
        if tip is None or number > tip.number:  # a block read again keeps what it first recorded
            raw = after_tip if after_tip is not None and int(after_tip["number"], 16) == number else None
            raw = raw or self.l1.block_by_number(number)
            if raw is None:
                return
            block_hash = bytes.fromhex(raw["hash"][2:])
        try:
            frames = frames_in_l1_block(self.l1, self.config, number, self.da)
        except DataUnavailable as exc:
            self._stall(number, exc)
            return
        if self.stalled is not None:
            log.warning("DA data of batcher tx %s appeared after %.1fs: derivation goes on from L1 block #%d",
                        self.stalled.tx_hash, time.monotonic() - self._stalled_since, number)  # fmt: skip
            self.stalled = None
            DA_STALLED.set(0)
        for frame in frames:
            entry = self._channels.setdefault(frame.channel_id, (ChannelAssembler(frame.channel_id), number))
            if not entry[0].add(frame):
                IGNORED_FRAMES.inc()
                log.warning("ignoring frame %d of channel 0x%s (seen before, or past the channel's end)",
                            frame.number, frame.channel_id.hex())  # fmt: skip
        self.next_l1 = number + 1  # while its blocks are derived, the safe head holds data of L1 block `number`
        self._inclusion = number  # the L1 block carrying the batches applied now (the sequencing window's end)
        try:
            for channel_id, (assembler, opened) in sorted(self._channels.items(), key=lambda item: item[1][1]):
                if assembler.ready:
                    del self._channels[channel_id]
                    yield from self._apply_channel(assembler)
                elif number - opened > self.channel_timeout:
                    log.warning("channel 0x%s timed out after %d L1 blocks", channel_id.hex(), number - opened)
                    DROPPED_CHANNELS.labels("timeout").inc()
                    del self._channels[channel_id]
            yield from self._force_empty(number)
        except BaseException:  # a failed step (or one abandoned at shutdown) reads this L1 block again
            self.next_l1 = number
            raise
        # A restart reads again from the oldest channel still open (its batches are not applied yet);
        # batches it re-reads that were applied already are skipped, since their parent is no longer the head.
        resume = min((opened for _, opened in self._channels.values()), default=number + 1)
        if block_hash is not None:
            self.journal.record(L1Read(number, block_hash, self.safe_head.hash, resume))
        _save_resume(self.state_path, resume, self.safe_head.hash, self.journal.entries.values())
        metrics.L1_POSITION.set(self.next_l1)

    # -- L1 reorgs ---------------------------------------------------------------------------------
    def _rewind(self) -> None:
        """Back to the newest L1 block read that is still canonical (op-node's reset on an L1 reorg)."""
        tip, oldest = self.journal.tip, self.journal.oldest
        assert tip is not None and oldest is not None  # check_tip found the tip replaced
        ancestor = self.journal.rewind(self.l1)
        depth = tip.number - (ancestor.number if ancestor is not None else oldest.number - 1)
        self.l1_reorgs += 1
        L1_REORGS.inc()
        L1_REORG_DEPTH.set(depth)
        safe = self._header(ancestor.safe_head) if ancestor is not None else None
        was = self.safe_head.block_number
        if ancestor is None or safe is None:
            log.error("L1 reorg deeper than the L1 blocks remembered (#%d-#%d all replaced): deriving again from "
                      "the rollup's genesis", oldest.number, tip.number)  # fmt: skip
            safe, self.next_l1 = self.chain.header_by_number(0), self.config.genesis_l1.number
            self.journal.entries.clear()
        else:
            self.next_l1 = ancestor.resume_l1
            log.warning("L1 reorg: L1 blocks #%d-#%d read are no longer canonical (depth %d, common ancestor #%d "
                        "0x%s); safe head back from L2 #%d to #%d, reading L1 again from #%d", ancestor.number + 1,
                        tip.number, depth, ancestor.number, ancestor.hash.hex(), was, safe.block_number,
                        self.next_l1)  # fmt: skip
        self.safe_head = safe
        if self.chain.head.hash != safe.hash:
            self.chain.set_head(safe)  # the unsafe blocks above go too; gossip or derivation brings them again
        metrics.HEAD.set(safe.block_number)
        self._channels.clear()
        if self.stalled is not None:
            self.stalled = None
            DA_STALLED.set(0)
        if self.outputs is not None:  # proposals read from the replaced L1 blocks are read again
            self.outputs = OutputRootChecker(self.config, self.l1, self.chain, self.sequencer, self.outputs.poll_s)
        _save_resume(self.state_path, self.next_l1, safe.hash, self.journal.entries.values())
        metrics.L1_POSITION.set(self.next_l1)

    def _header(self, block_hash: bytes):
        """The canonical L2 header of ``block_hash`` (None if it is not in the chain)."""
        try:
            header = self.chain.header_by_hash(block_hash)
        except HeaderNotFound:
            return None
        return header if self.chain.is_canonical(header) else None

    def _stall(self, number: int, exc: DataUnavailable) -> None:
        """Stay on L1 block ``number``: its batcher data is posted but the DA server does not give it."""
        DA_UNAVAILABLE.inc()
        DA_STALLED.set(1)
        now = time.monotonic()
        if self.stalled is None or self.stalled.tx_hash != exc.tx_hash:
            self._stalled_since = self._stall_logged = now
            log.warning("derivation held at L1 block #%d (L2 head #%d): %s; retrying", number,
                        self.chain.head.block_number, exc)  # fmt: skip
        elif now - self._stall_logged >= STALL_LOG_EVERY_S:
            self._stall_logged = now
            log.warning("derivation still held at L1 block #%d after %.0fs: %s", number, now - self._stalled_since, exc)
        self.stalled = exc

    def _apply_channel(self, assembler: ChannelAssembler) -> Iterator[int]:
        """Apply the channel's batches in order; yields 1 after each block derived."""
        try:
            raw_batches = split_batches(decompress_channel(assembler.data()))
        except ChannelError as exc:
            DROPPED_CHANNELS.labels("unreadable").inc()
            log.warning("dropping channel 0x%s: %s", assembler.channel_id.hex(), exc)
            return
        for raw in raw_batches:
            try:
                batch = SingularBatch.decode(raw)
            except BatchError as exc:
                DROPPED_CHANNELS.labels("malformed_batch").inc()
                log.warning("dropping the rest of channel 0x%s: %s", assembler.channel_id.hex(), exc)
                break
            if self._apply(batch):
                yield 1
                if self.divergence is not None:
                    break

    # -- one batch -------------------------------------------------------------------------------
    def _apply(self, batch: SingularBatch, inclusion: int | None = None) -> bool:
        """Derive the block of ``batch`` on the safe head if it is valid; ``inclusion``: the L1 block that carried
        it (default: the L1 block being read)."""
        inclusion = self._inclusion if inclusion is None else inclusion
        head = self.safe_head
        if batch.parent_hash != head.hash:
            if batch.timestamp > head.timestamp:
                return self._drop(batch, "its parent is not the head")
            OLD_BATCHES.inc()  # an older batch (already applied: posted again) or one for another chain
            log.info("skipping batch at timestamp %d: not after the head's (%d), already applied", batch.timestamp,
                     head.timestamp)  # fmt: skip
            return False
        if batch.timestamp <= head.timestamp:
            return self._drop(batch, "timestamp not after the parent's")
        if batch.epoch_number + self.config.seq_window_size < inclusion:
            return self._drop(batch, f"outside its sequencing window: epoch {batch.epoch_number} + seq_window_size "
                                     f"{self.config.seq_window_size} < L1 inclusion block {inclusion}")  # fmt: skip
        current = self._origin(head)
        deposits: list = []
        if batch.epoch_number == current.l1_number:
            if batch.epoch_hash != current.l1_block_hash:
                return self._drop(batch, "epoch hash differs from the parent's origin")
            info = dataclasses.replace(current, sequence_number=current.sequence_number + 1)
        elif batch.epoch_number == current.l1_number + 1:
            l1_block = self._origins.l1_block(batch.epoch_number)
            if l1_block is None or l1_block.ref.hash != batch.epoch_hash:
                return self._drop(batch, "epoch is not the canonical L1 block")
            if l1_block.parent_hash != current.l1_block_hash:
                return self._drop(batch, "epoch does not extend the parent's origin")
            if l1_block.ref.timestamp > batch.timestamp:
                return self._drop(batch, "timestamp before its epoch's L1 block")
            info = self._origins.l1_info(l1_block, 0)
            deposits = deposits_in_block(self.l1, self.config.deposit_portal, l1_block.ref.hash)
        else:
            return self._drop(batch, f"epoch {batch.epoch_number} is neither the parent's nor the next")
        if batch.timestamp > info.l1_timestamp + self.config.max_sequencer_drift:
            reason = self._past_drift(batch, current, info)
            if reason is not None:
                return self._drop(batch, reason)
        builder = self.chain.chain_class.get_vm_class_for_block_number(head.block_number + 1).get_transaction_builder()
        try:
            user_txs = [builder.decode(raw) for raw in batch.transactions]
        except Exception as exc:  # any undecodable transaction makes the batch invalid
            return self._drop(batch, f"undecodable transaction: {exc}")
        return self._build(batch, info, deposits, user_txs)

    def _origin(self, head) -> L1BlockInfo:
        """The L1 origin (epoch) of the L2 block ``head``."""
        parent = self.chain.block_by_header(head)
        current = origin_of(parent) if head.block_number > 0 else self._origins.genesis_origin()
        if current is None:
            raise ChainError(f"L2 block #{head.block_number} records no L1 origin")
        return current

    def _past_drift(self, batch: SingularBatch, current: L1BlockInfo, info: L1BlockInfo) -> str | None:
        """Why a batch past the sequencer drift is dropped; None for an empty batch that had to keep its epoch."""
        limit = f"timestamp {batch.timestamp} > epoch time {info.l1_timestamp} + max_sequencer_drift " \
                f"{self.config.max_sequencer_drift}"  # fmt: skip
        if batch.transactions:
            return f"past the sequencer drift with transactions ({limit})"
        if info.l1_number != current.l1_number:
            return None  # an empty batch that adopts the next epoch: always allowed
        following = self._origins.l1_block(current.l1_number + 1)
        if following is not None and following.ref.timestamp <= batch.timestamp:
            return (f"past the sequencer drift without adopting the next L1 origin #{following.ref.number} (time "
                    f"{following.ref.timestamp}), which it could have ({limit})")  # fmt: skip
        return None

    def _force_empty(self, number: int) -> Iterator[int]:
        """Deposit-only blocks while L1 block ``number`` is past the safe head's sequencing window (op-node's
        empty batches: the deposits of epochs the batcher left out are included all the same)."""
        window = max(self.config.seq_window_size, 1)  # (the next epoch must be an L1 block already read)
        if self.config.genesis_l1.number + window > number:
            return  # no epoch can be that old yet
        while self.divergence is None:
            head = self.safe_head
            current = self._origin(head)
            if current.l1_number + window > number:
                return
            following = self._origins.l1_block(current.l1_number + 1)
            if following is None or following.parent_hash != current.l1_block_hash:
                return  # not there (or an L1 reorg, found next round): nothing forced yet
            timestamp = head.timestamp + self.config.block_time
            deposits: list = []
            if following.ref.timestamp <= timestamp:
                info = self._origins.l1_info(following, 0)
                deposits = deposits_in_block(self.l1, self.config.deposit_portal, following.ref.hash)
            else:
                info = dataclasses.replace(current, sequence_number=current.sequence_number + 1)
            batch = SingularBatch(head.hash, info.l1_number, info.l1_block_hash, timestamp, ())
            log.warning("sequencing window of epoch %d passed at L1 block #%d (seq_window_size %d): forcing a "
                        "deposit-only L2 block #%d at timestamp %d, epoch %d, %d deposit(s)", current.l1_number,
                        number, self.config.seq_window_size, head.block_number + 1, timestamp, info.l1_number,
                        len(deposits))  # fmt: skip
            if not self._build(batch, info, deposits, []):
                return
            self.forced += 1
            FORCED_EMPTY_BATCHES.inc()
            yield 1

    def _build(self, batch: SingularBatch, info: L1BlockInfo, deposits: list, user_txs: list) -> bool:
        """Build (or consolidate with the unsafe block) the block of a valid batch on the safe head."""
        head = self.safe_head
        txs = [deposit_transaction(info.deposit()), *(deposit_transaction(d) for d in deposits), *user_txs]
        mix_hash = keccak(head.mix_hash + head.hash)
        unsafe = None
        if self.chain.head.hash != head.hash:  # unsafe blocks (gossip) above the safe head
            unsafe = self.chain.block_by_header(self.chain.header_by_number(head.block_number + 1))
            if _built_from(unsafe, head, txs, batch.timestamp, mix_hash):
                return self._derived(unsafe)  # consolidation: the unsafe block is the derived block
            self.chain.set_head(head)  # reorg: the unsafe chain from here on is not what L1 + DA say
        try:
            built = self.chain.build_block(txs, timestamp=batch.timestamp, coinbase=SEQUENCER_FEE_VAULT,
                                           mix_hash=mix_hash, strict=True)  # fmt: skip
        except ChainError as exc:
            if unsafe is not None:  # the unsafe chain was dropped for nothing: no block replaces it yet
                log.warning("batch at timestamp %d dropped after the unsafe chain was reorged away", batch.timestamp)
            return self._drop(batch, str(exc))
        if unsafe is not None:
            self._unsafe_divergence(built.block, unsafe)
        return self._derived(built.block)

    def _derived(self, block) -> bool:
        self.safe_head = block.header
        self.derived += 1
        metrics.DERIVED.inc()
        metrics.HEAD.set(self.chain.head.block_number)
        self._compare(block)
        return True

    def _unsafe_divergence(self, derived, unsafe) -> None:
        UNSAFE_DIVERGENCES.inc()
        report = {**divergence_report(derived, block_summary(unsafe)), "kind": "unsafe"}
        log.error("UNSAFE DIVERGENCE at L2 block #%d: derived 0x%s, unsafe (gossiped) 0x%s, fields %s: reorged to "
                  "the derived block", derived.number, derived.hash.hex(), unsafe.hash.hex(),
                  report["differing_fields"])  # fmt: skip
        self.unsafe_divergences.append(report)
        path = self.state_path.parent / "unsafe-divergence.json"
        path.write_text(json.dumps(self.unsafe_divergences, indent=2) + "\n")

    def _drop(self, batch: SingularBatch, reason: str) -> bool:
        self.dropped += 1
        metrics.DROPPED_BATCHES.inc()
        log.warning("dropping batch at timestamp %d (epoch %d): %s", batch.timestamp, batch.epoch_number, reason)
        return False

    def _compare(self, block) -> None:
        if self.sequencer is None:
            return
        theirs = self.sequencer.call("eth_getBlockByNumber", hex(block.number), True)
        if theirs is not None and theirs["hash"] == "0x" + block.hash.hex():
            return
        # Derived from L1 blocks that a reorg has just replaced (the sequencer may have reset that block away
        # already): not a divergence; the next round rewinds, derives the block again and compares it again.
        if not self.journal.check_tip(self.l1)[0]:
            log.warning("derived block #%d differs from the sequencer's, but the L1 blocks it came from were just "
                        "reorged away: compared again after the rewind", block.number)  # fmt: skip
            return
        metrics.DIVERGENCES.inc()
        log.error("DIVERGENCE at L2 block #%d: derived 0x%s, sequencer %s; derivation stops here", block.number,
                  block.hash.hex(), theirs["hash"] if theirs else None)  # fmt: skip
        report = explain(divergence_report(block, theirs), self.chain, block, self.sequencer)
        self.divergence = report
        log.error("DIVERGENCE at L2 block #%d: fields %s, first differing transaction %s, receipt %s, state key %s, "
                  "AI output %s", block.number, report["differing_fields"], report["first_differing_transaction"],
                  _brief(report.get("first_differing_receipt")), _brief(report.get("first_differing_state_key")),
                  _brief(report.get("first_differing_ai_output")))  # fmt: skip


def _built_from(block, parent, txs: list, timestamp: int, mix_hash: bytes) -> bool:
    """Whether ``block`` is what building ``txs`` on ``parent`` at ``timestamp`` makes (``build_block``'s inputs)."""
    header = block.header
    return (header.parent_hash == parent.hash and header.timestamp == timestamp and header.mix_hash == mix_hash
            and header.coinbase == SEQUENCER_FEE_VAULT and header.gas_limit == parent.gas_limit
            and header.extra_data == b"" and getattr(header, "parent_beacon_block_root", bytes(32)) == bytes(32)
            and [tx.hash for tx in block.transactions] == [tx.hash for tx in txs])  # fmt: skip


def _brief(entry: dict | None) -> str | None:
    if entry is None:
        return None
    keys = ("transaction", "hash", "address", "account_hash", "field", "fields", "slot", "call", "token_index",
            "derived_token", "sequencer_token")  # fmt: skip
    return json.dumps({k: entry[k] for k in keys if k in entry})
