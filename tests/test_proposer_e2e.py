"""L1 + sequencer + proposer as real processes: output roots land in the L1 oracle, each equal to the L2's own
optimism_outputAtBlock, and a proposer killed with -9 carries on from the oracle's next block."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from web3 import Web3

from lorachain.genesis.accounts import dev_accounts
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.l1_client import L1Client
from lorachain.node.rollup.proposer import Proposer, ProposerError
from lorachain.toolchain.solc import load_artifact
from tests.conftest import LORACHAIN, REPO, free_port, start_node
from tests.rollup_fixtures import metric, start_l1_and_rollup, stop_all
from tests.test_sequencer_e2e import wait_for

pytestmark = pytest.mark.e2e


def start_proposer(tmp_path: Path, l1: str, l2: str, *extra: str) -> subprocess.Popen:
    log = open(tmp_path / "proposer.log", "ab")  # noqa: SIM115 - owned by the subprocess
    return subprocess.Popen(
        [*LORACHAIN, "rollup", "proposer", "--l1", l1, "--l2", l2, "--rollup-config",
         str(tmp_path / "rollup" / "rollup.json"), "--poll", "0.3", *extra],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_outputs_reach_the_oracle(tmp_path: Path) -> None:
    l1, rollup, common = start_l1_and_rollup(tmp_path, init_args=("--submission-interval", "4"))
    l2 = proposer = None
    try:
        config = RollupConfig.load(rollup / "rollup.json")
        l2 = start_node(tmp_path / "l2", *common, "--block-time", "0.3")
        w1 = Web3(Web3.HTTPProvider(l1.url))
        oracle = w1.eth.contract(address=Web3.to_checksum_address(config.output_oracle),
                                 abi=load_artifact("L2OutputOracle")["abi"])  # fmt: skip
        metrics_port = free_port()
        proposer = start_proposer(tmp_path, l1.url, l2.url, "--metrics.port", str(metrics_port))
        wait_for(lambda: oracle.functions.outputCount().call() >= 2, what="two proposals")
        service = f"http://127.0.0.1:{metrics_port}"
        assert metric(service, "lorachain_proposer_outputs_proposed_total") >= 2
        assert metric(service, "lorachain_proposer_last_proposed_l2_block") >= 8
        proposer.send_signal(signal.SIGKILL)
        proposer.wait(timeout=10)
        proposer = start_proposer(tmp_path, l1.url, l2.url)
        wait_for(lambda: oracle.functions.outputCount().call() >= 4, what="proposals after the restart")

        l2_client = L1Client(l2.url)
        for index in range(oracle.functions.outputCount().call()):
            root, _timestamp, number = oracle.functions.getL2Output(index).call()
            assert number == 4 * (index + 1)  # every interval, none skipped, none twice
            assert "0x" + bytes(root).hex() == l2_client.call("optimism_outputAtBlock", hex(number))["outputRoot"]

        proposer.kill()  # the real one stops; another key tries to propose: the oracle refuses it
        proposer.wait(timeout=10)
        proposer = None
        impostor = Proposer(config, L1Client(l1.url), l2_client, dev_accounts()[3].private_key)
        wait_for(lambda: l2_client.block_number() >= impostor.next_block(), what="the next proposal's block")
        with pytest.raises(ProposerError, match="failed on L1"):
            impostor.step()
    finally:
        stop_all(proposer, l2, l1)
