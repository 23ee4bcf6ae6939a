"""debug_ namespace against a real node: struct logs, callTracer, prestateTracer, traceCall, block
traces and raw consensus encodings."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import rlp
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak

from lorachain.toolchain.solc import compile_source

pytestmark = pytest.mark.e2e

SOURCE = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

contract Callee {
    uint256 public value;
    event Poked(uint256 v);

    function poke(uint256 v) external returns (uint256) {
        value = v;
        emit Poked(v);
        return v * 2;
    }

    function fail() external pure {
        revert("callee says no");
    }
}

contract Caller {
    uint256 public stored;
    Callee public callee;
    event Stored(address indexed who, uint256 v);

    constructor(Callee c) {
        callee = c;
    }

    function run(uint256 v) external returns (uint256) {
        stored = v;
        emit Stored(msg.sender, v);
        return callee.poke(v + 1);
    }

    function tryFail() external returns (bool ok) {
        (ok, ) = address(callee).call(abi.encodeCall(Callee.fail, ()));
        stored = 7;
    }

    function boom() external {
        stored = 1;
        revert("boom: nope");
    }
}
"""

ERROR_SELECTOR = function_signature_to_4byte_selector("Error(string)")
CALL_OPS = {"CALL", "CALLCODE", "DELEGATECALL", "STATICCALL", "CREATE", "CREATE2"}


def selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


def calldata(signature: str, types: list[str] | None = None, args: list[Any] | None = None) -> str:
    return "0x" + (selector(signature) + encode(types or [], args or [])).hex()


def result(response: dict) -> Any:
    assert "error" not in response, response
    return response["result"]


@pytest.fixture(scope="module")
def env(node, w3) -> dict[str, Any]:
    artifacts = compile_source(SOURCE, "Debug.sol")
    sender = w3.eth.accounts[0]

    def deploy(name: str, args: bytes = b"") -> str:
        tx = w3.eth.send_transaction({"from": sender, "data": artifacts[name]["bytecode"] + args.hex()})
        receipt = w3.eth.wait_for_transaction_receipt(tx)
        assert receipt.status == 1
        return receipt.contractAddress

    callee = deploy("Callee")
    caller = deploy("Caller", encode(["address"], [callee]))

    def send(data: str, gas: int | None = None) -> tuple[str, Any]:
        fields = {"from": sender, "to": caller, "data": data}
        if gas is not None:
            fields["gas"] = gas
        tx_hash = w3.eth.send_transaction(fields)
        return "0x" + bytes(tx_hash).hex(), w3.eth.wait_for_transaction_receipt(tx_hash)

    run_hash, run_receipt = send(calldata("run(uint256)", ["uint256"], [41]))
    boom_hash, boom_receipt = send(calldata("boom()"), gas=200_000)
    try_hash, try_receipt = send(calldata("tryFail()"))
    assert (run_receipt.status, boom_receipt.status, try_receipt.status) == (1, 0, 1)

    # A block holding several transactions, for the block tracers.
    result(node.rpc("evm_setAutomine", False))
    batch = [
        w3.eth.send_transaction({"from": sender, "to": caller, "data": calldata("run(uint256)", ["uint256"], [i])})
        for i in range(3)
    ]
    result(node.rpc("evm_mine"))
    result(node.rpc("evm_setAutomine", True))
    batch_receipts = [w3.eth.wait_for_transaction_receipt(h) for h in batch]
    assert len({r.blockNumber for r in batch_receipts}) == 1
    return {
        "sender": sender.lower(),
        "caller": caller.lower(),
        "callee": callee.lower(),
        "run": (run_hash, run_receipt),
        "boom": (boom_hash, boom_receipt),
        "try": (try_hash, try_receipt),
        "batch": batch_receipts,
    }


