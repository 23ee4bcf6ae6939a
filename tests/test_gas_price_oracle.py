"""The GasPriceOracle predeploy (0x4200…000F): Ecotone's view functions over the L1Block predeploy, and an L1 fee
that is the node's own (lorachain/node/rollup/l2_fees.py): in-process on a chain built block by block, and
through web3 against a real L1 + sequencer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_abi import decode, encode
from eth_account import Account
from web3 import Web3

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import parse_genesis
from lorachain.node.app import build_dispatcher
from lorachain.node.chain import Blockchain
from lorachain.node.node import Node
from lorachain.node.rollup.deposit_vm import deposit_transaction
from lorachain.node.rollup.l1_info import L1BlockInfo
from lorachain.node.rollup.l2_fees import SEQUENCER_FEE_VAULT, L1FeeParams
from lorachain.node.rpc.server import CallContext
from lorachain.rollup_cli import GAS_PRICE_ORACLE
from lorachain.toolchain.solc import load_artifact
from tests.conftest import start_node
from tests.rollup_fixtures import op_genesis, start_l1_and_rollup, stop_all
from tests.test_sequencer_e2e import wait_for

ORACLE = "0x" + GAS_PRICE_ORACLE.hex()
INFO = L1BlockInfo(
    base_fee_scalar=1368, blob_base_fee_scalar=810_949, sequence_number=0, l1_timestamp=1_700_000_000,
    l1_number=123, base_fee=30 * 10**9 + 7, blob_base_fee=3, l1_block_hash=b"\x44" * 32, batcher_hash=bytes(32),
)  # fmt: skip
SIGNATURE = b"\xff" * 68  # the oracle's allowance for the signature an unsigned transaction lacks


def selector(signature: str) -> bytes:
    return bytes.fromhex(load_artifact("GasPriceOracle")["methodIdentifiers"][signature])


def call_data(signature: str, *args: Any) -> str:
    types = signature[signature.index("(") + 1 : -1]
    return "0x" + (selector(signature) + (encode([types], list(args)) if types else b"")).hex()


def without_nonzero_bytes(data: bytes, count: int) -> bytes:
    """``data`` less its first ``count`` non-zero bytes: with the oracle's 68 non-zero signature bytes added back,
    the L1 gas of the result is that of ``data`` (count = 68)."""
    out, dropped = bytearray(), 0
    for byte in data:
        if byte and dropped < count:
            dropped += 1
            continue
        out.append(byte)
    assert dropped == count
    return bytes(out)


class Rpc:
    """JSON-RPC straight into a node's dispatcher (no server)."""

    def __init__(self, node: Node) -> None:
        self.dispatcher = build_dispatcher(node, dev=False)

    def __call__(self, method: str, *params: Any) -> dict[str, Any]:
        request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        return asyncio.run(self.dispatcher.handle_payload(request, CallContext()))

    def view(self, signature: str, *args: Any, block: str = "latest", returns: str = "uint256", **over: Any) -> Any:
        params: list[Any] = [{"to": ORACLE, "data": call_data(signature, *args)}, block]
        if over:
            params += [None, over]
        reply = self("eth_call", *params)
        assert "result" in reply, reply
        return decode([returns], bytes.fromhex(reply["result"][2:]))[0]


def signed_txs(builder: Any) -> list[Any]:
    """Three shapes of transaction: an EIP-1559 transfer, a legacy (EIP-155) one with calldata full of zeros, and
    an EIP-2930 one with an access list."""
    key0, key1 = dev_accounts()[0].private_key, dev_accounts()[1].private_key
    raws = [
        Account.sign_transaction({"type": 2, "chainId": 901, "nonce": 0, "to": "0x" + "66" * 20, "value": 10**15,
                                  "gas": 21_000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}, key0),
        Account.sign_transaction({"chainId": 901, "nonce": 1, "to": "0x" + "67" * 20, "value": 0, "gas": 100_000,
                                  "gasPrice": 10**11, "data": b"\x00" * 40 + b"\x12\x34" * 30}, key0),
        Account.sign_transaction({"type": 1, "chainId": 901, "nonce": 0, "to": "0x" + "68" * 20, "value": 1,
                                  "gas": 60_000, "gasPrice": 10**11, "data": b"\x01\x00\x02",
                                  "accessList": [{"address": "0x" + "69" * 20, "storageKeys": ["0x" + "00" * 31
                                                                                               + "05"]}]}, key1),
    ]  # fmt: skip
    return [builder.decode(bytes(raw.raw_transaction)) for raw in raws]


