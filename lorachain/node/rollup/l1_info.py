"""The L1-attributes deposit: first transaction of every L2 block (Ecotone layout, Isthmus extension).

    calldata (Ecotone, 164 bytes) = 0x440a5e20 | baseFeeScalar u32 | blobBaseFeeScalar u32 |
        sequenceNumber u64 | l1Timestamp u64 | l1Number u64 | basefee u256 | blobBaseFee u256 |
        l1BlockHash bytes32 | batcherHash bytes32
    Isthmus (176 bytes): selector 0x098999be, then the same, then operatorFeeScalar u32 | operatorFeeConstant u64

sent from the depositor account to the L1Block predeploy with 1,000,000 gas, no mint, no value
(``../shared/specs/op-stack.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lorachain.node.rollup.deposits import DepositTx, l1_info_source_hash

ECOTONE_SELECTOR = bytes.fromhex("440a5e20")
ISTHMUS_SELECTOR = bytes.fromhex("098999be")
ECOTONE_SIZE, ISTHMUS_SIZE = 164, 176
L1_INFO_DEPOSITOR = bytes.fromhex("deaddeaddeaddeaddeaddeaddeaddeaddead0001")
L1_BLOCK_ADDRESS = bytes.fromhex("4200000000000000000000000000000000000015")
L1_INFO_GAS = 1_000_000

# (field, width in bytes) after the selector, in order
_FIELDS = (
    ("base_fee_scalar", 4),
    ("blob_base_fee_scalar", 4),
    ("sequence_number", 8),
    ("l1_timestamp", 8),
    ("l1_number", 8),
    ("base_fee", 32),
    ("blob_base_fee", 32),
    ("l1_block_hash", 32),
    ("batcher_hash", 32),
)
_ISTHMUS_FIELDS = (("operator_fee_scalar", 4), ("operator_fee_constant", 8))


class L1InfoError(ValueError):
    """Calldata that is not an L1-attributes call."""


@dataclass(frozen=True)
class L1BlockInfo:
    base_fee_scalar: int
    blob_base_fee_scalar: int
    sequence_number: int
    l1_timestamp: int
    l1_number: int
    base_fee: int
    blob_base_fee: int
    l1_block_hash: bytes
    batcher_hash: bytes
    operator_fee_scalar: int | None = None  # Isthmus only
    operator_fee_constant: int | None = None

    @property
    def isthmus(self) -> bool:
        return self.operator_fee_scalar is not None

    def encode(self) -> bytes:
        fields = _FIELDS + (_ISTHMUS_FIELDS if self.isthmus else ())
        out = bytearray(ISTHMUS_SELECTOR if self.isthmus else ECOTONE_SELECTOR)
        for name, width in fields:
            value = getattr(self, name)
            out += value if isinstance(value, bytes) else value.to_bytes(width, "big")
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> L1BlockInfo:
        if data[:4] == ECOTONE_SELECTOR and len(data) == ECOTONE_SIZE:
            fields = _FIELDS
        elif data[:4] == ISTHMUS_SELECTOR and len(data) == ISTHMUS_SIZE:
            fields = _FIELDS + _ISTHMUS_FIELDS
        else:
            raise L1InfoError(f"not Ecotone ({ECOTONE_SIZE} B) or Isthmus ({ISTHMUS_SIZE} B) L1-info calldata")
        values: dict[str, int | bytes] = {}
        offset = 4
        for name, width in fields:
            raw = data[offset : offset + width]
            values[name] = bytes(raw) if name.endswith("hash") else int.from_bytes(raw, "big")
            offset += width
        return cls(**values)  # type: ignore[arg-type]

    def deposit(self) -> DepositTx:
        """The L1-attributes deposit transaction carrying this info."""
        return DepositTx(
            source_hash=l1_info_source_hash(self.l1_block_hash, self.sequence_number),
            sender=L1_INFO_DEPOSITOR,
            to=L1_BLOCK_ADDRESS,
            mint=0,
            value=0,
            gas=L1_INFO_GAS,
            is_system_tx=False,
            data=self.encode(),
        )
