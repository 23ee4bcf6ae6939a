"""Offline checks of the RPC benchmark's load generation (scripts/bench/rpc_load.py): no node needed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "bench"))
import rpc_load

# The first three accounts of the test mnemonic, as Hardhat and Anvil print them.
KNOWN_ADDRESSES = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
]


@pytest.fixture(scope="module")
def senders():
    return rpc_load.derive_accounts(3)


def decode(raw: str) -> dict:
    return TypedTransaction.from_bytes(HexBytes(raw)).as_dict()


def test_accounts_are_the_mnemonic_ones(senders):
    assert [a.address for a in senders] == KNOWN_ADDRESSES


def test_round_robin_txs_decode_with_right_nonce_chain_and_sender(senders):
    chain_id = 31337
    start = {senders[0].address: 5, senders[1].address: 0, senders[2].address: 17}
    fees = rpc_load.FeeParams.above_base_fee(1_000_000_000)
    txs = rpc_load.build_round_robin(
        senders,
        start,
        8,
        chain_id=chain_id,
        to=rpc_load.TRANSFER_RECIPIENT,
        value=rpc_load.TRANSFER_VALUE_WEI,
        gas=rpc_load.TRANSFER_GAS,
        data="0x",
        fees=fees,
    )
    assert len(txs) == 8
    expected_nonce = dict(start)
    for i, tx in enumerate(txs):
        sender = senders[i % 3].address
        fields = decode(tx.raw)
        assert tx.sender == sender
        assert Account.recover_transaction(tx.raw) == sender
        assert fields["type"] == 2
        assert fields["chainId"] == chain_id
        assert fields["nonce"] == tx.nonce == expected_nonce[sender]
        expected_nonce[sender] += 1
        assert to_checksum_address(fields["to"]) == rpc_load.TRANSFER_RECIPIENT
        assert fields["value"] == rpc_load.TRANSFER_VALUE_WEI
        assert fields["gas"] == rpc_load.TRANSFER_GAS
        assert fields["maxPriorityFeePerGas"] > 0
        assert fields["maxFeePerGas"] >= 2 * 1_000_000_000 + fields["maxPriorityFeePerGas"]
        assert tx.hash == "0x" + keccak(bytes.fromhex(tx.raw[2:])).hex()
    assert rpc_load.count_per_sender(txs) == {
        senders[0].address: 3,
        senders[1].address: 3,
        senders[2].address: 2,
    }
    last = rpc_load.last_tx_per_sender(txs)
    assert {s: t.nonce for s, t in last.items()} == {
        senders[0].address: 7,
        senders[1].address: 2,
        senders[2].address: 18,
    }


def test_increment_and_deploy_payloads(senders):
    fees = rpc_load.FeeParams.above_base_fee(7)
    counter = to_checksum_address("0x" + "ab" * 20)
    (tx,) = rpc_load.build_round_robin(
        senders[:1],
        {senders[0].address: 0},
        1,
        chain_id=901,
        to=counter,
        value=0,
        gas=rpc_load.INCREMENT_GAS,
        data=rpc_load.SELECTOR_INCREMENT,
        fees=fees,
    )
    fields = decode(tx.raw)
    assert fields["chainId"] == 901
    assert "0x" + bytes(fields["data"]).hex() == rpc_load.SELECTOR_INCREMENT == "0xd09de08a"
    assert rpc_load.SELECTOR_NUMBER == "0x8381f58a"

    deploy = rpc_load.sign_tx(
        senders[0],
        chain_id=901,
        nonce=3,
        to=None,
        value=0,
        gas=rpc_load.DEPLOY_GAS,
        data=rpc_load.COUNTER_CREATION_CODE,
        fees=fees,
    )
    fields = decode(deploy.raw)
    assert not fields.get("to")
    assert "0x" + bytes(fields["data"]).hex() == rpc_load.COUNTER_CREATION_CODE
    # The creation code ends with the runtime code it returns (CODECOPY of 0xd9 bytes at 0x1d).
    assert rpc_load.COUNTER_CREATION_CODE.endswith(rpc_load.COUNTER_RUNTIME_CODE[2:])
    assert len(bytes.fromhex(rpc_load.COUNTER_RUNTIME_CODE[2:])) == 0xD9


def test_sends_stay_in_nonce_order_per_sender(senders):
    txs = [
        rpc_load.SignedTx(raw="0x", hash=f"0x{i:064x}", sender=senders[i % 3].address, nonce=i // 3) for i in range(30)
    ]
    seen: dict[str, list[int]] = {}
    in_flight = 0
    peak = 0

    async def fake_send(tx):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        seen.setdefault(tx.sender, []).append(tx.nonce)
        await asyncio.sleep(0)
        in_flight -= 1
        return tx.hash

    results, latencies = asyncio.run(rpc_load.send_in_sender_order(txs, fake_send, concurrency=2))
    assert results == [t.hash for t in txs]
    assert len(latencies) == 30
    assert all(nonces == list(range(10)) for nonces in seen.values())
    assert peak <= 2
