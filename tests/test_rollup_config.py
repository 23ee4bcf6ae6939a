"""rollup.json: round trip, unknown keys kept, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorachain.node.rollup.config import L1BlockRef, RollupConfig, RollupConfigError
from lorachain.rollup_cli import batch_inbox_address


def config() -> RollupConfig:
    return RollupConfig(900, 901, L1BlockRef(5, b"\x01" * 32, 1_700_000_000), b"\x02" * 20,
                        batch_inbox_address(901), b"\x03" * 20, l1_confirmations=2)  # fmt: skip


def test_round_trip(tmp_path: Path) -> None:
    original = config()
    original.save(tmp_path / "rollup.json")
    assert RollupConfig.load(tmp_path / "rollup.json") == original
    raw = original.to_json()
    raw["future_field"] = 1
    assert RollupConfig.from_json(raw).extra == {"future_field": 1}
    assert original.batcher_hash == bytes(12) + b"\x03" * 20
    assert batch_inbox_address(901)[:1] == b"\x00" and len(batch_inbox_address(901)) == 20


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("genesis_l1"), "invalid rollup config"),
        (lambda r: r.update(deposit_portal="0x1234"), "deposit_portal"),
        (lambda r: r["genesis_l1"].update(hash="0x" + "11" * 31), "32 bytes"),
        (lambda r: r.update(l1_chain_id="nine hundred"), "non-negative integer"),
        (lambda r: r.update(block_time=-1), "non-negative integer"),
    ],
)
def test_refusals(edit, message: str) -> None:
    raw = config().to_json()
    edit(raw)
    with pytest.raises(RollupConfigError, match=message):
        RollupConfig.from_json(raw)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RollupConfigError, match="cannot read"):
        RollupConfig.load(tmp_path / "bad.json")
