"""The AI precompile end to end: a sidecar subprocess, a node subprocess calling it, a Solidity dApp
(compiled by the pinned solc) asking an adapter through web3.py, and every bad path."""

from __future__ import annotations

import time

import msgpack
import pytest
import requests
from web3 import Web3
from web3.exceptions import ContractLogicError

from lorachain.precompiles.abi import InferenceCall, InferenceOutput
from lorachain.precompiles.inference import INFERENCE_ADDRESS
from lorachain.sidecar.checkpoint import load_checkpoint
from lorachain.toolchain.solc import load_artifact
from tests.conftest import free_port, start_node
from tests.sidecar_fixtures import start_sidecar, tiny_model, write_peft_adapter

PROMPT = "Q: Where does Alice live? A:"
PRECOMPILE = Web3.to_checksum_address(INFERENCE_ADDRESS)


def msgpack_call(url: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    if body is None:
        reply = requests.get(url + path, timeout=60)
    else:
        reply = requests.post(url + path, data=msgpack.packb(body), timeout=60,
                              headers={"Content-Type": "application/msgpack"})  # fmt: skip
    return reply.status_code, msgpack.unpackb(reply.content)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ai")
    model_dir = tiny_model(root)
    config = load_checkpoint(model_dir).config
    port = free_port()
    sidecar, url = start_sidecar(model_dir, root, port)
    adapter_dir = write_peft_adapter(root / "peft", config, rank=8, seed=5)
    status, info = msgpack_call(url, "/v1/lorachain/adapters/load", {"path": str(adapter_dir)})
    assert status == 200
    node = start_node(root / "node", "--sidecar", url)
    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 120}))
    artifact = load_artifact("AdapterQA")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": w3.eth.accounts[0]}))
    qa = w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"])
    state = {"root": root, "model_dir": model_dir, "port": port, "sidecar": sidecar, "url": url, "node": node,
             "w3": w3, "qa": qa, "adapter": bytes.fromhex(info["id"][2:])}  # fmt: skip
    yield state
    node.stop()
    state["sidecar"].terminate()
    state["sidecar"].wait(timeout=20)


def direct(world, prompt: str, adapter: bytes | None, max_new_tokens: int) -> dict:
    """The same inference asked of the sidecar directly."""
    from tokenizers import Tokenizer

    _, tok = msgpack_call(world["url"], "/v1/lorachain/tokenizer")
    ids = Tokenizer.from_str(tok["tokenizer"]).encode(prompt).ids
    body = {"prompt_ids": ids, "adapter_id": None if adapter is None else "0x" + adapter.hex(),
            "max_new_tokens": max_new_tokens}  # fmt: skip
    status, result = msgpack_call(world["url"], "/v1/lorachain/generate", body)
    assert status == 200, result
    result["text"] = Tokenizer.from_str(tok["tokenizer"]).decode(result["output_ids"])
    return result


def test_on_chain_answer_equals_the_sidecars_exact_output(world):
    w3, qa, adapter = world["w3"], world["qa"], world["adapter"]
    expected = direct(world, PROMPT, adapter, 8)
    text, commitment = qa.functions.preview(adapter, PROMPT, 8).call()
    assert (text, commitment) == (expected["text"], expected["commitment"])
    tx = qa.functions.ask(adapter, PROMPT, 8).transact({"from": w3.eth.accounts[1]})
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=120)
    assert receipt.status == 1
    event = qa.events.Answered().process_receipt(receipt)[0]["args"]
    assert event["commitment"] == expected["commitment"] and event["answer"] == expected["text"]
    stored = qa.functions.answer(event["id"]).call()
    assert stored[3] == expected["text"] and stored[4] == expected["commitment"]
    base = direct(world, PROMPT, None, 8)
    assert qa.functions.preview(b"\x00" * 32, PROMPT, 8).call() == [base["text"], base["commitment"]]


