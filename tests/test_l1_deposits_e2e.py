"""Deposits from a real L1 node: the portal's events, read back over JSON-RPC, become L2 deposit transactions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from web3 import Web3
from web3.exceptions import ContractLogicError

from lorachain.genesis.genesis import devnet_genesis, parse_genesis
from lorachain.node.chain import Blockchain
from lorachain.node.rollup.deposit_vm import deposit_transaction
from lorachain.node.rollup.deposits import user_deposit_source_hash
from lorachain.node.rollup.l1_client import L1Client, L1RpcError, L1Unavailable
from lorachain.node.rollup.l1_deposits import deposits_in_block
from lorachain.toolchain.solc import load_artifact
from tests.conftest import free_port, start_node
from tests.rollup_fixtures import op_genesis

pytestmark = pytest.mark.e2e
L2_RECIPIENT = Web3.to_checksum_address("0x" + "5a" * 20)


def test_portal_deposits_reach_l2(tmp_path: Path) -> None:
    genesis = tmp_path / "l1-genesis.json"
    genesis.write_text(json.dumps(devnet_genesis(chain_id=900, with_predeploys=False)))
    l1 = start_node(tmp_path / "l1", "--genesis", str(genesis))
    try:
        w3 = Web3(Web3.HTTPProvider(l1.url))
        assert w3.eth.chain_id == 900
        artifact = load_artifact("DepositPortal")
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        oracle = load_artifact("L2OutputOracle")
        oracle_factory = w3.eth.contract(abi=oracle["abi"], bytecode=oracle["bytecode"])
        deployed = oracle_factory.constructor(w3.eth.accounts[8], 10, 0).transact({"from": w3.eth.accounts[0]})
        oracle_address = w3.eth.wait_for_transaction_receipt(deployed).contractAddress
        receipt = w3.eth.wait_for_transaction_receipt(
            factory.constructor(oracle_address, 12).transact({"from": w3.eth.accounts[0]}))
        portal = w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"])
        depositor = w3.eth.accounts[1]
        deposit_call = portal.functions.depositTransaction(L2_RECIPIENT, 3 * 10**17, 100_000, False, b"")
        first = w3.eth.wait_for_transaction_receipt(deposit_call.transact({"from": depositor, "value": 10**18}))
        with pytest.raises(ContractLogicError):  # below the portal's minimum gas: refused on L1, nothing emitted
            portal.functions.depositTransaction(L2_RECIPIENT, 0, 20_000, False, b"\x01" * 10).transact(
                {"from": depositor})
        second = w3.eth.wait_for_transaction_receipt(
            w3.eth.send_transaction({"from": depositor, "to": portal.address, "value": 5 * 10**16}))  # receive()

        client = L1Client(l1.url)
        portal_address = bytes.fromhex(portal.address[2:])
        first_hash = bytes(first.blockHash)
        [deposit] = deposits_in_block(client, portal_address, first_hash)
        assert deposit.source_hash == user_deposit_source_hash(first_hash, first.logs[0].logIndex)
        assert (deposit.mint, deposit.value, deposit.gas, deposit.to) == (
            10**18, 3 * 10**17, 100_000, bytes.fromhex(L2_RECIPIENT[2:]))  # fmt: skip
        assert deposit.sender == bytes.fromhex(depositor[2:])  # an EOA: not aliased
        [to_self] = deposits_in_block(client, portal_address, bytes(second.blockHash))
        assert to_self.to == to_self.sender and to_self.mint == 5 * 10**16 and to_self.gas == 100_000
        assert deposits_in_block(client, bytes(20), first_hash) == []  # another contract's logs: none

        l2 = Blockchain.initialize(tmp_path / "l2", parse_genesis(op_genesis()))
        before = l2.state_at(l2.head).get_balance(deposit.sender)
        built = l2.build_block([deposit_transaction(deposit), deposit_transaction(to_self)], timestamp=10,
                               coinbase=bytes(20), mix_hash=bytes(32))  # fmt: skip
        state = l2.state_at(built.block.header)
        assert state.get_balance(bytes.fromhex(L2_RECIPIENT[2:])) == 3 * 10**17
        assert state.get_balance(deposit.sender) == before + 10**18 - 3 * 10**17 + 5 * 10**16
        l2.close()

        with pytest.raises(L1RpcError):
            client.call("eth_noSuchMethod")
    finally:
        l1.stop()
    with pytest.raises(L1Unavailable):
        L1Client(f"http://127.0.0.1:{free_port()}").block_number()
