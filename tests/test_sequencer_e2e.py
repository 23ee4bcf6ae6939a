"""An L1 node, `lorachain rollup init`, and an L2 sequencer node: every L2 block opens with its L1-info
deposit, an L1 deposit arrives on L2 in its epoch, and a sequencer killed with -9 resumes its epochs."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from web3 import Web3

from lorachain.genesis.genesis import devnet_genesis
from lorachain.node.rollup.deposits import DEPOSIT_TX_TYPE
from lorachain.node.rollup.l1_info import L1_BLOCK_ADDRESS, L1BlockInfo
from lorachain.node.rollup.l2_fees import L1_FEE_VAULT, SEQUENCER_FEE_VAULT
from lorachain.node.rollup.outputs import L2_TO_L1_MESSAGE_PASSER
from lorachain.toolchain.solc import load_artifact
from tests.conftest import LORACHAIN, REPO, start_node

pytestmark = pytest.mark.e2e
RECIPIENT = Web3.to_checksum_address("0x" + "5b" * 20)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def l1_info(w3: Web3, number: int) -> L1BlockInfo:
    first = w3.eth.get_block(number, full_transactions=True).transactions[0]
    assert int(first["type"]) == DEPOSIT_TX_TYPE and first["to"].lower() == "0x" + L1_BLOCK_ADDRESS.hex()
    return L1BlockInfo.decode(bytes(first["input"]))


def test_sequencer_follows_l1(tmp_path: Path) -> None:
    l1_genesis = tmp_path / "l1.json"
    l1_genesis.write_text(json.dumps(devnet_genesis(chain_id=900, with_predeploys=False)))
    l1 = start_node(tmp_path / "l1", "--genesis", str(l1_genesis))
    l2 = None
    try:
        out = tmp_path / "rollup"
        done = subprocess.run([*LORACHAIN, "rollup", "init", "--l1", l1.url, "--out", str(out)], cwd=REPO,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip
        assert done.returncode == 0, done.stderr
        setup = json.loads(done.stdout.strip().splitlines()[-1])
        rollup = json.loads((out / "rollup.json").read_text())
        args = ("--genesis", str(out / "genesis.json"), "--rollup-config", str(out / "rollup.json"),
                "--l1", l1.url, "--block-time", "0.5")  # fmt: skip
        l2 = start_node(tmp_path / "l2", *args)
        w2 = Web3(Web3.HTTPProvider(l2.url))
        assert w2.eth.chain_id == 901
        wait_for(lambda: w2.eth.block_number >= 2, what="L2 blocks")
        first = l1_info(w2, 1)
        assert first.l1_number in (rollup["genesis_l1"]["number"], rollup["genesis_l1"]["number"] + 1)

        w1 = Web3(Web3.HTTPProvider(l1.url))
        portal = w1.eth.contract(address=setup["deposit_portal"], abi=load_artifact("DepositPortal")["abi"])
        deposit = portal.functions.depositTransaction(RECIPIENT, 10**17, 100_000, False, b"")
        sent = deposit.transact({"from": w1.eth.accounts[2], "value": 10**18})
        l1_receipt = w1.eth.wait_for_transaction_receipt(sent)
        wait_for(lambda: w2.eth.get_balance(RECIPIENT) == 10**17, what="the deposit on L2")
        # The block that carries it opens the epoch of the L1 block that holds the deposit.
        number = next(n for n in range(1, w2.eth.block_number + 1)
                      if len(w2.eth.get_block(n).transactions) > 1)  # fmt: skip
        info = l1_info(w2, number)
        assert info.l1_number == l1_receipt.blockNumber and info.sequence_number == 0
        assert info.l1_block_hash == bytes(l1_receipt.blockHash)
        carried = w2.eth.get_block(number, full_transactions=True).transactions[1]
        receipt = w2.eth.get_transaction_receipt(carried["hash"])
        assert receipt.status == 1 and "depositNonce" in receipt

        # A contract call from L1: the deposit calls the L2ToL1MessagePasser, whose event shows on L2.
        passer_abi = load_artifact("L2ToL1MessagePasser")["abi"]
        passer = w2.eth.contract(address=Web3.to_checksum_address("0x" + L2_TO_L1_MESSAGE_PASSER.hex()), abi=passer_abi)
        calldata = passer.encode_abi("initiateWithdrawal", [RECIPIENT, 50_000, b"from L1"])
        call = portal.functions.depositTransaction(passer.address, 0, 200_000, False, bytes.fromhex(calldata[2:]))
        caller = w1.eth.accounts[2]
        w1.eth.wait_for_transaction_receipt(call.transact({"from": caller}))

        def message_passed():
            logs = passer.events.MessagePassed().get_logs(from_block=0)
            return logs[0] if logs else None

        event = wait_for(message_passed, what="the L1-initiated contract call on L2")
        assert event.args.sender == caller and event.args.data == b"from L1"  # an EOA's call is not aliased
        assert w2.eth.get_transaction_receipt(event.transactionHash).status == 1

        # An ordinary L2 transaction pays the L1 data fee into the L1FeeVault.
        tx = w2.eth.send_transaction({"from": w2.eth.accounts[0], "to": RECIPIENT, "value": 1})
        wait_for(lambda: w2.eth.get_transaction_receipt(tx) if _mined(w2, tx) else None, what="an L2 transaction")
        assert int(w2.eth.get_transaction_receipt(tx)["l1Fee"], 16) > 0
        assert w2.eth.get_balance(Web3.to_checksum_address("0x" + L1_FEE_VAULT.hex())) > 0
        mined_in = w2.eth.get_block(w2.eth.get_transaction_receipt(tx).blockNumber)
        assert mined_in.miner.lower() == "0x" + SEQUENCER_FEE_VAULT.hex()  # tips go to the SequencerFeeVault

        # kill -9, restart: the epochs go on from what the chain recorded.
        head_before = w2.eth.block_number
        l2.stop(signal.SIGKILL)
        l2 = start_node(tmp_path / "l2", *args, port=l2.port)
        w2 = Web3(Web3.HTTPProvider(l2.url))
        wait_for(lambda: w2.eth.block_number >= head_before + 3, what="blocks after the restart")
        previous = l1_info(w2, head_before)
        for n in range(head_before + 1, head_before + 4):
            info = l1_info(w2, n)
            if info.l1_number == previous.l1_number:
                assert info.sequence_number == previous.sequence_number + 1
            else:
                assert info.l1_number == previous.l1_number + 1 and info.sequence_number == 0
            previous = info
    finally:
        if l2 is not None:
            l2.stop()
        l1.stop()


def _mined(w3: Web3, tx_hash) -> bool:
    try:
        w3.eth.get_transaction_receipt(tx_hash)
    except Exception:
        return False
    return True