# -- struct logger ----------------------------------------------------------------------------------
def test_struct_logs(node, w3, env) -> None:
    tx_hash, receipt = env["run"]
    tx = w3.eth.get_transaction(tx_hash)
    trace = result(node.rpc("debug_traceTransaction", tx_hash))
    assert set(trace) == {"gas", "failed", "returnValue", "structLogs"}
    assert trace["gas"] == receipt.gasUsed
    assert trace["failed"] is False
    assert trace["returnValue"] == encode(["uint256"], [84]).hex()  # no 0x, as geth
    logs = trace["structLogs"]
    first = logs[0]
    assert (first["pc"], first["op"], first["depth"], first["stack"]) == (0, "PUSH1", 1, [])
    assert "memory" not in first and "storage" not in first
    data = bytes(tx.input)
    intrinsic = 21_000 + sum(16 if b else 4 for b in data)
    assert first["gas"] == tx.gas - intrinsic

    sstores = [s for s in logs if s["op"] == "SSTORE"]
    assert [s["depth"] for s in sstores] == [1, 2]
    assert sstores[0]["storage"] == {"00" * 32: f"{41:064x}"}
    assert sstores[1]["storage"] == {"00" * 32: f"{42:064x}"}
    assert all(s["stack"][i].startswith("0x") for s in logs for i in range(len(s["stack"])))

    # Gas bookkeeping is consistent: the next step at the same depth starts with gas - gasCost,
    # and a call's first inner step gets the gas the call handed over.
    for step, nxt in itertools.pairwise(logs):
        if nxt["depth"] == step["depth"] and step["op"] not in CALL_OPS:
            assert nxt["gas"] == step["gas"] - step["gasCost"], step
    call_index = next(i for i, s in enumerate(logs) if s["op"] == "CALL")
    call, inner = logs[call_index], logs[call_index + 1]
    assert inner["depth"] == 2 and inner["pc"] == 0
    requested = int(call["stack"][-1], 16)
    assert inner["gas"] <= requested and call["gasCost"] >= inner["gas"]
    assert any(s["op"] == "LOG2" for s in logs) and any(s["op"] == "LOG1" for s in logs)
    assert logs[-1]["op"] == "RETURN" and logs[-1]["depth"] == 1


def test_struct_log_options(node, env) -> None:
    tx_hash, _ = env["run"]
    config = {"disableStack": True, "disableStorage": True, "enableMemory": True, "enableReturnData": True}
    logs = result(node.rpc("debug_traceTransaction", tx_hash, config))["structLogs"]
    assert all("stack" not in s and "storage" not in s for s in logs)
    assert logs[0]["memory"] == []
    words = next(s["memory"] for s in logs if len(s.get("memory", [])) >= 3)
    assert all(len(w) == 64 for w in words) and words[2] == f"{0x80:064x}"  # solidity's free pointer
    assert any("returnData" in s for s in logs)  # after the inner call returned
    limited = result(node.rpc("debug_traceTransaction", tx_hash, {"limit": 5}))
    assert len(limited["structLogs"]) == 5


def test_struct_logs_of_revert(node, env) -> None:
    tx_hash, receipt = env["boom"]
    trace = result(node.rpc("debug_traceTransaction", tx_hash))
    assert trace["failed"] is True and trace["gas"] == receipt.gasUsed
    payload = bytes.fromhex(trace["returnValue"])
    assert payload[:4] == ERROR_SELECTOR and decode(["string"], payload[4:]) == ("boom: nope",)
    assert trace["structLogs"][-1]["op"] == "REVERT"
    assert "error" not in trace["structLogs"][-1]  # geth shows faults only for pre-execution errors


# -- callTracer ------------------------------------------------------------------------------------
def test_call_tracer_nesting_and_logs(node, env) -> None:
    tx_hash, receipt = env["run"]
    config = {"tracer": "callTracer", "tracerConfig": {"withLog": True}}
    top = result(node.rpc("debug_traceTransaction", tx_hash, config))
    assert top["type"] == "CALL"
    assert (top["from"], top["to"]) == (env["sender"], env["caller"])
    assert int(top["gasUsed"], 16) == receipt.gasUsed and top["value"] == "0x0"
    assert top["input"] == calldata("run(uint256)", ["uint256"], [41])
    assert top["output"] == "0x" + encode(["uint256"], [84]).hex()
    assert [log["position"] for log in top["logs"]] == ["0x0"]
    assert top["logs"][0]["address"] == env["caller"]
    (inner,) = top["calls"]
    assert inner["type"] == "CALL"
    assert (inner["from"], inner["to"]) == (env["caller"], env["callee"])
    assert inner["input"] == calldata("poke(uint256)", ["uint256"], [42])
    assert inner["output"] == "0x" + encode(["uint256"], [84]).hex()
    assert int(inner["gasUsed"], 16) < int(inner["gas"], 16)
    assert inner["logs"][0]["topics"] == ["0x" + keccak(text="Poked(uint256)").hex()]
    assert "calls" not in inner and "error" not in inner

    only_top = result(
        node.rpc("debug_traceTransaction", tx_hash, {"tracer": "callTracer", "tracerConfig": {"onlyTopCall": True}})
    )
    assert "calls" not in only_top and "logs" not in only_top
    assert only_top["gasUsed"] == top["gasUsed"]


