"""Derivation: the L2 chain rebuilt from L1 + DA alone, block by block, and checked against the sequencer.

For each L1 block (``l1_confirmations`` behind the head): the batcher's frames (:mod:`retrieval`) join their
channels; a channel open for more than ``channel_timeout`` L1 blocks is dropped; complete channels are read
in the order they opened and their batches applied in order. A batch applies on top of the current head if

- its parent hash is the head's hash (an older batch, already applied, is skipped quietly);
- its timestamp is after the head's, and not before its epoch's L1 timestamp;
- its epoch is the head's epoch (same L1 block hash) or the next L1 block (which must extend it);

and then the block is built from the same inputs the sequencer used: the L1-info deposit (the next sequence
number, or 0 and the new L1 block's attributes), the epoch's user deposits from the portal's logs (new epoch
only), and the batch's transactions. A block that cannot hold every transaction of its batch is not made
(``Blockchain.build_block(strict=True)``); a batch that breaks a rule is dropped with a log line.

Deviation from op-node, on purpose for this chain: L2 timestamps follow the sequencer's batches instead of
``parent + block_time``, span batches are not read, and the sequencing window is not enforced.

With a sequencer URL, every derived block is compared with the sequencer's block of that number; on the
first mismatch the validator stops deriving and keeps the divergence report (:func:`divergence_report`):
the block, the header fields that differ and the first differing transaction.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from eth_utils import keccak

from lorachain.da_client.client import DAClient
from lorachain.node import metrics
from lorachain.node.chain import Blockchain, ChainError
from lorachain.node.rollup.batches import BatchError, SingularBatch
from lorachain.node.rollup.channels import ChannelAssembler, ChannelError, decompress_channel, split_batches
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.deposit_vm import deposit_transaction
from lorachain.node.rollup.l1_client import L1Client
from lorachain.node.rollup.l1_deposits import deposits_in_block
from lorachain.node.rollup.l2_fees import SEQUENCER_FEE_VAULT
from lorachain.node.rollup.retrieval import frames_in_l1_block
from lorachain.node.rollup.sequencer import Sequencer, origin_of

log = logging.getLogger("lorachain.derivation")

CHANNEL_TIMEOUT = 50  # L1 blocks (Granite)


def _load_resume(path: Path, start: int) -> int:
    """The L1 block a restart reads from (saved after each L1 block): no batch before it is pending."""
    return json.loads(path.read_text())["resume_l1"] if path.exists() else start


def _save_resume(path: Path, resume_l1: int) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as out:
        json.dump({"resume_l1": resume_l1}, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


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

    # -- one L1 block ----------------------------------------------------------------------------
    def step(self) -> int:
        """Read the next L1 block if it is confirmed; the number of L2 blocks derived from it."""
        if self.divergence is not None:
            return 0
        number = self.next_l1
        if number > self.l1.block_number() - self.config.l1_confirmations:
            return 0
        for frame in frames_in_l1_block(self.l1, self.config, number, self.da):
            entry = self._channels.setdefault(frame.channel_id, (ChannelAssembler(frame.channel_id), number))
            entry[0].add(frame)
        derived = 0
        for channel_id, (assembler, opened) in sorted(self._channels.items(), key=lambda item: item[1][1]):
            if assembler.ready:
                del self._channels[channel_id]
                derived += self._apply_channel(assembler)
            elif number - opened > self.channel_timeout:
                log.warning("channel 0x%s timed out after %d L1 blocks", channel_id.hex(), number - opened)
                del self._channels[channel_id]
        self.next_l1 = number + 1
        # A restart reads again from the oldest channel still open (its batches are not applied yet);
        # batches it re-reads that were applied already are skipped, since their parent is no longer the head.
        _save_resume(self.state_path, min((opened for _, opened in self._channels.values()), default=number + 1))
        metrics.L1_POSITION.set(self.next_l1)
        return derived

    def _apply_channel(self, assembler: ChannelAssembler) -> int:
        try:
            raw_batches = split_batches(decompress_channel(assembler.data()))
        except ChannelError as exc:
            log.warning("dropping channel 0x%s: %s", assembler.channel_id.hex(), exc)
            return 0
        applied = 0
        for raw in raw_batches:
            try:
                batch = SingularBatch.decode(raw)
            except BatchError as exc:
                log.warning("dropping the rest of channel 0x%s: %s", assembler.channel_id.hex(), exc)
                break
            if self._apply(batch):
                applied += 1
                if self.divergence is not None:
                    break
        return applied

    # -- one batch -------------------------------------------------------------------------------
    def _apply(self, batch: SingularBatch) -> bool:
        head = self.chain.head
        if batch.parent_hash != head.hash:
            if batch.timestamp > head.timestamp:
                self._drop(batch, "its parent is not the head")
            return False  # an older batch (already applied) or one for another chain
        if batch.timestamp <= head.timestamp:
            return self._drop(batch, "timestamp not after the parent's")
        parent = self.chain.block_by_header(head)
        current = origin_of(parent) if head.block_number > 0 else self._origins.genesis_origin()
        if current is None:
            raise ChainError(f"L2 block #{head.block_number} records no L1 origin")
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
        builder = self.chain.chain_class.get_vm_class_for_block_number(head.block_number + 1).get_transaction_builder()
        try:
            user_txs = [builder.decode(raw) for raw in batch.transactions]
        except Exception as exc:  # any undecodable transaction makes the batch invalid
            return self._drop(batch, f"undecodable transaction: {exc}")
        txs = [deposit_transaction(info.deposit()), *(deposit_transaction(d) for d in deposits), *user_txs]
        try:
            built = self.chain.build_block(txs, timestamp=batch.timestamp, coinbase=SEQUENCER_FEE_VAULT,
                                           mix_hash=keccak(head.mix_hash + head.hash), strict=True)  # fmt: skip
        except ChainError as exc:
            return self._drop(batch, str(exc))
        self.derived += 1
        metrics.DERIVED.inc()
        metrics.HEAD.set(built.block.number)
        self._compare(built.block)
        return True

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
        self.divergence = divergence_report(block, theirs)
        metrics.DIVERGENCES.inc()
        log.error("DIVERGENCE at L2 block #%d: derived 0x%s, sequencer %s", block.number, block.hash.hex(),
                  theirs["hash"] if theirs else None)  # fmt: skip


def divergence_report(block, theirs: dict | None) -> dict:
    """The first differing block, its differing header fields and the first differing transaction."""
    ours = {"hash": "0x" + block.hash.hex(), "stateRoot": "0x" + block.header.state_root.hex(),
            "transactionsRoot": "0x" + block.header.transaction_root.hex(),
            "receiptsRoot": "0x" + block.header.receipt_root.hex(), "gasUsed": hex(block.header.gas_used),
            "timestamp": hex(block.header.timestamp)}  # fmt: skip
    report: dict = {"block": block.number, "derived": ours, "sequencer": None, "differing_fields": [],
                    "first_differing_transaction": None}  # fmt: skip
    if theirs is None:
        return report
    report["sequencer"] = {key: theirs.get(key) for key in ours}
    report["differing_fields"] = [key for key in ours if theirs.get(key) != ours[key]]
    their_txs = [tx["hash"] for tx in theirs.get("transactions", [])]
    for index, tx in enumerate(block.transactions):
        if index >= len(their_txs) or their_txs[index] != "0x" + tx.hash.hex():
            report["first_differing_transaction"] = index
            break
    else:
        if len(their_txs) > len(block.transactions):
            report["first_differing_transaction"] = len(block.transactions)
    return report

