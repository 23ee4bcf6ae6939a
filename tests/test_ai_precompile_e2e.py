"""The AI precompile end to end: a sidecar subprocess, a node subprocess calling it, a Solidity dApp
(compiled by the pinned solc) asking an adapter through web3.py, and every bad path."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import msgpack
import pytest
import requests
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from lorachain.genesis.predeploys import ADAPTER_REGISTRY, DATANET_REGISTRY, INFERENCE_ROUTER
from lorachain.precompiles.abi import InferenceCall, InferenceOutput
from lorachain.precompiles.inference import INFERENCE_ADDRESS
from lorachain.sidecar.checkpoint import load_checkpoint
from lorachain.toolchain.solc import load_artifact
from tests.conftest import free_port, start_node
from tests.sidecar_fixtures import start_sidecar, tiny_model, write_peft_adapter
from tests.test_da_server_e2e import DAServerProcess

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
    (root / "source").mkdir()
    da = DAServerProcess(root / "da")
    node = start_node(root / "node", "--sidecar", url, "--adapter-source", str(root / "source"), "--adapter-source",
                      f"da+{da.url}")  # fmt: skip
    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 120}))
    qa = deploy(w3, "AdapterQA")
    state = {"root": root, "model_dir": model_dir, "port": port, "sidecar": sidecar, "url": url, "node": node,
             "w3": w3, "qa": qa, "adapter": bytes.fromhex(info["id"][2:]), "da": da}  # fmt: skip
    state["market"] = open_market(state)
    yield state
    node.stop()
    da.stop()
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
        (b"\x13" * 32, PROMPT, 4, "is not registered"),
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


def open_market(world) -> dict:
    """On the genesis predeploys: a datanet with two accepted contributions (one rejected), and the adapter
    registered as trained on it."""
    w3 = world["w3"]
    accounts = w3.eth.accounts
    datanets = predeploy(w3, DATANET_REGISTRY, "DatanetRegistry")
    registry = predeploy(w3, ADAPTER_REGISTRY, "AdapterRegistry")
    router = predeploy(w3, INFERENCE_ROUTER, "InferenceRouter")
    send(w3, datanets.functions.createDatanet("qa-pairs", "ipfs://qa"), 2)
    send(w3, datanets.functions.contribute(1, b"\x01" * 32, 300), 3)
    send(w3, datanets.functions.contribute(1, b"\x02" * 32, 100), 4)
    send(w3, datanets.functions.contribute(1, b"\x03" * 32, 999), 4)
    with pytest.raises(ContractLogicError, match="not a curator"):
        datanets.functions.review(1, 0, True).call({"from": accounts[3]})
    for index, accept in ((0, True), (1, True), (2, False)):
        send(w3, datanets.functions.review(1, index, accept), 2)
    send(w3, datanets.functions.snapshot(1), 2)
    root = datanets.functions.getDatanet(1).call()[4]
    _, model = msgpack_call(world["url"], "/v1/lorachain/model")
    model_hash = bytes.fromhex(model["model_hash"][2:])
    price = 1_000_003  # not a multiple of 10,000: the split has remainders to place
    send(
        w3, registry.functions.register(world["adapter"], model_hash, price, "ipfs://adapter", [1], [10_000], [root]), 1
    )
    return {"datanets": datanets, "registry": registry, "router": router, "price": price, "model_hash": model_hash}


def predeploy(w3: Web3, address: str, name: str):
    return w3.eth.contract(address=address, abi=load_artifact(name)["abi"])


def deploy(w3: Web3, name: str, *args, sender: int = 0):
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor(*args).transact({"from": w3.eth.accounts[sender]})
    )
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"])


def send(w3: Web3, fn, sender: int, value: int = 0):
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": w3.eth.accounts[sender], "value": value}))
    assert receipt.status == 1
    return receipt


@pytest.fixture(scope="module")
def market(world):
    return world["market"]


def test_router_charges_the_price_splits_it_exactly_and_pays_by_claim(world, market):
    w3, router, datanets, price = world["w3"], market["router"], market["datanets"], market["price"]
    accounts = w3.eth.accounts
    receipt = send(w3, router.functions.infer(1, PROMPT, 6, 0, 0, 1000, b"\x00" * 32), 5, value=price + 7)
    event = router.events.Inference().process_receipt(receipt, errors=DISCARD)[0]["args"]  # skip datanet logs
    assert event["commitment"] == direct(world, PROMPT, world["adapter"], 6)["commitment"]
    owner, treasury, refund = (router.functions.balanceOf(accounts[i]).call() for i in (1, 9, 5))
    contributors = price * 2000 // 10_000
    assert owner == price * 7000 // 10_000 and refund == 7
    assert owner + treasury + contributors == price  # every wei of the price is placed
    claim3 = datanets.functions.claimable(accounts[3], [1]).call()
    claim4 = datanets.functions.claimable(accounts[4], [1]).call()
    assert claim3 == contributors * 300 // 400 and claim4 == contributors * 100 // 400  # rejected size not counted
    assert 0 <= contributors - claim3 - claim4 <= 1  # the accumulator's remainder is carried, not paid twice
    assert w3.eth.get_balance(router.address) == owner + treasury + refund
    before = w3.eth.get_balance(accounts[1])
    claimed = send(w3, router.functions.claim(), 1)
    assert w3.eth.get_balance(accounts[1]) == before + owner - claimed.gasUsed * claimed.effectiveGasPrice
    assert router.functions.balanceOf(accounts[1]).call() == 0
    before = w3.eth.get_balance(accounts[3])
    claimed = send(w3, datanets.functions.claim([1]), 3)
    assert w3.eth.get_balance(accounts[3]) == before + claim3 - claimed.gasUsed * claimed.effectiveGasPrice
    assert datanets.functions.claimable(accounts[3], [1]).call() == 0


def test_router_refuses_bad_calls_with_reasons(world, market):
    w3, router, registry, price = world["w3"], market["router"], market["registry"], market["price"]
    accounts = w3.eth.accounts
    args = (PROMPT, 4, 0, 0, 1000, b"\x00" * 32)
    with pytest.raises(ContractLogicError, match="underpayment"):
        router.functions.infer(1, *args).call({"from": accounts[5], "value": price - 1})
    with pytest.raises(ContractLogicError, match="unknown adapter"):
        router.functions.infer(99, *args).call({"from": accounts[5], "value": price})
    with pytest.raises(ContractLogicError, match="context"):
        router.functions.infer(1, "word " * 400, 4, 0, 0, 1000, b"\x00" * 32).call(
            {"from": accounts[5], "value": price}
        )
    # a second real adapter, registered as if trained on another base model
    other_dir = write_peft_adapter(
        world["root"] / "peft-other", load_checkpoint(world["model_dir"]).config, rank=4, seed=9
    )
    _, info = msgpack_call(world["url"], "/v1/lorachain/adapters/load", {"path": str(other_dir)})
    other = bytes.fromhex(info["id"][2:])
    send(w3, registry.functions.register(other, b"\x42" * 32, 5, "", [], [], []), 6)
    with pytest.raises(ContractLogicError, match="another base model"):
        router.functions.infer(2, *args).call({"from": accounts[5], "value": 5})
    with pytest.raises(ContractLogicError, match="already registered"):
        registry.functions.register(other, b"\x42" * 32, 5, "", [], [], []).call({"from": accounts[7]})
    with pytest.raises(ContractLogicError, match="sum to 10000"):
        registry.functions.register(b"\x77" * 32, b"\x42" * 32, 5, "", [1], [9_999], [b"\x00" * 32]).call()
    with pytest.raises(ContractLogicError, match="not the adapter owner"):
        registry.functions.disable(1).call({"from": accounts[5]})
    send(w3, registry.functions.disable(2), 6)
    with pytest.raises(ContractLogicError, match="adapter disabled"):
        router.functions.infer(2, *args).call({"from": accounts[5], "value": 5})


def lorachain_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lorachain.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_publishes_lists_and_calls_an_adapter_on_the_predeploys(world):
    node, url = world["node"], world["url"]
    folder = write_peft_adapter(world["root"] / "peft-cli", load_checkpoint(world["model_dir"]).config, rank=4, seed=21)
    published = lorachain_cli("adapter", "publish", str(folder), "--rpc", node.url, "--sidecar", url,
                              "--price", "1000", "--account", "6", "--metadata", "ipfs://cli")  # fmt: skip
    assert published.returncode == 0, published.stderr
    info = json.loads(published.stdout)
    repeat = lorachain_cli("adapter", "publish", str(folder), "--rpc", node.url, "--sidecar", url)
    assert repeat.returncode == 0, repeat.stderr
    again = json.loads(repeat.stdout)
    assert again == {"adapter_id": info["adapter_id"], "content_hash": info["content_hash"], "already_registered": True}
    listing = lorachain_cli("adapter", "ls", "--rpc", node.url)
    assert listing.returncode == 0 and info["content_hash"][2:] in listing.stdout and "active" in listing.stdout
    content = bytes.fromhex(info["content_hash"][2:])
    expected = direct(world, PROMPT, content, 5)
    dry = lorachain_cli("adapter", "call", str(info["adapter_id"]), PROMPT, "--max-tokens", "5", "--dry-run",
                        "--rpc", node.url)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["commitment"] == "0x" + expected["commitment"].hex()
    router, accounts = world["market"]["router"], world["w3"].eth.accounts
    owed_before = [router.functions.balanceOf(accounts[i]).call() for i in (6, 9)]
    paid = lorachain_cli("adapter", "call", str(info["adapter_id"]), PROMPT, "--max-tokens", "5", "--rpc", node.url,
                         "--account", "7")  # fmt: skip
    assert paid.returncode == 0, paid.stderr
    out = json.loads(paid.stdout)
    assert out["text"] == expected["text"] and out["price_wei"] == 1000 and out["output_tokens"] == 5
    router, accounts = world["market"]["router"], world["w3"].eth.accounts
    assert router.functions.balanceOf(accounts[6]).call() - owed_before[0] == 900  # no datanets: +their 20 %
    assert router.functions.balanceOf(accounts[9]).call() - owed_before[1] == 100  # the devnet treasury
    unknown = lorachain_cli("adapter", "call", "999", PROMPT, "--rpc", node.url)
    assert unknown.returncode == 1 and "unknown adapter" in unknown.stderr
    bad_spec = lorachain_cli("adapter", "publish", str(folder), "--rpc", node.url, "--sidecar", url, "--datanet", "x")
    assert bad_spec.returncode == 1 and "ID:BPS" in bad_spec.stderr


def test_cli_deploys_the_contracts_to_any_chain(world):
    w3 = world["w3"]
    deployed = lorachain_cli("contracts", "deploy", "--rpc", world["node"].url, "--account", "8")
    assert deployed.returncode == 0, deployed.stderr
    addresses = json.loads(deployed.stdout)
    assert set(addresses) == {"DatanetRegistry", "AdapterRegistry", "InferenceRouter"}
    router = w3.eth.contract(address=addresses["InferenceRouter"], abi=load_artifact("InferenceRouter")["abi"])
    assert router.functions.registry().call() == addresses["AdapterRegistry"]
    assert router.functions.treasury().call() == w3.eth.accounts[8]


def test_registered_adapter_the_sidecar_lacks_is_fetched_by_hash_from_a_source(world):
    """The node finds the bytes in its --adapter-source folder, checks the hash, loads them, answers."""
    from lorachain.sidecar.adapters import convert_peft

    w3, node, registry = world["w3"], world["node"], world["market"]["registry"]
    config = load_checkpoint(world["model_dir"]).config
    blob, digest = convert_peft(write_peft_adapter(world["root"] / "peft-src", config, rank=4, seed=31), config)
    (world["root"] / "source" / f"0x{digest.hex()}.safetensors").write_bytes(blob)
    missing = b"\x5a" * 32  # registered, but its bytes are nowhere
    for content in (digest, missing):
        send(w3, registry.functions.register(content, world["market"]["model_hash"], 0, "", [], [], []), 7)
    assert msgpack_call(world["url"], f"/v1/lorachain/adapters/0x{digest.hex()}")[0] == 404
    call = InferenceCall((digest,), (), PROMPT, max_new_tokens=4)
    out = InferenceOutput.decode(w3.eth.call({"to": PRECOMPILE, "data": call.encode()}))
    assert msgpack_call(world["url"], f"/v1/lorachain/adapters/0x{digest.hex()}")[0] == 200  # now loaded
    assert out.commitment == direct(world, PROMPT, digest, 4)["commitment"]
    lacking = "0x" + InferenceCall((missing,), (), PROMPT, max_new_tokens=4).encode().hex()
    reply = node.rpc("eth_call", {"to": PRECOMPILE, "data": lacking}, "latest")
    assert reply["error"]["code"] == -32000 and "no source has its bytes" in reply["error"]["message"]


def test_an_adapter_published_in_the_da_layer_is_fetched_from_it(world):
    """With --adapter-source da+URL the node asks the DA server for the artifact under its keccak commitment."""
    from lorachain.da_client.client import DAClient
    from lorachain.da_client.commitment import CommitmentMode
    from lorachain.sidecar.adapters import convert_peft

    w3, registry = world["w3"], world["market"]["registry"]
    config = load_checkpoint(world["model_dir"]).config
    blob, digest = convert_peft(write_peft_adapter(world["root"] / "peft-da", config, rank=4, seed=37), config)
    client = DAClient(world["da"].url, CommitmentMode.OP_KECCAK)
    assert client.put(blob) == b"\x00" + digest  # OP keccak mode: the commitment is the artifact's own id
    assert not (world["root"] / "source" / f"0x{digest.hex()}.safetensors").exists()
    send(w3, registry.functions.register(digest, world["market"]["model_hash"], 0, "", [], [], []), 7)
    call = InferenceCall((digest,), (), PROMPT, max_new_tokens=4)
    out = InferenceOutput.decode(w3.eth.call({"to": PRECOMPILE, "data": call.encode()}))
    assert msgpack_call(world["url"], f"/v1/lorachain/adapters/0x{digest.hex()}")[0] == 200
    assert out.commitment == direct(world, PROMPT, digest, 4)["commitment"]


def test_sidecar_serves_artifacts_by_hash_and_refuses_bytes_that_do_not_match(world):
    url, adapter = world["url"], "0x" + world["adapter"].hex()
    blob = requests.get(f"{url}/v1/lorachain/artifacts/{adapter}.safetensors", timeout=30).content
    from eth_utils import keccak

    assert "0x" + keccak(blob).hex() == adapter
    wrong = requests.put(f"{url}/v1/lorachain/artifacts/0x{'ab' * 32}.safetensors", data=blob, timeout=30)
    assert wrong.status_code == 422 and b"hash" in wrong.content  # CorruptArtifactError
    assert requests.get(f"{url}/v1/lorachain/artifacts/0x{'cd' * 32}.safetensors", timeout=30).status_code == 404


def test_weighted_merge_of_registered_adapters_equals_the_sidecars_merge(world):
    w3, registry = world["w3"], world["market"]["registry"]
    config = load_checkpoint(world["model_dir"]).config
    folder = write_peft_adapter(world["root"] / "peft-merge", config, rank=8, seed=41)
    _, info = msgpack_call(world["url"], "/v1/lorachain/adapters/load", {"path": str(folder)})
    second = bytes.fromhex(info["id"][2:])
    send(w3, registry.functions.register(second, world["market"]["model_hash"], 0, "", [], [], []), 8)
    first = world["adapter"]
    call = InferenceCall((first, second), (300, 700), PROMPT, max_new_tokens=5)
    out = InferenceOutput.decode(w3.eth.call({"to": PRECOMPILE, "data": call.encode()}))
    body = {"adapter_ids": ["0x" + first.hex(), info["id"]], "weights_milli": [300, 700]}
    status, merged = msgpack_call(world["url"], "/v1/lorachain/adapters/merge", body)
    assert status == 200
    expected = direct(world, PROMPT, bytes.fromhex(merged["id"][2:]), 5)
    assert list(out.output_ids) == expected["output_ids"] and out.commitment == expected["commitment"]
    alone = InferenceOutput.decode(
        w3.eth.call({"to": PRECOMPILE, "data": InferenceCall((first,), (), PROMPT, 5).encode()})
    )
    assert alone.commitment != out.commitment
    bad = "0x" + InferenceCall((first, second), (500, 400), PROMPT, 5).encode().hex()
    reply = world["node"].rpc("eth_call", {"to": PRECOMPILE, "data": bad}, "latest")
    assert reply["error"]["code"] == 3 and "sum to 1000" in reply["error"]["message"]


class _Harness:
    """The slice of a py-evm computation the precompile touches, to drive it outside a block."""

    def __init__(self, data: bytes, registered: bool = True) -> None:
        self.msg = type("Msg", (), {"data": data})()
        self.state = type("State", (), {"get_storage": lambda _self, address, slot: int(registered)})()
        self.gas_used, self.output = 0, b""

    def consume_gas(self, amount: int, reason: str) -> None:
        self.gas_used += amount

    def get_gas_remaining(self) -> int:
        return 10**9


def test_block_ai_budget_bounds_the_work_of_one_block(world):
    from eth.exceptions import Revert

    from lorachain.precompiles.inference import InferencePrecompile, block_ai_budget, model_units
    from lorachain.precompiles.sidecar_client import SidecarClient
    from lorachain.revert_data import revert_reason

    precompile = InferencePrecompile(SidecarClient(world["url"]))
    call = InferenceCall((world["adapter"],), (), PROMPT, max_new_tokens=3)
    _, model = msgpack_call(world["url"], "/v1/lorachain/model")
    one_call = model_units(model["parameters"]) * (direct(world, PROMPT, None, 1)["prompt_tokens"] + 3)
    with block_ai_budget(one_call):
        first = _Harness(call.encode())
        precompile(first)
        assert InferenceOutput.decode(first.output).output_tokens == 3
        second = _Harness(call.encode())
        with pytest.raises(Revert):
            precompile(second)
        assert revert_reason(second.output) == "AI work budget of this block exhausted"
    for _ in range(3):  # eth_call runs outside any block: no budget
        precompile(_Harness(call.encode()))
    unregistered = _Harness(call.encode(), registered=False)
    with pytest.raises(Revert):
        precompile(unregistered)
    assert "is not registered" in revert_reason(unregistered.output)


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
