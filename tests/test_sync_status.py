"""op-node's ``optimism_syncStatus`` (and ``optimism_rollupConfig``, ``optimism_version``) on the sequencer and the
validator, as real processes (L1 + DA server + sequencer + batcher + validator) read over JSON-RPC with web3.py;
a node that is no rollup node answers -32601, as geth answers an unknown namespace."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from lorachain.genesis.genesis import parse_genesis
from lorachain.node.chain import Blockchain
from lorachain.node.node import Node
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.safe_head import Finality
from tests.conftest import start_node
from tests.rollup_fixtures import op_genesis, start_l1_and_rollup, stop_all
from tests.test_batcher_e2e import start_batcher
from tests.test_da_server_e2e import DAServerProcess
from tests.test_gas_price_oracle import Rpc
from tests.test_sequencer_e2e import l1_info, wait_for

L1_REFS = ("current_l1", "current_l1_finalized", "head_l1", "safe_l1", "finalized_l1")
L2_REFS = ("unsafe_l2", "safe_l2", "finalized_l2", "pending_safe_l2", "cross_unsafe_l2", "local_safe_l2")


def is_hash(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("0x") and len(value) == 66 and int(value, 16) >= 0


def is_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_shape(status: dict[str, Any]) -> None:
    assert set(status) == set(L1_REFS) | set(L2_REFS), sorted(status)
    for name in L1_REFS:
        ref = status[name]
        assert set(ref) == {"hash", "number", "parentHash", "timestamp"}, (name, ref)
        assert is_hash(ref["hash"]) and is_hash(ref["parentHash"]), (name, ref)
        assert is_number(ref["number"]) and is_number(ref["timestamp"]), (name, ref)
    for name in L2_REFS:
        ref = status[name]
        assert set(ref) == {"hash", "number", "parentHash", "timestamp", "l1origin", "sequenceNumber"}, (name, ref)
        assert is_hash(ref["hash"]) and is_hash(ref["parentHash"]), (name, ref)
        assert is_number(ref["number"]) and is_number(ref["timestamp"]) and is_number(ref["sequenceNumber"])
        assert set(ref["l1origin"]) == {"hash", "number"}
        assert is_hash(ref["l1origin"]["hash"]) and is_number(ref["l1origin"]["number"]), (name, ref)
    assert status["safe_l2"]["number"] <= status["unsafe_l2"]["number"]
    assert status["finalized_l2"]["number"] <= status["safe_l2"]["number"]
    assert status["pending_safe_l2"] == status["local_safe_l2"] == status["safe_l2"]
    assert status["cross_unsafe_l2"] == status["unsafe_l2"]
    assert status["finalized_l1"]["number"] <= status["safe_l1"]["number"] <= status["head_l1"]["number"]
    assert status["current_l1"]["number"] <= status["head_l1"]["number"]


class Watch:
    """Polls one node's sync status: checks the shape every time, and that no number goes back."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.last: dict[str, Any] | None = None
        self.polls = 0

    def __call__(self) -> dict[str, Any]:
        reply = self.w3.provider.make_request("optimism_syncStatus", [])
        assert "result" in reply, reply
        status = reply["result"]
        check_shape(status)
        if self.last is not None:
            for name in (*L1_REFS, *L2_REFS):
                assert status[name]["number"] >= self.last[name]["number"], (name, self.last[name], status[name])
        self.last = status
        self.polls += 1
        return status


def check_l2_ref(w3: Web3, ref: dict[str, Any]) -> None:
    """An L2 ref names the node's own block, with the L1 origin its L1-info deposit records."""
    block = w3.eth.get_block(ref["number"])
    assert Web3.to_hex(block.hash) == ref["hash"] and Web3.to_hex(block.parentHash) == ref["parentHash"]
    assert block.timestamp == ref["timestamp"]
    if ref["number"] > 0:
        info = l1_info(w3, ref["number"])
        assert ref["l1origin"] == {"hash": "0x" + info.l1_block_hash.hex(), "number": info.l1_number}
        assert ref["sequenceNumber"] == info.sequence_number


def check_l1_ref(w1: Web3, ref: dict[str, Any]) -> None:
    block = w1.eth.get_block(ref["number"])
    assert ref == {"hash": Web3.to_hex(block.hash), "number": block.number,
                   "parentHash": Web3.to_hex(block.parentHash), "timestamp": block.timestamp}  # fmt: skip


