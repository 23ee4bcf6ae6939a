"""A signed transaction's sender and hash, taken from its wire bytes.

py-evm recovers a sender by re-serializing the unsigned transaction through its rlp sedes and passing
the signature through eth-keys' object layers: about 170 µs a transaction on this project's machines, most
of what admitting a transaction costs. The received bytes already hold every field in canonical form (py-evm
decoded them strictly), so the signing payload is the received list without its last three items (v, r, s),
re-wrapped, and one libsecp256k1 call recovers the key.

:func:`prime` stores the results in the transaction's own caches (``sender``, and ``hash`` and encoding of a
typed transaction), so py-evm never recomputes them. It is an optimisation only: a transaction it does not
recognise, or a signature py-evm might judge differently (r or s out of range, a high s, an unknown v), is
left alone and py-evm's own recovery decides, with its own errors.
"""

from __future__ import annotations

import coincurve
import rlp
from eth.abc import SignedTransactionAPI

from lorachain.hashing import keccak
from lorachain.node.trie_nodes import encode_node, encode_uint, length_prefix

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
TYPED_WITH_SIGNATURE_AT_END = (1, 2, 4)  # EIP-2930, EIP-1559, EIP-7702: [..., y_parity, r, s]
REMEMBERED_ENCODING = "_encoded"  # where lorachain.node.vm keeps a typed transaction's (or receipt's) encoding


def _list_body(encoded: bytes) -> bytes:
    """The items of a canonical rlp list, without the list's own prefix."""
    first = encoded[0]
    start = 1 if first <= 0xF7 else 1 + first - 0xF7
    return encoded[start:]


def _without_signature(body: bytes, items: list) -> bytes:
    """``body`` (the encoded items) without its last three items (v, r, s)."""
    return body[: len(body) - sum(len(encode_node(item)) for item in items[-3:])]


def signing_hash_and_signature(
    raw: bytes, decoded_signature: tuple[int, int, int] | None = None
) -> tuple[bytes, bytes] | None:
    """(the hash the sender signed, the 65-byte r||s||recovery-id signature), or None if not recognised.

    ``raw`` must be canonical rlp (as every transaction py-evm decoded is): the signing payload is cut
    out of it byte for byte. ``decoded_signature``, the (y parity, r, s) a typed transaction was decoded to
    from ``raw``, spares decoding it again: their encodings' lengths say where the payload ends.
    """
    if not raw:
        return None
    if decoded_signature is not None and raw[0] in TYPED_WITH_SIGNATURE_AT_END:
        y_parity, r, s = decoded_signature
        if y_parity not in (0, 1) or r.bit_length() > 256 or s.bit_length() > 256:
            return None
        body = _list_body(raw[1:])
        unsigned = body[: len(body) - len(encode_uint(y_parity)) - len(encode_uint(r)) - len(encode_uint(s))]
        return _hash_and_signature(raw[:1] + length_prefix(len(unsigned), 0xC0) + unsigned, y_parity, r, s)
    if raw[0] >= 0xC0:  # a legacy transaction: rlp([nonce, gasPrice, gas, to, value, data, v, r, s])
        items = rlp.decode(raw)
        if len(items) != 9 or not all(isinstance(item, bytes) for item in items):
            return None
        unsigned = _without_signature(_list_body(raw), items)
        v = int.from_bytes(items[6], "big")
        if v in (27, 28):
            recovery_id = v - 27
        elif v >= 37:  # EIP-155: v = chain_id * 2 + 35 + recovery id, and the chain id is signed
            chain_id, recovery_id = divmod(v - 35, 2)
            unsigned += rlp.encode(chain_id) + b"\x80\x80"
        else:
            return None
        payload = length_prefix(len(unsigned), 0xC0) + unsigned
    elif raw[0] in TYPED_WITH_SIGNATURE_AT_END:  # type || rlp([..., y_parity, r, s])
        items = rlp.decode(raw[1:])
        if len(items) < 4 or not all(isinstance(item, bytes) for item in items[-3:]) or items[-3] not in (b"", b"\x01"):
            return None
        recovery_id = 1 if items[-3] else 0
        unsigned = _without_signature(_list_body(raw[1:]), items)
        payload = raw[:1] + length_prefix(len(unsigned), 0xC0) + unsigned
    else:
        return None
    return _hash_and_signature(payload, recovery_id, int.from_bytes(items[-2], "big"), int.from_bytes(items[-1], "big"))


def _hash_and_signature(payload: bytes, recovery_id: int, r: int, s: int) -> tuple[bytes, bytes] | None:
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        return None
    return keccak(payload), r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([recovery_id])


def recover_sender(raw: bytes, decoded_signature: tuple[int, int, int] | None = None) -> bytes | None:
    """The 20-byte address that signed ``raw``, or None where py-evm's recovery should decide
    (``decoded_signature``: see :func:`signing_hash_and_signature`)."""
    parts = signing_hash_and_signature(raw, decoded_signature)
    if parts is None:
        return None
    message_hash, signature = parts
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(signature, message_hash, hasher=None)
    except Exception:  # not a point on the curve: py-evm raises its own error for this signature
        return None
    return keccak(public_key.format(compressed=False)[1:])[12:]


def prime(tx: SignedTransactionAPI, raw: bytes) -> None:
    """Fill ``tx``'s cached sender (and a typed transaction's cached hash) from the bytes it was decoded from."""
    typed = getattr(tx, "type_id", None) is not None and bool(raw) and raw[0] in TYPED_WITH_SIGNATURE_AT_END
    sender = recover_sender(raw, (tx.y_parity, tx.r, tx.s) if typed else None)
    if sender is None:
        return
    tx.__dict__["sender"] = sender  # SignedTransactionMethods.sender is a cached_property
    if getattr(tx, "type_id", None) is not None:
        tx.__dict__["hash"] = keccak(raw)  # TypedTransaction.hash: cached_property of keccak(encode())
        tx.__dict__[REMEMBERED_ENCODING] = raw  # canonical, as py-evm decoded it: its encode() gives these bytes
