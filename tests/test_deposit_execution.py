"""Deposit transactions executed in real blocks: the OP Stack rules, receipts, and re-import by another node."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import rlp

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import parse_genesis
from lorachain.node.chain import Blockchain, ChainError
from lorachain.node.rollup.deposit_vm import deposit_transaction
from lorachain.node.rollup.deposits import DEPOSIT_TX_TYPE, DepositTx, user_deposit_source_hash
from lorachain.node.rollup.l1_info import L1BlockInfo
from lorachain.node.rpc import codec
from tests import rollup_fixtures

REVERTER = bytes.fromhex("00000000000000000000000000000000000fa11d")
COINBASE = bytes.fromhex("4200000000000000000000000000000000000011")  # SequencerFeeVault


def op_genesis() -> dict:
    return rollup_fixtures.op_genesis({REVERTER: "0x60006000fd"})  # REVERT(0, 0)


def deposit(n: int, sender: bytes, to: bytes | None, *, mint: int = 0, value: int = 0, gas: int = 100_000,
            data: bytes = b"", system: bool = False):  # fmt: skip
    tx = DepositTx(user_deposit_source_hash(b"\x11" * 32, n), sender, to, mint, value, gas, system, data)
    return deposit_transaction(tx)


def l1_info_tx():
    info = L1BlockInfo(1368, 810949, 0, 1_700_000_000, 100, 10**9, 1, b"\x22" * 32, bytes(32))
    return deposit_transaction(info.deposit())


def signed_transfer(nonce: int = 0):
    from eth_account import Account

    acct = dev_accounts()[0]
    raw = Account.sign_transaction(
        {"type": 2, "chainId": 901, "nonce": nonce, "to": "0x" + "55" * 20, "value": 1, "gas": 21_000,
         "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9}, acct.private_key).raw_transaction  # fmt: skip
    return raw


def test_deposit_rules_and_reimport(tmp_path: Path) -> None:
    chain = Blockchain.initialize(tmp_path / "sequencer", parse_genesis(op_genesis()))
    alice, bob = os.urandom(20), os.urandom(20)
    vm_class = chain.chain_class.get_vm_class_for_block_number(1)
    user_tx = vm_class.get_transaction_builder().decode(bytes(signed_transfer()))
    txs = [
        l1_info_tx(),
        deposit(1, alice, bob, mint=10**18, value=4 * 10**17),  # mint, then transfer part of it
        deposit(2, alice, REVERTER, mint=5, value=1),  # reverts in the EVM: mint stays, value does not move
        deposit(3, alice, bob, mint=7, gas=20_000),  # below its intrinsic gas: fails, uses all its gas
        deposit(4, alice, None, data=bytes.fromhex("600a600c600039600a6000f3") + bytes(10)),  # creates a contract
        user_tx,
    ]
    built = chain.build_block(txs, timestamp=10, coinbase=COINBASE, mix_hash=b"\x01" * 32)
    assert not built.rejected and not built.deferred
    block, receipts = built.block, built.receipts
    assert [tx.type_id for tx in block.transactions] == [DEPOSIT_TX_TYPE] * 5 + [2]
    state = chain.state_at(block.header)
    assert state.get_balance(bob) == 4 * 10**17
    assert state.get_balance(alice) == 10**18 - 4 * 10**17 + 5 + 7  # every mint survives
    assert state.get_balance(REVERTER) == 0
    assert state.get_nonce(alice) == 4  # one per deposit, failed ones too
    statuses = [r.state_root for r in receipts]
    assert statuses == [b"\x01", b"\x01", b"", b"", b"\x01", b"\x01"]
    gas = [receipts[0].gas_used] + [b.gas_used - a.gas_used for a, b in itertools.pairwise(receipts)]
    assert gas[1] == 21_000 and gas[3] == 20_000 and gas[5] == 21_000  # the failed deposit: its gas limit
    assert gas[2] < 100_000  # an EVM revert reports the gas it actually used
    deposit_receipts = [r._inner for r in receipts[:5]]
    assert [r.deposit_nonce for r in deposit_receipts[1:]] == [0, 1, 2, 3]
    assert all(r.deposit_receipt_version == 1 for r in deposit_receipts)
    assert receipts[5].type_id == 2  # the signed transaction's receipt is an ordinary one
    # Only the signed transaction pays the coinbase (deposits pay no fees).
    assert state.get_balance(COINBASE) == 21_000 * min(10**9, 10**10 - block.header.base_fee_per_gas)

    # The block travels as RLP and another node re-executes it to the same result.
    encoded = Blockchain.encode_block(block)
    other = Blockchain.initialize(tmp_path / "validator", parse_genesis(op_genesis()))
    decoded = rlp.decode(encoded, sedes=other.chain_class.get_vm_class_for_block_number(1).get_block_class())
    assert decoded.hash == block.hash
    imported = other.import_block(decoded)
    assert imported.hash == block.hash and other.head.state_root == block.header.state_root
    assert [r.encode() for r in other.receipts(imported)] == [r.encode() for r in receipts]
    assert receipts[1].encode()[0] == DEPOSIT_TX_TYPE

    # A chain without OP Stack rules refuses the block.
    plain_genesis = op_genesis()
    del plain_genesis["config"]["optimism"]
    plain = Blockchain.initialize(tmp_path / "l1", parse_genesis(plain_genesis))
    plain_block_class = plain.chain_class.get_vm_class_for_block_number(1).get_block_class()
    with pytest.raises(ChainError, match="only valid on OP Stack chains"):
        plain.import_block(rlp.decode(encoded, sedes=plain_block_class))
    for c in (chain, other, plain):
        c.close()


def test_json_rpc_rendering(tmp_path: Path) -> None:
    chain = Blockchain.initialize(tmp_path / "c", parse_genesis(op_genesis()))
    sender = os.urandom(20)
    txs = [l1_info_tx(), deposit(1, sender, None, mint=3, data=bytes.fromhex("600a600c600039600a6000f3") + bytes(10))]
    built = chain.build_block(txs, timestamp=10, coinbase=COINBASE, mix_hash=b"\x01" * 32)
    block, receipts = built.block, built.receipts
    tx = codec.transaction_json(block.transactions[1], block.header, 1, block.header.base_fee_per_gas)
    assert tx["type"] == "0x7e" and tx["mint"] == "0x3" and tx["isSystemTx"] is False
    assert tx["sourceHash"] == "0x" + user_deposit_source_hash(b"\x11" * 32, 1).hex()
    assert tx["v"] == tx["r"] == tx["s"] == tx["gasPrice"] == "0x0" and "chainId" not in tx
    receipt = codec.receipt_json(block, receipts, 1)
    assert receipt["depositNonce"] == "0x0" and receipt["depositReceiptVersion"] == "0x1"
    assert receipt["effectiveGasPrice"] == "0x0" and receipt["status"] == "0x1"
    assert receipt["contractAddress"] is not None
    state = chain.state_at(block.header)
    assert state.get_code(bytes.fromhex(receipt["contractAddress"][2:])) == bytes(10)
    chain.close()


def test_system_deposits_are_refused(tmp_path: Path) -> None:
    chain = Blockchain.initialize(tmp_path / "c", parse_genesis(op_genesis()))
    built = chain.build_block([deposit(9, os.urandom(20), os.urandom(20), system=True)], timestamp=10,
                              coinbase=COINBASE, mix_hash=b"\x01" * 32, skip_empty=True)  # fmt: skip
    assert built.block is None and "Regolith" in built.rejected[0][1]
    chain.close()
