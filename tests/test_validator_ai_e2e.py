"""A validator re-executes the sequencer's AI calls with its own sidecar, which fetches the registered adapter
it lacks by content hash, and derives the very same blocks (the answers stored on chain included)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from web3 import Web3

from lorachain.genesis.predeploys import ADAPTER_REGISTRY
from lorachain.sidecar.checkpoint import load_checkpoint
from lorachain.toolchain.solc import load_artifact
from tests.conftest import LORACHAIN, REPO, free_port, start_node
from tests.rollup_fixtures import start_l1_and_rollup, stop_all
from tests.sidecar_fixtures import start_sidecar, tiny_model, write_peft_adapter
from tests.test_ai_precompile_e2e import PROMPT, deploy, msgpack_call
from tests.test_sequencer_e2e import wait_for

pytestmark = pytest.mark.e2e


def test_validator_reexecutes_ai_calls(tmp_path: Path) -> None:
    model_dir = tiny_model(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    seq_sidecar, seq_url = start_sidecar(model_dir, tmp_path / "a", free_port())
    val_sidecar, val_url = start_sidecar(model_dir, tmp_path / "b", free_port())
    adapter_dir = write_peft_adapter(tmp_path / "peft", load_checkpoint(model_dir).config, rank=8, seed=11)
    status, info = msgpack_call(seq_url, "/v1/lorachain/adapters/load", {"path": str(adapter_dir)})
    assert status == 200
    adapter = bytes.fromhex(info["id"][2:])
    assert msgpack_call(val_url, f"/v1/lorachain/adapters/{info['id']}")[0] == 404  # the validator's lacks it

    l1, rollup, common = start_l1_and_rollup(tmp_path, "--block-time", "0.5")
    sequencer = validator = batcher = None
    try:
        sequencer = start_node(tmp_path / "sequencer", *common, "--block-time", "0.5", "--sidecar", seq_url)
        batcher = subprocess.Popen(
            [*LORACHAIN, "rollup", "batcher", "--l1", l1.url, "--l2", sequencer.url, "--rollup-config",
             str(rollup / "rollup.json"), "--state", str(tmp_path / "batcher.json"), "--poll", "0.3"],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        validator_args = ("--role", "validator", "--sequencer", sequencer.url, "--sidecar", val_url,
                          "--adapter-source", f"{seq_url}/v1/lorachain/artifacts")  # fmt: skip
        validator = start_node(tmp_path / "validator", *common, *validator_args)

        ws = Web3(Web3.HTTPProvider(sequencer.url, request_kwargs={"timeout": 120}))
        model_hash = bytes.fromhex(msgpack_call(seq_url, "/v1/lorachain/model")[1]["model_hash"][2:])
        registry = ws.eth.contract(address=ADAPTER_REGISTRY, abi=load_artifact("AdapterRegistry")["abi"])
        register = registry.functions.register(adapter, model_hash, 0, "validator test", [], [], [])
        ws.eth.wait_for_transaction_receipt(register.transact({"from": ws.eth.accounts[0]}))
        qa = deploy(ws, "AdapterQA")
        receipt = ws.eth.wait_for_transaction_receipt(
            qa.functions.ask(adapter, PROMPT, 6).transact({"from": ws.eth.accounts[1]}), timeout=120)
        assert receipt.status == 1
        answer = qa.functions.answer(0).call()

        wv = Web3(Web3.HTTPProvider(validator.url))
        wait_for(lambda: wv.eth.block_number >= receipt.blockNumber, timeout=120, what="the validator")
        assert wv.eth.get_block(receipt.blockNumber).hash == receipt.blockHash
        assert wv.eth.contract(address=qa.address, abi=qa.abi).functions.answer(0).call() == answer
        assert msgpack_call(val_url, f"/v1/lorachain/adapters/{info['id']}")[0] == 200  # fetched by its hash
        assert not (tmp_path / "validator" / "divergence.json").exists()
    finally:
        stop_all(batcher, validator, sequencer, l1, seq_sidecar, val_sidecar)
