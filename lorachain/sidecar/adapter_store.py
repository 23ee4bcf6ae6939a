"""Three-tier adapter store: disk (every registered adapter), host memory (LRU), device memory (LRU).

Registering converts a peft folder into a content-addressed artifact ``<dir>/0x<hash>.safetensors``
(written atomically, so a crash never leaves a half file under a valid name). Serving a request asks for
an adapter by id: a device hit is free, a host hit copies to the device, a miss reads and verifies the
artifact from disk. Only ids live in memory for cold adapters, so a node can register many thousands.
On CPU the device tier and the host tier are the same memory; the host LRU alone is used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from lorachain.sidecar.adapters import (
    QuantizedAdapter,
    check_compatible,
    convert_peft,
    merge_adapters,
    parse_adapter,
)
from lorachain.sidecar.artifact import write_atomic
from lorachain.sidecar.checkpoint import LlamaConfig
from lorachain.sidecar.types import RequestError, UnknownAdapterError

DEFAULT_HOST_BYTES = 2 << 30
DEFAULT_DEVICE_BYTES = 1 << 30


@dataclass(frozen=True)
class AdapterInfo:
    id: str
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    nbytes: int

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "rank": self.rank,
            "alpha": self.alpha,
            "target_modules": list(self.target_modules),
            "nbytes": self.nbytes,
        }


def parse_adapter_id(adapter_id: str) -> bytes:
    """The 32-byte hash of an adapter id ``0x`` + 64 hex digits; :class:`RequestError` otherwise."""
    text = adapter_id.removeprefix("0x") if isinstance(adapter_id, str) else ""
    if len(text) != 64:
        raise RequestError(f"adapter id must be 0x followed by 64 hex digits, got {adapter_id!r}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise RequestError(f"adapter id must be 0x followed by 64 hex digits, got {adapter_id!r}") from None


class _Lru:
    """An LRU of adapters bounded by total bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: OrderedDict[bytes, QuantizedAdapter] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def get(self, key: bytes) -> QuantizedAdapter | None:
        item = self.items.get(key)
        if item is not None:
            self.items.move_to_end(key)
        return item

    def put(self, key: bytes, item: QuantizedAdapter) -> None:
        if key in self.items:
            self.items.move_to_end(key)
            return
        self.items[key] = item
        self.bytes += item.nbytes
        while self.bytes > self.capacity and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.nbytes
            self.evictions += 1

    def drop(self, key: bytes) -> None:
        item = self.items.pop(key, None)
        if item is not None:
            self.bytes -= item.nbytes


