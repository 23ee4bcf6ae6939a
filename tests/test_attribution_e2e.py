"""Proof of Attribution end to end, over real processes: contributors add planted facts to a datanet (staked),
a curator accepts them and rejects a near-duplicate (slashed), the Model Factory trains an adapter on the
snapshot and records its gradients, the adapter is registered with its training record, a caller pays the
InferenceRouter for an answer, the attribution precompile names the fact's contributor and the router pays the
contributors exactly the contributors' cut; `lorachain attribution explain` shows the split."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError
from web3.logs import DISCARD

from lorachain.attribution.dedup import NearDuplicateIndex
from lorachain.attribution.factory import Example, TrainConfig, train_adapter
from lorachain.attribution.record import build_training_record
from lorachain.attribution.splits import split_exact
from lorachain.genesis.predeploys import (
    ADAPTER_REGISTRY,
    DATANET_REGISTRY,
    INFERENCE_ROUTER,
    ROUTER_CONTRIBUTORS_BPS,
)
from lorachain.precompiles.attribution import ATTRIBUTION_ADDRESS
from tests.conftest import free_port, start_node
from tests.sidecar_fixtures import start_sidecar, tiny_model
from tests.test_ai_precompile_e2e import msgpack_call, predeploy, send

NAMES = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry"]
THINGS = ["red kite", "blue boat", "green lamp", "gold ring", "old clock", "tall vase", "wool hat", "iron key"]
FACTS = [(f"{n} keeps a", f" {t} in the box.") for n, t in zip(NAMES, THINGS, strict=True)]
STAKE = 10**15
PRICE = 10**16 + 7  # not a round number: the split must still be exact
CONTRIBUTORS = [1, 2, 3, 4, 5, 6, 7, 8]  # dev account per fact
CURATOR, OWNER, CALLER, DUPLICATOR = 0, 9, 9, 5


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("poa")
    model_dir = tiny_model(root)
    sidecar, url = start_sidecar(model_dir, root, free_port())
    sources = root / "sources"
    sources.mkdir()
    node = start_node(root / "node", "--sidecar", url, "--adapter-source", str(sources))
    w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 180}))
    state = {"root": root, "model": model_dir, "url": url, "node": node, "w3": w3, "sources": sources,
             "datanets": predeploy(w3, DATANET_REGISTRY, "DatanetRegistry"),
             "registry": predeploy(w3, ADAPTER_REGISTRY, "AdapterRegistry"),
             "router": predeploy(w3, INFERENCE_ROUTER, "InferenceRouter")}  # fmt: skip
    yield state
    node.stop()
    sidecar.terminate()
    sidecar.wait(timeout=20)


@pytest.fixture(scope="module")
def market(chain):
    """The datanet, curated; the factory's adapter registered with its training record."""
    w3, datanets, registry = chain["w3"], chain["datanets"], chain["registry"]
    accounts = w3.eth.accounts
    send(w3, datanets.functions.createDatanet("planted facts", "ipfs://facts", STAKE), CURATOR)
    datanet = datanets.functions.datanetCount().call()
    texts = [(p + o).encode() for p, o in FACTS]
    for account, text in zip(CONTRIBUTORS, texts, strict=True):
        send(w3, datanets.functions.contribute(datanet, keccak(text), len(text)), account, STAKE)
    with pytest.raises(ContractLogicError, match="duplicate contribution"):  # an exact copy is refused
        datanets.functions.contribute(datanet, keccak(texts[0]), len(texts[0])).call(
            {"from": accounts[DUPLICATOR], "value": STAKE})  # fmt: skip
    with pytest.raises(ContractLogicError, match="stake below"):
        datanets.functions.contribute(datanet, keccak(b"cheap"), 5).call({"from": accounts[DUPLICATOR], "value": 1})
    near = b"Alice keeps a red kite in the box!"  # a near-duplicate the curator's n-gram check catches
    send(w3, datanets.functions.contribute(datanet, keccak(near), len(near)), DUPLICATOR, STAKE)
    index = NearDuplicateIndex(n=3)
    for i, text in enumerate(texts):
        index.add(i, text.decode())
    assert index.near(near.decode(), threshold_ppm=500_000)[0][0] == 0
    for i in range(len(texts)):
        send(w3, datanets.functions.review(datanet, i, True), CURATOR)
    slash = send(w3, datanets.functions.reject(datanet, len(texts), 2), CURATOR)  # 2 = duplicate
    slashed = datanets.events.Slashed().process_receipt(slash, errors=DISCARD)
    assert slashed and slashed[0]["args"]["amount"] == STAKE and slashed[0]["args"]["contributor"] == accounts[5]
    send(w3, datanets.functions.snapshot(datanet), CURATOR)
    root = datanets.functions.getDatanet(datanet).call()[4]
    examples = [Example.of(datanet, i, t) for i, t in enumerate(texts)]
    adapter_dir = chain["root"] / "adapter"
    config = TrainConfig(rank=8, alpha=16, epochs=150, learning_rate=3e-3, batch_size=8, heldout_every=0, seed=3)
    report = train_adapter(chain["model"], examples, config, adapter_dir, progress=False)
    assert report.train_loss_after < report.train_loss_before
    record = build_training_record(chain["model"], adapter_dir, examples, [(datanet, root)],
                                   report.to_json(timing=False), cache=chain["root"] / "cache")  # fmt: skip
    record_hash = keccak(record)
    (chain["sources"] / f"0x{record_hash.hex()}.record").write_bytes(record)  # fetched by the node on first use
    status, info = msgpack_call(chain["url"], "/v1/lorachain/adapters/load", {"path": str(adapter_dir)})
    assert status == 200, info
    adapter = bytes.fromhex(info["id"][2:])
    _, model = msgpack_call(chain["url"], "/v1/lorachain/model")
    model_hash = bytes.fromhex(model["model_hash"][2:])
    receipt = send(w3, registry.functions.register(adapter, model_hash, PRICE, "ipfs://adapter", [datanet], [10_000],
                                                   [root]), OWNER)  # fmt: skip
    adapter_id = registry.events.AdapterRegistered().process_receipt(receipt)[0]["args"]["adapterId"]
    send(w3, registry.functions.setTrainingRecord(adapter_id, record_hash), OWNER)
    learned = [i for i, (prefix, answer) in enumerate(FACTS)
               if chain["router"].functions.infer(adapter_id, prefix, 6, 0, 0, 1000, b"\x00" * 32).call(
                   {"from": accounts[CALLER], "value": PRICE})[0].startswith(answer[:6])]  # fmt: skip
    assert len(learned) >= 5, f"the factory's adapter answers only facts {learned}"
    return {"datanet": datanet, "adapter_id": adapter_id, "adapter": adapter, "record": record_hash, "root": root,
            "texts": texts, "model_hash": model_hash, "learned": learned}  # fmt: skip