def test_call_tracer_reverts(node, env) -> None:
    boom_hash, _ = env["boom"]
    top = result(node.rpc("debug_traceTransaction", boom_hash, {"tracer": "callTracer"}))
    assert top["error"] == "execution reverted"
    assert top["revertReason"] == "boom: nope"
    assert top["output"].startswith("0x" + ERROR_SELECTOR.hex())

    try_hash, _ = env["try"]
    config = {"tracer": "callTracer", "tracerConfig": {"withLog": True}}
    top = result(node.rpc("debug_traceTransaction", try_hash, config))
    assert "error" not in top
    (inner,) = top["calls"]
    assert inner["to"] == env["callee"]
    assert inner["error"] == "execution reverted" and inner["revertReason"] == "callee says no"


# -- prestateTracer --------------------------------------------------------------------------------
def test_prestate_tracer(node, env) -> None:
    tx_hash, _ = env["run"]
    pre = result(node.rpc("debug_traceTransaction", tx_hash, {"tracer": "prestateTracer"}))
    assert {env["sender"], env["caller"], env["callee"]} <= set(pre)
    assert pre[env["caller"]]["storage"]["0x" + "00" * 32] == "0x" + "00" * 32
    assert pre[env["caller"]]["code"].startswith("0x60")
    assert int(pre[env["sender"]]["balance"], 16) > 0 and pre[env["sender"]]["nonce"] >= 2

    diff = result(
        node.rpc("debug_traceTransaction", tx_hash, {"tracer": "prestateTracer", "tracerConfig": {"diffMode": True}})
    )
    slot0 = "0x" + "00" * 32
    assert diff["post"][env["caller"]]["storage"] == {slot0: "0x" + f"{41:064x}"}
    assert diff["post"][env["callee"]]["storage"] == {slot0: "0x" + f"{42:064x}"}
    assert diff["post"][env["sender"]]["nonce"] == pre[env["sender"]]["nonce"] + 1


# -- traceCall and block traces --------------------------------------------------------------------
def test_trace_call(node, env) -> None:
    call = {"from": env["sender"], "to": env["caller"], "data": calldata("run(uint256)", ["uint256"], [9])}
    top = result(node.rpc("debug_traceCall", call, "latest", {"tracer": "callTracer"}))
    assert top["output"] == "0x" + encode(["uint256"], [20]).hex()
    assert top["calls"][0]["to"] == env["callee"]

    trace = result(node.rpc("debug_traceCall", call, "latest", {}))
    assert trace["failed"] is False and trace["structLogs"][0]["op"] == "PUSH1"
    estimate = int(result(node.rpc("eth_estimateGas", call)), 16)
    assert trace["gas"] <= estimate

    overrides = {"stateOverrides": {env["caller"]: {"stateDiff": {"0x" + "00" * 32: "0x" + f"{5:064x}"}}}}
    reading = {"from": env["sender"], "to": env["caller"], "data": calldata("stored()")}
    traced = result(node.rpc("debug_traceCall", reading, "latest", {"tracer": "callTracer", **overrides}))
    assert traced["output"] == "0x" + f"{5:064x}"

    boom = {**call, "data": calldata("boom()")}
    reverted = result(node.rpc("debug_traceCall", boom, "latest", {"tracer": "callTracer"}))
    assert reverted["revertReason"] == "boom: nope"


def test_trace_block(node, env) -> None:
    receipts = env["batch"]
    number = receipts[0].blockNumber
    traces = result(node.rpc("debug_traceBlockByNumber", hex(number), {"tracer": "callTracer"}))
    assert len(traces) == len(receipts) == 3
    assert [t["txHash"] for t in traces] == ["0x" + bytes(r.transactionHash).hex() for r in receipts]
    for trace, receipt in zip(traces, receipts, strict=True):
        assert int(trace["result"]["gasUsed"], 16) == receipt.gasUsed

    block_hash = "0x" + bytes(receipts[0].blockHash).hex()
    by_hash = result(node.rpc("debug_traceBlockByHash", block_hash))
    assert [t["result"]["gas"] for t in by_hash] == [r.gasUsed for r in receipts]
    # Tracing one transaction replays the ones before it in the block.
    last = result(node.rpc("debug_traceTransaction", traces[-1]["txHash"]))
    assert last == by_hash[-1]["result"]


