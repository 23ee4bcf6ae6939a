"""Sender recovery from wire bytes (lorachain.node.tx_sender) agrees with py-evm's, or stays out of the way."""

from __future__ import annotations

import random

import pytest
import rlp
from eth._utils.transactions import extract_transaction_sender
from eth.vm.forks.prague import PragueVM
from eth_account import Account
from eth_utils import keccak

from lorachain.genesis.accounts import dev_accounts
from lorachain.node import tx_sender, vm

KEY = dev_accounts()[3].private_key
OTHER = "0x" + "77" * 20
BUILDER = PragueVM.get_transaction_builder()


def _fields(kind: str, rng: random.Random) -> dict:
    data = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 3, 55, 56, 300])))
    if len(data) == 1:
        data = bytes([rng.randrange(0x80)])  # a single byte that encodes as itself
    base = {"to": OTHER, "value": rng.randrange(10**18), "gas": 2_000_000, "nonce": rng.randrange(2**40), "data": data}
    if kind == "legacy-unprotected":
        return {**base, "gasPrice": rng.randrange(1, 10**12)}
    if kind == "legacy-155":
        return {**base, "gasPrice": rng.randrange(1, 10**12), "chainId": rng.choice([1, 901, 31337, 2**40])}
    fees = {"maxFeePerGas": 10**11, "maxPriorityFeePerGas": rng.randrange(10**9), "chainId": 901}
    access = [{"address": OTHER, "storageKeys": [f"0x{k:064x}" for k in range(rng.randrange(3))]}]
    if kind == "access-list":
        return {**base, "gasPrice": rng.randrange(1, 10**12), "chainId": 901, "accessList": access}
    if kind == "dynamic-fee":
        return {**base, **fees, "accessList": access if rng.random() < 0.5 else []}
    auth = Account.sign_authorization({"chainId": 901, "address": OTHER, "nonce": 1}, KEY)
    return {**base, **fees, "authorizationList": [auth]}


def _py_evm_sender(tx) -> bytes:
    """py-evm's own recovery (lorachain.node.vm replaces a typed transaction's get_sender)."""
    return extract_transaction_sender(tx) if getattr(tx, "type_id", None) is not None else tx.get_sender()


KINDS = ["legacy-unprotected", "legacy-155", "access-list", "dynamic-fee", "set-code"]


@pytest.mark.parametrize("kind", KINDS)
def test_sender_and_hash_match_py_evm(kind: str) -> None:
    rng = random.Random(kind)
    for _ in range(25):
        raw = bytes(Account.sign_transaction(_fields(kind, rng), KEY).raw_transaction)
        reference = BUILDER.decode(raw)
        expected = _py_evm_sender(reference)
        assert expected == bytes.fromhex(Account.from_key(KEY).address[2:])
        assert tx_sender.recover_sender(raw) == expected
        if raw[0] in tx_sender.TYPED_WITH_SIGNATURE_AT_END:  # the payload cut by the decoded signature's size
            decoded = (reference.y_parity, reference.r, reference.s)
            assert tx_sender.signing_hash_and_signature(raw, decoded) == tx_sender.signing_hash_and_signature(raw)
        primed = BUILDER.decode(raw)
        tx_sender.prime(primed, raw)
        assert "sender" in primed.__dict__
        assert primed.sender == expected
        assert primed.hash == reference.hash == keccak(raw)
        assert primed.encode() == reference.encode() == raw
        assert BUILDER.decode(raw).sender == expected  # lorachain.node.vm's get_sender, without priming


def _with_signature(raw: bytes, v: int, r: int, s: int) -> bytes:
    if raw[0] >= 0xC0:
        items = rlp.decode(raw)
        return rlp.encode([*items[:6], v, r, s])
    items = rlp.decode(raw[1:])
    return raw[:1] + rlp.encode([*items[:-3], v, r, s])


@pytest.mark.parametrize("kind", ["legacy-155", "dynamic-fee"])
def test_signatures_py_evm_should_judge_are_left_to_it(kind: str) -> None:
    raw = bytes(Account.sign_transaction(_fields(kind, random.Random(7)), KEY).raw_transaction)
    tx = BUILDER.decode(raw)
    v = tx.v if kind == "legacy-155" else tx.y_parity
    flipped_v = v ^ 1
    n = tx_sender.SECP256K1_N
    high_s = _with_signature(raw, flipped_v, tx.r, n - tx.s)  # the same signature with a high s (EIP-2)
    assert tx_sender.recover_sender(high_s) is None
    assert tx_sender.recover_sender(_with_signature(raw, v, 0, tx.s)) is None
    assert tx_sender.recover_sender(_with_signature(raw, v, n, tx.s)) is None
    bad_v = 30 if kind == "legacy-155" else 2
    assert tx_sender.recover_sender(_with_signature(raw, bad_v, tx.r, tx.s)) is None
    primed = BUILDER.decode(high_s)
    tx_sender.prime(primed, high_s)
    assert "sender" not in primed.__dict__ and "hash" not in primed.__dict__  # py-evm's own recovery decides
    if kind == "dynamic-fee":  # and the node's get_sender hands such a signature to py-evm as well
        assert vm.TypedTransaction.get_sender is not vm._py_evm_typed_sender
        assert BUILDER.decode(high_s).get_sender() == extract_transaction_sender(BUILDER.decode(high_s))


def test_unrecognised_bytes_give_none() -> None:
    assert tx_sender.recover_sender(b"") is None
    assert tx_sender.recover_sender(b"\x03" + rlp.encode([b"\x01"] * 14)) is None  # blob txs: py-evm decides
    assert tx_sender.recover_sender(rlp.encode([b"\x01"] * 8)) is None  # a list of the wrong length


def test_a_signature_that_is_no_point_gives_none() -> None:
    raw = bytes(Account.sign_transaction(_fields("dynamic-fee", random.Random(3)), KEY).raw_transaction)
    tx = BUILDER.decode(raw)
    # r must be the x coordinate of a curve point; x = 5 is not one (5^3 + 7 = 132 is no square mod p)
    assert tx_sender.recover_sender(_with_signature(raw, tx.y_parity, 5, tx.s)) is None
