"""L2 fee rules on an OP Stack chain: base fee to the BaseFeeVault, L1 data fee to the L1FeeVault, tips to the
coinbase; the L1 parameters come from the L1Block predeploy that the block's L1-info deposit set."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import rlp
from eth_account import Account

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import parse_genesis
from lorachain.node.app import build_dispatcher
from lorachain.node.chain import Blockchain, ChainError
from lorachain.node.node import Node
from lorachain.node.rollup.deposit_vm import deposit_transaction
from lorachain.node.rollup.l1_info import L1_BLOCK_ADDRESS, L1BlockInfo
from lorachain.node.rollup.l2_fees import BASE_FEE_VAULT, L1_FEE_VAULT, SEQUENCER_FEE_VAULT, L1FeeParams
from lorachain.node.rpc import codec
from lorachain.node.rpc.server import CallContext
from tests.rollup_fixtures import op_genesis

INFO = L1BlockInfo(
    base_fee_scalar=1368, blob_base_fee_scalar=810_949, sequence_number=0, l1_timestamp=1_700_000_000,
    l1_number=123, base_fee=30 * 10**9, blob_base_fee=5, l1_block_hash=b"\x44" * 32, batcher_hash=bytes(32),
)  # fmt: skip
TIP, MAX_FEE = 10**9, 10**11


def transfer(key: bytes, nonce: int, value: int = 10**15, gas: int = 21_000) -> bytes:
    tx = {"type": 2, "chainId": 901, "nonce": nonce, "to": "0x" + "66" * 20, "value": value, "gas": gas,
          "maxFeePerGas": MAX_FEE, "maxPriorityFeePerGas": TIP}  # fmt: skip
    return bytes(Account.sign_transaction(tx, key).raw_transaction)


def test_fees_go_to_the_vaults_and_validators_agree(tmp_path: Path) -> None:
    chain = Blockchain.initialize(tmp_path / "seq", parse_genesis(op_genesis()))
    sender = dev_accounts()[0]
    address = bytes.fromhex(sender.address[2:])
    raw = transfer(sender.private_key, 0)
    builder = chain.chain_class.get_vm_class_for_block_number(1).get_transaction_builder()
    before = chain.state_at(chain.head).get_balance(address)
    built = chain.build_block([deposit_transaction(INFO.deposit()), builder.decode(raw)], timestamp=10,
                              coinbase=SEQUENCER_FEE_VAULT, mix_hash=b"\x01" * 32)  # fmt: skip
    assert not built.rejected
    header = built.block.header
    state = chain.state_at(header)
    # The L1-info deposit set L1Block's slots (OP Stack layout).
    assert state.get_storage(L1_BLOCK_ADDRESS, 1) == INFO.base_fee
    assert state.get_storage(L1_BLOCK_ADDRESS, 0) == INFO.l1_number | INFO.l1_timestamp << 64
    assert state.get_storage(L1_BLOCK_ADDRESS, 2) == int.from_bytes(INFO.l1_block_hash, "big")
    params = L1FeeParams.read(state)
    assert (params.base_fee_scalar, params.blob_base_fee_scalar, params.blob_base_fee) == (1368, 810_949, 5)
    zeros = raw.count(0)
    l1_fee = (zeros * 4 + (len(raw) - zeros) * 16) * (16 * INFO.base_fee * 1368 + 5 * 810_949) // 16_000_000
    assert l1_fee > 0 and params.l1_fee(raw) == l1_fee
    base_fee = header.base_fee_per_gas
    assert state.get_balance(BASE_FEE_VAULT) == 21_000 * base_fee
    assert state.get_balance(L1_FEE_VAULT) == l1_fee
    assert state.get_balance(SEQUENCER_FEE_VAULT) == 21_000 * TIP
    assert before - state.get_balance(address) == 10**15 + 21_000 * (base_fee + TIP) + l1_fee

    receipt = codec.receipt_json(built.block, built.receipts, 1)  # op-geth's L1 fee fields
    assert receipt["l1Fee"] == hex(l1_fee) and receipt["l1GasPrice"] == hex(INFO.base_fee)
    assert receipt["l1GasUsed"] == hex(zeros * 4 + (len(raw) - zeros) * 16)
    assert receipt["l1BaseFeeScalar"] == hex(1368) and receipt["l1BlobBaseFeeScalar"] == hex(810_949)
    assert "l1Fee" not in codec.receipt_json(built.block, built.receipts, 0)  # the deposit pays none

    other = Blockchain.initialize(tmp_path / "validator", parse_genesis(op_genesis()))
    block_class = other.chain_class.get_vm_class_for_block_number(1).get_block_class()
    imported = other.import_block(rlp.decode(Blockchain.encode_block(built.block), sedes=block_class))
    assert imported.hash == built.block.hash

    # eth_call pays no L1 fee: a caller with nothing still gets an answer.
    dispatcher = build_dispatcher(Node(chain), dev=False)
    call = {"from": "0x" + "77" * 20, "to": "0x" + L1_BLOCK_ADDRESS.hex(), "data": "0x5cf24969"}  # basefee()
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest"]}
    reply = asyncio.run(dispatcher.handle_payload(request, CallContext()))
    assert int(reply["result"], 16) == INFO.base_fee
    chain.close()
    other.close()


def test_the_l1_fee_must_be_affordable(tmp_path: Path) -> None:
    chain = Blockchain.initialize(tmp_path / "seq", parse_genesis(op_genesis()))
    chain.build_block([deposit_transaction(INFO.deposit())], timestamp=10, coinbase=SEQUENCER_FEE_VAULT,
                      mix_hash=b"\x01" * 32)  # fmt: skip
    poor = Account.create()
    builder = chain.chain_class.get_vm_class_for_block_number(2).get_transaction_builder()
    fund_tx = builder.decode(  # gas for a transfer at the max fee, and nothing for the L1 fee
        bytes(Account.sign_transaction({"type": 2, "chainId": 901, "nonce": 0, "to": poor.address,
                                         "value": 21_000 * MAX_FEE, "gas": 21_000, "maxFeePerGas": MAX_FEE,
                                         "maxPriorityFeePerGas": TIP}, dev_accounts()[1].private_key).raw_transaction)
    )  # fmt: skip
    chain.build_block([fund_tx], timestamp=11, coinbase=SEQUENCER_FEE_VAULT, mix_hash=b"\x01" * 32)
    spend = builder.decode(transfer(poor.key, 0, value=0))
    built = chain.build_block([spend], timestamp=12, coinbase=SEQUENCER_FEE_VAULT, mix_hash=b"\x01" * 32,
                              skip_empty=True)  # fmt: skip
    assert built.block is None
    assert "l1 fee" in built.rejected[0][1]
    chain.close()


def test_base_fee_follows_the_op_stack_eip1559_parameters(tmp_path: Path) -> None:
    chain = Blockchain.initialize(tmp_path / "seq", parse_genesis(op_genesis()))
    parent = chain.head
    built = chain.build_block([deposit_transaction(INFO.deposit())], timestamp=10, coinbase=SEQUENCER_FEE_VAULT,
                              mix_hash=b"\x01" * 32)  # fmt: skip
    header = built.block.header
    target = parent.gas_limit // 6
    assert header.base_fee_per_gas == parent.base_fee_per_gas - parent.base_fee_per_gas * target // target // 250
    second = chain.build_block([], timestamp=11, coinbase=SEQUENCER_FEE_VAULT, mix_hash=b"\x01" * 32).block.header
    target, used = header.gas_limit // 6, header.gas_used
    expected = header.base_fee_per_gas - header.base_fee_per_gas * (target - used) // target // 250
    assert second.base_fee_per_gas == expected
    vm_class = chain.chain_class.get_vm_class_for_block_number(3)
    assert Node(chain).next_base_fee() == vm_class.expected_base_fee(second)

    # Another node accepts these blocks, and refuses one whose base fee follows London's 2/8 instead.
    other = Blockchain.initialize(tmp_path / "validator", parse_genesis(op_genesis()))
    block_class = other.chain_class.get_vm_class_for_block_number(1).get_block_class()
    imported = other.import_block(rlp.decode(Blockchain.encode_block(built.block), sedes=block_class))
    assert imported.hash == built.block.hash
    london = built.block.header.copy(base_fee_per_gas=parent.base_fee_per_gas - parent.base_fee_per_gas // 8)
    with pytest.raises(ChainError, match="base_fee_per_gas"):
        fresh = Blockchain.initialize(tmp_path / "third", parse_genesis(op_genesis()))
        fresh.import_block(built.block.copy(header=london))
    chain.close()
    other.close()