def ask(chain, market, fact: int):
    w3, router = chain["w3"], chain["router"]
    fn = router.functions.infer(market["adapter_id"], FACTS[fact][0], 6, 0, 0, 1000, b"\x00" * 32)
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": w3.eth.accounts[CALLER], "value": PRICE}))
    assert receipt.status == 1
    return receipt


def test_an_answer_pays_the_contributor_of_the_fact_it_came_from(chain, market):
    w3, router = chain["w3"], chain["router"]
    accounts = w3.eth.accounts
    fact = market["learned"][0]
    receipt = ask(chain, market, fact)
    answer = router.events.Inference().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert answer["text"].startswith(FACTS[fact][1][:6]), answer["text"]
    split = router.events.AttributionSplit().process_receipt(receipt, errors=DISCARD)[0]["args"]
    payees = [e["args"] for e in router.events.Attributed().process_receipt(receipt, errors=DISCARD)]
    cut = PRICE * ROUTER_CONTRIBUTORS_BPS // 10_000
    assert split["contributorsCut"] == cut and split["payees"] == len(payees) > 0
    assert sum(p["amount"] for p in payees) == cut  # exact, no dust
    top = max(payees, key=lambda p: (p["weight"], -p["index"]))
    expected = (market["datanet"], fact, accounts[CONTRIBUTORS[fact]])
    assert (top["datanetId"], top["index"], top["contributor"]) == expected
    reference = split_exact(cut, [(p["index"], p["weight"]) for p in payees])
    assert sorted((p["index"], p["amount"]) for p in payees) == reference
    owed = router.functions.balanceOf(accounts[CONTRIBUTORS[fact]]).call()
    assert owed >= top["amount"]
    balance = w3.eth.get_balance(accounts[CONTRIBUTORS[fact]])
    claim = send(w3, router.functions.claim(), CONTRIBUTORS[fact])
    spent = claim.gasUsed * claim.effectiveGasPrice
    assert w3.eth.get_balance(accounts[CONTRIBUTORS[fact]]) == balance + owed - spent
    assert router.functions.balanceOf(accounts[CONTRIBUTORS[fact]]).call() == 0