@pytest.mark.e2e
def test_sync_status_on_sequencer_and_validator(tmp_path: Path) -> None:
    l1, rollup, common = start_l1_and_rollup(tmp_path, "--block-time", "0.5")
    da = DAServerProcess(tmp_path / "da")
    sequencer = validator = batcher = None
    try:
        sequencer = start_node(tmp_path / "sequencer", *common, "--block-time", "0.5", "--da", da.url)
        validator = start_node(tmp_path / "validator", *common, "--role", "validator", "--da", da.url,
                               "--sequencer", sequencer.url)  # fmt: skip
        ws, wv, w1 = (Web3(Web3.HTTPProvider(n.url)) for n in (sequencer, validator, l1))
        seq, val = Watch(ws), Watch(wv)

        # before any batch: nothing is safe yet, the unsafe head moves on the sequencer only
        first = seq()
        assert first["safe_l2"]["number"] == 0 and first["finalized_l2"]["number"] == 0
        assert val()["unsafe_l2"]["number"] == 0
        config = json.loads((rollup / "rollup.json").read_text())
        for w3 in (ws, wv):
            assert w3.provider.make_request("optimism_rollupConfig", [])["result"] == config
            assert RollupConfig.from_json(config) == RollupConfig.load(rollup / "rollup.json")
            version = w3.provider.make_request("optimism_version", [])["result"]
            assert isinstance(version, str) and version.startswith("v")

        batcher = start_batcher(tmp_path, l1.url, sequencer.url, da.url)
        for i in range(3):
            ws.eth.send_transaction({"from": ws.eth.accounts[i], "to": ws.eth.accounts[7], "value": 10 + i})
        wait_for(lambda: seq()["safe_l2"]["number"] >= 4, timeout=90, what="a safe head on the sequencer")
        wait_for(lambda: val()["safe_l2"]["number"] >= 4, timeout=90, what="a safe head on the validator")
        wait_for(lambda: seq()["finalized_l2"]["number"] >= 4, timeout=60, what="finality (the L1 finalizes at once)")

        s, v = seq(), val()
        assert s["unsafe_l2"]["number"] <= ws.eth.block_number
        for ref in (s["unsafe_l2"], s["safe_l2"], s["finalized_l2"]):
            check_l2_ref(ws, ref)
        for ref in (v["unsafe_l2"], v["safe_l2"], v["finalized_l2"]):
            check_l2_ref(wv, ref)
            assert ws.eth.get_block(ref["number"]).hash == wv.eth.get_block(ref["number"]).hash  # the same chain
        assert v["unsafe_l2"] == v["safe_l2"]  # a validator without gossip has no unsafe blocks
        for status in (s, v):
            for name in ("current_l1", "head_l1", "safe_l1", "finalized_l1"):
                check_l1_ref(w1, status[name])

        # the sequencer's safe head is what is on L1: without the batcher it stays while the unsafe head moves
        batcher.send_signal(signal.SIGKILL)
        batcher.wait(timeout=20)
        time.sleep(2)  # a batcher transaction sent just before the kill gets mined
        l1_now = w1.eth.block_number
        settled = wait_for(lambda: (st := seq())["current_l1"]["number"] >= l1_now and st, what="derivation")
        later = wait_for(lambda: (st := seq())["unsafe_l2"]["number"] >= settled["unsafe_l2"]["number"] + 4
                         and st["current_l1"]["number"] >= settled["current_l1"]["number"] + 2 and st,
                         what="more unsafe blocks and L1 blocks")  # fmt: skip
        assert later["safe_l2"] == settled["safe_l2"]  # L1 was read further, and nothing new is on it
        assert later["unsafe_l2"]["number"] >= later["safe_l2"]["number"] + 4
        # the validator derives just as far as the sequencer calls safe
        wait_for(lambda: val()["safe_l2"]["number"] >= later["safe_l2"]["number"], timeout=60, what="the validator")
        assert val()["safe_l2"] == later["safe_l2"]
        # the block tags of eth_ methods name the same heads (on the sequencer, "safe" is not its head)
        for w3 in (ws, wv):
            safe_block, final_block = w3.eth.get_block("safe"), w3.eth.get_block("finalized")
            assert (safe_block.number, "0x" + safe_block.hash.hex().removeprefix("0x")) == (
                later["safe_l2"]["number"], later["safe_l2"]["hash"])  # fmt: skip
            assert final_block.number <= safe_block.number
            assert w3.eth.get_block(final_block.number).hash == final_block.hash
            payee = w3.eth.accounts[7]
            assert w3.eth.get_balance(payee, "safe") == w3.eth.get_balance(payee, safe_block.number)
        assert ws.eth.get_block("latest").number > later["safe_l2"]["number"]
        assert seq.polls > 5 and val.polls > 3
    finally:
        stop_all(batcher, validator, sequencer, da, l1)


def test_a_plain_node_has_no_optimism_namespace(node) -> None:
    """geth answers an unknown namespace's method with -32601; so does a node that is no OP Stack chain."""
    for method in ("optimism_syncStatus", "optimism_rollupConfig", "optimism_version", "optimism_outputAtBlock"):
        params = ["latest"] if method == "optimism_outputAtBlock" else []
        error = node.rpc(method, *params)["error"]
        assert error == {"code": -32601, "message": f"the method {method} does not exist/is not available"}


def test_an_op_chain_without_rollup_config_serves_outputs_only(tmp_path: Path) -> None:
    chain = Blockchain.initialize(tmp_path / "l2", parse_genesis(op_genesis()))
    try:
        rpc = Rpc(Node(chain))
        assert "outputRoot" in rpc("optimism_outputAtBlock", "latest")["result"]
        for method in ("optimism_syncStatus", "optimism_rollupConfig", "optimism_version"):
            assert rpc(method)["error"]["code"] == -32601
    finally:
        chain.close()


class FakeHeader:
    def __init__(self, number: int) -> None:
        self.block_number = number
        self.hash = number.to_bytes(32, "big")


def test_finality_follows_the_l1_finalized_block() -> None:
    finality = Finality(FakeHeader(0))  # type: ignore[arg-type]
    for l1_number, l2_number in ((10, 0), (11, 3), (12, 3), (13, 7), (15, 9)):
        finality.record(l1_number, FakeHeader(l2_number))  # type: ignore[arg-type]
    assert finality.update(9).block_number == 0
    assert finality.update(12).block_number == 3  # 3 became safe at L1 #11
    assert finality.update(14).block_number == 7
    assert finality.update(13).block_number == 7  # never back
    assert finality.update(100).block_number == 9
    finality.record(16, FakeHeader(12))  # type: ignore[arg-type]
    assert finality.update(15).block_number == 9 and finality.update(16).block_number == 12
