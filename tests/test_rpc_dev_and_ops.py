"""Devnet JSON-RPC (evm_*, anvil_*/hardhat_*) and the ops surface (/metrics, /health, CORS, WS, misc)."""

from __future__ import annotations

import json

import pytest
import requests
from eth_account import Account
from eth_utils import keccak

from lorachain.genesis.accounts import dev_accounts
from tests.conftest import NodeProcess

ACCTS = dev_accounts()
ACCOUNT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def ok(node: NodeProcess, method: str, *params):
    response = node.rpc(method, *params)
    assert "error" not in response, f"{method}{params}: {response}"
    return response["result"]


def head(node: NodeProcess) -> dict:
    return ok(node, "eth_getBlockByNumber", "latest", False)


def balance(node: NodeProcess, address: str, block: str = "latest") -> int:
    return int(ok(node, "eth_getBalance", address, block), 16)


def send_transfer(node: NodeProcess, index: int, to: str, value: int) -> str:
    acct = ACCTS[index]
    nonce = int(ok(node, "eth_getTransactionCount", acct.address, "pending"), 16)
    signed = Account.sign_transaction(
        {"to": to, "value": value, "gas": 21000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9,
         "nonce": nonce, "chainId": 901, "type": 2},
        acct.private_key,
    )  # fmt: skip
    return ok(node, "eth_sendRawTransaction", "0x" + signed.raw_transaction.hex())


# -- snapshots -----------------------------------------------------------------------------------


def test_snapshot_and_revert_restore_head_and_balances(node: NodeProcess) -> None:
    target = "0x" + "51" * 20
    before_head = head(node)
    before_sender = balance(node, ACCTS[4].address)
    snap = ok(node, "evm_snapshot")
    assert snap.startswith("0x")
    tx_hash = send_transfer(node, 4, target, 12345)
    assert balance(node, target) == 12345
    ok(node, "anvil_setBalance", ACCTS[4].address, hex(7))
    assert int(head(node)["number"], 16) >= int(before_head["number"], 16) + 2

    assert ok(node, "evm_revert", snap) is True
    after = head(node)
    assert after["hash"] == before_head["hash"]
    assert after["number"] == before_head["number"]
    assert ok(node, "eth_blockNumber") == before_head["number"]
    assert balance(node, target) == 0
    assert balance(node, ACCTS[4].address) == before_sender
    assert ok(node, "eth_getTransactionReceipt", tx_hash) is None
    assert ok(node, "eth_getTransactionByHash", tx_hash) is None
    # A snapshot is used up by its revert, as in Hardhat/Anvil.
    assert ok(node, "evm_revert", snap) is False
    assert ok(node, "evm_revert", "0x7fff") is False
    # The chain goes on from the restored head.
    send_transfer(node, 4, target, 1)
    assert int(head(node)["number"], 16) == int(before_head["number"], 16) + 1
    assert balance(node, target) == 1


def test_reverted_transaction_is_not_found_after_new_blocks(node: NodeProcess) -> None:
    """After evm_revert and new blocks at the same heights, the reverted tx must not resolve to another."""
    snap = ok(node, "evm_snapshot")
    reverted = send_transfer(node, 5, "0x" + "52" * 20, 1)
    assert ok(node, "eth_getTransactionReceipt", reverted)["status"] == "0x1"
    assert ok(node, "evm_revert", snap) is True
    replacement = send_transfer(node, 6, "0x" + "53" * 20, 2)  # mined at the reverted tx's height and index
    assert ok(node, "eth_getTransactionReceipt", replacement)["status"] == "0x1"
    by_hash = node.rpc("eth_getTransactionByHash", reverted)
    receipt = node.rpc("eth_getTransactionReceipt", reverted)
    raw = node.rpc("eth_getRawTransactionByHash", reverted)
    assert (by_hash.get("result"), receipt.get("result"), raw.get("result")) == (None, None, None), (
        by_hash,
        receipt,
        raw,
    )


def test_nested_snapshots(node: NodeProcess) -> None:
    target = "0x" + "54" * 20
    outer = ok(node, "evm_snapshot")
    send_transfer(node, 4, target, 1)
    inner = ok(node, "evm_snapshot")
    assert int(inner, 16) > int(outer, 16)
    send_transfer(node, 4, target, 2)
    assert balance(node, target) == 3
    assert ok(node, "evm_revert", inner) is True
    assert balance(node, target) == 1
    assert ok(node, "evm_revert", outer) is True
    assert balance(node, target) == 0
    assert ok(node, "evm_revert", inner) is False  # reverting to outer dropped the later snapshot


# -- time ----------------------------------------------------------------------------------------