class AdapterStore:
    """Adapters for one base model, by id; thread-safe."""

    def __init__(
        self,
        directory: Path,
        config: LlamaConfig,
        device: torch.device | str = "cpu",
        host_bytes: int = DEFAULT_HOST_BYTES,
        device_bytes: int = DEFAULT_DEVICE_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.device = torch.device(device)
        self._host = _Lru(host_bytes)
        self._device = _Lru(device_bytes) if self.device.type != "cpu" else None
        self._lock = threading.RLock()
        self._registered: set[bytes] = set()
        for path in self.directory.glob("0x*.safetensors"):
            try:
                self._registered.add(parse_adapter_id(path.name.removesuffix(".safetensors")))
            except RequestError:
                continue
        self.hits_device = self.hits_host = self.loads_disk = 0

    # --- registration --------------------------------------------------------------------------------

    def register(self, source: str | Path) -> AdapterInfo:
        """Register a peft adapter folder or an adapter artifact file; return its info (idempotent)."""
        source = Path(source)
        if source.is_dir():
            blob, digest = convert_peft(source, self.config)
        elif source.is_file():
            blob = source.read_bytes()
            digest = parse_adapter(blob).hash
        else:
            raise RequestError(f"adapter path {source} does not exist")
        return self._add(blob, digest)

    def import_artifact(self, blob: bytes, expected_id: str) -> AdapterInfo:
        """Register artifact bytes fetched from elsewhere, if they hash to ``expected_id``."""
        digest = parse_adapter_id(expected_id)
        parse_adapter(blob, digest)  # CorruptArtifactError unless the bytes are that adapter
        return self._add(blob, digest)

    def artifact(self, adapter_id: str) -> bytes:
        """The stored artifact bytes of a registered adapter (what other nodes fetch by its hash)."""
        digest = parse_adapter_id(adapter_id)
        with self._lock:
            if digest not in self._registered:
                raise UnknownAdapterError(f"unknown adapter {adapter_id}")
            return self._path(digest).read_bytes()

    def merge(self, adapter_ids: list[str], weights_milli: list[int]) -> AdapterInfo:
        """Register the weighted linear merge of registered adapters."""
        adapters = [self.get(a) for a in adapter_ids]
        blob, digest = merge_adapters(adapters, weights_milli)
        return self._add(blob, digest)

    def _add(self, blob: bytes, digest: bytes) -> AdapterInfo:
        adapter = parse_adapter(blob, digest)
        check_compatible(adapter, self.config)
        with self._lock:
            path = self._path(digest)
            if not path.is_file():
                write_atomic(path, blob)
            self._registered.add(digest)
            self._host.put(digest, adapter)
        return _info(adapter)

    def unload(self, adapter_id: str) -> None:
        """Evict an adapter from memory and forget it; its artifact file is removed from disk."""
        digest = parse_adapter_id(adapter_id)
        with self._lock:
            if digest not in self._registered:
                raise UnknownAdapterError(f"unknown adapter {adapter_id}")
            self._registered.discard(digest)
            self._host.drop(digest)
            if self._device is not None:
                self._device.drop(digest)
            self._path(digest).unlink(missing_ok=True)

    # --- lookup --------------------------------------------------------------------------------------

    def get(self, adapter_id: str) -> QuantizedAdapter:
        """The adapter, resident on the serving device (loaded just in time)."""
        digest = parse_adapter_id(adapter_id)
        with self._lock:
            if digest not in self._registered:
                raise UnknownAdapterError(f"unknown adapter {adapter_id}")
            if self._device is not None:
                hit = self._device.get(digest)
                if hit is not None:
                    self.hits_device += 1
                    return hit
            adapter = self._host.get(digest)
            if adapter is None:
                self.loads_disk += 1
                adapter = parse_adapter(self._path(digest).read_bytes(), digest)
                check_compatible(adapter, self.config)
                self._host.put(digest, adapter)
            elif self._device is None:
                self.hits_device += 1  # on CPU host memory is device memory
                return adapter
            else:
                self.hits_host += 1
            if self._device is None:
                return adapter
            on_device = adapter.to(self.device)
            self._device.put(digest, on_device)
            return on_device

    def info(self, adapter_id: str) -> AdapterInfo:
        return _info(self.get(adapter_id))

    def __contains__(self, adapter_id: str) -> bool:
        try:
            return parse_adapter_id(adapter_id) in self._registered
        except RequestError:
            return False

    def ids(self) -> list[str]:
        with self._lock:
            return sorted("0x" + d.hex() for d in self._registered)

    def list(self) -> list[AdapterInfo]:
        """Info of the adapters resident in memory (cold ones are listed by :meth:`ids` only)."""
        with self._lock:
            return [_info(a) for a in self._host.items.values()]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "registered": len(self._registered),
                "host_resident": len(self._host.items),
                "host_bytes": self._host.bytes,
                "device_resident": len(self._device.items) if self._device else len(self._host.items),
                "hits_device": self.hits_device,
                "hits_host": self.hits_host,
                "loads_disk": self.loads_disk,
                "evictions": self._host.evictions + (self._device.evictions if self._device else 0),
            }

    def _path(self, digest: bytes) -> Path:
        return self.directory / f"0x{digest.hex()}.safetensors"


def _info(adapter: QuantizedAdapter) -> AdapterInfo:
    targets = tuple(sorted({short for _, short in adapter.modules}))
    return AdapterInfo(
        id=adapter.id, rank=adapter.rank, alpha=adapter.alpha, target_modules=targets, nbytes=adapter.nbytes
    )
