"""The unsafe-block gossip wire format, as op-node's (OP Stack specs, protocol/rollup-node-p2p.md).

- Topic: ``/optimism/<l2 chain id>/<n>/blocks``, n = 2 for payload V3 (Ecotone), 3 for V4 (Isthmus: adds
  ``withdrawalsRoot``). This chain's headers are Prague-shaped (Isthmus is OP's Prague), so the sequencer
  publishes V4; V3 messages are read too (their withdrawals root is the empty trie's, as before Isthmus).
- Message data: ``snappy_block(signature[65] ++ payload)`` (snappy *block* format, as Go's ``snappy.Encode``:
  a varint of the decoded length, then the compressed body; not the framed format).
- ``payload`` (V3/V4): ``parentBeaconBlockRoot[32] ++ SSZ(ExecutionPayload)`` (the execution payload envelope).
- ``signature`` = secp256k1 ``r ++ s ++ v`` (v in {0, 1}) over
  ``keccak256(domain[32] ++ chain_id[32, big-endian] ++ keccak256(payload))``, domain = 32 zero bytes
  (``SigningDomainBlocksV1``), by the rollup's unsafe-block signer key.
- Message id: ``sha256(domain[4] ++ uint64_le(len(topic)) ++ topic ++ data')[:20]`` with domain ``01000000`` and
  ``data'`` the decompressed data when the data is valid snappy (within the size limit), else ``00000000`` and
  the raw data (the eth2 Altair rule op-node uses).

SSZ ExecutionPayload (little-endian integers; fixed part then the variable fields by 4-byte offsets):
``parentHash[32] feeRecipient[20] stateRoot[32] receiptsRoot[32] logsBloom[256] prevRandao[32] blockNumber u64
gasLimit u64 gasUsed u64 timestamp u64 extraData(offset) baseFeePerGas u256 blockHash[32] transactions(offset)
withdrawals(offset) blobGasUsed u64 excessBlobGas u64 [V4: withdrawalsRoot[32]]``; transactions is a list of
byte lists (offsets, then the EIP-2718 encodings); a withdrawal is 44 bytes (index u64, validator u64,
address[20], amount u64).

Payloads are turned into py-evm blocks (:func:`block_of_envelope`) by rebuilding the header; the header's
``requestsHash`` is the empty-requests hash (EIP-7685, as OP chains have no execution-layer requests), and
the rebuilt header's hash must equal ``blockHash``.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from dataclasses import dataclass
from typing import Any

import cramjam
from eth_keys import keys
from eth_keys.exceptions import BadSignature
from eth_utils import keccak

from lorachain.node.ordered_trie import ordered_trie_root_and_nodes

SIGNING_DOMAIN_BLOCKS_V1 = bytes(32)
MESSAGE_DOMAIN_INVALID_SNAPPY = bytes(4)
MESSAGE_DOMAIN_VALID_SNAPPY = b"\x01\x00\x00\x00"
MAX_GOSSIP_SIZE = 10 * 1024 * 1024  # op-node's maxGossipSize (decompressed)
SIGNATURE_SIZE = 65
V3, V4 = 3, 4  # block payload versions (topic index = version - 1)
BLOCK_VERSIONS = (V3, V4)
EMPTY_TRIE_ROOT = bytes.fromhex("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")
EMPTY_REQUESTS_HASH = hashlib.sha256(b"").digest()
EMPTY_UNCLES_HASH = bytes.fromhex("1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347")
_FIXED_V3 = 32 + 20 + 32 + 32 + 256 + 32 + 8 * 4 + 4 + 32 + 32 + 4 + 4 + 8 + 8  # 528


class GossipDecodeError(ValueError):
    """Gossip data that is not a well-formed signed block message."""


def blocks_topic(chain_id: int, version: int) -> str:
    if version not in BLOCK_VERSIONS:
        raise ValueError(f"unsupported block payload version {version}")
    return f"/optimism/{chain_id}/{version - 1}/blocks"


def topic_version(topic: str) -> int | None:
    """The payload version a blocks topic carries (None: not a blocks topic this node reads)."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[1] != "optimism" or parts[4] != "blocks" or not parts[3].isdigit():
        return None
    version = int(parts[3]) + 1
    return version if version in BLOCK_VERSIONS else None


