"""The batch queue's sequencing window and sequencer drift, and forced deposit-only blocks (op-node's empty batches):
a real L1 node, the sequencer's chain and the validator's derivation in process (as ``test_l1_reorg``)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from lorachain.genesis.accounts import dev_accounts
from lorachain.node import metrics
from lorachain.node.chain import Blockchain
from lorachain.node.rollup.batcher import batch_of_raw_block
from lorachain.node.rollup.batches import SingularBatch
from lorachain.node.rollup.config import L1BlockRef, RollupConfig
from lorachain.node.rollup.deposit_vm import is_deposit
from lorachain.node.rollup.derivation import Deriver
from lorachain.node.rollup.sequencer import origin_of
from lorachain.rollup_cli import batch_inbox_address
from lorachain.toolchain.solc import load_artifact
from tests.test_l1_reorg import Rollup, derive_all

pytestmark = pytest.mark.e2e
RECIPIENT = "0x" + "5b" * 20


def sample(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name) or 0.0


def transfer(nonce: int = 0) -> bytes:
    """A valid L2 user transaction (devnet account 0, funded in the L2 genesis)."""
    tx = {"type": 2, "chainId": 901, "nonce": nonce, "to": "0x" + "66" * 20, "value": 1, "gas": 21_000,
          "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}  # fmt: skip
    return bytes(Account.sign_transaction(tx, dev_accounts()[0].private_key).raw_transaction)


@pytest.fixture
def windowed(tmp_path: Path):
    setup = Rollup(tmp_path, "--seq-window-size", "4")
    validator = Blockchain.initialize(tmp_path / "validator", setup.genesis)
    yield setup, validator
    validator.close()
    setup.stop()


def test_a_batch_included_after_its_sequencing_window_is_dropped(windowed, tmp_path: Path, caplog) -> None:
    rollup, validator = windowed
    assert rollup.config.seq_window_size == 4  # rollup init --seq-window-size
    deriver = Deriver(rollup.config, rollup.l1, validator, tmp_path / "derivation.json")
    rollup.build(1)
    block = rollup.chain.block_by_header(rollup.chain.header_by_number(1))
    batch = batch_of_raw_block(1, rollup.chain.encode_block(block))
    epoch = origin_of(block).l1_number
    dropped = sample("lorachain_derivation_dropped_batches_total")
    with caplog.at_level(logging.WARNING, logger="lorachain.derivation"):
        assert not deriver._apply(batch, epoch + 5)
    assert "outside its sequencing window" in caplog.text and deriver.dropped == 1
    assert sample("lorachain_derivation_dropped_batches_total") == dropped + 1
    assert deriver._apply(batch, epoch + 4)  # the last L1 block of its window
    assert deriver.safe_head.hash == block.hash


def test_the_sequencer_drift_drops_late_batches_and_keeps_needed_empty_ones(windowed, tmp_path: Path,
                                                                             caplog) -> None:  # fmt: skip
    rollup, validator = windowed
    config = dataclasses.replace(rollup.config, max_sequencer_drift=10, seq_window_size=3600)
    deriver = Deriver(config, rollup.l1, validator, tmp_path / "derivation.json")
    genesis = config.genesis_l1
    assert rollup.l1.block_by_number(genesis.number + 1) is None  # no next L1 block yet
    inclusion = genesis.number + 1

    def batch(epoch: L1BlockRef, timestamp: int, *txs: bytes) -> SingularBatch:
        return SingularBatch(deriver.safe_head.hash, epoch.number, epoch.hash, timestamp, txs)

    with caplog.at_level(logging.WARNING, logger="lorachain.derivation"):
        assert not deriver._apply(batch(genesis, genesis.timestamp + 11, transfer()), inclusion)
        assert "past the sequencer drift with transactions" in caplog.text
        assert deriver._apply(batch(genesis, genesis.timestamp + 11), inclusion)  # empty, no next origin: kept
        rollup.rpc("evm_increaseTime", 200)
        rollup.rpc("evm_mine")
        raw = rollup.l1.block_by_number(genesis.number + 1)
        following = L1BlockRef(genesis.number + 1, bytes.fromhex(raw["hash"][2:]), int(raw["timestamp"], 16))
        assert following.timestamp >= genesis.timestamp + 100
        assert deriver._apply(batch(genesis, genesis.timestamp + 12), inclusion)  # the next origin is later: kept
        caplog.clear()
        assert not deriver._apply(batch(genesis, following.timestamp), inclusion)
        assert "without adopting the next L1 origin" in caplog.text
        assert deriver._apply(batch(following, following.timestamp), inclusion)  # adopts it: kept
        caplog.clear()
        assert not deriver._apply(batch(following, following.timestamp + 11, transfer()), inclusion)
        assert "past the sequencer drift with transactions" in caplog.text
        assert deriver._apply(batch(following, following.timestamp + 10, transfer()), inclusion)
    assert deriver.derived == 4 and deriver.dropped == 3
    assert len(validator.block_by_header(validator.head).transactions) == 2  # the L1-info deposit and the transfer


def test_deposits_are_force_included_while_the_batcher_is_silent(windowed, tmp_path: Path, caplog) -> None:
    rollup, validator = windowed
    state = tmp_path / "derivation.json"
    deriver = Deriver(rollup.config, rollup.l1, validator, state)
    rollup.build(2)
    rollup.post(1, 2)
    derive_all(deriver)
    assert deriver.safe_head.hash == rollup.chain.header_by_number(2).hash and deriver.forced == 0

    w3 = Web3(Web3.HTTPProvider(rollup.l1_node.url))
    portal = w3.eth.contract(address=Web3.to_checksum_address("0x" + rollup.config.deposit_portal.hex()),
                             abi=load_artifact("DepositPortal")["abi"])  # fmt: skip
    recipient = Web3.to_checksum_address(RECIPIENT)
    deposit = portal.functions.depositTransaction(recipient, 7 * 10**15, 100_000, False, b"")
    receipt = w3.eth.wait_for_transaction_receipt(deposit.transact({"from": w3.eth.accounts[1], "value": 10**16}))
    rollup.rpc("evm_mine")
    derive_all(deriver)
    assert validator.head.block_number == 2  # the window of block 2's epoch has not passed yet

    forced = sample("lorachain_derivation_forced_empty_batches_total")
    for _ in range(4):
        rollup.rpc("evm_mine")
    with caplog.at_level(logging.WARNING, logger="lorachain.derivation"):
        derive_all(deriver)
    assert "forcing a deposit-only L2 block" in caplog.text
    head = validator.head.block_number
    assert head > 2 and deriver.forced == head - 2
    assert sample("lorachain_derivation_forced_empty_batches_total") == forced + head - 2
    found = False
    for number in range(3, head + 1):
        block = validator.block_by_header(validator.header_by_number(number))
        parent = validator.header_by_number(number - 1)
        assert block.header.timestamp == parent.timestamp + rollup.config.block_time
        assert all(is_deposit(tx) for tx in block.transactions)  # deposit-only
        origin = origin_of(block)
        found |= origin.l1_number == receipt.blockNumber and len(block.transactions) == 2
    assert found  # the deposit made while the batcher was silent is in the forced blocks
    assert validator.state_at(validator.header_by_number(head)).get_balance(bytes.fromhex(RECIPIENT[2:])) == 7 * 10**15
    last = origin_of(validator.block_by_header(validator.head)).l1_number
    assert last + rollup.config.seq_window_size > deriver.next_l1 - 1  # the safe head's epoch is in its window again

    skipped = sample("lorachain_derivation_old_batches_total")
    rollup.build(1)  # the sequencer's own block 3, posted late: not on the forced chain (older than its head)
    rollup.post(3, 3)
    derive_all(deriver)
    assert sample("lorachain_derivation_old_batches_total") == skipped + 1
    assert validator.header_by_number(3).hash != rollup.chain.header_by_number(3).hash

    restarted = Deriver(rollup.config, rollup.l1, validator, state)  # a restart forces nothing twice
    derive_all(restarted)
    assert restarted.forced == 0 and restarted.safe_head.hash == deriver.safe_head.hash


def test_seq_window_size_round_trips_and_defaults(tmp_path: Path) -> None:
    base = RollupConfig(900, 901, L1BlockRef(5, b"\x01" * 32, 1_700_000_000), b"\x02" * 20,
                        batch_inbox_address(901), b"\x03" * 20)  # fmt: skip
    assert base.seq_window_size == 3600
    custom = dataclasses.replace(base, seq_window_size=4)
    custom.save(tmp_path / "rollup.json")
    assert RollupConfig.load(tmp_path / "rollup.json") == custom
    assert custom.to_json()["seq_window_size"] == 4
    old = base.to_json()
    del old["seq_window_size"]  # a rollup.json from before the sequencing window
    assert RollupConfig.from_json(old) == base and RollupConfig.from_json(old).extra == {}
    with pytest.raises(ValueError, match="non-negative integer"):
        RollupConfig.from_json({**old, "seq_window_size": -1})


def test_forced_blocks_keep_their_epoch_until_the_next_l1_block_is_due(windowed, tmp_path: Path) -> None:
    rollup, validator = windowed
    deriver = Deriver(rollup.config, rollup.l1, validator, tmp_path / "derivation.json")
    genesis = rollup.config.genesis_l1
    rollup.rpc("evm_increaseTime", 20)  # the next L1 block comes well after the genesis L1 block
    for _ in range(4):
        rollup.rpc("evm_mine")
    derive_all(deriver)  # nothing posted at all: the genesis epoch's window passes at L1 block genesis + 4
    following = rollup.l1.block_by_number(genesis.number + 1)
    epochs = [origin_of(validator.block_by_header(validator.header_by_number(n))) for n in range(1, deriver.forced + 1)]
    same = [info for info in epochs if info.l1_number == genesis.number]
    assert len(same) >= 3
    assert len(same) == (int(following["timestamp"], 16) - genesis.timestamp - 1) // rollup.config.block_time
    assert [info.sequence_number for info in same] == list(range(1, len(same) + 1))
    assert epochs[len(same)].l1_number == genesis.number + 1 and epochs[len(same)].sequence_number == 0
    assert validator.header_by_number(deriver.forced).timestamp == genesis.timestamp + 2 * deriver.forced
