"""The portal's TransactionDeposited event: round trips, the derived deposit, refusals."""

from __future__ import annotations

import os

import pytest

from lorachain.node.rollup.deposit_events import TRANSACTION_DEPOSITED_TOPIC, DepositEvent, DepositEventError
from lorachain.node.rollup.deposits import user_deposit_source_hash


def test_topic_is_the_op_stack_one() -> None:
    assert TRANSACTION_DEPOSITED_TOPIC.hex() == "b3813568d9991fc951961fcb4c784893574240a28925604d09fc577c55bb7c32"


@pytest.mark.parametrize("to", [b"\x42" * 20, None], ids=["call", "create"])
@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 500])
def test_round_trip(to: bytes | None, size: int) -> None:
    event = DepositEvent(os.urandom(20), to, 10**18, 5, 250_000, os.urandom(size))
    topics, data = event.log()
    assert len(data) % 32 == 0
    assert DepositEvent.from_log(topics, data) == event
    deposit = event.deposit(b"\x33" * 32, 7)
    assert deposit.source_hash == user_deposit_source_hash(b"\x33" * 32, 7)
    assert (deposit.sender, deposit.to, deposit.mint, deposit.value, deposit.gas, deposit.data) == (
        event.sender, to, 10**18, 5, 250_000, event.data)  # fmt: skip


def _bad(mutate) -> tuple[list[bytes], bytes]:
    topics, data = DepositEvent(os.urandom(20), os.urandom(20), 1, 2, 3, b"abc").log()
    return mutate(list(topics), bytearray(data))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t, d: (t[:3], d), "not a TransactionDeposited"),
        (lambda t, d: ([b"\x00" * 32, *t[1:]], d), "not a TransactionDeposited"),
        (lambda t, d: ([t[0], b"\x01" + t[1][1:], *t[2:]], d), "left-padded"),
        (lambda t, d: ([*t[:3], (1).to_bytes(32, "big")], d), "version 1"),
        (lambda t, d: (t, d[:40]), "too short"),
        (lambda t, d: (t, bytes(31) + b"\x40" + d[32:]), "offset"),
        (lambda t, d: (t, d + bytes(32)), "does not match"),
        (lambda t, d: (t, d[:-1] + b"\x01"), "padding"),
        (lambda t, d: (t, d[:32] + (10).to_bytes(32, "big") + bytes(32)), "shorter"),
        (lambda t, d: (t, d[:64 + 72] + b"\x02" + d[64 + 73 :]), "isCreation"),
    ],
)
def test_malformed_events(mutate, message: str) -> None:
    topics, data = _bad(mutate)
    with pytest.raises(DepositEventError, match=message):
        DepositEvent.from_log(topics, bytes(data))
