"""The payable-AI predeploys: committed code matches a fresh build, and the devnet genesis carries them."""

from __future__ import annotations

import json

from lorachain.genesis.genesis import devnet_genesis
from lorachain.genesis.predeploys import (
    ADAPTER_REGISTRY,
    DATANET_REGISTRY,
    INFERENCE_ROUTER,
    PREDEPLOYS_FILE,
    build_predeploy_codes,
)


def test_committed_predeploys_match_the_contracts_compiled_now():
    from lorachain.toolchain.solc import load_artifact

    committed = json.loads(PREDEPLOYS_FILE.read_text())
    stale = "contracts changed: run python -m lorachain.genesis.predeploys"
    assert committed["code"] == build_predeploy_codes(), stale
    for name, shipped in committed["contracts"].items():
        artifact = load_artifact(name)
        assert (shipped["abi"], shipped["bytecode"]) == (artifact["abi"], artifact["bytecode"]), stale


def test_devnet_genesis_holds_the_predeploys_and_they_are_wired(w3):
    alloc = devnet_genesis()["alloc"]
    for address in (DATANET_REGISTRY, ADAPTER_REGISTRY, INFERENCE_ROUTER):
        assert alloc[address]["code"].startswith("0x60") and w3.eth.get_code(address) == bytes.fromhex(
            alloc[address]["code"][2:]
        )
    from lorachain.toolchain.solc import load_artifact

    router = w3.eth.contract(address=INFERENCE_ROUTER, abi=load_artifact("InferenceRouter")["abi"])
    assert router.functions.registry().call() == ADAPTER_REGISTRY
    assert router.functions.datanets().call() == DATANET_REGISTRY
    assert (router.functions.ownerBps().call(), router.functions.contributorsBps().call()) == (7000, 2000)
    datanets = w3.eth.contract(address=DATANET_REGISTRY, abi=load_artifact("DatanetRegistry")["abi"])
    tx = datanets.functions.createDatanet("genesis-test", "").transact({"from": w3.eth.accounts[0]})
    assert w3.eth.wait_for_transaction_receipt(tx).status == 1
    assert datanets.functions.datanetCount().call() == 1
