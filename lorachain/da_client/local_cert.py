"""The certificate lorachain's local DA server issues (opaque to every client, read only by that server).

Layout, 41 bytes behind the version byte ``LOCAL_CERT_VERSION``::

    keccak256(blob) (32) | blob length in symbols (u32) | payload length (u32) | codec version (u8)

The cert is a pure function of the payload, so posting the same payload twice yields the same commitment,
and the server can check what it reads back against it. (A real EigenDA cert names a batch, a quorum's
signatures and a KZG commitment; clients do not look inside either.)
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak

from lorachain.da_client.blob_codec import ENCODING_VERSION, SYMBOL_SIZE, encode_payload
from lorachain.da_client.commitment import EigenDACert

LOCAL_CERT_VERSION = 0xD0  # outside EigenDA's own cert versions (0x00-0x03), so no proxy mistakes it
_SIZE = 32 + 4 + 4 + 1


class LocalCertError(ValueError):
    """Cert bytes this server did not issue."""


@dataclass(frozen=True)
class LocalCert:
    blob_hash: bytes
    blob_symbols: int
    payload_size: int
    codec_version: int = ENCODING_VERSION

    @classmethod
    def for_blob(cls, blob: bytes, payload_size: int) -> LocalCert:
        return cls(keccak(blob), len(blob) // SYMBOL_SIZE, payload_size)

    @classmethod
    def for_payload(cls, payload: bytes) -> tuple[LocalCert, bytes]:
        blob = encode_payload(payload)
        return cls.for_blob(blob, len(payload)), blob

    def encode(self) -> EigenDACert:
        body = (
            self.blob_hash
            + self.blob_symbols.to_bytes(4, "big")
            + self.payload_size.to_bytes(4, "big")
            + bytes((self.codec_version,))
        )
        return EigenDACert(LOCAL_CERT_VERSION, body)

    @classmethod
    def decode(cls, cert: EigenDACert) -> LocalCert:
        if cert.version != LOCAL_CERT_VERSION:
            raise LocalCertError(f"cert version 0x{cert.version:02x} was not issued by a lorachain DA server")
        body = cert.cert
        if len(body) != _SIZE:
            raise LocalCertError(f"local cert must be {_SIZE} bytes, got {len(body)}")
        return cls(body[:32], int.from_bytes(body[32:36], "big"), int.from_bytes(body[36:40], "big"), body[40])

    @property
    def key(self) -> bytes:
        """Where the blob is stored."""
        return self.blob_hash
