"""L1 reorgs end to end: L1 + DA server + sequencer + batcher + validator as real processes; the L1 is reorged
(evm_snapshot, the rollup runs on, evm_revert, new L1 blocks) and the validator and the sequencer end on the same
chain, without a divergence."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from web3 import Web3
from web3.exceptions import BlockNotFound

from lorachain.node.rollup.config import RollupConfig
from tests.conftest import start_node
from tests.rollup_fixtures import metric, start_l1_and_rollup, stop_all
from tests.test_batcher_e2e import start_batcher
from tests.test_da_server_e2e import DAServerProcess
from tests.test_sequencer_e2e import wait_for

pytestmark = pytest.mark.e2e


def _first_difference(ws: Web3, wv: Web3, last: int) -> int | None:
    """The first of blocks 1..last the two nodes do not both hold with one hash (None: the same chain)."""
    for number in range(1, last + 1):
        try:
            if wv.eth.get_block(number).hash != ws.eth.get_block(number).hash:
                return number
        except BlockNotFound:  # a node rewound by the reorg has not re-derived (or re-built) it yet
            return number
    return None


def _same_chain(ws: Web3, wv: Web3, last: int, timeout: float = 60.0) -> None:
    """Both nodes end on one chain through block ``last``: after a reorg either may still rewind and rebuild a
    few blocks, so this waits for them to agree; a lasting difference fails with the block it is at."""
    deadline = time.monotonic() + timeout
    while (number := _first_difference(ws, wv, last)) is not None:
        assert time.monotonic() < deadline, f"block {number} differs between the sequencer and the validator"
        time.sleep(0.5)


def _rollup(tmp_path: Path):
    """L1 + DA + sequencer + batcher + validator; their handles and web3 clients."""
    l1, rollup, common = start_l1_and_rollup(tmp_path, "--block-time", "0.5")
    da = DAServerProcess(tmp_path / "da")
    sequencer = start_node(tmp_path / "sequencer", *common, "--block-time", "0.5")
    batcher = start_batcher(tmp_path, l1.url, sequencer.url, da.url)
    validator = start_node(tmp_path / "validator", *common, "--role", "validator", "--da", da.url, "--sequencer",
                           sequencer.url)  # fmt: skip
    return (l1, da, sequencer, batcher, validator, RollupConfig.load(rollup / "rollup.json"),
            *(Web3(Web3.HTTPProvider(n.url)) for n in (sequencer, validator, l1)))  # fmt: skip


def test_the_validator_and_the_batcher_follow_an_l1_reorg(tmp_path: Path) -> None:
    """The reorg takes the batcher's transactions (the sequencer's origins are older): the batcher posts those
    blocks again and the validator rewinds and derives them from the new L1 blocks."""
    l1, da, sequencer, batcher, validator, _config, ws, wv, w1 = _rollup(tmp_path)
    try:
        wait_for(lambda: wv.eth.block_number >= 4, timeout=60, what="the validator to derive")
        l1.rpc("evm_increaseTime", 3600)  # L1 blocks from now on are later than any L2 block: no new origins
        jumped = w1.eth.block_number + 1
        wait_for(lambda: w1.eth.block_number > jumped, timeout=10, what="an L1 block after the time jump")
        snapshot = l1.rpc("evm_snapshot")["result"]
        fork = w1.eth.block_number
        target = wv.eth.block_number + 6
        wait_for(lambda: wv.eth.block_number >= target, timeout=60, what="derivation of batches the reorg takes")

        assert l1.rpc("evm_revert", snapshot)["result"] is True
        assert w1.eth.block_number == fork  # the batcher's transactions since are gone; new L1 blocks follow
        wait_for(lambda: metric(validator.url, "lorachain_derivation_l1_reorgs_total") >= 1, timeout=30,
                 what="the validator to see the L1 reorg")  # fmt: skip
        target = ws.eth.block_number + 4
        wait_for(lambda: wv.eth.block_number >= target, timeout=60, what="derivation after the reorg")
        _same_chain(ws, wv, target)
        assert "L1 reorg:" in validator.log()
        assert "L1 reorg:" in (tmp_path / "batcher.log").read_text()
        assert metric(validator.url, "lorachain_derivation_l1_reorg_depth") >= 1
        assert metric(validator.url, "lorachain_derivation_divergences_total") == 0
        assert not (tmp_path / "validator" / "divergence.json").exists()
        assert batcher.poll() is None and validator.proc.poll() is None and sequencer.proc.poll() is None
    finally:
        stop_all(batcher, validator, sequencer, da, l1)


def test_the_sequencer_resets_when_its_l1_origin_is_reorged_away(tmp_path: Path) -> None:
    """The reorg takes the sequencer's origins and a deposit: the sequencer drops its blocks on them (a user
    transaction of theirs goes back to the pool), adopts the new L1 blocks and their deposit, and the validator
    derives that chain."""
    l1, da, sequencer, batcher, validator, config, ws, wv, w1 = _rollup(tmp_path)
    try:
        portal = Web3.to_checksum_address(config.deposit_portal)
        depositor, other = ws.eth.accounts[3], ws.eth.accounts[4]
        balances = ws.eth.get_balance(depositor), ws.eth.get_balance(other)
        wait_for(lambda: wv.eth.block_number >= 4, timeout=60, what="the validator to derive")
        snapshot = l1.rpc("evm_snapshot")["result"]
        lost = w1.eth.send_transaction({"from": w1.eth.accounts[3], "to": portal, "value": 10**18})
        w1.eth.wait_for_transaction_receipt(lost)
        wait_for(lambda: ws.eth.get_balance(depositor) == balances[0] + 10**18, timeout=30, what="the deposit on L2")
        transfer = ws.eth.send_transaction({"from": ws.eth.accounts[1], "to": ws.eth.accounts[7], "value": 12345})
        ws.eth.wait_for_transaction_receipt(transfer)
        target = ws.eth.block_number + 2
        wait_for(lambda: wv.eth.block_number >= target, timeout=60, what="derivation of the deposit")

        assert l1.rpc("evm_revert", snapshot)["result"] is True
        kept = w1.eth.send_transaction({"from": w1.eth.accounts[4], "to": portal, "value": 2 * 10**18})
        w1.eth.wait_for_transaction_receipt(kept)
        wait_for(lambda: metric(sequencer.url, "lorachain_sequencer_l1_reorg_resets_total") >= 1, timeout=30,
                 what="the sequencer's reset")  # fmt: skip
        wait_for(lambda: ws.eth.get_balance(other) == balances[1] + 2 * 10**18, timeout=30,
                 what="the new branch's deposit on L2")  # fmt: skip
        assert ws.eth.get_balance(depositor) == balances[0]  # the reorged-out deposit is gone
        wait_for(lambda: ws.eth.get_transaction_receipt(transfer), timeout=30, what="the transfer mined again")
        target = ws.eth.block_number + 2
        wait_for(lambda: wv.eth.block_number >= target, timeout=60, what="derivation after the reorg")
        _same_chain(ws, wv, target)
        assert "L1 REORG" in sequencer.log() and "L1 reorg:" in validator.log()
        assert not (tmp_path / "validator" / "divergence.json").exists()
        assert batcher.poll() is None and validator.proc.poll() is None and sequencer.proc.poll() is None
    finally:
        stop_all(batcher, validator, sequencer, da, l1)