def test_the_precompile_answers_eth_call_and_refuses_an_unknown_commitment(chain, market):
    from lorachain.precompiles.abi import InferenceCall, InferenceOutput
    from lorachain.precompiles.attribution_abi import AttributionOutput, AttributionQuery, Method
    from lorachain.precompiles.inference import INFERENCE_ADDRESS

    w3 = chain["w3"]
    fact = market["learned"][-1]
    call = InferenceCall((market["adapter"],), (), FACTS[fact][0], 6)
    out = InferenceOutput.decode(
        w3.eth.call({"to": Web3.to_checksum_address(INFERENCE_ADDRESS), "data": call.encode()})
    )
    query = AttributionQuery(call.encode(), out.output_ids, out.commitment, market["record"], (market["datanet"],),
                             (market["root"],), Method.SPANS, 3)  # fmt: skip
    target = Web3.to_checksum_address(ATTRIBUTION_ADDRESS)
    answer = AttributionOutput.decode(w3.eth.call({"to": target, "data": query.encode()}))
    assert answer.method is Method.SPANS and answer.contributions[0].index == fact
    forged = AttributionQuery(call.encode(), out.output_ids, b"\x01" * 32, market["record"], (market["datanet"],),
                              (market["root"],), Method.SPANS, 3)  # fmt: skip
    reply = chain["node"].rpc("eth_call", {"to": target, "data": "0x" + forged.encode().hex()}, "latest")
    assert reply["error"]["code"] == 3 and "unknown commitment" in reply["error"]["message"]
    wrong_root = AttributionQuery(call.encode(), out.output_ids, out.commitment, market["record"],
                                  (market["datanet"],), (b"\x02" * 32,), Method.SPANS, 3)  # fmt: skip
    reply = chain["node"].rpc("eth_call", {"to": target, "data": "0x" + wrong_root.encode().hex()}, "latest")
    assert "does not match the adapter's datanet snapshots" in reply["error"]["message"]


def test_a_penalized_contributor_is_no_longer_paid(chain, market):
    w3, router, datanets = chain["w3"], chain["router"], chain["datanets"]
    fact = market["learned"][2]
    send(w3, datanets.functions.penalize(market["datanet"], fact, 1), CURATOR)
    receipt = ask(chain, market, fact)
    payees = [e["args"] for e in router.events.Attributed().process_receipt(receipt, errors=DISCARD)]
    assert all(p["index"] != fact for p in payees)
    cut = PRICE * ROUTER_CONTRIBUTORS_BPS // 10_000
    split = router.events.AttributionSplit().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert split["contributorsCut"] == cut
    assert sum(p["amount"] for p in payees) == (cut if payees else 0)


