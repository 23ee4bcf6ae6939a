"""ETH round trip L1 -> L2 -> L1 over real processes: a deposit, a withdrawal started on L2, proven on L1 with a
storage proof against the output root the proposer posted, and paid out after the finalization period."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from web3 import Web3
from web3.exceptions import ContractLogicError

from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.l1_client import L1Client
from lorachain.node.rollup.outputs import L2_TO_L1_MESSAGE_PASSER
from lorachain.node.rollup.withdrawals import Withdrawal, prove
from lorachain.toolchain.solc import load_artifact
from tests.conftest import start_node
from tests.rollup_fixtures import start_l1_and_rollup, stop_all
from tests.test_proposer_e2e import start_proposer
from tests.test_sequencer_e2e import wait_for

pytestmark = pytest.mark.e2e
FINALIZATION_S = 2


def test_eth_round_trip(tmp_path: Path) -> None:
    init = ("--submission-interval", "4", "--finalization-period", str(FINALIZATION_S))
    l1, rollup, common = start_l1_and_rollup(tmp_path, init_args=init)
    l2 = proposer = None
    try:
        config = RollupConfig.load(rollup / "rollup.json")
        l2 = start_node(tmp_path / "l2", *common, "--block-time", "0.3")
        proposer = start_proposer(tmp_path, l1.url, l2.url)
        w1, w2 = Web3(Web3.HTTPProvider(l1.url)), Web3(Web3.HTTPProvider(l2.url))
        portal = w1.eth.contract(address=Web3.to_checksum_address(config.deposit_portal),
                                 abi=load_artifact("DepositPortal")["abi"])  # fmt: skip
        oracle = w1.eth.contract(address=Web3.to_checksum_address(config.output_oracle),
                                 abi=load_artifact("L2OutputOracle")["abi"])  # fmt: skip
        passer = w2.eth.contract(address=Web3.to_checksum_address(L2_TO_L1_MESSAGE_PASSER),
                                 abi=load_artifact("L2ToL1MessagePasser")["abi"])  # fmt: skip
        user = w1.eth.accounts[4]

        # L1 -> L2
        l2_before = w2.eth.get_balance(user)
        deposit = w1.eth.send_transaction({"from": user, "to": portal.address, "value": 10**18})
        w1.eth.wait_for_transaction_receipt(deposit)
        wait_for(lambda: w2.eth.get_balance(user) >= l2_before + 10**18, what="the deposit")

        # L2 -> L1: start the withdrawal
        sent = passer.functions.initiateWithdrawal(user, 100_000, b"").transact({"from": user, "value": 4 * 10**17})
        receipt = w2.eth.wait_for_transaction_receipt(sent)
        [event] = passer.events.MessagePassed().process_receipt(receipt)
        withdrawal = Withdrawal(event.args.nonce, bytes.fromhex(user[2:]), bytes.fromhex(user[2:]), 4 * 10**17,
                                100_000, b"")  # fmt: skip
        assert withdrawal.hash == bytes(event.args.withdrawalHash)
        assert event.args.nonce >> 240 == 1  # version 1

        def output_index():
            for index in range(oracle.functions.outputCount().call()):
                if oracle.functions.getL2Output(index).call()[2] >= receipt.blockNumber:
                    return index + 1  # +1: index 0 must read as found
            return None

        index = wait_for(output_index, timeout=60, what="an output covering the withdrawal") - 1
        root, _ts, number = oracle.functions.getL2Output(index).call()
        proof = prove(L1Client(l2.url), withdrawal, number)
        assert proof.output_root == bytes(root)

        prover = w1.eth.accounts[6]
        with pytest.raises(ContractLogicError):  # nothing proven yet
            portal.functions.finalizeWithdrawalTransaction(withdrawal.as_tuple()).transact({"from": prover})
        tampered = Withdrawal(withdrawal.nonce, withdrawal.sender, withdrawal.target, 10**18, 100_000, b"")
        with pytest.raises(ContractLogicError):  # a withdrawal that was never sent cannot be proven
            portal.functions.proveWithdrawalTransaction(tampered.as_tuple(), index, proof.output_root_proof,
                                                        proof.storage_proof).transact({"from": prover})  # fmt: skip
        wrong_roots = (proof.output_root_proof[0], b"\x01" * 32, *proof.output_root_proof[2:])
        with pytest.raises(ContractLogicError):  # roots that do not hash to the posted output
            portal.functions.proveWithdrawalTransaction(withdrawal.as_tuple(), index, wrong_roots,
                                                        proof.storage_proof).transact({"from": prover})  # fmt: skip
        w1.eth.wait_for_transaction_receipt(portal.functions.proveWithdrawalTransaction(
            withdrawal.as_tuple(), index, proof.output_root_proof, proof.storage_proof).transact({"from": prover}))
        with pytest.raises(ContractLogicError):  # the finalization period has not passed
            portal.functions.finalizeWithdrawalTransaction(withdrawal.as_tuple()).transact({"from": prover})
        time.sleep(FINALIZATION_S + 1)

        l1_before = w1.eth.get_balance(user)
        done_tx = portal.functions.finalizeWithdrawalTransaction(withdrawal.as_tuple()).transact({"from": prover})
        assert w1.eth.wait_for_transaction_receipt(done_tx).status == 1
        assert w1.eth.get_balance(user) == l1_before + 4 * 10**17  # paid by the portal, the prover paid the gas
        with pytest.raises(ContractLogicError):  # and only once
            portal.functions.finalizeWithdrawalTransaction(withdrawal.as_tuple()).transact({"from": prover})
    finally:
        stop_all(proposer, l2, l1)
