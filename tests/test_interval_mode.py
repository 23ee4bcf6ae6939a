"""Interval block production (the rollup setting) and structured JSON logs, on a real node process."""

from __future__ import annotations

import json
import time

from eth_account import Account

from lorachain.genesis.accounts import dev_accounts
from tests.conftest import start_node


def test_interval_mode_builds_blocks_on_a_clock_and_includes_pending_txs(tmp_path) -> None:
    node = start_node(tmp_path / "data", "--block-time", "0.5", "--log-format", "json")
    try:
        first = int(node.rpc("eth_blockNumber")["result"], 16)
        time.sleep(1.6)
        assert int(node.rpc("eth_blockNumber")["result"], 16) - first >= 2  # empty blocks on the clock too

        key = dev_accounts()[0].private_key
        signed = Account.sign_transaction(
            {"to": dev_accounts()[1].address, "value": 7, "gas": 21000, "maxFeePerGas": 10**11,
             "maxPriorityFeePerGas": 10**9, "nonce": 0, "chainId": 901},
            key,
        )  # fmt: skip
        sent_at = time.monotonic()
        tx_hash = node.rpc("eth_sendRawTransaction", "0x" + signed.raw_transaction.hex())["result"]
        assert time.monotonic() - sent_at < 0.4  # answered at once: inclusion waits for the next tick
        assert node.rpc("eth_getTransactionReceipt", tx_hash)["result"] is None
        receipt = None
        deadline = time.monotonic() + 5
        while receipt is None and time.monotonic() < deadline:
            time.sleep(0.1)
            receipt = node.rpc("eth_getTransactionReceipt", tx_hash)["result"]
        assert receipt is not None and receipt["status"] == "0x1"
        timestamps = [
            int(node.rpc("eth_getBlockByNumber", hex(n), False)["result"]["timestamp"], 16)
            for n in range(first + 1, int(receipt["blockNumber"], 16) + 1)
        ]
        assert timestamps == sorted(set(timestamps))  # strictly increasing
    finally:
        node.stop()
    records = [json.loads(line) for line in node.log().splitlines() if line.startswith("{")]
    assert any(r["logger"] == "lorachain.node" and r["msg"].startswith("block #") for r in records)
    assert all({"t", "lvl", "logger", "msg"} <= r.keys() for r in records)