def test_increase_time_moves_the_next_block(node: NodeProcess) -> None:
    # Blocks mined in quick succession run ahead of the wall clock (each at least parent + 1); pin the
    # node's clock to the head first, so that "now + offset" (Anvil's and Hardhat's rule) is known.
    pinned = int(head(node)["timestamp"], 16) + 1
    ok(node, "evm_mine", {"timestamp": pinned})
    before = ok(node, "evm_increaseTime", 0)  # returns the total offset (hex here, decimal in Hardhat)
    after = ok(node, "evm_increaseTime", 3600)
    assert int(after, 0) - int(before, 0) == 3600
    ok(node, "evm_mine")
    first = int(head(node)["timestamp"], 16)
    assert pinned + 3600 <= first < pinned + 3600 + 60
    ok(node, "evm_increaseTime", "0xe10")  # hex quantity too
    ok(node, "evm_mine")
    assert first + 3600 <= int(head(node)["timestamp"], 16) < first + 3600 + 60


def test_set_next_block_timestamp(node: NodeProcess) -> None:
    parent = int(head(node)["timestamp"], 16)
    wanted = parent + 1000
    ok(node, "evm_setNextBlockTimestamp", wanted)
    send_transfer(node, 7, "0x" + "55" * 20, 1)  # automined block takes it
    assert int(head(node)["timestamp"], 16) == wanted
    ok(node, "evm_mine")  # later blocks continue from there
    after = int(head(node)["timestamp"], 16)
    assert wanted < after < wanted + 60
    ok(node, "evm_setNextBlockTimestamp", hex(after + 50))
    ok(node, "evm_mine")
    assert int(head(node)["timestamp"], 16) == after + 50
    # Not after the head: refused with geth/anvil's wording.
    response = node.rpc("evm_setNextBlockTimestamp", after)
    assert response["error"]["code"] == -32000
    assert "lower than or equal to previous block's timestamp" in response["error"]["message"]


def test_evm_mine_with_a_timestamp(node: NodeProcess) -> None:
    parent = int(head(node)["timestamp"], 16)
    number = int(head(node)["number"], 16)
    assert ok(node, "evm_mine", {"timestamp": parent + 500}) == "0x0"
    block = head(node)
    assert int(block["number"], 16) == number + 1
    assert int(block["timestamp"], 16) == parent + 500
    ok(node, "evm_mine", hex(parent + 700))  # Hardhat's positional form
    assert int(head(node)["timestamp"], 16) == parent + 700
    ok(node, "evm_mine")  # the clock follows
    assert parent + 700 < int(head(node)["timestamp"], 16) < parent + 760
    response = node.rpc("evm_mine", {"timestamp": parent})
    assert response["error"]["code"] == -32000
    assert "lower than or equal to previous block's timestamp" in response["error"]["message"]


def test_evm_mine_with_timestamp_overrides_set_next_block_timestamp(node: NodeProcess) -> None:
    """Anvil: an explicit evm_mine timestamp replaces a pending setNextBlockTimestamp; mining goes on."""
    parent = int(head(node)["timestamp"], 16)
    ok(node, "evm_setNextBlockTimestamp", parent + 100)
    ok(node, "evm_mine", {"timestamp": parent + 200})
    assert int(head(node)["timestamp"], 16) == parent + 200
    response = node.rpc("evm_mine")
    assert "error" not in response, response
    assert int(head(node)["timestamp"], 16) > parent + 200
    tx_hash = send_transfer(node, 7, "0x" + "56" * 20, 1)
    assert node.rpc("eth_getTransactionReceipt", tx_hash).get("result") is not None, "automine stalled"


def test_anvil_mine_blocks_with_interval(node: NodeProcess) -> None:
    start = head(node)
    ok(node, "anvil_mine", "0x3", "0x10")
    end = head(node)
    assert int(end["number"], 16) == int(start["number"], 16) + 3
    assert int(end["timestamp"], 16) == int(start["timestamp"], 16) + 3 * 16
    ok(node, "hardhat_mine", "0x2")
    assert int(head(node)["number"], 16) == int(start["number"], 16) + 5


# -- state edits ---------------------------------------------------------------------------------


def test_set_balance(node: NodeProcess) -> None:
    target = "0x" + "61" * 20
    ok(node, "anvil_setBalance", target, hex(10**18))
    assert balance(node, target) == 10**18
    ok(node, "hardhat_setBalance", target, "0x2a")
    assert balance(node, target) == 42
    # A funded account can spend what it was given.
    ok(node, "anvil_setBalance", ACCTS[8].address, hex(3 * 10**18))
    assert balance(node, ACCTS[8].address) == 3 * 10**18
    send_transfer(node, 8, target, 10**18)
    assert balance(node, target) == 10**18 + 42


