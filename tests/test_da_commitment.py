"""DA commitment forms and the local server's cert: round trips and refusals."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from lorachain.da_client.commitment import (
    CommitmentError,
    CommitmentMode,
    EigenDACert,
    KeccakCommitment,
    decode_altda_calldata,
    decode_commitment,
    decode_op_commitment,
    encode_altda_calldata,
)
from lorachain.da_client.local_cert import LOCAL_CERT_VERSION, LocalCert, LocalCertError

CERT = EigenDACert(0x02, b"\xaa" * 40)


def test_generic_and_standard_forms() -> None:
    generic = CERT.encode(CommitmentMode.OP_GENERIC)
    assert generic == b"\x01\x00\x02" + b"\xaa" * 40
    assert decode_commitment(generic, CommitmentMode.OP_GENERIC) == CERT
    standard = CERT.encode(CommitmentMode.STANDARD)
    assert standard == b"\x02" + b"\xaa" * 40
    assert decode_commitment(standard, CommitmentMode.STANDARD) == CERT
    with pytest.raises(CommitmentError):
        CERT.encode(CommitmentMode.OP_KECCAK)


def test_keccak_form() -> None:
    commitment = KeccakCommitment.of(b"payload")
    encoded = commitment.encode()
    assert encoded == b"\x00" + keccak(b"payload")
    assert decode_op_commitment(encoded) == commitment
    with pytest.raises(CommitmentError):
        commitment.encode(CommitmentMode.STANDARD)


def test_altda_calldata_round_trip() -> None:
    data = encode_altda_calldata(CERT.encode(CommitmentMode.OP_GENERIC))
    assert data[:1] == b"\x01"
    assert decode_altda_calldata(data) == CERT
    with pytest.raises(CommitmentError, match="not an alt-DA"):
        decode_altda_calldata(b"\x00" + data[1:])  # version 0: frames, not a commitment
    with pytest.raises(CommitmentError):
        encode_altda_calldata(b"\x07junk")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x00" + b"\x11" * 31, "33 bytes"),
        (b"\x01\x00\x02", "needs"),
        (b"\x01\x05\x02cert", "not EigenDA"),
        (b"\x09abc", "unknown commitment type"),
    ],
)
def test_malformed_op_commitments(data: bytes, message: str) -> None:
    with pytest.raises(CommitmentError, match=message):
        decode_op_commitment(data)


def test_standard_needs_a_cert() -> None:
    with pytest.raises(CommitmentError):
        decode_commitment(b"\x02", CommitmentMode.STANDARD)


def test_local_cert_round_trip_and_refusals() -> None:
    cert, blob = LocalCert.for_payload(b"x" * 100)
    assert cert.blob_hash == keccak(blob) and cert.payload_size == 100 and cert.blob_symbols == len(blob) // 32
    encoded = cert.encode()
    assert encoded.version == LOCAL_CERT_VERSION
    assert LocalCert.decode(encoded) == cert
    assert LocalCert.for_payload(b"x" * 100)[0] == cert  # a pure function of the payload
    with pytest.raises(LocalCertError, match="not issued"):
        LocalCert.decode(EigenDACert(0x02, encoded.cert))
    with pytest.raises(LocalCertError, match="41 bytes"):
        LocalCert.decode(EigenDACert(LOCAL_CERT_VERSION, encoded.cert[:-1]))
