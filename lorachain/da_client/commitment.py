"""DA commitments as eigenda-proxy and OP alt-DA write them (``../shared/specs/eigenda.md``, op-stack.md).

Three forms of one commitment::

    OP generic   0x01 (generic type) | 0x00 (EigenDA layer) | version byte | cert     (proxy default mode)
    standard     version byte | cert                                              (?commitment_mode=standard)
    OP keccak    0x00 (keccak type) | keccak256(payload)                          (alt-DA keccak mode)

and the L1 batcher transaction that carries one: ``0x01`` (alt-DA calldata version) | OP commitment.
Certs are opaque here: only the DA server that issued one reads it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from eth_utils import keccak

OP_KECCAK_TYPE = 0x00
OP_GENERIC_TYPE = 0x01
EIGENDA_LAYER = 0x00
ALT_DA_CALLDATA_VERSION = 0x01  # batcher tx data: 0x00 = frames, 0x01 = alt-DA commitment


class CommitmentError(ValueError):
    """Bytes that are not a commitment of the expected form."""


class CommitmentMode(enum.StrEnum):
    OP_GENERIC = "optimism_generic"
    STANDARD = "standard"
    OP_KECCAK = "optimism_keccak"


@dataclass(frozen=True)
class EigenDACert:
    """A DA certificate: a version byte and the cert bytes it introduces (opaque here)."""

    version: int
    cert: bytes

    def encode(self, mode: CommitmentMode) -> bytes:
        if mode is CommitmentMode.OP_GENERIC:
            return bytes((OP_GENERIC_TYPE, EIGENDA_LAYER, self.version)) + self.cert
        if mode is CommitmentMode.STANDARD:
            return bytes((self.version,)) + self.cert
        raise CommitmentError(f"a cert has no {mode} form")


@dataclass(frozen=True)
class KeccakCommitment:
    """OP alt-DA keccak mode: the payload's own hash (the DA server checks it on put)."""

    digest: bytes

    @classmethod
    def of(cls, payload: bytes) -> KeccakCommitment:
        return cls(keccak(payload))

    def encode(self, mode: CommitmentMode = CommitmentMode.OP_KECCAK) -> bytes:
        if mode is not CommitmentMode.OP_KECCAK:
            raise CommitmentError(f"a keccak commitment has no {mode} form")
        return bytes((OP_KECCAK_TYPE,)) + self.digest


Commitment = EigenDACert | KeccakCommitment


def decode_commitment(data: bytes, mode: CommitmentMode) -> Commitment:
    """Parse ``data`` written in ``mode``'s form."""
    if mode is CommitmentMode.STANDARD:
        if len(data) < 2:
            raise CommitmentError("standard commitment needs a version byte and a cert")
        return EigenDACert(data[0], bytes(data[1:]))
    return decode_op_commitment(data)


def decode_op_commitment(data: bytes) -> Commitment:
    """Parse an OP alt-DA commitment (keccak or generic EigenDA)."""
    if not data:
        raise CommitmentError("empty commitment")
    kind = data[0]
    if kind == OP_KECCAK_TYPE:
        if len(data) != 33:
            raise CommitmentError(f"keccak commitment must be 33 bytes, got {len(data)}")
        return KeccakCommitment(bytes(data[1:]))
    if kind == OP_GENERIC_TYPE:
        if len(data) < 4:
            raise CommitmentError("generic commitment needs a DA layer byte, a version byte and a cert")
        if data[1] != EIGENDA_LAYER:
            raise CommitmentError(f"generic commitment for DA layer 0x{data[1]:02x}, not EigenDA (0x00)")
        return EigenDACert(data[2], bytes(data[3:]))
    raise CommitmentError(f"unknown commitment type 0x{kind:02x}")


def encode_altda_calldata(op_commitment: bytes) -> bytes:
    """The data of a batcher transaction that posts ``op_commitment`` (an OP-form commitment) to L1."""
    decode_op_commitment(op_commitment)  # refuse to post bytes no derivation could read
    return bytes((ALT_DA_CALLDATA_VERSION,)) + op_commitment


def decode_altda_calldata(calldata: bytes) -> Commitment:
    """The commitment in a batcher transaction's data (which must be alt-DA, version 0x01)."""
    if not calldata or calldata[0] != ALT_DA_CALLDATA_VERSION:
        raise CommitmentError("batcher transaction data is not an alt-DA commitment (version byte 0x01)")
    return decode_op_commitment(calldata[1:])
