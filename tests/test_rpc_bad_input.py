"""Bad input gets geth's JSON-RPC error, and the node keeps serving."""

from __future__ import annotations

import pytest
import requests
import rlp
from eth_account import Account

from lorachain.genesis.accounts import dev_accounts

KEY = dev_accounts()[0].private_key
SENDER = dev_accounts()[0].address


def post_raw(node, body: bytes | str, **headers: str) -> requests.Response:
    return requests.post(node.url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=10)


def sign(node, **overrides) -> str:
    nonce = int(node.rpc("eth_getTransactionCount", SENDER, "pending")["result"], 16)
    fields = {"to": dev_accounts()[1].address, "value": 1, "gas": 21000, "maxFeePerGas": 10**11,
              "maxPriorityFeePerGas": 10**9, "nonce": nonce, "chainId": 901}  # fmt: skip
    fields.update(overrides)
    return "0x" + Account.sign_transaction(fields, overrides.pop("key", KEY)).raw_transaction.hex()


def error_of(response: dict) -> tuple[int, str]:
    assert "error" in response, response
    return response["error"]["code"], response["error"]["message"]


def test_malformed_json_is_parse_error(node) -> None:
    response = post_raw(node, b'{"jsonrpc": "2.0", "method": ')
    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32700


def test_invalid_request_shapes(node) -> None:
    assert post_raw(node, '"just a string"').json()["error"]["code"] == -32600
    assert post_raw(node, '{"jsonrpc": "1.0", "id": 1, "method": "eth_chainId"}').json()["error"]["code"] == -32600
    assert post_raw(node, "[]").json()["error"]["code"] == -32600
    params_obj = '{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": {"a": 1}}'
    assert post_raw(node, params_obj).json()["error"]["code"] == -32602


def test_unknown_method(node) -> None:
    code, message = error_of(node.rpc("eth_doesNotExist"))
    assert code == -32601
    assert message == "the method eth_doesNotExist does not exist/is not available"


@pytest.mark.parametrize(
    ("method", "params", "fragment"),
    [
        ("eth_getBalance", ["0x1234", "latest"], "hex string has length 4, want 40"),
        ("eth_getBalance", ["f39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "latest"], "without 0x prefix"),
        ("eth_getBalance", [], "missing value for required argument 0"),
        ("eth_blockNumber", [1, 2], "too many arguments"),
        ("eth_getBlockByNumber", ["0x01", False], "leading zero"),
        ("eth_getBlockByNumber", ["0x1", "yes"], "boolean"),
        ("eth_getTransactionByHash", ["0xzz"], "invalid hex"),
        ("eth_call", ["not an object", "latest"], "transaction object"),
        ("eth_getLogs", [{"topics": "nope"}], "topics"),
    ],
)
def test_wrong_params_are_invalid_params(node, method: str, params: list, fragment: str) -> None:
    code, message = error_of(node.rpc(method, *params))
    assert code == -32602
    assert fragment in message


def test_future_block_is_header_not_found(node) -> None:
    assert error_of(node.rpc("eth_getBalance", SENDER, "0xffffff")) == (-32000, "header not found")
    assert node.rpc("eth_getBlockByNumber", "0xffffff", False)["result"] is None


def test_oversize_body_is_413_with_json(node) -> None:
    body = '{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": ["' + "a" * (6 * 1024 * 1024) + '"]}'
    response = post_raw(node, body)
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "content length too large"


def test_batches_and_oversize_batch(node) -> None:
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(3)]
    batch.append({"jsonrpc": "2.0", "id": 99, "method": "nope"})
    replies = post_raw(node, requests.models.complexjson.dumps(batch)).json()
    assert [r["id"] for r in replies] == [0, 1, 2, 99]
    assert replies[0]["result"] == "0x385" and replies[3]["error"]["code"] == -32601
    too_many = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(1001)]
    reply = post_raw(node, requests.models.complexjson.dumps(too_many)).json()
    assert reply["error"]["message"] == "batch too large"


def test_invalid_rlp_and_signature(node) -> None:
    code, message = error_of(node.rpc("eth_sendRawTransaction", "0xdeadbeef"))
    assert code == -32000 and message.startswith("rlp:")
    raw = bytes.fromhex(sign(node)[2:])
    fields = rlp.decode(raw[1:])  # type-2 envelope: 0x02 || rlp([... y_parity, r, s])
    fields[-2] = b"\xff" * 32  # r above the curve order: no sender can be recovered
    broken = raw[:1] + rlp.encode(fields)
    code, message = error_of(node.rpc("eth_sendRawTransaction", "0x" + broken.hex()))
    assert code == -32000 and ("invalid sender" in message or "rlp" in message)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"chainId": 1}, "invalid chain id for signer"),
        ({"nonce": 0, "_mine_first": True}, "nonce too low"),
        ({"value": 10**30}, "insufficient funds for gas * price + value"),
        ({"gas": 20000}, "intrinsic gas too low"),
        ({"maxFeePerGas": 1, "maxPriorityFeePerGas": 1}, "max fee per gas less than block base fee"),
        ({"maxFeePerGas": 10**9, "maxPriorityFeePerGas": 10**10}, "max priority fee per gas higher than max fee"),
        ({"gas": 10**9}, "exceeds block gas limit"),
    ],
)
def test_txpool_rejections_use_geth_wording(node, overrides: dict, fragment: str) -> None:
    if overrides.pop("_mine_first", False):
        node.rpc("eth_sendRawTransaction", sign(node))
    code, message = error_of(node.rpc("eth_sendRawTransaction", sign(node, **overrides)))
    assert code == -32000
    assert fragment in message


def test_already_known_and_replacement_underpriced(node) -> None:
    nonce = int(node.rpc("eth_getTransactionCount", SENDER, "pending")["result"], 16)
    gapped = sign(node, nonce=nonce + 5)  # queued: stays in the pool
    assert "result" in node.rpc("eth_sendRawTransaction", gapped)
    assert error_of(node.rpc("eth_sendRawTransaction", gapped)) == (-32000, "already known")
    small_bump = sign(node, nonce=nonce + 5, maxFeePerGas=10**11 + 1, maxPriorityFeePerGas=10**9 + 1)
    assert error_of(node.rpc("eth_sendRawTransaction", small_bump)) == (-32000, "replacement transaction underpriced")
    big_bump = sign(node, nonce=nonce + 5, maxFeePerGas=2 * 10**11, maxPriorityFeePerGas=2 * 10**9)
    assert "result" in node.rpc("eth_sendRawTransaction", big_bump)
    content = node.rpc("txpool_content")["result"]["queued"][SENDER][str(nonce + 5)]
    assert int(content["maxFeePerGas"], 16) == 2 * 10**11


def test_unprotected_legacy_tx_is_refused_by_default(node) -> None:
    nonce = int(node.rpc("eth_getTransactionCount", SENDER, "pending")["result"], 16)
    unsigned = {"to": dev_accounts()[1].address, "value": 1, "gas": 21000, "gasPrice": 10**10, "nonce": nonce}
    raw = "0x" + Account.sign_transaction(unsigned, KEY).raw_transaction.hex()
    assert error_of(node.rpc("eth_sendRawTransaction", raw)) == (
        -32000,
        "only replay-protected (EIP-155) transactions allowed over RPC",
    )


def test_node_still_serves_after_bad_input(node) -> None:
    assert node.rpc("eth_chainId")["result"] == "0x385"
    assert "result" in node.rpc("eth_sendRawTransaction", sign(node))
