"""The unsafe-block gossip wire format (lorachain.node.p2p.codec): SSZ payloads, envelopes, snappy messages,
signatures, message ids, and real blocks through it and back."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import cramjam
import pytest
from eth_account import Account
from eth_keys import keys
from eth_utils import keccak

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import parse_genesis
from lorachain.node.chain import Blockchain
from lorachain.node.p2p import codec
from lorachain.node.p2p.codec import V3, V4, ExecutionPayload, GossipDecodeError, PayloadEnvelope
from lorachain.node.rollup.deposit_vm import deposit_transaction
from lorachain.node.rollup.l1_info import L1BlockInfo
from lorachain.rollup_cli import op_stack_genesis

SIGNER = dev_accounts()[9]


def _payload(**overrides) -> ExecutionPayload:
    fields = dict(parent_hash=b"\x01" * 32, fee_recipient=b"\x02" * 20, state_root=b"\x03" * 32,
                  receipts_root=b"\x04" * 32, logs_bloom=b"\x05" * 256, prev_randao=b"\x06" * 32, block_number=7,
                  gas_limit=30_000_000, gas_used=21_000, timestamp=1_700_000_000, extra_data=b"xy",
                  base_fee_per_gas=2**200 + 5, block_hash=b"\x09" * 32, transactions=(b"\x02\xaa", b"\xf8\x01\x02"),
                  blob_gas_used=0, excess_blob_gas=3, withdrawals_root=b"\x0a" * 32)  # fmt: skip
    return ExecutionPayload(**{**fields, **overrides})


@pytest.mark.parametrize("version", [V3, V4], ids=["v3", "v4"])
def test_payload_round_trip_and_layout(version: int) -> None:
    payload = _payload() if version == V4 else _payload(withdrawals_root=None)
    encoded = payload.encode(version)
    fixed = 528 if version == V3 else 560
    # extraData's offset is the end of the fixed part; the transactions follow it (two 4-byte offsets first)
    assert struct.unpack("<I", encoded[436:440])[0] == fixed
    assert encoded[fixed : fixed + 2] == b"xy"
    assert encoded[fixed + 2 : fixed + 10] == struct.pack("<II", 8, 10)
    assert encoded[440:472] == (2**200 + 5).to_bytes(32, "little")
    assert ExecutionPayload.decode(encoded, version) == payload
    envelope = PayloadEnvelope(b"\x0b" * 32, payload)
    assert PayloadEnvelope.decode(envelope.encode(version), version) == envelope


def test_empty_transaction_list_and_withdrawals() -> None:
    payload = _payload(transactions=(), withdrawals=(codec.Withdrawal(1, 2, b"\x03" * 20, 4),))
    assert ExecutionPayload.decode(payload.encode(V4), V4) == payload


@pytest.mark.parametrize(
    "mangle",
    [lambda b: b[:100], lambda b: b[:436] + struct.pack("<I", 9) + b[440:], lambda b: b[:-1],
     lambda b: b[:560] + b"\x00" * 40],
    ids=["truncated", "bad-extra-offset", "cut-transaction", "extra-too-long"],
)  # fmt: skip
def test_malformed_payloads_are_refused(mangle) -> None:
    encoded = _payload(transactions=(b"\x02\xaa",)).encode(V4)
    with pytest.raises(GossipDecodeError):
        ExecutionPayload.decode(mangle(encoded), V4)


def test_signing_hash_is_the_op_node_rule() -> None:
    payload = b"some payload bytes"
    expected = keccak(bytes(32) + (901).to_bytes(32, "big") + keccak(payload))
    assert codec.signing_hash(901, payload) == expected


def test_sign_and_recover() -> None:
    payload = b"\x00" * 32 + _payload().encode(V4)
    signature = codec.sign_payload(SIGNER.private_key, 901, payload)
    assert len(signature) == 65 and signature[64] in (0, 1)
    assert codec.recover_signer(signature, 901, payload) == bytes.fromhex(SIGNER.address[2:])
    # the same key over the same bytes as eth_keys would sign the op-node signing hash
    assert keys.PrivateKey(SIGNER.private_key).sign_msg_hash(codec.signing_hash(901, payload)).to_bytes() == signature
    assert codec.recover_signer(signature, 902, payload) != bytes.fromhex(SIGNER.address[2:])  # other chain
    with pytest.raises(GossipDecodeError):
        codec.recover_signer(signature[:64], 901, payload)
    with pytest.raises(GossipDecodeError):
        codec.recover_signer(signature[:64] + b"\x07", 901, payload)


def test_message_snappy_block_format_and_id() -> None:
    payload = b"\x00" * 32 + _payload().encode(V4)
    signature = codec.sign_payload(SIGNER.private_key, 901, payload)
    data = codec.encode_message(signature, payload)
    assert bytes(cramjam.snappy.decompress_raw(data)) == signature + payload  # block format, not framed
    assert codec.decode_message(data) == (signature, payload)
    topic = codec.blocks_topic(901, V4)
    assert topic == "/optimism/901/3/blocks" and codec.blocks_topic(901, V3) == "/optimism/901/2/blocks"
    assert codec.topic_version(topic) == V4 and codec.topic_version("/optimism/901/0/blocks") is None
    body = signature + payload
    expected = hashlib.sha256(b"\x01\x00\x00\x00" + struct.pack("<Q", len(topic)) + topic.encode() + body).digest()
    assert codec.message_id(topic, data) == expected[:20]
    junk = b"\xff\xff\xff\xff\xff\xff"
    expected = hashlib.sha256(bytes(4) + struct.pack("<Q", len(topic)) + topic.encode() + junk).digest()
    assert codec.message_id(topic, junk) == expected[:20]
    with pytest.raises(GossipDecodeError):
        codec.decode_message(junk)
    with pytest.raises(GossipDecodeError):  # a bomb: claims more than the size limit
        codec.snappy_decompress(b"\x80\x80\x80\x08" + b"\x00" * 10)


def test_real_blocks_through_the_codec(tmp_path: Path) -> None:
    genesis = parse_genesis(op_stack_genesis(with_predeploys=False))
    chain = Blockchain.initialize(tmp_path / "a", genesis)
    other = Blockchain.initialize(tmp_path / "b", genesis)
    try:
        info = L1BlockInfo(base_fee_scalar=1368, blob_base_fee_scalar=810_949, sequence_number=0, l1_timestamp=1,
                           l1_number=1, base_fee=7, blob_base_fee=1, l1_block_hash=b"\x11" * 32,
                           batcher_hash=bytes(32))  # fmt: skip
        sender = dev_accounts()[0]
        tx = Account.sign_transaction({"type": 2, "chainId": 901, "nonce": 0, "to": "0x" + "22" * 20, "value": 5,
                                       "gas": 21_000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 1},
                                      sender.private_key)  # fmt: skip
        vm = chain.chain_class.get_vm_class_for_block_number(1)
        user_tx = vm.get_transaction_builder().decode(bytes(tx.raw_transaction))
        built = chain.build_block([deposit_transaction(info.deposit()), user_tx], timestamp=chain.head.timestamp + 2,
                                  coinbase=b"\x33" * 20, mix_hash=b"\x44" * 32)  # fmt: skip
        block = built.block
        assert len(block.transactions) == 2
        assert codec.block_version(block) == V4
        envelope = codec.envelope_of_block(block)
        wire = envelope.encode(V4)
        again = codec.block_of_envelope(PayloadEnvelope.decode(wire, V4), vm.get_block_class(),
                                        vm.get_transaction_builder())  # fmt: skip
        assert again.hash == block.hash
        assert [t.hash for t in again.transactions] == [t.hash for t in block.transactions]
        imported = other.import_block(again)  # the rebuilt block executes to the same state elsewhere
        assert imported.hash == block.hash and other.head.hash == block.hash
        tampered = PayloadEnvelope(envelope.parent_beacon_block_root,
                                   ExecutionPayload(**{**envelope.payload.__dict__, "gas_used": 1}))  # fmt: skip
        with pytest.raises(GossipDecodeError, match="block hash mismatch"):
            codec.block_of_envelope(tampered, vm.get_block_class(), vm.get_transaction_builder())
    finally:
        chain.close()
        other.close()