def test_set_code(node: NodeProcess) -> None:
    target = "0x" + "62" * 20
    runtime = "0x602a60005260206000f3"  # return uint256(42)
    ok(node, "anvil_setCode", target, runtime)
    assert ok(node, "eth_getCode", target, "latest") == runtime
    assert int(ok(node, "eth_call", {"to": target, "data": "0x"}, "latest"), 16) == 42
    ok(node, "hardhat_setCode", target, "0x")
    assert ok(node, "eth_getCode", target, "latest") == "0x"


def test_set_nonce(node: NodeProcess) -> None:
    acct = ACCTS[9]
    ok(node, "anvil_setNonce", acct.address, "0x20")
    assert ok(node, "eth_getTransactionCount", acct.address, "latest") == "0x20"
    send_transfer(node, 9, "0x" + "63" * 20, 1)  # uses the pending nonce, 0x20
    assert ok(node, "eth_getTransactionCount", acct.address, "latest") == "0x21"
    ok(node, "hardhat_setNonce", "0x" + "64" * 20, "0x5")
    assert ok(node, "eth_getTransactionCount", "0x" + "64" * 20, "latest") == "0x5"


def test_set_storage_at(node: NodeProcess) -> None:
    target = "0x" + "65" * 20
    value = "0x" + "00" * 31 + "2a"
    slot = "0x" + "00" * 31 + "01"
    ok(node, "anvil_setStorageAt", target, slot, value)
    assert ok(node, "eth_getStorageAt", target, "0x1", "latest") == value
    ok(node, "hardhat_setStorageAt", target, slot, "0x" + "ff" * 32)
    assert ok(node, "eth_getStorageAt", target, "0x1", "latest") == "0x" + "ff" * 32


def test_set_storage_at_with_a_quantity_slot(node: NodeProcess) -> None:
    """Hardhat's documented call passes the slot as a quantity ("0x0"); Anvil takes a U256 too."""
    target = "0x" + "66" * 20
    value = "0x" + "00" * 31 + "07"
    response = node.rpc("hardhat_setStorageAt", target, "0x0", value)
    assert "error" not in response, response
    assert ok(node, "eth_getStorageAt", target, "0x0", "latest") == value
    response = node.rpc("anvil_setStorageAt", target, "0x2", value)
    assert "error" not in response, response
    assert ok(node, "eth_getStorageAt", target, "0x2", "latest") == value


def test_set_balance_bad_params(node: NodeProcess) -> None:
    response = node.rpc("anvil_setBalance", "0x1234", "0x1")
    assert response["error"]["code"] == -32602
    response = node.rpc("anvil_setBalance", "0x" + "61" * 20)
    assert response["error"]["code"] == -32602


# -- automine ------------------------------------------------------------------------------------


def test_set_automine_false_keeps_transactions_pending(node: NodeProcess) -> None:
    target = "0x" + "71" * 20
    number = int(ok(node, "eth_blockNumber"), 16)
    assert ok(node, "eth_mining") is True
    assert ok(node, "evm_setAutomine", False) is None
    try:
        assert ok(node, "eth_mining") is False
        first = send_transfer(node, 3, target, 1)
        second = send_transfer(node, 3, target, 2)
        assert int(ok(node, "eth_blockNumber"), 16) == number
        assert ok(node, "eth_getTransactionReceipt", first) is None
        pending_tx = ok(node, "eth_getTransactionByHash", second)
        assert pending_tx["blockNumber"] is None
        assert ok(node, "txpool_status") == {"pending": "0x2", "queued": "0x0"}
        assert balance(node, target) == 0
        assert ok(node, "evm_mine") == "0x0"
        assert int(ok(node, "eth_blockNumber"), 16) == number + 1
        block = ok(node, "eth_getBlockByNumber", hex(number + 1), False)
        assert block["transactions"] == [first, second]
        assert balance(node, target) == 3
        assert ok(node, "txpool_status") == {"pending": "0x0", "queued": "0x0"}
    finally:
        ok(node, "evm_setAutomine", True)
    assert ok(node, "eth_mining") is True
    tx_hash = send_transfer(node, 3, target, 4)
    assert ok(node, "eth_getTransactionReceipt", tx_hash)["status"] == "0x1"
    assert node.rpc("evm_setAutomine", "yes")["error"]["code"] == -32602


def test_set_automine_true_mines_what_is_pending(node: NodeProcess) -> None:
    import time

    ok(node, "evm_setAutomine", False)
    try:
        tx_hash = send_transfer(node, 3, "0x" + "72" * 20, 1)
        assert ok(node, "eth_getTransactionReceipt", tx_hash) is None
    finally:
        ok(node, "evm_setAutomine", True)
    deadline = time.monotonic() + 10
    while ok(node, "eth_getTransactionReceipt", tx_hash) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ok(node, "eth_getTransactionReceipt", tx_hash)["status"] == "0x1"