def test_explain_names_the_contributions_and_what_each_was_paid(chain, market):
    fact = market["learned"][1]
    receipt = ask(chain, market, fact)
    tx = "0x" + bytes(receipt.transactionHash).hex()
    run = subprocess.run([sys.executable, "-m", "lorachain.cli", "attribution", "explain", tx, "--rpc",
                          chain["node"].url, "--json"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    explained = json.loads(run.stdout)["inferences"][0]
    assert explained["attributed"] and explained["method"] in ("spans", "influence")
    assert explained["paid_wei"] == explained["contributors_cut_wei"]
    first = explained["contributions"][0]
    assert first["index"] == fact and first["content_hash"] == "0x" + keccak(market["texts"][fact]).hex()
    table = subprocess.run([sys.executable, "-m", "lorachain.cli", "attribution", "explain", tx, "--rpc",
                            chain["node"].url], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert first["contributor"] in table.stdout and f"attributed by {explained['method']}" in table.stdout
    bad = subprocess.run([sys.executable, "-m", "lorachain.cli", "attribution", "explain", "0x" + "00" * 32, "--rpc",
                          chain["node"].url], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 1 and "error:" in bad.stderr

    # the same explanation over JSON-RPC, and its errors as geth words them
    node = chain["node"]
    assert node.rpc("lorachain_explainInference", tx)["result"] == json.loads(run.stdout)
    assert node.rpc("lorachain_explainInference", "0x1234")["error"]["code"] == -32602
    unknown = node.rpc("lorachain_explainInference", "0x" + "00" * 32)["error"]
    assert (unknown["code"], unknown["message"]) == (-32000, "transaction not found")
    plain = send(chain["w3"], chain["datanets"].functions.snapshot(market["datanet"]), CURATOR)
    not_inference = node.rpc("lorachain_explainInference", "0x" + bytes(plain.transactionHash).hex())["error"]
    assert not_inference["code"] == -32000 and "no InferenceRouter inference" in not_inference["message"]
    assert "lorachain" in node.rpc("rpc_modules")["result"]


def test_verify_rederives_the_split_from_the_chain(chain, market):
    """`lorachain attribution verify`: the precompiles asked again as of the block's parent, the router's rule
    applied, every payee compared with the Attributed events."""
    receipt = ask(chain, market, market["learned"][0])
    tx = "0x" + bytes(receipt.transactionHash).hex()
    cli = [sys.executable, "-m", "lorachain.cli", "attribution", "verify", "--rpc", chain["node"].url]
    run = subprocess.run([*cli, tx], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["verified"] and report["mismatches"] == [] and report["checked"] == [
        "commitment", "attribution", "split"]  # fmt: skip
    paid = [e["args"] for e in chain["router"].events.Attributed().process_receipt(receipt, errors=DISCARD)]
    assert [(p["index"], p["amount"]) for p in paid] == [(e["index"], e["amount_wei"]) for e in report["expected"]]
    assert report["payees"] == len(paid) > 0 and report["state_at"] == receipt.blockNumber - 1
    plain = send(chain["w3"], chain["datanets"].functions.snapshot(market["datanet"]), CURATOR)
    refused = subprocess.run([*cli, "0x" + bytes(plain.transactionHash).hex()], capture_output=True, text=True,
                             timeout=120)  # fmt: skip
    assert refused.returncode == 1 and "no InferenceRouter inference" in refused.stderr

    # a dApp paying for its user's question: the router call is found in the transaction's call trace
    from lorachain.toolchain.solc import load_artifact

    w3, artifact = chain["w3"], load_artifact("PaidAnswers")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    deployed = w3.eth.wait_for_transaction_receipt(factory.constructor(INFERENCE_ROUTER).transact(
        {"from": w3.eth.accounts[CALLER]}))  # fmt: skip
    dapp = w3.eth.contract(address=deployed.contractAddress, abi=artifact["abi"])
    fact = market["learned"][1]
    asked = send(w3, dapp.functions.ask(market["adapter_id"], FACTS[fact][0], 6), CALLER, value=PRICE)
    answered = dapp.events.Answered().process_receipt(asked, errors=DISCARD)[0]["args"]
    assert answered["text"] == dapp.functions.answer(0).call()[3]
    run = subprocess.run([*cli, "0x" + bytes(asked.transactionHash).hex()], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["verified"] and report["payees"] >= 1 and report["expected"][0]["index"] == fact


def test_verify_names_each_difference():
    from lorachain.attribution.verify import _compare

    row = {"datanet_id": 1, "index": 3, "contributor": "0xA", "content_hash": "0x01", "weight": 5, "amount_wei": 10}
    assert _compare([row], [dict(row)]) == []
    assert _compare([row], [{**row, "amount_wei": 11, "contributor": "0xB"}]) == [
        "payee 0: contributor paid '0xB', expected '0xA'", "payee 0: amount_wei paid 11, expected 10"]  # fmt: skip
    assert _compare([row, row], [row]) == ["1 contributions were paid, 2 are found now"]
