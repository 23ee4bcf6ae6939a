"""L1 + DA server + sequencer + batcher as real processes: every L2 block reaches L1 exactly once, through the
DA server while it is up and as calldata while it answers 503, across a batcher kill -9."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from web3 import Web3

from lorachain.da_client.client import DAClient
from lorachain.genesis.genesis import devnet_genesis
from lorachain.node.rollup.batcher import batch_of_raw_block
from lorachain.node.rollup.batches import SingularBatch
from lorachain.node.rollup.channels import ChannelAssembler, decompress_channel, split_batches
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.l1_client import L1Client
from lorachain.node.rollup.retrieval import frames_in_l1_block
from tests.conftest import LORACHAIN, REPO, free_port, start_node
from tests.rollup_fixtures import metric, stop_all
from tests.test_da_server_e2e import DAServerProcess
from tests.test_sequencer_e2e import wait_for

pytestmark = pytest.mark.e2e


def start_batcher(tmp_path: Path, l1: str, l2: str, da: str, *extra: str) -> subprocess.Popen:
    log = open(tmp_path / "batcher.log", "ab")  # noqa: SIM115 - owned by the subprocess
    return subprocess.Popen(
        [*LORACHAIN, "rollup", "batcher", "--l1", l1, "--l2", l2, "--da", da, "--rollup-config",
         str(tmp_path / "rollup" / "rollup.json"), "--state", str(tmp_path / "batcher.json"), "--poll", "0.3",
         "--max-blocks", "4", *extra],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def posted_batches(l1: L1Client, config: RollupConfig, da: DAClient) -> list[SingularBatch]:
    """Everything the batcher posted, read back as derivation would: frames -> channels -> batches."""
    channels: dict[bytes, ChannelAssembler] = {}
    batches = []
    for number in range(config.genesis_l1.number, l1.block_number() + 1):
        for frame in frames_in_l1_block(l1, config, number, da):
            assembler = channels.setdefault(frame.channel_id, ChannelAssembler(frame.channel_id))
            assembler.add(frame)
            if assembler.ready:
                batches += [SingularBatch.decode(raw) for raw in split_batches(decompress_channel(assembler.data()))]
                del channels[frame.channel_id]
    return batches


def test_every_l2_block_reaches_l1_once(tmp_path: Path) -> None:
    l1_genesis = tmp_path / "l1.json"
    l1_genesis.write_text(json.dumps(devnet_genesis(chain_id=900, with_predeploys=False)))
    l1 = start_node(tmp_path / "l1", "--genesis", str(l1_genesis))
    da_server = DAServerProcess(tmp_path / "da")
    l2 = batcher = None
    try:
        init = [*LORACHAIN, "rollup", "init", "--l1", l1.url, "--out", str(tmp_path / "rollup")]
        done = subprocess.run(init, cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        config = RollupConfig.load(tmp_path / "rollup" / "rollup.json")
        l2 = start_node(tmp_path / "l2", "--genesis", str(tmp_path / "rollup" / "genesis.json"), "--rollup-config",
                        str(tmp_path / "rollup" / "rollup.json"), "--l1", l1.url, "--block-time", "0.3")  # fmt: skip
        w2 = Web3(Web3.HTTPProvider(l2.url))
        for i in range(3):
            w2.eth.send_transaction({"from": w2.eth.accounts[i], "to": w2.eth.accounts[5], "value": 1 + i})
        metrics_port = free_port()
        batcher = start_batcher(tmp_path, l1.url, l2.url, da_server.url, "--metrics.port", str(metrics_port))
        l1_client, l2_client, da = L1Client(l1.url), L1Client(l2.url), DAClient(da_server.url)
        state = tmp_path / "batcher.json"
        wait_for(lambda: state.exists() and json.loads(state.read_text())["next_block"] > 6, what="posting")

        da_server.faults(put_status=503)  # DA outage: the batcher fails over to calldata
        mark = json.loads(state.read_text())["next_block"]
        wait_for(lambda: json.loads(state.read_text())["next_block"] > mark + 4, what="posting during the outage")
        da_server.faults()  # recovered
        service = f"http://127.0.0.1:{metrics_port}"
        assert metric(service, "lorachain_batcher_da_failovers_total", reason="refused_or_unavailable") >= 1
        assert metric(service, "lorachain_batcher_frames_posted_total", via="da") >= 1
        assert metric(service, "lorachain_batcher_frames_posted_total", via="calldata") >= 1
        next_block = metric(service, "lorachain_batcher_next_l2_block")  # read first: the count only grows after it
        assert next_block > mark + 4 and metric(service, "lorachain_batcher_l2_blocks_posted_total") >= next_block - 1

        batcher.send_signal(signal.SIGKILL)
        batcher.wait(timeout=10)
        batcher = start_batcher(tmp_path, l1.url, l2.url, da_server.url)
        target = w2.eth.block_number
        wait_for(lambda: json.loads(state.read_text())["next_block"] > target, timeout=60, what="catching up")

        batches = posted_batches(l1_client, config, da)
        expected = [batch_of_raw_block(n, bytes.fromhex(l2_client.call("debug_getRawBlock", hex(n))[2:]))
                    for n in range(1, target + 1)]  # fmt: skip
        assert batches[:target] == expected  # every block, in order, once
        assert len({b.timestamp for b in batches}) == len(batches)  # nothing posted twice
        assert sum(len(b.transactions) for b in expected) >= 3
        inbox = "0x" + config.batch_inbox.hex()
        inbox_data = [bytes.fromhex(tx["input"][2:])[:1]
                      for n in range(config.genesis_l1.number, l1_client.block_number() + 1)
                      for tx in l1_client.call("eth_getBlockByNumber", hex(n), True)["transactions"]
                      if (tx["to"] or "").lower() == inbox]  # fmt: skip
        assert b"\x01" in inbox_data and b"\x00" in inbox_data  # via DA, and as calldata during the outage
    finally:
        stop_all(batcher, l2, da_server, l1)
