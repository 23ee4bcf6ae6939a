"""lorachain.node.pyrlp_shortcuts against pyrlp: the same merged arguments and the same errors for every shape
of positional and keyword arguments (repeated field names included); field properties that read the same
attributes and still refuse writes."""

from __future__ import annotations

import random

import pytest
from eth.rlp.accounts import Account
from eth.vm.forks.prague.blocks import PragueBlockHeader

import lorachain.node.vm  # noqa: F401  (installs the shortcuts)
from lorachain.node import pyrlp_shortcuts as shortcuts


def _outcome(merge, *arguments):
    try:
        return "ok", merge(*arguments)
    except Exception as exc:  # pyrlp raises TypeError; the shortcut must raise the same, word for word
        return "error", type(exc), str(exc)


@pytest.mark.parametrize("names", [("a", "b", "c"), ("a", "b", "a"), (), ("x",)])
def test_merges_match_pyrlp(names: tuple[str, ...]) -> None:
    rng = random.Random(len(names))
    pool = [*names, "z"]
    pairs = [(shortcuts.merge_kwargs_to_args, shortcuts._pyrlp_merge_kwargs_to_args),
             (shortcuts.merge_args_to_kwargs, shortcuts._pyrlp_merge_args_to_kwargs)]  # fmt: skip
    shapes = set()
    for _ in range(3000):
        args = tuple(rng.randrange(9) for _ in range(rng.randint(0, len(names) + 1)))
        kwargs = {name: rng.randrange(9) for name in rng.sample(pool, rng.randint(0, len(pool)))}
        allow_missing = rng.random() < 0.5
        for ours, pyrlps in pairs:
            expected = _outcome(pyrlps, args, kwargs, names, allow_missing)
            assert _outcome(ours, args, kwargs, names, allow_missing) == expected, (args, kwargs, allow_missing)
            shapes.add(expected[0])
    assert shapes == ({"ok", "error"} if len(set(names)) == len(names) else {"error"})


def test_fields_read_the_same_and_stay_immutable() -> None:
    account = Account(7, 10**18, b"\x01" * 32, b"\x02" * 32)
    assert (account.nonce, account.balance, account.storage_root, account.code_hash) == (
        account._nonce, account._balance, account._storage_root, account._code_hash)  # fmt: skip
    with pytest.raises(AttributeError):
        account.balance = 1
    header = PragueBlockHeader(difficulty=0, block_number=5, gas_limit=30_000_000, timestamp=9)
    assert (header.block_number, header.gas_limit, header.timestamp) == (5, 30_000_000, 9)
    assert type(header).__dict__["gas_limit"].fget.__class__.__name__ == "attrgetter"


def test_constructors_match_pyrlp() -> None:
    """Objects built through the shortcut constructor equal pyrlp's (lists made tuples, nested too); a wrong
    argument count is pyrlp's TypeError, word for word."""
    from eth.rlp.logs import Log

    entries = [(b"\x01" * 20, [1, 2, 3], b"data"), (b"\x02" * 20, [], b""), (b"\x03" * 20, [[7]], b"x")]
    for address, topics, data in entries:
        ours, pyrlps = Log(address, topics, data), Log.__new__(Log)
        shortcuts._pyrlp_init(pyrlps, address, topics, data)
        assert (ours.address, ours.topics, ours.data) == (pyrlps.address, pyrlps.topics, pyrlps.data)
        assert isinstance(ours.topics, tuple)
    for arguments in [(b"\x01" * 20,), (b"\x01" * 20, (), b"", b"extra")]:
        errors = []
        for init in (shortcuts._serializable_init, shortcuts._pyrlp_init):
            with pytest.raises(TypeError) as raised:
                init(Log.__new__(Log), *arguments)
            errors.append(str(raised.value))
        assert errors[0] == errors[1]
