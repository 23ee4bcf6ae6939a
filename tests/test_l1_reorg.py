"""L1 reorgs, as op-node follows them: a real L1 node (evm_snapshot + evm_revert + evm_mine make the reorg) and, in
process, the validator's derivation, the sequencer's origin reset and its safe-head tracker on real chains."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from eth_utils import keccak

from lorachain.genesis.genesis import parse_genesis
from lorachain.node.chain import Blockchain
from lorachain.node.rollup.batcher import batch_of_raw_block, batcher_tx_gas
from lorachain.node.rollup.channels import channel_frames, compress_batches
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.derivation import Deriver
from lorachain.node.rollup.frames import encode_frames_calldata
from lorachain.node.rollup.l1_client import L1Client
from lorachain.node.rollup.l2_fees import SEQUENCER_FEE_VAULT
from lorachain.node.rollup.safe_head import SafeHeadTracker
from lorachain.node.rollup.sequencer import Sequencer, origin_of
from tests.rollup_fixtures import start_l1_and_rollup

pytestmark = pytest.mark.e2e


class Rollup:
    """An L1 node with a rollup on it, a sequencer's chain built in process, and batches posted by hand."""

    def __init__(self, tmp_path: Path, *init_args: str) -> None:
        self.l1_node, rollup, _ = start_l1_and_rollup(tmp_path, init_args=init_args)
        self.config = RollupConfig.load(rollup / "rollup.json")
        self.genesis = parse_genesis(json.loads((rollup / "genesis.json").read_text()))
        self.l1 = L1Client(self.l1_node.url)
        self.chain = Blockchain.initialize(tmp_path / "sequencer", self.genesis)
        self.sequencer = Sequencer(self.config, self.l1)
        self.timestamp = int(time.time()) + 1000  # L2 blocks after every L1 block: each adopts the next origin

    def build(self, count: int) -> None:
        """``count`` L2 blocks on the sequencer's chain, as the node builds them."""
        for _ in range(count):
            head = self.chain.head
            self.timestamp += 1
            leading = self.sequencer.block_inputs(self.chain.block_by_header(head), self.timestamp)
            self.chain.build_block(leading, timestamp=self.timestamp, coinbase=SEQUENCER_FEE_VAULT,
                                   mix_hash=keccak(head.mix_hash + head.hash))  # fmt: skip

    def post(self, first: int, last: int) -> None:
        """The batches of L2 blocks ``first``..``last`` in one calldata batcher transaction (mined at once)."""
        blocks = [self.chain.block_by_header(self.chain.header_by_number(n)) for n in range(first, last + 1)]
        batches = [batch_of_raw_block(b.number, self.chain.encode_block(b)).encode() for b in blocks]
        data = encode_frames_calldata(channel_frames(os.urandom(16), compress_batches(batches)))
        tx = {"from": "0x" + self.config.batcher.hex(), "to": "0x" + self.config.batch_inbox.hex(),
              "data": "0x" + data.hex(), "gas": hex(batcher_tx_gas(data))}  # fmt: skip
        self.l1.wait_for_receipt(self.rpc("eth_sendTransaction", tx))

    def rpc(self, method: str, *params: Any) -> Any:
        reply = self.l1_node.rpc(method, *params)
        assert "error" not in reply, reply
        return reply["result"]

    def reorg(self, snapshot: str, new_blocks: int = 2) -> None:
        """Back to ``snapshot`` on L1, then ``new_blocks`` other blocks (later timestamps: other hashes)."""
        assert self.rpc("evm_revert", snapshot) is True
        self.rpc("evm_increaseTime", 7)
        for _ in range(new_blocks):
            self.rpc("evm_mine")

    def stop(self) -> None:
        self.chain.close()
        self.l1.close()
        self.l1_node.stop()


@pytest.fixture
def rollup(tmp_path: Path):
    setup = Rollup(tmp_path)
    yield setup
    setup.stop()


def derive_all(deriver: Deriver) -> None:
    for _ in range(200):
        before = (deriver.next_l1, deriver.safe_head.hash)
        deriver.step()
        if (deriver.next_l1, deriver.safe_head.hash) == before:
            return


