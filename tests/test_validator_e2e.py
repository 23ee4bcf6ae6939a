"""A validator derives the L2 from L1 + DA alone: L1 + DA server + sequencer + batcher + validator as real
processes; the validator's blocks equal the sequencer's, deposits and DA-outage calldata included, across a
validator kill -9."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from web3 import Web3

from lorachain.node.rollup.config import RollupConfig
from tests.conftest import LORACHAIN, REPO, start_node
from tests.rollup_fixtures import start_l1_and_rollup, stop_all
from tests.test_batcher_e2e import start_batcher
from tests.test_da_server_e2e import DAServerProcess
from tests.test_sequencer_e2e import wait_for

pytestmark = pytest.mark.e2e


def test_validator_derives_the_sequencers_chain(tmp_path: Path) -> None:
    l1, rollup, common = start_l1_and_rollup(tmp_path, "--block-time", "0.5")
    da = DAServerProcess(tmp_path / "da")
    sequencer = validator = batcher = None
    try:
        config = RollupConfig.load(rollup / "rollup.json")
        sequencer = start_node(tmp_path / "sequencer", *common, "--block-time", "0.5")
        batcher = start_batcher(tmp_path, l1.url, sequencer.url, da.url)
        validator_args = (*common, "--role", "validator", "--da", da.url, "--sequencer", sequencer.url)
        validator = start_node(tmp_path / "validator", *validator_args)
        ws, wv, w1 = (Web3(Web3.HTTPProvider(n.url)) for n in (sequencer, validator, l1))

        for i in range(4):
            ws.eth.send_transaction({"from": ws.eth.accounts[i], "to": ws.eth.accounts[7], "value": 10 + i})
        portal = Web3.to_checksum_address(config.deposit_portal)
        w1.eth.wait_for_transaction_receipt(w1.eth.send_transaction({"from": w1.eth.accounts[3], "to": portal,
                                                                      "value": 10**18}))  # fmt: skip
        target = ws.eth.block_number + 4
        wait_for(lambda: wv.eth.block_number >= target, timeout=90, what="the validator to derive")

        da.faults(put_status=503)  # the batcher falls back to calldata; the validator reads it from L1
        target = ws.eth.block_number + 4
        wait_for(lambda: wv.eth.block_number >= target, timeout=90, what="derivation from calldata")
        da.faults()

        validator.stop(signal.SIGKILL)
        validator = start_node(tmp_path / "validator", *validator_args, port=validator.port)
        wv = Web3(Web3.HTTPProvider(validator.url))
        target = ws.eth.block_number + 4
        wait_for(lambda: wv.eth.block_number >= target, timeout=90, what="derivation after the restart")

        for number in range(1, target + 1):
            assert wv.eth.get_block(number).hash == ws.eth.get_block(number).hash, f"block {number} differs"
        deposit_blocks = [n for n in range(1, target + 1) if len(wv.eth.get_block(n).transactions) > 1]
        assert deposit_blocks  # the deposit and the transfers were derived too
        assert not (tmp_path / "validator" / "divergence.json").exists()
        metrics = requests.get(f"{validator.url}/metrics", timeout=5).text
        assert "lorachain_derivation_divergences_total 0.0" in metrics
    finally:
        stop_all(batcher, validator, sequencer, da, l1)


def test_a_lying_sequencer_is_caught(tmp_path: Path) -> None:
    l1, rollup, common = start_l1_and_rollup(tmp_path, "--block-time", "0.5")
    sequencer = validator = batcher = None
    try:
        sequencer = start_node(tmp_path / "sequencer", *common, "--block-time", "0.5", "--fault", "tamper-state")
        batcher = subprocess.Popen(
            [*LORACHAIN, "rollup", "batcher", "--l1", l1.url, "--l2", sequencer.url, "--rollup-config",
             str(rollup / "rollup.json"), "--state", str(tmp_path / "batcher.json"), "--poll", "0.3"],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip  (no DA server: frames go as calldata)
        validator = start_node(tmp_path / "validator", *common, "--role", "validator", "--sequencer", sequencer.url)
        report_path = tmp_path / "validator" / "divergence.json"
        wait_for(report_path.exists, timeout=90, what="the divergence report")
        report = json.loads(report_path.read_text())
        assert report["block"] == 1
        assert "stateRoot" in report["differing_fields"] and "transactionsRoot" not in report["differing_fields"]
        assert report["first_differing_transaction"] is None  # same transactions, different state
        wv = Web3(Web3.HTTPProvider(validator.url))
        assert wv.eth.block_number == 1  # stopped there, still serving JSON-RPC on its own (honest) block
        metrics = requests.get(f"{validator.url}/metrics", timeout=5).text
        assert "lorachain_derivation_divergences_total 1.0" in metrics
    finally:
        stop_all(batcher, validator, sequencer, l1)