# -- the execution payload -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Withdrawal:
    index: int
    validator_index: int
    address: bytes
    amount: int


@dataclass(frozen=True)
class ExecutionPayload:
    parent_hash: bytes
    fee_recipient: bytes
    state_root: bytes
    receipts_root: bytes
    logs_bloom: bytes
    prev_randao: bytes
    block_number: int
    gas_limit: int
    gas_used: int
    timestamp: int
    extra_data: bytes
    base_fee_per_gas: int
    block_hash: bytes
    transactions: tuple[bytes, ...]
    withdrawals: tuple[Withdrawal, ...] = ()
    blob_gas_used: int = 0
    excess_blob_gas: int = 0
    withdrawals_root: bytes | None = None  # V4 only

    def encode(self, version: int) -> bytes:
        if version == V4 and self.withdrawals_root is None:
            raise ValueError("a V4 payload needs withdrawals_root")
        fixed_size = _FIXED_V3 + (32 if version == V4 else 0)
        txs = _encode_byte_lists(self.transactions)
        withdrawals = b"".join(
            struct.pack("<QQ", w.index, w.validator_index) + w.address + struct.pack("<Q", w.amount)
            for w in self.withdrawals
        )
        extra_offset = fixed_size
        txs_offset = extra_offset + len(self.extra_data)
        withdrawals_offset = txs_offset + len(txs)
        parts = [
            self.parent_hash, self.fee_recipient, self.state_root, self.receipts_root, self.logs_bloom,
            self.prev_randao,
            struct.pack("<QQQQI", self.block_number, self.gas_limit, self.gas_used, self.timestamp, extra_offset),
            self.base_fee_per_gas.to_bytes(32, "little"), self.block_hash,
            struct.pack("<IIQQ", txs_offset, withdrawals_offset, self.blob_gas_used, self.excess_blob_gas),
        ]  # fmt: skip
        if version == V4:
            parts.append(self.withdrawals_root)  # type: ignore[arg-type]
        fixed = b"".join(parts)
        if len(fixed) != fixed_size:
            raise ValueError("a payload field has the wrong size")
        return fixed + self.extra_data + txs + withdrawals

    @classmethod
    def decode(cls, data: bytes, version: int) -> ExecutionPayload:
        fixed_size = _FIXED_V3 + (32 if version == V4 else 0)
        if len(data) < fixed_size:
            raise GossipDecodeError(f"payload of {len(data)} bytes is shorter than its fixed part ({fixed_size})")
        pos = 0

        def take(n: int) -> bytes:
            nonlocal pos
            pos += n
            return data[pos - n : pos]

        parent_hash, fee_recipient, state_root, receipts_root = take(32), take(20), take(32), take(32)
        logs_bloom, prev_randao = take(256), take(32)
        number, gas_limit, gas_used, timestamp, extra_offset = struct.unpack("<QQQQI", take(36))
        base_fee = int.from_bytes(take(32), "little")
        block_hash = take(32)
        txs_offset, withdrawals_offset, blob_gas_used, excess_blob_gas = struct.unpack("<IIQQ", take(24))
        withdrawals_root = take(32) if version == V4 else None
        if not extra_offset == fixed_size <= txs_offset <= withdrawals_offset <= len(data):
            raise GossipDecodeError("payload offsets out of order or out of range")
        extra_data = data[extra_offset:txs_offset]
        if len(extra_data) > 32:
            raise GossipDecodeError("extraData longer than 32 bytes")
        transactions = _decode_byte_lists(data[txs_offset:withdrawals_offset])
        raw_withdrawals = data[withdrawals_offset:]
        if len(raw_withdrawals) % 44:
            raise GossipDecodeError("withdrawals are not a whole number of 44-byte entries")
        withdrawals = tuple(
            Withdrawal(*struct.unpack("<QQ", raw_withdrawals[i : i + 16]), raw_withdrawals[i + 16 : i + 36],
                       struct.unpack("<Q", raw_withdrawals[i + 36 : i + 44])[0])
            for i in range(0, len(raw_withdrawals), 44)
        )  # fmt: skip
        return cls(parent_hash, fee_recipient, state_root, receipts_root, logs_bloom, prev_randao, number, gas_limit,
                   gas_used, timestamp, extra_data, base_fee, block_hash, transactions, withdrawals, blob_gas_used,
                   excess_blob_gas, withdrawals_root)  # fmt: skip