def test_derivation_rewinds_to_the_common_ancestor_and_derives_the_new_l1(rollup: Rollup, tmp_path: Path) -> None:
    validator = Blockchain.initialize(tmp_path / "validator", rollup.genesis)
    state = tmp_path / "derivation.json"
    deriver = Deriver(rollup.config, rollup.l1, validator, state)
    try:
        rollup.build(2)
        rollup.post(1, 2)
        derive_all(deriver)
        assert deriver.safe_head.hash == rollup.chain.header_by_number(2).hash
        snapshot = rollup.rpc("evm_snapshot")
        rollup.build(2)
        rollup.post(3, 4)  # these batches leave L1 with the reorg
        derive_all(deriver)
        assert deriver.safe_head.hash == rollup.chain.header_by_number(4).hash
        assert all(
            origin_of(rollup.chain.block_by_header(rollup.chain.header_by_number(n))).l1_number
            < int(rollup.rpc("eth_blockNumber"), 16)
            for n in (3, 4)
        )  # fmt: skip  (origins before the fork)

        rollup.reorg(snapshot)
        derive_all(deriver)
        assert deriver.l1_reorgs == 1
        assert validator.head.block_number == 2 and deriver.safe_head.hash == rollup.chain.header_by_number(2).hash
        saved = json.loads(state.read_text())
        assert saved["safe_head"] == "0x" + deriver.safe_head.hash.hex()
        assert max(entry[0] for entry in saved["l1_journal"]) < deriver.next_l1

        rollup.post(3, 4)  # the batcher posts them again, on the new L1 chain
        derive_all(deriver)
        assert deriver.safe_head.hash == validator.head.hash == rollup.chain.header_by_number(4).hash
        assert deriver.divergence is None and deriver.l1_reorgs == 1

        snapshot = rollup.rpc("evm_snapshot")  # a reorg while the validator is down: seen on restart
        rollup.build(1)
        rollup.post(5, 5)
        derive_all(deriver)
        assert validator.head.block_number == 5
        rollup.reorg(snapshot, new_blocks=3)
        restarted = Deriver(rollup.config, rollup.l1, validator, state)
        assert restarted.safe_head.block_number == 5
        derive_all(restarted)
        assert restarted.l1_reorgs == 1 and restarted.safe_head.block_number == validator.head.block_number == 4
    finally:
        validator.close()


class SequencerView:
    """The sequencer's JSON-RPC as derivation's comparison reads it (``eth_getBlockByNumber``), from its chain."""

    def __init__(self, chain: Blockchain) -> None:
        self.chain = chain

    def call(self, method: str, number: str, full: bool) -> dict | None:
        assert method == "eth_getBlockByNumber"
        header = self.chain.header_by_number(int(number, 16))
        return {"hash": "0x" + header.hash.hex(), "number": number}


def test_a_block_derived_from_reorged_l1_is_not_a_divergence(rollup: Rollup, tmp_path: Path) -> None:
    """The race of an L1 reorg: the validator derives a block from L1 blocks that are replaced just after, while the
    sequencer has already reset that block away. Not a divergence: derivation rewinds and compares again; the same
    mismatch on a canonical L1 stays a divergence."""
    validator = Blockchain.initialize(tmp_path / "validator", rollup.genesis)
    deriver = Deriver(rollup.config, rollup.l1, validator, tmp_path / "derivation.json",
                      sequencer=SequencerView(rollup.chain))  # type: ignore[arg-type]  # fmt: skip
    try:
        rollup.build(2)
        rollup.post(1, 2)
        derive_all(deriver)
        snapshot = rollup.rpc("evm_snapshot")
        rollup.build(1)
        rollup.post(3, 3)
        derive_all(deriver)
        derived = validator.block_by_header(validator.header_by_number(3))
        assert deriver.divergence is None and deriver.safe_head.hash == derived.hash

        rollup.chain.set_head(rollup.chain.header_by_number(2))  # the sequencer's reset on the L1 reorg
        rollup.timestamp += 5
        rollup.build(1)
        assert rollup.chain.head.hash != derived.hash
        deriver._compare(derived)  # the L1 is not reorged: a real divergence
        assert deriver.divergence is not None and deriver.divergence["block"] == 3
        deriver.divergence = None

        rollup.reorg(snapshot)
        deriver._compare(derived)  # the same mismatch, its L1 blocks reorged away: not a divergence
        assert deriver.divergence is None
        derive_all(deriver)
        assert deriver.l1_reorgs == 1 and deriver.safe_head.block_number == 2 and deriver.divergence is None
    finally:
        validator.close()


def test_a_reorg_deeper_than_the_journal_derives_again_from_genesis(rollup: Rollup, tmp_path: Path) -> None:
    validator = Blockchain.initialize(tmp_path / "validator", rollup.genesis)
    deriver = Deriver(rollup.config, rollup.l1, validator, tmp_path / "derivation.json")
    try:
        deriver.journal.size = 2
        snapshot = rollup.rpc("evm_snapshot")
        rollup.build(3)
        rollup.post(1, 1)
        rollup.post(2, 3)
        for _ in range(3):
            rollup.rpc("evm_mine")
        derive_all(deriver)
        assert validator.head.block_number == 3
        rollup.reorg(snapshot, new_blocks=6)
        derive_all(deriver)  # never crashes: the whole chain again, from the rollup's genesis
        assert deriver.l1_reorgs == 1 and validator.head.block_number == 0 and deriver.divergence is None
        assert deriver.next_l1 > rollup.config.genesis_l1.number
    finally:
        validator.close()


