"""A misbehaving sequencer or batcher, as real processes (L1 + DA server + sequencer + batcher + validator), each
fault injected by a hidden test-only ``--fault`` mode:

- the benign ones (``malformed-frames``, ``duplicate-batches``, ``out-of-order-frames``): the validator drops or
  ignores what the spec says to, says so in its log and metrics, and derives exactly the sequencer's chain;
- ``withhold-da``: a commitment on L1 whose data the DA server does not have holds derivation on that L1 block
  (metric and log line, JSON-RPC served at the last good head), and the validator catches up once it appears;
- ``tamper-ai-output``: a sequencer whose inference comes back with one token changed is caught by the validator
  re-executing with its own sidecar; the divergence report names the transaction and the first differing token,
  and the sequencer's sidecar's activation hashes, equal to ours, place the lie outside inference.

A validator killed with ``kill -9`` resuming is covered by test_validator_e2e.py.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from web3 import Web3

from lorachain.da_client.client import DAClient
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.l1_client import L1Client
from lorachain.node.rollup.retrieval import frames_in_l1_block
from tests.conftest import LORACHAIN, REPO, free_port, start_node
from tests.rollup_fixtures import metric, start_l1_and_rollup, stop_all
from tests.test_da_server_e2e import DAServerProcess
from tests.test_sequencer_e2e import wait_for

pytestmark = pytest.mark.e2e

BLOCK_TIME = "0.4"


def start_batcher(tmp_path: Path, l1: str, l2: str, *extra: str) -> subprocess.Popen:
    log = open(tmp_path / "batcher.log", "ab")  # noqa: SIM115 - owned by the subprocess
    return subprocess.Popen(
        [*LORACHAIN, "rollup", "batcher", "--l1", l1, "--l2", l2, "--rollup-config",
         str(tmp_path / "rollup" / "rollup.json"), "--state", str(tmp_path / "batcher.json"), "--poll", "0.3",
         "--max-blocks", "3", *extra],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def start_rollup(tmp_path: Path, batcher_args: tuple[str, ...] = (), sequencer_args: tuple[str, ...] = (),
                 validator_args: tuple[str, ...] = (), with_da: bool = True):  # fmt: skip
    """L1 + rollup init, then DA server, sequencer, validator (started together) and the batcher."""
    l1, rollup, common = start_l1_and_rollup(tmp_path, "--block-time", BLOCK_TIME)
    procs: dict = {"l1": l1}
    try:
        seq_port, val_port = free_port(), free_port()
        seq_url = f"http://127.0.0.1:{seq_port}"
        with ThreadPoolExecutor(3) as pool:
            da = pool.submit(DAServerProcess, tmp_path / "da") if with_da else None
            sequencer = pool.submit(start_node, tmp_path / "sequencer", *common, "--block-time", BLOCK_TIME,
                                    *sequencer_args, port=seq_port)  # fmt: skip
            procs["da"] = da.result() if da else None
            da_args = ("--da", procs["da"].url) if with_da else ()
            validator = pool.submit(start_node, tmp_path / "validator", *common, "--role", "validator",
                                    "--sequencer", seq_url, *da_args, *validator_args, port=val_port)  # fmt: skip
            procs["sequencer"] = sequencer.result()
            procs["batcher"] = start_batcher(tmp_path, l1.url, seq_url, *da_args, *batcher_args)
            procs["validator"] = validator.result()
    except BaseException:
        stop_all(procs.get("batcher"), procs.get("validator"), procs.get("sequencer"), procs.get("da"), l1)
        raise
    return procs, RollupConfig.load(rollup / "rollup.json")


def stop_rollup(procs: dict, *more) -> None:
    stop_all(procs.get("batcher"), procs.get("validator"), procs.get("sequencer"), procs.get("da"), procs["l1"], *more)


def assert_same_chain(ws: Web3, wv: Web3, through: int) -> None:
    for number in range(1, through + 1):
        assert wv.eth.get_block(number).hash == ws.eth.get_block(number).hash, f"block {number} differs"


@pytest.mark.parametrize("fault", ["malformed-frames", "duplicate-batches", "out-of-order-frames"])
def test_benign_batcher_faults_are_survived(tmp_path: Path, fault: str) -> None:
    procs, config = start_rollup(tmp_path, batcher_args=("--fault", fault))
    try:
        sequencer, validator = procs["sequencer"], procs["validator"]
        ws, wv = Web3(Web3.HTTPProvider(sequencer.url)), Web3(Web3.HTTPProvider(validator.url))
        for i in range(2):
            ws.eth.send_transaction({"from": ws.eth.accounts[i], "to": ws.eth.accounts[7], "value": 10 + i})
        target = max(ws.eth.block_number, 6)  # two channels of three blocks at least
        wait_for(lambda: wv.eth.block_number >= target, timeout=90, what=f"the validator to derive under {fault}")

        assert_same_chain(ws, wv, target)
        assert not (tmp_path / "validator" / "divergence.json").exists()
        url, log = validator.url, validator.log()
        assert metric(url, "lorachain_derivation_divergences_total") == 0
        assert metric(url, "lorachain_derivation_dropped_batches_total") == 0
        if fault == "malformed-frames":
            assert metric(url, "lorachain_derivation_dropped_batcher_txs_total", reason="malformed_frames") >= 1
            assert metric(url, "lorachain_derivation_dropped_channels_total", reason="unreadable") >= 1
            assert metric(url, "lorachain_derivation_dropped_channels_total", reason="malformed_batch") >= 1
            assert "truncated frame data" in log and "dropping channel 0x" in log
            assert "dropping the rest of channel 0x" in log
        elif fault == "duplicate-batches":
            assert metric(url, "lorachain_derivation_old_batches_total") >= target  # each batch seen again, skipped
            assert metric(url, "lorachain_derivation_ignored_frames_total") >= 1  # the first frame posted twice
            assert "already applied" in log and "ignoring frame 0 of channel" in log
        else:  # the frames did reach L1 last first: channels whose first frame seen is not frame 0
            l1, da = L1Client(procs["l1"].url), DAClient(procs["da"].url)
            first_seen: dict[bytes, int] = {}
            for number in range(config.genesis_l1.number, l1.block_number() + 1):
                for frame in frames_in_l1_block(l1, config, number, da):
                    first_seen.setdefault(frame.channel_id, frame.number)
            assert first_seen and all(number >= 2 for number in first_seen.values())
    finally:
        stop_rollup(procs)


def test_withheld_da_data_holds_the_validator_until_it_appears(tmp_path: Path) -> None:
    procs, _ = start_rollup(tmp_path, batcher_args=("--fault", "withhold-da"))
    try:
        sequencer, validator, batcher_state = procs["sequencer"], procs["validator"], tmp_path / "batcher.json"
        ws, wv = Web3(Web3.HTTPProvider(sequencer.url)), Web3(Web3.HTTPProvider(validator.url))
        ws.eth.send_transaction({"from": ws.eth.accounts[0], "to": ws.eth.accounts[7], "value": 1})
        url = validator.url
        wait_for(lambda: metric(url, "lorachain_derivation_da_unavailable_total") >= 3, timeout=90,
                 what="the validator to retry the withheld data")  # fmt: skip
        wait_for(lambda: batcher_state.exists() and json.loads(batcher_state.read_text())["next_block"] > 7,
                 timeout=60, what="the batcher to post later channels")  # fmt: skip
        position = metric(url, "lorachain_derivation_l1_block")
        assert metric(url, "lorachain_derivation_da_stalled") == 1
        assert wv.eth.block_number == 0  # the withheld channel held blocks 1-3: nothing past it is derived
        assert metric(url, "lorachain_derivation_l1_block") == position  # not past the commitment's L1 block
        assert "derivation held at L1 block" in validator.log() and "404" in validator.log()
        assert validator.proc.poll() is None

        withheld = list((tmp_path / "batcher.json.withheld").iterdir())
        assert len(withheld) == 1
        da = DAClient(procs["da"].url)
        for path in withheld:  # the data appears
            assert "0x" + da.put(path.read_bytes()).hex() == path.stem
        target = ws.eth.block_number
        wait_for(lambda: wv.eth.block_number >= target, timeout=90, what="the validator to catch up")
        assert_same_chain(ws, wv, target)
        assert metric(url, "lorachain_derivation_da_stalled") == 0
        assert metric(url, "lorachain_derivation_divergences_total") == 0
        assert "appeared after" in validator.log()
    finally:
        stop_rollup(procs)


def test_a_tampered_ai_output_is_caught(tmp_path: Path) -> None:
    from tests.sidecar_fixtures import start_sidecar, tiny_model
    from tests.test_ai_precompile_e2e import PROMPT, deploy

    model_dir = tiny_model(tmp_path)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with ThreadPoolExecutor(2) as pool:
        sidecars = [pool.submit(start_sidecar, model_dir, tmp_path / name, free_port()) for name in ("a", "b")]
        (seq_sidecar, seq_url), (val_sidecar, val_url) = (s.result() for s in sidecars)
    procs: dict = {}
    try:
        procs, _ = start_rollup(tmp_path, sequencer_args=("--sidecar", seq_url, "--fault", "tamper-ai-output"),
                                validator_args=("--sidecar", val_url, "--adapter-source",
                                                f"{seq_url}/v1/lorachain/artifacts"), with_da=False)  # fmt: skip
        sequencer, validator = procs["sequencer"], procs["validator"]
        ws = Web3(Web3.HTTPProvider(sequencer.url, request_kwargs={"timeout": 120}))
        wv = Web3(Web3.HTTPProvider(validator.url))
        qa = deploy(ws, "AdapterQA")
        tx = qa.functions.ask(b"\x00" * 32, PROMPT, 6).transact({"from": ws.eth.accounts[1]})
        receipt = ws.eth.wait_for_transaction_receipt(tx, timeout=120)
        assert receipt.status == 1

        report_path = tmp_path / "validator" / "divergence.json"
        wait_for(report_path.exists, timeout=120, what="the divergence report")
        report = json.loads(report_path.read_text())
        assert report["block"] == receipt.blockNumber
        assert report["first_differing_transaction"] is None  # the same transactions, executed differently
        assert {"stateRoot", "receiptsRoot"} <= set(report["differing_fields"])
        ai = report["first_differing_ai_output"]
        assert ai["hash"] == "0x" + bytes(tx).hex() and ai["call"] == 0
        position = ai["token_index"]
        assert position == len(ai["derived_output_ids"]) // 2  # the token the faulty sequencer changed
        assert ai["derived_output_ids"][:position] == ai["sequencer_output_ids"][:position]
        assert ai["derived_token"] != ai["sequencer_token"] and ai["derived_text"] != ai["sequencer_text"]
        stored = wv.eth.contract(address=qa.address, abi=qa.abi).functions.answer(0).call()
        assert stored[3] == ai["derived_text"]  # the validator's block holds its own sidecar's answer
        assert ws.eth.contract(address=qa.address, abi=qa.abi).functions.answer(0).call()[3] == ai["sequencer_text"]
        # the sequencer's sidecar (its --adapter-source) computes what ours does: the lie is not in inference
        assert ai["activation_root"] == ai["sequencer_activation_root"] is not None
        layer = ai["first_divergent_layer"]
        assert layer["step"] is None and "outside inference" in layer["reason"]
        assert ai["sequencer_sidecar_output_ids"] == ai["derived_output_ids"]
        assert report["first_differing_receipt"]["hash"] == ai["hash"]
        assert "logs" in report["first_differing_receipt"]["fields"]  # the Answered event's text
        state = report["first_differing_state_key"]
        assert state["hash"] == ai["hash"] and state["address"] == qa.address.lower() and state["field"] == "storage"

        # it stopped there: the blocks before are the sequencer's, JSON-RPC still answers on its own head
        assert wv.eth.block_number == receipt.blockNumber
        assert_same_chain(ws, wv, receipt.blockNumber - 1)
        assert metric(validator.url, "lorachain_derivation_divergences_total") == 1
        assert "DIVERGENCE at L2 block" in validator.log()
    finally:
        stop_all(procs.get("batcher"), procs.get("validator"), procs.get("sequencer"), procs.get("l1"), seq_sidecar,
                 val_sidecar)  # fmt: skip