def _encode_byte_lists(items: tuple[bytes, ...]) -> bytes:
    offsets = bytearray()
    at = 4 * len(items)
    for item in items:
        offsets += struct.pack("<I", at)
        at += len(item)
    return bytes(offsets) + b"".join(items)


def _decode_byte_lists(data: bytes) -> tuple[bytes, ...]:
    if not data:
        return ()
    if len(data) < 4:
        raise GossipDecodeError("truncated transaction list")
    first = struct.unpack("<I", data[:4])[0]
    if first % 4 or first == 0 or first > len(data):
        raise GossipDecodeError("bad transaction list offset")
    offsets = [struct.unpack("<I", data[i : i + 4])[0] for i in range(0, first, 4)] + [len(data)]
    if any(b < a for a, b in itertools.pairwise(offsets)):
        raise GossipDecodeError("transaction offsets out of order")
    items = tuple(data[a:b] for a, b in itertools.pairwise(offsets))
    if any(not item for item in items):
        raise GossipDecodeError("empty transaction in the list")
    return items


@dataclass(frozen=True)
class PayloadEnvelope:
    """What a V3/V4 block message carries: the parent beacon block root, then the payload."""

    parent_beacon_block_root: bytes
    payload: ExecutionPayload

    def encode(self, version: int) -> bytes:
        return self.parent_beacon_block_root + self.payload.encode(version)

    @classmethod
    def decode(cls, data: bytes, version: int) -> PayloadEnvelope:
        if len(data) < 32:
            raise GossipDecodeError("envelope shorter than its parent beacon block root")
        return cls(data[:32], ExecutionPayload.decode(data[32:], version))


# -- signatures ------------------------------------------------------------------------------------------
def signing_hash(chain_id: int, payload: bytes, domain: bytes = SIGNING_DOMAIN_BLOCKS_V1) -> bytes:
    if len(domain) != 32 or chain_id < 0 or chain_id.bit_length() > 256:
        raise ValueError("bad signing domain or chain id")
    return keccak(domain + chain_id.to_bytes(32, "big") + keccak(payload))


def sign_payload(private_key: bytes, chain_id: int, payload: bytes) -> bytes:
    """The 65-byte ``r ++ s ++ v`` signature (v in {0, 1}) of the unsafe-block signer over ``payload``."""
    return keys.PrivateKey(private_key).sign_msg_hash(signing_hash(chain_id, payload)).to_bytes()


def recover_signer(signature: bytes, chain_id: int, payload: bytes) -> bytes:
    """The address whose key made ``signature`` (:class:`GossipDecodeError` if it is no valid signature)."""
    if len(signature) != SIGNATURE_SIZE:
        raise GossipDecodeError("signature is not 65 bytes")
    try:
        sig = keys.Signature(signature)
        return sig.recover_public_key_from_msg_hash(signing_hash(chain_id, payload)).to_canonical_address()
    except (BadSignature, ValueError) as exc:
        raise GossipDecodeError(f"unrecoverable signature: {exc}") from exc


# -- messages --------------------------------------------------------------------------------------------
def _decoded_len(data: bytes) -> int:
    """The snappy block preamble: the decoded length as a varint."""
    result = shift = 0
    for i, byte in enumerate(data[:5]):
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7
        if i == 4:
            break
    raise GossipDecodeError("bad snappy length preamble")


def snappy_decompress(data: bytes, limit: int = MAX_GOSSIP_SIZE) -> bytes:
    if _decoded_len(data) > limit:
        raise GossipDecodeError(f"message decompresses past {limit} bytes")
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise GossipDecodeError(f"not snappy data: {exc}") from exc


def encode_message(signature: bytes, payload: bytes) -> bytes:
    if len(signature) != SIGNATURE_SIZE:
        raise ValueError("signature must be 65 bytes")
    return bytes(cramjam.snappy.compress_raw(signature + payload))


def decode_message(data: bytes) -> tuple[bytes, bytes]:
    """(signature, payload) of a message's data."""
    raw = snappy_decompress(data)
    if len(raw) < SIGNATURE_SIZE + 32:
        raise GossipDecodeError(f"message of {len(raw)} bytes is too short")
    return raw[:SIGNATURE_SIZE], raw[SIGNATURE_SIZE:]


