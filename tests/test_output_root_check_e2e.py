"""The validator checks the proposer's output roots on L1: L1 + DA server + sequencer + batcher + proposer +
validator as real processes. Honest proposals are verified against the derived blocks (a metric, no report);
a lying proposer (``--fault wrong-output-root``: the previous block's state root in the root) is caught with a
report naming the output index, the L2 block, both roots and the differing component, and derivation stops."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from web3 import Web3

from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.l1_client import L1Client
from lorachain.toolchain.solc import load_artifact
from tests.conftest import LORACHAIN, REPO, start_node
from tests.rollup_fixtures import metric, start_l1_and_rollup, stop_all
from tests.test_batcher_e2e import start_batcher
from tests.test_da_server_e2e import DAServerProcess
from tests.test_sequencer_e2e import wait_for

pytestmark = pytest.mark.e2e


def start_proposer(tmp_path: Path, l1: str, l2: str, *extra: str) -> subprocess.Popen:
    log = open(tmp_path / "proposer.log", "ab")  # noqa: SIM115 - owned by the subprocess
    return subprocess.Popen(
        [*LORACHAIN, "rollup", "proposer", "--l1", l1, "--l2", l2, "--rollup-config",
         str(tmp_path / "rollup" / "rollup.json"), "--poll", "0.3", *extra],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_validator_verifies_output_roots_and_catches_a_lying_proposer(tmp_path: Path) -> None:
    l1, rollup, common = start_l1_and_rollup(tmp_path, "--block-time", "0.5", init_args=("--submission-interval", "3"))
    da = DAServerProcess(tmp_path / "da")
    sequencer = validator = batcher = proposer = None
    try:
        config = RollupConfig.load(rollup / "rollup.json")
        sequencer = start_node(tmp_path / "sequencer", *common, "--block-time", "0.5")
        batcher = start_batcher(tmp_path, l1.url, sequencer.url, da.url)
        proposer = start_proposer(tmp_path, l1.url, sequencer.url)
        validator = start_node(tmp_path / "validator", *common, "--role", "validator", "--da", da.url,
                               "--sequencer", sequencer.url)  # fmt: skip
        w1, ws = Web3(Web3.HTTPProvider(l1.url)), Web3(Web3.HTTPProvider(sequencer.url))
        oracle = w1.eth.contract(address=Web3.to_checksum_address(config.output_oracle),
                                 abi=load_artifact("L2OutputOracle")["abi"])  # fmt: skip
        ws.eth.send_transaction({"from": ws.eth.accounts[1], "to": ws.eth.accounts[2], "value": 5})

        # honest proposals: each one checked once the validator has derived its block
        wait_for(lambda: metric(validator.url, "lorachain_derivation_output_roots_verified_total") >= 2, timeout=90,
                 what="two verified output roots")  # fmt: skip
        assert metric(validator.url, "lorachain_derivation_output_root_mismatches_total") == 0
        assert not (tmp_path / "validator" / "divergence.json").exists()

        # the honest proposer stops; a lying one takes over with the same key
        proposer.send_signal(signal.SIGKILL)
        proposer.wait(timeout=10)
        time.sleep(1.5)  # a proposal it sent just before the kill lands within a few L1 blocks
        honest = oracle.functions.outputCount().call()
        proposer = start_proposer(tmp_path, l1.url, sequencer.url, "--fault", "wrong-output-root")
        report_path = tmp_path / "validator" / "divergence.json"
        wait_for(report_path.exists, timeout=90, what="the output-root divergence report")
        report = json.loads(report_path.read_text())
        assert report["kind"] == "output_root"
        assert report["output_index"] == honest  # the first lying proposal; the honest ones before it verified
        root, _timestamp, number = oracle.functions.getL2Output(honest).call()
        assert report["block"] == number == 3 * (honest + 1)
        assert report["posted_output_root"] == "0x" + bytes(root).hex()
        ours = L1Client(validator.url).call("optimism_outputAtBlock", hex(number))
        assert report["derived_output_root"] == ours["outputRoot"] != report["posted_output_root"]
        assert report["first_differing_component"] == "stateRoot"
        assert report["differing_components"] == ["stateRoot"]
        assert report["posted_component_sources"]["stateRoot"] == [f"derived block #{number - 1}"]

        assert metric(validator.url, "lorachain_derivation_output_root_mismatches_total") == 1
        assert metric(validator.url, "lorachain_derivation_output_roots_verified_total") >= honest
        assert metric(validator.url, "lorachain_derivation_divergences_total") == 0  # the blocks themselves agree
        derived = L1Client(validator.url).block_number()  # derivation stopped: the head stays where it was
        sequencer_head = ws.eth.block_number
        wait_for(lambda: ws.eth.block_number >= sequencer_head + 6, timeout=30, what="the sequencer to go on")
        assert L1Client(validator.url).block_number() == derived
    finally:
        stop_all(proposer, batcher, validator, sequencer, da, l1)
