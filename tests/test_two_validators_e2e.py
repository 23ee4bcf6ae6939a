"""Two validators agree: L1 + DA server + sequencer + batcher + two validators (each with its own inference
sidecar, which fetches the registered adapter by hash) as real processes, on a workload of L2 transfers, L1
deposits (portal) and AI inference calls; both derive exactly the sequencer's blocks, hash for hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import Web3

from lorachain.genesis.predeploys import ADAPTER_REGISTRY
from lorachain.node.rollup.config import RollupConfig
from lorachain.sidecar.checkpoint import load_checkpoint
from lorachain.toolchain.solc import load_artifact
from tests.conftest import free_port, start_node
from tests.rollup_fixtures import start_l1_and_rollup, stop_all
from tests.sidecar_fixtures import start_sidecar, tiny_model, write_peft_adapter
from tests.test_ai_precompile_e2e import PROMPT, deploy, msgpack_call
from tests.test_batcher_e2e import start_batcher
from tests.test_da_server_e2e import DAServerProcess
from tests.test_sequencer_e2e import wait_for

pytestmark = pytest.mark.e2e


def test_two_validators_derive_the_same_chain(tmp_path: Path) -> None:
    model_dir = tiny_model(tmp_path)
    sidecars, urls = [], []
    for name in ("seq", "v1", "v2"):
        (tmp_path / name).mkdir()
        proc, url = start_sidecar(model_dir, tmp_path / name, free_port())
        sidecars.append(proc)
        urls.append(url)
    seq_url = urls[0]
    adapter_dir = write_peft_adapter(tmp_path / "peft", load_checkpoint(model_dir).config, rank=8, seed=5)
    status, info = msgpack_call(seq_url, "/v1/lorachain/adapters/load", {"path": str(adapter_dir)})
    assert status == 200
    adapter = bytes.fromhex(info["id"][2:])

    l1, rollup, common = start_l1_and_rollup(tmp_path, "--block-time", "0.5")
    da = DAServerProcess(tmp_path / "da")
    sequencer = batcher = None
    validators: list = []
    try:
        config = RollupConfig.load(rollup / "rollup.json")
        sequencer = start_node(tmp_path / "sequencer", *common, "--block-time", "0.5", "--sidecar", seq_url)
        batcher = start_batcher(tmp_path, l1.url, sequencer.url, da.url)
        for index, url in enumerate(urls[1:]):
            validators.append(
                start_node(
                    tmp_path / f"validator{index}",
                    *common,
                    "--role",
                    "validator",
                    "--da",
                    da.url,
                    "--sidecar",
                    url,
                    "--adapter-source",
                    f"{seq_url}/v1/lorachain/artifacts",
                )
            )  # fmt: skip  (no --sequencer)
        ws = Web3(Web3.HTTPProvider(sequencer.url, request_kwargs={"timeout": 120}))
        w1 = Web3(Web3.HTTPProvider(l1.url))

        # L1 deposits: a plain transfer to the portal, and a depositTransaction with calldata
        portal = w1.eth.contract(address=Web3.to_checksum_address(config.deposit_portal),
                                 abi=load_artifact("DepositPortal")["abi"])  # fmt: skip
        w1.eth.wait_for_transaction_receipt(
            w1.eth.send_transaction({"from": w1.eth.accounts[3], "to": portal.address, "value": 10**18})
        )
        w1.eth.wait_for_transaction_receipt(portal.functions.depositTransaction(
            w1.eth.accounts[5], 10**17, 100_000, False, b"").transact({"from": w1.eth.accounts[4],
                                                                       "value": 2 * 10**17}))  # fmt: skip
        # L2 transfers and AI calls
        for i in range(3):
            ws.eth.send_transaction({"from": ws.eth.accounts[i], "to": ws.eth.accounts[8], "value": 1 + i})
        model_hash = bytes.fromhex(msgpack_call(seq_url, "/v1/lorachain/model")[1]["model_hash"][2:])
        registry = ws.eth.contract(address=ADAPTER_REGISTRY, abi=load_artifact("AdapterRegistry")["abi"])
        register = registry.functions.register(adapter, model_hash, 0, "two validators", [], [], [])
        ws.eth.wait_for_transaction_receipt(register.transact({"from": ws.eth.accounts[0]}))
        qa = deploy(ws, "AdapterQA")
        receipts = [ws.eth.wait_for_transaction_receipt(
            qa.functions.ask(adapter, PROMPT, 4 + i).transact({"from": ws.eth.accounts[1 + i]}), timeout=120)
            for i in range(2)]  # fmt: skip
        assert all(r.status == 1 for r in receipts)
        answers = [qa.functions.answer(i).call() for i in range(2)]

        # The sequencer takes in the deposits once an L2 block adopts their L1 block as its origin.
        def deposit_blocks() -> list[int]:
            return [n for n in range(1, ws.eth.block_number + 1)
                    for tx in ws.eth.get_block(n, True).transactions[1:] if tx["type"] == 0x7E]  # fmt: skip

        carried = wait_for(lambda: (found := deposit_blocks()) and len(found) >= 2 and found, timeout=90,
                           what="the sequencer to include both L1 deposits")  # fmt: skip
        target = max(ws.eth.block_number, max(carried)) + 2
        wvs = [Web3(Web3.HTTPProvider(v.url)) for v in validators]
        for index, wv in enumerate(wvs):
            wait_for(lambda wv=wv: wv.eth.block_number >= target, timeout=90, what=f"validator {index} to derive")
        for number in range(1, target + 1):
            expected = ws.eth.get_block(number).hash
            assert [wv.eth.get_block(number).hash for wv in wvs] == [expected, expected], f"block {number} differs"
        assert len(carried) == 2  # both L1 deposits (beyond every block's L1-info deposit), derived above too
        for wv in wvs:
            assert wv.eth.contract(address=qa.address, abi=qa.abi).functions.answer(1).call() == answers[1]
        for index in range(2):
            assert not (tmp_path / f"validator{index}" / "divergence.json").exists()
    finally:
        stop_all(batcher, *validators, sequencer, da, l1, *sidecars)