def message_id(topic: str, data: bytes) -> bytes:
    try:
        body, domain = snappy_decompress(data), MESSAGE_DOMAIN_VALID_SNAPPY
    except GossipDecodeError:
        body, domain = data, MESSAGE_DOMAIN_INVALID_SNAPPY
    encoded_topic = topic.encode()
    return hashlib.sha256(domain + struct.pack("<Q", len(encoded_topic)) + encoded_topic + body).digest()[:20]


# -- blocks <-> payloads ---------------------------------------------------------------------------------
def envelope_of_block(block: Any) -> PayloadEnvelope:
    """The execution payload envelope of a (Prague-shaped) py-evm block."""
    header = block.header
    raw_txs = tuple(getattr(tx, "signed", tx).encode() for tx in block.transactions)  # impersonated: stand-in
    payload = ExecutionPayload(
        parent_hash=header.parent_hash, fee_recipient=header.coinbase, state_root=header.state_root,
        receipts_root=header.receipt_root, logs_bloom=header.bloom.to_bytes(256, "big"), prev_randao=header.mix_hash,
        block_number=header.block_number, gas_limit=header.gas_limit, gas_used=header.gas_used,
        timestamp=header.timestamp, extra_data=header.extra_data, base_fee_per_gas=header.base_fee_per_gas,
        block_hash=header.hash, transactions=raw_txs, withdrawals=(),
        blob_gas_used=getattr(header, "blob_gas_used", 0), excess_blob_gas=getattr(header, "excess_blob_gas", 0),
        withdrawals_root=getattr(header, "withdrawals_root", EMPTY_TRIE_ROOT),
    )  # fmt: skip
    return PayloadEnvelope(getattr(header, "parent_beacon_block_root", bytes(32)), payload)


def block_version(block: Any) -> int:
    return V4 if hasattr(block.header, "requests_hash") else V3


def block_of_envelope(envelope: PayloadEnvelope, block_class: type, tx_builder: Any) -> Any:
    """The py-evm block a payload describes (:class:`GossipDecodeError` when it cannot be one, or its rebuilt
    header's hash is not ``blockHash``)."""
    p = envelope.payload
    if p.withdrawals:
        raise GossipDecodeError("OP Stack payloads carry no withdrawals")
    try:
        txs = [tx_builder.decode(raw) for raw in p.transactions]
    except Exception as exc:
        raise GossipDecodeError(f"undecodable transaction: {type(exc).__name__}: {exc}") from exc
    header_class = dict(block_class._meta.fields)["header"]
    fields: dict[str, Any] = dict(
        parent_hash=p.parent_hash, uncles_hash=EMPTY_UNCLES_HASH, coinbase=p.fee_recipient, state_root=p.state_root,
        transaction_root=ordered_trie_root_and_nodes(list(p.transactions))[0], receipt_root=p.receipts_root,
        bloom=int.from_bytes(p.logs_bloom, "big"), difficulty=0, block_number=p.block_number, gas_limit=p.gas_limit,
        gas_used=p.gas_used, timestamp=p.timestamp, extra_data=p.extra_data, mix_hash=p.prev_randao, nonce=bytes(8),
        base_fee_per_gas=p.base_fee_per_gas, withdrawals_root=p.withdrawals_root or EMPTY_TRIE_ROOT,
        blob_gas_used=p.blob_gas_used, excess_blob_gas=p.excess_blob_gas,
        parent_beacon_block_root=envelope.parent_beacon_block_root, requests_hash=EMPTY_REQUESTS_HASH,
    )  # fmt: skip
    known = set(header_class._meta.field_names)
    try:
        header = header_class(**{k: v for k, v in fields.items() if k in known})
    except Exception as exc:
        raise GossipDecodeError(f"payload makes no valid header: {exc}") from exc
    if header.hash != p.block_hash:
        raise GossipDecodeError(f"block hash mismatch: payload says 0x{p.block_hash.hex()}, "
                                f"its header hashes to 0x{header.hash.hex()}")  # fmt: skip
    return block_class(header, transactions=txs, uncles=[], withdrawals=[])
