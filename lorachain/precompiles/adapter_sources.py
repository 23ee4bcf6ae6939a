"""Where a node finds the bytes of an adapter its sidecar lacks: content-addressed sources.

A source is a local folder or an HTTP base URL holding ``0x<hash>.safetensors`` files and training
records ``0x<hash>.record`` (a sidecar's own adapter folder has that layout; another sidecar serves both
under ``/v1/lorachain/artifacts``). Bytes are
only accepted if they hash to the id asked for (the sidecar checks again when they are registered), so a
source need not be trusted. Until the DA layer carries adapters, these are the configured sources.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from eth_utils import keccak

MAX_ARTIFACT_BYTES = 1 << 30
FETCH_TIMEOUT_S = 60.0


class AdapterSources:
    def __init__(self, sources: list[str] | None = None) -> None:
        self.sources = list(sources or [])

    def fetch(self, adapter_id: str, suffix: str = ".safetensors") -> bytes | None:
        """The artifact whose keccak is ``adapter_id`` from the first source that has it, else None
        (``suffix`` ``.record`` for a training record)."""
        digest = bytes.fromhex(adapter_id[2:])
        name = f"0x{digest.hex()}{suffix}"
        for source in self.sources:
            blob = self._read(source, name)
            if blob is not None and keccak(blob) == digest:
                return blob
        return None

    @staticmethod
    def _read(source: str, name: str) -> bytes | None:
        if source.startswith(("http://", "https://")):
            try:
                with urllib.request.urlopen(f"{source.rstrip('/')}/{name}", timeout=FETCH_TIMEOUT_S) as response:
                    return response.read(MAX_ARTIFACT_BYTES)
            except (urllib.error.URLError, OSError):
                return None
        path = Path(source) / name
        return path.read_bytes() if path.is_file() else None
