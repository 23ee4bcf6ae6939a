"""The rollup configuration (``rollup.json``): what ties an L2 chain to its L1, as op-node's rollup config.

One JSON object; addresses are 0x-hex, the genesis L1 block is the L1 block the rollup starts from (the
L2 genesis block's L1 origin).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class RollupConfigError(ValueError):
    """A rollup.json that cannot be used."""


@dataclass(frozen=True)
class L1BlockRef:
    number: int
    hash: bytes
    timestamp: int


def _address(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 42:
        raise RollupConfigError(f"{name} must be a 0x-prefixed 20-byte address")
    return bytes.fromhex(value[2:])


_ADDRESSES = ("deposit_portal", "batch_inbox", "batcher", "output_oracle", "proposer", "unsafe_block_signer")


@dataclass(frozen=True)
class RollupConfig:
    l1_chain_id: int
    l2_chain_id: int
    genesis_l1: L1BlockRef
    deposit_portal: bytes
    batch_inbox: bytes
    batcher: bytes
    output_oracle: bytes = bytes(20)  # L2OutputOracle on L1 (zero: no proposals)
    proposer: bytes = bytes(20)
    submission_interval: int = 10  # L2 blocks between output proposals
    l1_confirmations: int = 0  # L1 blocks an origin must be behind the L1 head
    max_sequencer_drift: int = 1800  # seconds an L2 block may run ahead of its L1 origin
    seq_window_size: int = 3600  # L1 blocks after its epoch a batch may be included in (then blocks are forced)
    block_time: int = 2
    base_fee_scalar: int = 1368
    blob_base_fee_scalar: int = 810_949
    unsafe_block_signer: bytes = bytes(20)  # signs gossiped unsafe blocks (op-node's p2p signer; zero: not set)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def batcher_hash(self) -> bytes:
        return bytes(12) + self.batcher

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["genesis_l1"] = {"number": self.genesis_l1.number, "hash": "0x" + self.genesis_l1.hash.hex(),
                             "timestamp": self.genesis_l1.timestamp}  # fmt: skip
        for name in _ADDRESSES:
            raw[name] = "0x" + getattr(self, name).hex()
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RollupConfig:
        try:
            genesis = raw["genesis_l1"]
            ref = L1BlockRef(int(genesis["number"]), bytes.fromhex(genesis["hash"][2:]), int(genesis["timestamp"]))
            if len(ref.hash) != 32:
                raise RollupConfigError("genesis_l1.hash must be 32 bytes")
            known = {name for name in cls.__dataclass_fields__}
            unknown = set(raw) - known
            values = {k: v for k, v in raw.items() if k in known and k not in ("genesis_l1", "extra")}
            for name in _ADDRESSES:
                if name in raw or name in ("deposit_portal", "batch_inbox", "batcher"):
                    values[name] = _address(raw[name], name)
            for name, value in values.items():
                if cls.__dataclass_fields__[name].type == "int" and (not isinstance(value, int) or value < 0):
                    raise RollupConfigError(f"{name} must be a non-negative integer, got {value!r}")
            extra = {**raw.get("extra", {}), **{k: raw[k] for k in unknown}}
            return cls(genesis_l1=ref, **values, extra=extra)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, RollupConfigError):
                raise
            raise RollupConfigError(f"invalid rollup config: {exc!r}") from exc

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RollupConfig:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RollupConfigError(f"cannot read rollup config {path}: {exc}") from exc
        return cls.from_json(raw)