# -- raw encodings ---------------------------------------------------------------------------------
def test_raw_header_block_receipts_transaction(node, w3, env) -> None:
    tx_hash, receipt = env["run"]
    block = w3.eth.get_block(receipt.blockNumber)
    block_hash = bytes(block.hash)

    raw_header = bytes.fromhex(result(node.rpc("debug_getRawHeader", hex(receipt.blockNumber)))[2:])
    assert keccak(raw_header) == block_hash
    assert rlp.decode(raw_header)[8] == receipt.blockNumber.to_bytes(1, "big")
    assert result(node.rpc("debug_getRawHeader", "0x" + block_hash.hex())) == "0x" + raw_header.hex()

    raw_block = bytes.fromhex(result(node.rpc("debug_getRawBlock", "0x" + block_hash.hex()))[2:])
    fields = rlp.decode(raw_block)
    assert keccak(rlp.encode(fields[0])) == block_hash
    assert len(fields[1]) == len(block.transactions) == 1

    raw_tx = bytes.fromhex(result(node.rpc("debug_getRawTransaction", tx_hash))[2:])
    assert "0x" + keccak(raw_tx).hex() == tx_hash
    assert raw_tx[0] == 2  # EIP-1559 typed transaction
    assert fields[1][0] == raw_tx  # typed transactions sit in the block body as byte strings

    (raw_receipt,) = result(node.rpc("debug_getRawReceipts", hex(receipt.blockNumber)))
    payload = bytes.fromhex(raw_receipt[2:])
    assert payload[0] == 2
    status, cumulative, bloom, logs = rlp.decode(payload[1:])
    assert status == b"\x01" and int.from_bytes(cumulative, "big") == receipt.cumulativeGasUsed
    assert len(bloom) == 256 and len(logs) == 2

    batch_number = hex(env["batch"][0].blockNumber)
    assert len(result(node.rpc("debug_getRawReceipts", batch_number))) == 3


# -- errors ----------------------------------------------------------------------------------------
def test_errors(node, env) -> None:
    missing = "0x" + "ab" * 32
    error = node.rpc("debug_traceTransaction", missing)["error"]
    assert error == {"code": -32000, "message": f"transaction {missing} not found"}
    assert node.rpc("debug_getRawTransaction", missing)["result"] is None

    assert node.rpc("debug_traceTransaction", "0x1234")["error"]["code"] == -32602
    tx_hash, _ = env["run"]
    assert node.rpc("debug_traceTransaction", tx_hash, {"disableStack": "yes"})["error"]["code"] == -32602
    unknown = node.rpc("debug_traceTransaction", tx_hash, {"tracer": "nopeTracer"})["error"]
    assert unknown["code"] == -32000 and "nopeTracer" in unknown["message"]
    bad_timeout = node.rpc("debug_traceTransaction", tx_hash, {"timeout": "soon"})["error"]
    assert bad_timeout == {"code": -32000, "message": 'time: invalid duration "soon"'}
    timed_out = node.rpc("debug_traceTransaction", tx_hash, {"timeout": "0s"})["error"]
    assert timed_out == {"code": -32000, "message": "execution timeout"}

    assert node.rpc("debug_traceBlockByNumber", "0x0")["error"]["message"] == "genesis is not traceable"
    assert node.rpc("debug_traceBlockByNumber", "0xffffff")["error"]["code"] == -32000
    assert node.rpc("debug_getRawHeader", "0xffffff")["error"] == {"code": -32000, "message": "header not found"}
    assert node.rpc("debug_getRawBlock", "nonsense")["error"]["code"] == -32602


def test_state_edits_get_their_own_block_and_later_txs_trace(node, w3, env) -> None:
    # A devnet state edit (anvil_set*) is mined alone in an empty block, never together with pending
    # transactions, so every transaction stays re-executable and traceable.
    result(node.rpc("evm_setAutomine", False))
    try:
        data = calldata("run(uint256)", ["uint256"], [77])
        fields = {"from": w3.eth.accounts[0], "to": w3.to_checksum_address(env["caller"]), "data": data, "gas": 200_000}
        tx_hash = w3.eth.send_transaction(fields)
        edit_block = w3.eth.block_number + 1
        result(node.rpc("anvil_setStorageAt", env["caller"], "0x0", "0x" + "00" * 32))
        assert w3.eth.get_block(edit_block).transactions == []  # the edit's block holds no txs
    finally:
        result(node.rpc("evm_setAutomine", True))
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt.blockNumber > edit_block
    trace = result(node.rpc("debug_traceTransaction", "0x" + bytes(tx_hash).hex()))
    assert trace["gas"] == receipt.gasUsed