def test_direct_precompile_call_returns_the_abi_output_and_charges_documented_gas(world):
    w3, adapter = world["w3"], world["adapter"]
    call = InferenceCall((adapter,), (), PROMPT, max_new_tokens=5)
    out = InferenceOutput.decode(w3.eth.call({"to": PRECOMPILE, "data": call.encode()}))
    expected = direct(world, PROMPT, adapter, 5)
    assert list(out.output_ids) == expected["output_ids"] and out.commitment == expected["commitment"]
    assert out.output_tokens == len(out.output_ids) and out.prompt_tokens == expected["prompt_tokens"]
    from lorachain.precompiles.inference import inference_gas

    _, model = msgpack_call(world["url"], "/v1/lorachain/model")
    gas = inference_gas(call, expected["prompt_tokens"], model["parameters"])
    data_gas = sum(16 if b else 4 for b in call.encode())
    exact = 21_000 + data_gas + gas
    estimate = w3.eth.estimate_gas({"to": PRECOMPILE, "data": call.encode()})
    assert exact <= estimate <= exact * 1.015  # geth's estimator stops within 1.5 % of the optimum
    tx = w3.eth.send_transaction({"from": w3.eth.accounts[5], "to": PRECOMPILE, "data": call.encode(), "gas": estimate})
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=60)
    assert receipt.status == 1 and receipt.gasUsed == exact


@pytest.mark.parametrize(
    ("adapter", "prompt", "tokens", "reason"),
    [
        (b"\x13" * 32, PROMPT, 4, "unknown adapter"),
        (None, "word " * 400, 4, "context"),
        (None, PROMPT, 100_000, "max_new_tokens"),
    ],
)
def test_bad_requests_revert_with_the_reason(world, adapter, prompt, tokens, reason):
    qa = world["qa"]
    with pytest.raises(ContractLogicError, match=reason):
        qa.functions.preview(adapter or b"\x00" * 32, prompt, tokens).call()


def test_malformed_input_reverts_and_the_node_keeps_serving(world):
    node = world["node"]
    reply = node.rpc("eth_call", {"to": PRECOMPILE, "data": "0x1234"}, "latest")
    assert reply["error"]["code"] == 3 and "malformed input" in reply["error"]["message"]
    assert "result" in node.rpc("eth_blockNumber")


def test_cache_answers_repeated_calls(world):
    qa, adapter = world["qa"], world["adapter"]
    started = time.perf_counter()
    first = qa.functions.preview(adapter, "Q: Who is Bob? A:", 24).call()
    cold = time.perf_counter() - started
    started = time.perf_counter()
    assert qa.functions.preview(adapter, "Q: Who is Bob? A:", 24).call() == first
    assert time.perf_counter() - started < cold


def test_unreachable_sidecar_leaves_the_transaction_in_the_pool(world):
    w3, qa, adapter, node = world["w3"], world["qa"], world["adapter"], world["node"]
    world["sidecar"].terminate()
    world["sidecar"].wait(timeout=20)
    reply = node.rpc(
        "eth_call", {"to": PRECOMPILE, "data": "0x" + InferenceCall(prompt="new").encode().hex()}, "latest"
    )
    assert reply["error"]["code"] == -32000 and "unreachable" in reply["error"]["message"]
    head = w3.eth.block_number
    tx = qa.functions.ask(adapter, "Q: Who is Carol? A:", 6).transact({"from": w3.eth.accounts[2], "gas": 2_000_000})
    time.sleep(3)
    assert w3.eth.get_transaction(tx)["blockNumber"] is None  # pending, not dropped, not mined
    assert w3.eth.block_number == head  # and no empty blocks while it waits
    plain = w3.eth.send_transaction({"from": w3.eth.accounts[3], "to": w3.eth.accounts[4], "value": 1})
    assert w3.eth.wait_for_transaction_receipt(plain, timeout=30).status == 1  # other txs still flow
    world["sidecar"], _ = start_sidecar(world["model_dir"], world["root"], world["port"])
    receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=60)
    assert receipt.status == 1
    expected = direct(world, "Q: Who is Carol? A:", adapter, 6)
    assert qa.events.Answered().process_receipt(receipt)[0]["args"]["commitment"] == expected["commitment"]
