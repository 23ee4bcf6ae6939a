"""Plain py-evm accepts the blocks the node's builder makes (fast VM: quiet executor, batched tries, remembered
encodings, primed senders): it re-executes each one and checks its state, receipts and transaction roots, gas
and bloom. The transactions cover what the executor's shortcuts touch: value transfers (to new
accounts, zero value to an empty account, which EIP-161 clears), contract creation, calls that store, a call
that reverts, gas refunds, and EIP-7623's calldata floor."""

from __future__ import annotations

import random

import pytest
import rlp
from eth.chains.base import Chain
from eth.db.atomic import AtomicDB
from eth.rlp.logs import Log
from eth.rlp.receipts import Receipt
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.blocks import PragueBlockHeader
from eth.vm.forks.prague.constants import DEPOSIT_CONTRACT_ADDRESS, DEPOSIT_EVENT_SIGNATURE_HASH
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import devnet_genesis, parse_genesis
from lorachain.node import tx_sender, vm
from lorachain.node.chain import Blockchain
from lorachain.node.vm import deposit_request_data

SENDERS = dev_accounts()[:4]
# runtime: slot0 = calldataload(0) (a zero argument clears the slot: refund); return
STORE_RUNTIME = bytes.fromhex("60003560005500")
STORE_INIT = bytes.fromhex("6007600c60003960076000f3") + STORE_RUNTIME
REVERT_INIT = bytes.fromhex("6005600c60003960056000f3") + bytes.fromhex("60006000fd")  # runtime: revert(0, 0)
EMPTY_ADDRESS = "0x" + "00" * 19 + "99"


def _contract_address(sender: str, nonce: int) -> str:
    return to_checksum_address(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:])


def _blocks() -> list[list[bytes]]:
    nonces = dict.fromkeys(range(len(SENDERS)), 0)

    def tx(i: int, **fields: object) -> bytes:
        base = {"value": 0, "gas": 300_000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9, "chainId": 901,
                "type": 2, "nonce": nonces[i]}  # fmt: skip
        nonces[i] += 1
        return bytes(Account.sign_transaction({**base, **fields}, SENDERS[i].private_key).raw_transaction)

    store = _contract_address(SENDERS[0].address, 0)
    reverter = _contract_address(SENDERS[1].address, 0)
    first = [tx(0, to=None, data=STORE_INIT), tx(1, to=None, data=REVERT_INIT)]
    second = [
        tx(2, to="0x" + "42" * 20, value=10**18),
        tx(3, to=EMPTY_ADDRESS, value=0),  # touches an empty account: EIP-161 deletes it again
        tx(0, to=store, data=(5).to_bytes(32, "big")),
        tx(1, to=reverter, data=b"\x01"),
        tx(2, to="0x" + "43" * 20, value=1, data=b"\x00" * 40 + b"\x07" * 400, gas=100_000),  # calldata floor
    ]
    third = [tx(0, to=store, data=(0).to_bytes(32, "big")), tx(3, to=SENDERS[2].address, value=12345)]  # refund
    legacy = bytes(Account.sign_transaction({"to": "0x" + "44" * 20, "value": 3, "gas": 21000, "gasPrice": 10**11,
                   "nonce": nonces[1], "chainId": 901}, SENDERS[1].private_key).raw_transaction)  # fmt: skip
    return [first, second, [*third, legacy]]


def test_plain_py_evm_accepts_every_block_the_node_builds(tmp_path) -> None:
    genesis = parse_genesis(devnet_genesis())
    plain = Chain.configure(vm_configuration=genesis.vm_configuration, chain_id=genesis.chain_id).from_genesis(
        AtomicDB(), genesis.header_params(), genesis.state()
    )
    node_chain = Blockchain.initialize(tmp_path, genesis, sync="none")
    builder = plain.get_vm().get_transaction_builder()
    for number, raw_block in enumerate(_blocks(), start=1):
        txs = []
        for raw in raw_block:
            decoded = builder.decode(raw)
            tx_sender.prime(decoded, raw)
            txs.append(decoded)
        built = node_chain.build_block(txs, timestamp=1000 + number, coinbase=b"\x00" * 20, mix_hash=b"\x01" * 32)
        assert not built.rejected and not built.deferred
        # py-evm's own VM re-executes the block from its RLP and checks every root, the gas and the bloom
        block = rlp.decode(rlp.encode(built.block), sedes=type(built.block))
        imported = plain.import_block(block, perform_validation=True).imported_block
        assert imported.hash == built.block.hash
        if number == 2:  # the block covers what it says: the call to the reverting contract failed
            assert [r.state_root for r in built.receipts] == [b"\x01", b"\x01", b"\x01", b"", b"\x01"]
    node_chain.close()


class _BlockOfReceipts:
    """What Prague's deposit scan reads of a block: its receipts and the list it appends requests to."""

    def __init__(self, receipts: list) -> None:
        self.receipts = receipts
        self.block_requests: list[bytes] = []

    def get_receipts(self, chaindb: object) -> list:
        return self.receipts


def test_deposit_request_scan_matches_py_evms() -> None:
    rng = random.Random(5)
    topic = int.from_bytes(DEPOSIT_EVENT_SIGNATURE_HASH, "big")
    other = b"\x55" * 20

    def log(address: bytes, topics: tuple[int, ...]) -> Log:
        return Log(address, topics, bytes(rng.randrange(256) for _ in range(576)))

    receipts = [
        Receipt(b"\x01", 50_000, [log(DEPOSIT_CONTRACT_ADDRESS, (topic,)), log(other, (topic,))]),
        Receipt(b"\x01", 90_000, [log(DEPOSIT_CONTRACT_ADDRESS, (topic + 1,)), log(DEPOSIT_CONTRACT_ADDRESS, ())]),
        Receipt(b"\x01", 140_000, [log(DEPOSIT_CONTRACT_ADDRESS, (topic, 7)), log(DEPOSIT_CONTRACT_ADDRESS, (topic,))]),
    ]
    block = _BlockOfReceipts(receipts)
    PragueVM.process_deposit_request_data(_NoChain(), block)  # type: ignore[arg-type]
    ours = deposit_request_data(receipts)
    assert block.block_requests == [b"\x00" + ours]
    assert len(ours) == 3 * 192  # three deposit events of the deposit contract, 192 bytes of fields each


class _NoChain:
    chaindb = None


def test_a_header_copy_is_pyrlps() -> None:
    header = PragueBlockHeader(difficulty=0, block_number=7, gas_limit=30_000_000, timestamp=1234,
                               extra_data=b"x" * 5, base_fee_per_gas=10**9)  # fmt: skip
    changes = {"gas_used": 21000, "bloom": 2**2047 + 5, "state_root": b"\x11" * 32, "extra_data": b"yz"}
    ours = header.copy(**changes)
    pyrlps = vm._pyrlp_copy(header, **changes)
    assert type(ours) is PragueBlockHeader
    assert ours == pyrlps and ours.hash == pyrlps.hash and rlp.encode(ours) == rlp.encode(pyrlps)
    assert ours.extra_data == b"yz" and ours.timestamp == 1234
    assert header.gas_used == 0 and header.hash != ours.hash  # the original is untouched
    with pytest.raises(TypeError):
        header.copy(no_such_field=1)
