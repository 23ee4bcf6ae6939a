"""kill -9 during a load of transactions, then restart: nothing acknowledged is lost."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests
from eth_account import Account

from lorachain.genesis.accounts import dev_accounts
from tests.conftest import start_node

SENDERS = 4


def _send_loop(url: str, key: bytes, stop: threading.Event, acked: list[tuple[str, dict]]) -> None:
    """Send transfers one by one; record (hash, receipt) for every receipt the node returned."""
    session = requests.Session()
    nonce = 0
    recipient = "0x" + "42" * 20
    while not stop.is_set():
        signed = Account.sign_transaction(
            {"to": recipient, "value": 1000 + nonce, "gas": 21000, "maxFeePerGas": 10**11,
             "maxPriorityFeePerGas": 10**9, "nonce": nonce, "chainId": 901},
            key,
        )  # fmt: skip
        try:
            body = {"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                    "params": ["0x" + signed.raw_transaction.hex()]}  # fmt: skip
            session.post(url, json=body, timeout=5).json()
            body = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "eth_getTransactionReceipt",
                "params": ["0x" + signed.hash.hex()],
            }
            receipt = session.post(url, json=body, timeout=5).json().get("result")
        except (requests.RequestException, ValueError):
            return  # the node died
        if receipt is not None:
            acked.append(("0x" + signed.hash.hex(), receipt))
            nonce += 1


@pytest.mark.parametrize("sync", ["full", "none"])  # a killed process loses nothing, fsync per block or not
def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path, sync: str) -> None:
    datadir = tmp_path / "data"
    node = start_node(datadir, "--db.sync", sync)
    stop = threading.Event()
    acked: list[list[tuple[str, dict]]] = [[] for _ in range(SENDERS)]
    threads = [
        threading.Thread(target=_send_loop, args=(node.url, dev_accounts()[i].private_key, stop, acked[i]))
        for i in range(SENDERS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while sum(map(len, acked)) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    node.proc.send_signal(signal.SIGKILL)  # mid-load, no clean shutdown
    node.proc.wait()
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    all_acked = [item for per_sender in acked for item in per_sender]
    assert len(all_acked) >= 60, "the load did not get going"

    restarted = start_node(datadir, "--db.sync", sync)
    try:
        head = int(restarted.rpc("eth_blockNumber")["result"], 16)
        assert head >= max(int(r["blockNumber"], 16) for _, r in all_acked)
        for tx_hash, receipt in all_acked:
            assert restarted.rpc("eth_getTransactionReceipt", tx_hash)["result"] == receipt
        recipient = "0x" + "42" * 20
        # Balances agree with the receipts: the recipient got exactly the values of the mined transfers.
        mined_values = 0
        for number in range(1, head + 1):
            block = restarted.rpc("eth_getBlockByNumber", hex(number), True)["result"]
            mined_values += sum(int(tx["value"], 16) for tx in block["transactions"] if tx["to"] == recipient)
        assert int(restarted.rpc("eth_getBalance", recipient, "latest")["result"], 16) == mined_values
        # Every sender's nonce is at least the count of its acknowledged transactions.
        for i in range(SENDERS):
            nonce = int(restarted.rpc("eth_getTransactionCount", dev_accounts()[i].address, "latest")["result"], 16)
            assert nonce >= len(acked[i])
        # And the restarted node keeps producing blocks on top of the recovered head.
        signed = Account.sign_transaction(
            {"to": recipient, "value": 1, "gas": 21000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 1,
             "nonce": nonce, "chainId": 901},
            dev_accounts()[SENDERS - 1].private_key,
        )  # fmt: skip
        assert "result" in restarted.rpc("eth_sendRawTransaction", "0x" + signed.raw_transaction.hex())
        assert int(restarted.rpc("eth_blockNumber")["result"], 16) == head + 1
    finally:
        restarted.stop()
