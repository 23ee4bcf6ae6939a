"""Where a node finds the bytes of an adapter its sidecar lacks: content-addressed sources.

A source is a local folder or an HTTP base URL holding ``0x<hash>.safetensors`` files and training
records ``0x<hash>.record`` (a sidecar's own adapter folder has that layout; another sidecar serves both
under ``/v1/lorachain/artifacts``), or the DA layer, ``da+http://host:port`` (an eigenda-proxy API in OP
keccak mode: an artifact's commitment is its own keccak, which is its id; ``lorachain adapter publish --da``
puts adapters and records there). Bytes are only accepted if they hash to the id asked for (the sidecar
checks again when they are registered), so a source need not be trusted.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from eth_utils import keccak

MAX_ARTIFACT_BYTES = 1 << 30
FETCH_TIMEOUT_S = 60.0
DA_PREFIX = "da+"


def _read_da(url: str, digest: bytes) -> bytes | None:
    from lorachain.da_client.client import DAClient, DAError
    from lorachain.da_client.commitment import CommitmentMode

    client = DAClient(url, CommitmentMode.OP_KECCAK, timeout_s=FETCH_TIMEOUT_S, retries=1)
    try:
        return client.get_by_keccak(digest)
    except DAError:
        return None
    finally:
        client.close()


class AdapterSources:
    def __init__(self, sources: list[str] | None = None) -> None:
        self.sources = list(sources or [])

    def fetch(self, adapter_id: str, suffix: str = ".safetensors") -> bytes | None:
        """The artifact whose keccak is ``adapter_id`` from the first source that has it, else None
        (``suffix`` ``.record`` for a training record)."""
        digest = bytes.fromhex(adapter_id[2:])
        name = f"0x{digest.hex()}{suffix}"
        for source in self.sources:
            blob = self._read(source, name, digest)
            if blob is not None and keccak(blob) == digest:
                return blob
        return None

    @staticmethod
    def _read(source: str, name: str, digest: bytes) -> bytes | None:
        if source.startswith(DA_PREFIX):
            return _read_da(source[len(DA_PREFIX) :], digest)
        if source.startswith(("http://", "https://")):
            try:
                with urllib.request.urlopen(f"{source.rstrip('/')}/{name}", timeout=FETCH_TIMEOUT_S) as response:
                    return response.read(MAX_ARTIFACT_BYTES)
            except (urllib.error.URLError, OSError):
                return None
        path = Path(source) / name
        return path.read_bytes() if path.is_file() else None