def test_the_sequencer_resets_to_the_last_block_whose_origin_is_canonical(rollup: Rollup) -> None:
    rollup.build(2)
    snapshot = rollup.rpc("evm_snapshot")
    rollup.rpc("evm_mine")
    rollup.rpc("evm_mine")
    rollup.build(3)  # blocks 3.. adopt the two new L1 blocks as origins
    origins = [origin_of(rollup.chain.block_by_header(rollup.chain.header_by_number(n))) for n in range(1, 6)]
    fork = int(rollup.rpc("eth_blockNumber"), 16) - 2  # the snapshot's L1 block
    assert origins[-1].l1_number > fork
    assert rollup.sequencer.origin_reset(rollup.chain) is None  # all canonical

    rollup.reorg(snapshot, new_blocks=3)
    rollup.sequencer._origin_checked = float("-inf")
    reset = rollup.sequencer.origin_reset(rollup.chain)
    assert reset is not None
    kept = max(n for n, origin in enumerate(origins, start=1) if origin.l1_number <= fork)
    assert reset.head.block_number == kept and reset.dropped == 5 - kept and reset.transactions == ()
    rollup.chain.set_head(reset.head)
    rollup.build(4)  # on the new canonical L1 blocks
    for n in range(kept + 1, rollup.chain.head.block_number + 1):
        origin = origin_of(rollup.chain.block_by_header(rollup.chain.header_by_number(n)))
        assert (
            rollup.rpc("eth_getBlockByNumber", hex(origin.l1_number), False)["hash"]
            == "0x" + origin.l1_block_hash.hex()
        )
    assert origin.l1_number > fork
    rollup.sequencer._origin_checked = float("-inf")
    assert rollup.sequencer.origin_reset(rollup.chain) is None


def test_the_safe_head_tracker_rewinds_on_an_l1_reorg(rollup: Rollup) -> None:
    tracker = SafeHeadTracker(rollup.config, rollup.l1, rollup.chain)
    rollup.build(4)
    rollup.post(1, 2)
    tracker.step()
    assert tracker.safe.block_number == 2
    snapshot = rollup.rpc("evm_snapshot")
    rollup.post(3, 4)
    tracker.step()
    assert tracker.safe.block_number == 4
    rollup.reorg(snapshot)
    tracker.step()
    assert tracker.l1_reorgs == 1 and tracker.safe.block_number == 2
    assert tracker.next_l1 == int(rollup.rpc("eth_blockNumber"), 16) + 1
    rollup.post(3, 4)
    tracker.step()
    assert tracker.safe.block_number == 4 and tracker.l1_reorgs == 1


def test_a_reorg_within_the_l1_confirmations_touches_nothing(tmp_path: Path) -> None:
    rollup = Rollup(tmp_path, "--l1-confirmations", "3")
    validator = Blockchain.initialize(tmp_path / "validator", rollup.genesis)
    deriver = Deriver(rollup.config, rollup.l1, validator, tmp_path / "derivation.json")
    tracker = SafeHeadTracker(rollup.config, rollup.l1, rollup.chain)
    try:
        for _ in range(4):
            rollup.rpc("evm_mine")
        rollup.build(2)
        rollup.post(1, 2)
        for _ in range(3):
            rollup.rpc("evm_mine")
        derive_all(deriver)
        tracker.step()
        assert validator.head.block_number == tracker.safe.block_number == 2
        snapshot = rollup.rpc("evm_snapshot")
        for _ in range(2):
            rollup.rpc("evm_mine")
        rollup.build(2)  # origins at least 3 blocks behind the L1 head: before the fork
        rollup.reorg(snapshot, new_blocks=3)
        rollup.sequencer._origin_checked = float("-inf")
        assert rollup.sequencer.origin_reset(rollup.chain) is None
        rollup.post(3, 4)
        for _ in range(3):
            rollup.rpc("evm_mine")
        derive_all(deriver)
        tracker.step()
        assert deriver.l1_reorgs == tracker.l1_reorgs == 0
        assert validator.head.hash == tracker.safe.hash == rollup.chain.header_by_number(4).hash
    finally:
        validator.close()
        rollup.stop()