def test_oracle_views_and_l1_fee_equal_the_nodes(tmp_path: Path) -> None:
    chain = Blockchain.initialize(tmp_path / "l2", parse_genesis(op_genesis()))
    try:
        builder = chain.chain_class.get_vm_class_for_block_number(1).get_transaction_builder()
        txs = signed_txs(builder)
        built = chain.build_block([deposit_transaction(INFO.deposit()), *txs], timestamp=10,
                                  coinbase=SEQUENCER_FEE_VAULT, mix_hash=b"\x01" * 32)  # fmt: skip
        assert not built.rejected and len(built.block.transactions) == 4
        rpc = Rpc(Node(chain))
        code = rpc("eth_getCode", ORACLE, "latest")["result"]
        assert code == load_artifact("GasPriceOracle")["deployedBytecode"]

        assert rpc.view("l1BaseFee()") == INFO.base_fee
        assert rpc.view("blobBaseFee()") == INFO.blob_base_fee
        assert rpc.view("baseFeeScalar()", returns="uint32") == INFO.base_fee_scalar
        assert rpc.view("blobBaseFeeScalar()", returns="uint32") == INFO.blob_base_fee_scalar
        assert rpc.view("decimals()") == 6 and rpc.view("DECIMALS()") == 6
        assert rpc.view("isEcotone()", returns="bool") is True
        assert rpc.view("isFjord()", returns="bool") is False
        # gasPrice() and baseFee() are the block's base fee (here set through eth_call's block overrides)
        assert rpc.view("gasPrice()", baseFee=hex(12_345)) == rpc.view("baseFee()", baseFee=hex(12_345)) == 12_345

        params = L1FeeParams(INFO.base_fee, INFO.blob_base_fee, INFO.base_fee_scalar, INFO.blob_base_fee_scalar)
        for tx in txs:
            receipt = rpc("eth_getTransactionReceipt", "0x" + tx.hash.hex())["result"]
            signed = bytes.fromhex(rpc("eth_getRawTransactionByHash", "0x" + tx.hash.hex())["result"][2:])
            unsigned = tx.get_message_for_signing()  # what wallets pass: the unsigned RLP-encoded transaction
            charged = int(receipt["l1Fee"], 16)
            assert charged > 0 and charged == params.l1_fee(signed)  # the node charges over the signed bytes
            # the oracle: the same formula, rounding included, over the unsigned bytes plus 68 signature bytes
            assert rpc.view("getL1GasUsed(bytes)", unsigned) == params.l1_gas_used(unsigned + SIGNATURE)
            estimate = rpc.view("getL1Fee(bytes)", unsigned)
            assert estimate == params.l1_fee(unsigned + SIGNATURE)
            assert estimate >= charged  # 68 non-zero bytes cover the real signature's
            # and exactly the receipt's l1Fee for bytes whose L1 gas, with the allowance, is the signed tx's
            same_gas = without_nonzero_bytes(signed, len(SIGNATURE))
            assert rpc.view("getL1GasUsed(bytes)", same_gas) == int(receipt["l1GasUsed"], 16)
            assert rpc.view("getL1Fee(bytes)", same_gas) == charged

        # pre-Ecotone and Fjord-only functions revert as the OP Stack's oracle does
        for signature, reason in (("overhead()", "overhead() is deprecated"), ("scalar()", "scalar() is deprecated"),
                                  ("getL1FeeUpperBound(uint256)", "only supports Fjord")):  # fmt: skip
            args = (100,) if "uint256" in signature else ()
            reply = rpc("eth_call", {"to": ORACLE, "data": call_data(signature, *args)}, "latest")
            assert reply["error"]["code"] == 3 and reason in reply["error"]["message"], reply
    finally:
        chain.close()


@pytest.mark.e2e
def test_oracle_fee_matches_receipts_on_a_running_sequencer(tmp_path: Path) -> None:
    l1, _rollup, common = start_l1_and_rollup(tmp_path, "--block-time", "0.5")
    sequencer = None
    try:
        sequencer = start_node(tmp_path / "sequencer", *common, "--block-time", "0.5")
        w3 = Web3(Web3.HTTPProvider(sequencer.url))
        wait_for(lambda: w3.eth.block_number >= 1, what="an L2 block")
        oracle = w3.eth.contract(address=Web3.to_checksum_address(ORACLE), abi=load_artifact("GasPriceOracle")["abi"])
        sender = dev_accounts()[2]
        tx = {"type": 2, "chainId": 901, "nonce": w3.eth.get_transaction_count(sender.address), "value": 1,
              "to": Web3.to_checksum_address("0x" + "5c" * 20), "gas": 50_000, "data": b"\x00\x01" * 50,
              "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}  # fmt: skip
        signed = Account.sign_transaction(tx, sender.private_key)
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction), 60)
        assert receipt.status == 1
        block = receipt.blockNumber
        l1_block = w3.eth.contract(address=Web3.to_checksum_address("0x4200000000000000000000000000000000000015"),
                                   abi=load_artifact("L1Block")["abi"])  # fmt: skip
        assert oracle.functions.l1BaseFee().call(block_identifier=block) == l1_block.functions.basefee().call(
            block_identifier=block) == int(receipt["l1GasPrice"], 16)  # fmt: skip
        assert oracle.functions.isEcotone().call() and oracle.functions.decimals().call() == 6
        charged = int(receipt["l1Fee"], 16)
        assert charged > 0
        raw = bytes(signed.raw_transaction)
        same_gas = without_nonzero_bytes(raw, len(SIGNATURE))
        assert oracle.functions.getL1Fee(same_gas).call(block_identifier=block) == charged
        unsigned = PragueTransactionBuilder.decode(raw).get_message_for_signing()  # what a wallet would pass
        assert oracle.functions.getL1Fee(unsigned).call(block_identifier=block) >= charged
    finally:
        stop_all(sequencer, l1)