# -- ops: /metrics, /health, CORS ----------------------------------------------------------------


def test_metrics_endpoint(node: NodeProcess) -> None:
    ok(node, "evm_mine")
    number = int(ok(node, "eth_blockNumber"), 16)
    response = requests.get(f"{node.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.text
    assert "# TYPE lorachain_chain_head_block gauge" in text
    samples = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")
    }
    assert samples["lorachain_chain_head_block"] == number
    assert samples["lorachain_blocks_built_total"] >= 1
    assert 'lorachain_rpc_requests_total{method="eth_blockNumber",outcome="ok"}' in samples


def test_metrics_head_follows_revert(node: NodeProcess) -> None:
    snap = ok(node, "evm_snapshot")
    ok(node, "evm_mine")
    ok(node, "evm_revert", snap)
    number = int(ok(node, "eth_blockNumber"), 16)
    text = requests.get(f"{node.url}/metrics", timeout=10).text
    line = next(line for line in text.splitlines() if line.startswith("lorachain_chain_head_block "))
    assert float(line.split(" ")[1]) == number


def test_health_endpoint(node: NodeProcess) -> None:
    response = requests.get(f"{node.url}/health", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    latest = head(node)
    assert body["ok"] is True
    assert body["chainId"] == 901
    assert body["head"] == int(latest["number"], 16)
    assert body["hash"] == latest["hash"]


def test_cors_preflight_and_post(node: NodeProcess) -> None:
    origin = "https://dapp.example"
    preflight = requests.options(
        node.url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=10,
    )
    assert preflight.status_code in (200, 204)
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", origin)
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "content-type" in preflight.headers["Access-Control-Allow-Headers"].lower()
    post = requests.post(
        node.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        headers={"Origin": origin},
        timeout=10,
    )
    assert post.json()["result"] == "0x385"
    assert post.headers["Access-Control-Allow-Origin"] in ("*", origin)
    # Without an Origin there is nothing to allow.
    plain = requests.post(node.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in plain.headers


# -- misc namespaces -----------------------------------------------------------------------------


def test_net_and_web3(node: NodeProcess) -> None:
    assert ok(node, "net_version") == "901"
    assert ok(node, "net_listening") is True
    assert ok(node, "net_peerCount") == "0x0"
    version = ok(node, "web3_clientVersion")
    assert version.startswith("lorachain/v")
    assert ok(node, "web3_sha3", "0x68656c6c6f20776f726c64") == (
        "0x47173285a8d7341e5e972fc677286384f802f8ef42a5ec5f03bbfa254cb01fad"
    )
    assert ok(node, "web3_sha3", "0x") == "0x" + keccak(b"").hex()
    assert node.rpc("web3_sha3", "hello")["error"]["code"] == -32602


def test_eth_accounts_and_syncing(node: NodeProcess) -> None:
    accounts = ok(node, "eth_accounts")
    assert len(accounts) == 10
    assert accounts[0] == ACCOUNT_0
    assert accounts == [acct.address for acct in ACCTS]
    assert ok(node, "eth_syncing") is False
    assert ok(node, "eth_chainId") == "0x385"


# -- WebSocket -----------------------------------------------------------------------------------


def test_websocket_single_and_batch(node: NodeProcess) -> None:
    from websockets.sync.client import connect

    with connect(node.ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": []}))
        reply = json.loads(ws.recv(timeout=10))
        assert reply == {"jsonrpc": "2.0", "id": 7, "result": "0x385"}
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "id": 2, "method": "net_version", "params": []},
            {"jsonrpc": "2.0", "id": 3, "method": "no_such_method", "params": []},
            {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": []},  # notification: no reply
        ]
        ws.send(json.dumps(batch))
        replies = {r["id"]: r for r in json.loads(ws.recv(timeout=10))}
        assert set(replies) == {1, 2, 3}
        assert replies[1]["result"] == "0x385"
        assert replies[2]["result"] == "901"
        assert replies[3]["error"]["code"] == -32601
        ws.send("{not json")
        assert json.loads(ws.recv(timeout=10))["error"]["code"] == -32700


def test_websocket_get_without_upgrade_is_refused(node: NodeProcess) -> None:
    response = requests.get(node.url, timeout=10)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == -32600


@pytest.mark.parametrize("method", ["evm_snapshot", "evm_mine", "anvil_setBalance", "evm_setAutomine"])
def test_dev_methods_are_listed(node: NodeProcess, method: str) -> None:
    response = node.rpc(method)
    assert response.get("error", {}).get("code") != -32601, response
