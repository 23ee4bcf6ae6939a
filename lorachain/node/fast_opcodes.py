"""A faster opcode table for py-evm: the same opcodes, the same rules, fewer Python calls per step.

py-evm runs each opcode as ``_FastOpcode.__call__`` -> ``computation.consume_gas`` -> ``GasMeter.consume_gas``
-> the logic function -> ``computation.stack_*`` -> ``Stack.*``: five to seven calls for a ``DUP1``. At ~0.1 µs
a call that is most of the ~3-10 µs an opcode costs here, and PUSH, DUP, SWAP, POP, JUMPDEST and the simple
arithmetic make ~75 % of the opcodes compiled Solidity runs. :func:`fast_opcodes` returns a fork's table where

- those opcodes are one call each, working on the stack's list and the gas meter directly;
- SLOAD and SSTORE (EIP-2929 access lists, EIP-2200/3529 net metering) and LOG0-LOG4 are one call each too,
  reading and writing the account DB's journals directly (an increment's two SLOADs, SSTORE and LOG were
  ~40% of its EVM time);
- every other plain opcode (a ``_FastOpcode``) charges its constant gas inline before its logic function;
- everything else (calls, creates, copies, ...) is py-evm's own object, untouched.

An opcode is replaced only where the fork's table holds py-evm's own logic function for it (checked by
identity; SSTORE and LOG by the schedule or topic count inside py-evm's ``ensure_no_static`` wrapper), so a
fork that redefines one keeps its version. Semantics are py-evm's exactly: gas is charged
before the operation (an out-of-gas error is py-evm's own, raised by ``GasMeter.consume_gas``), then stack
underflow and overflow raise the same exceptions with the same messages; only py-evm's ``debug2`` gas log
lines are not written by the replaced opcodes. ``tests/test_fast_opcodes.py`` runs random programs through
both tables and compares stack, gas, program counter, memory, logs and error (storage programs also the
refund, the slots and their warmth), and the whole suite runs on this table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from eth import constants
from eth.db.account import IS_PRESENT_VALUE
from eth.exceptions import (
    FullStack,
    Halt,
    InsufficientStack,
    InvalidInstruction,
    InvalidJumpDestination,
    OutOfGas,
    WriteProtection,
)
from eth.validation import validate_uint256
from eth.vm import mnemonics
from eth.vm.computation import NO_RESULT, memory_gas_cost
from eth.vm.forks.berlin import constants as berlin_constants
from eth.vm.forks.berlin import logic as berlin_logic
from eth.vm.forks.byzantium import opcodes as byzantium_opcodes
from eth.vm.logic import arithmetic, comparison, context, duplication, flow, logging, memory, stack, swap
from eth.vm.logic.invalid import InvalidOpcode
from eth.vm.logic.storage import NetSStoreGasSchedule
from eth.vm.opcode import _FastOpcode
from eth.vm.opcode_values import JUMPDEST, PUSH1, PUSH32, STOP
from eth_utils import int_to_big_endian

UINT_256_MAX = constants.UINT_256_MAX
STACK_LIMIT = 1024


def _int(value: int | bytes) -> int:
    return value if value.__class__ is int else int.from_bytes(value, "big")  # type: ignore[arg-type]


_JUMPDESTS: dict[bytes, frozenset[int]] = {}
_JUMPDESTS_LIMIT = 4096  # distinct codes remembered (a full table is emptied: contracts are few and hot)


def valid_jump_destinations(code: bytes) -> frozenset[int]:
    """The positions of ``code`` a JUMP may land on: JUMPDEST bytes that are not PUSH data (as geth's
    per-code jumpdest analysis, remembered per code)."""
    found = _JUMPDESTS.get(code)
    if found is None:
        positions, i, length = [], 0, len(code)
        while i < length:
            op = code[i]
            if op == JUMPDEST:
                positions.append(i)
            elif PUSH1 <= op <= PUSH32:
                i += op - PUSH1 + 1
            i += 1
        if len(_JUMPDESTS) >= _JUMPDESTS_LIMIT:
            _JUMPDESTS.clear()
        found = _JUMPDESTS[code] = frozenset(positions)
    return found


def _jump_to(computation: Any, destination: int) -> None:
    """Move the program counter to ``destination``, with py-evm's errors for a bad one."""
    code = computation.code
    code.program_counter = destination
    raw = code._raw_code_bytes
    if destination not in valid_jump_destinations(raw):
        if destination >= len(raw) or raw[destination] != JUMPDEST:
            raise InvalidJumpDestination("Invalid Jump Destination")
        raise InvalidInstruction("Jump resulted in invalid instruction")


class _Op:
    """An opcode with constant gas (``gas_cost``), charged inline; subclasses do the work in ``__call__``.

    Each subclass repeats the four lines of the gas charge on purpose: a shared helper would cost the very
    call per opcode that this module exists to remove."""

    __slots__ = ("gas_cost", "logic_fn", "mnemonic")

    def __init__(self, original: _FastOpcode) -> None:
        self.mnemonic, self.gas_cost, self.logic_fn = original.mnemonic, original.gas_cost, original.logic_fn

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)  # raises py-evm's OutOfGas
        meter.gas_remaining -= self.gas_cost
        self.logic_fn(computation)


class _Push(_Op):
    __slots__ = ("size",)

    def __init__(self, original: _FastOpcode, size: int) -> None:
        super().__init__(original)
        self.size = size

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        code = computation.code
        start = code.program_counter
        end = code.program_counter = start + self.size
        value = code._raw_code_bytes[start:end]
        values = computation._stack.values
        if len(values) >= STACK_LIMIT:
            raise FullStack("Stack limit reached")
        values.append(value if len(value) == self.size else value.ljust(self.size, b"\x00"))


class _Dup(_Op):
    __slots__ = ("position",)

    def __init__(self, original: _FastOpcode, position: int) -> None:
        super().__init__(original)
        self.position = position

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if len(values) >= STACK_LIMIT:
            raise FullStack("Stack limit reached")
        if len(values) < self.position:
            raise InsufficientStack(f"Insufficient stack items for DUP{self.position}")
        values.append(values[-self.position])


class _Swap(_Op):
    __slots__ = ("position",)

    def __init__(self, original: _FastOpcode, position: int) -> None:
        super().__init__(original)
        self.position = position

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if len(values) <= self.position:
            raise InsufficientStack(f"Insufficient stack items for SWAP{self.position}")
        other = -self.position - 1
        values[-1], values[other] = values[other], values[-1]


class _Pop(_Op):
    __slots__ = ()

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if not values:
            raise InsufficientStack("Wanted 1 stack item, had none")
        values.pop()


class _JumpDest(_Op):
    __slots__ = ()

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost


class _Binary(_Op):
    """Pops ``left`` (the top) and ``right``, pushes ``fn(left, right)`` (already in uint256 range)."""

    __slots__ = ("fn",)

    def __init__(self, original: _FastOpcode, fn: Callable[[int, int], int]) -> None:
        super().__init__(original)
        self.fn = fn

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if len(values) < 2:
            raise InsufficientStack(f"Wanted 2 stack items, only had {len(values)}")
        left = values.pop()
        right = values.pop()
        values.append(self.fn(_int(left), _int(right)))


class _IsZero(_Op):
    __slots__ = ()

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if not values:
            raise InsufficientStack("Wanted 1 stack item, had none")
        values.append(1 if _int(values.pop()) == 0 else 0)


class _Jump(_Op):
    __slots__ = ()

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if not values:
            raise InsufficientStack("Wanted 1 stack item, had none")
        _jump_to(computation, _int(values.pop()))


class _JumpI(_Op):
    __slots__ = ()

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if len(values) < 2:
            raise InsufficientStack(f"Wanted 2 stack items, only had {len(values)}")
        destination = values.pop()
        if _int(values.pop()):
            _jump_to(computation, _int(destination))


def _word(value: int | bytes) -> bytes:
    """A stack item as the 32 bytes MSTORE writes."""
    if value.__class__ is int:
        return value.to_bytes(32, "big")  # type: ignore[union-attr]
    return value.rjust(32, b"\x00")  # type: ignore[union-attr]


class _MStore(_Op):
    """MSTORE: memory growth is charged by py-evm's ``extend_memory`` (skipped when none is needed)."""

    __slots__ = ()

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if len(values) < 2:  # py-evm pops the offset, then finds no value
            values.clear()
            raise InsufficientStack("Wanted 1 stack item, had none")
        start = _int(values.pop())
        word = _word(values.pop())
        mem = computation._memory
        if start + 32 > len(mem._bytes):
            computation.extend_memory(start, 32)
        mem._bytes[start : start + 32] = word


class _MLoad(_Op):
    __slots__ = ()

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if not values:
            raise InsufficientStack("Wanted 1 stack item, had none")
        start = _int(values.pop())
        mem = computation._memory
        if start + 32 > len(mem._bytes):
            computation.extend_memory(start, 32)
        values.append(bytes(mem._bytes[start : start + 32]))


class _CallValue(_Op):
    __slots__ = ()

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if len(values) >= STACK_LIMIT:
            raise FullStack("Stack limit reached")
        values.append(computation.msg.value)


class _CallDataLoad(_Op):
    __slots__ = ()

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if not values:
            raise InsufficientStack("Wanted 1 stack item, had none")
        start = _int(values.pop())
        values.append(int.from_bytes(computation.msg.data_as_bytes[start : start + 32].ljust(32, b"\x00"), "big"))


class _CallDataSize(_Op):
    __slots__ = ()

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if len(values) >= STACK_LIMIT:
            raise FullStack("Stack limit reached")
        values.append(len(computation.msg.data))


class _SLoad(_Op):
    """SLOAD with EIP-2929's warm/cold charge (py-evm's ``sload_eip2929``), reading the account DB directly:
    the same access list entry (marked before the charge), the same read through the storage journal."""

    __slots__ = ()

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        values = computation._stack.values
        if not values:
            raise InsufficientStack("Wanted 1 stack item, had none")
        slot = _int(values.pop())
        address = computation.msg.storage_address
        accounts = computation.state._account_db
        cost = _mark_slot_warm(accounts, address, slot, berlin_constants.COLD_SLOAD_COST,
                               berlin_constants.WARM_STORAGE_READ_COST)  # fmt: skip
        if meter.gas_remaining < cost:
            meter.consume_gas(cost, mnemonics.SLOAD)
        meter.gas_remaining -= cost
        values.append(accounts._get_address_store(address).get(slot))


def _mark_slot_warm(accounts: Any, address: bytes, slot: int, cold: int, warm: int) -> int:
    """Add (address, slot) to the transaction's access list (py-evm's key and journal); its charge."""
    key = address + int_to_big_endian(slot)
    accessed = accounts._journal_accessed_state
    if key in accessed:
        return warm
    accessed[key] = IS_PRESENT_VALUE
    return cold


class _SStore(_Op):
    """SSTORE as py-evm's ``sstore_eip2929_generic`` on a net-metering ``schedule`` (EIP-2200, EIP-2929 and,
    from London, EIP-3529's refunds): the static-call and 2,300-gas checks, the charge and refund from the
    current and original values, the write, then the cold-slot surcharge, in that order."""

    __slots__ = ("schedule",)

    def __init__(self, original: _FastOpcode, schedule: NetSStoreGasSchedule) -> None:
        super().__init__(original)
        self.schedule = schedule

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        if computation.msg.is_static:
            raise WriteProtection("Cannot modify state while inside of a STATICCALL context")
        if meter.gas_remaining <= 2300:
            raise OutOfGas("Net-metered SSTORE always fails below 2300 gas, per EIP-2200", meter.gas_remaining)
        values = computation._stack.values
        if len(values) < 2:
            raise InsufficientStack(f"Wanted 2 stack items, only had {len(values)}")
        slot = _int(values.pop())
        value = _int(values.pop())
        address = computation.msg.storage_address
        accounts = computation.state._account_db
        store = accounts._get_address_store(address)
        current = store.get(slot)
        original = store.get(slot, False)
        cost, refund = _net_sstore_charge(self.schedule, original, current, value)
        if meter.gas_remaining < cost:
            meter.consume_gas(cost, f"SSTORE: 0x{address.hex()}[{slot}] -> {value} (current: {current} / "
                                    f"original: {original})")  # fmt: skip
        meter.gas_remaining -= cost
        if refund:
            meter.refund_gas(refund)
        accounts._dirty_accounts.add(address)
        store.set(slot, value)
        cold = _mark_slot_warm(accounts, address, slot, berlin_constants.COLD_SLOAD_COST, 0)
        if cold:
            if meter.gas_remaining < cold:
                meter.consume_gas(cold, f"Implicit SLOAD during {mnemonics.SSTORE}")
            meter.gas_remaining -= cold


def _net_sstore_charge(schedule: NetSStoreGasSchedule, original: int, current: int, value: int) -> tuple[int, int]:
    """(gas, refund) of a net-metered SSTORE: py-evm's ``net_sstore``, branch for branch."""
    refund = 0
    if current == value:
        return schedule.sload_gas, 0
    if original == current:
        if original == 0:
            return schedule.sstore_set_gas, 0
        return schedule.sstore_reset_gas, schedule.sstore_clears_schedule if value == 0 else 0
    if original != 0:
        if current == 0:
            refund -= schedule.sstore_clears_schedule
        if value == 0:
            refund += schedule.sstore_clears_schedule
    if original == value:
        if original == 0:
            refund += schedule.sstore_set_gas - schedule.sload_gas
        else:
            refund += schedule.sstore_reset_gas - schedule.sload_gas
    return schedule.sload_gas, refund


class _Log(_Op):
    """LOG0..LOG4 as py-evm's ``ensure_no_static(log_XX)``: the static check, offset and size, the topics (top
    first), the data and topic charge, memory growth, then ``add_log_entry`` (where tracers see the log)."""

    __slots__ = ("topic_count",)

    def __init__(self, original: _FastOpcode, topic_count: int) -> None:
        super().__init__(original)
        self.topic_count = topic_count

    def __call__(self, computation: Any) -> None:
        meter = computation._gas_meter
        if meter.gas_remaining < self.gas_cost:
            meter.consume_gas(self.gas_cost, self.mnemonic)
        meter.gas_remaining -= self.gas_cost
        if computation.msg.is_static:
            raise WriteProtection("Cannot modify state while inside of a STATICCALL context")
        values = computation._stack.values
        count = self.topic_count
        if len(values) < 2:
            raise InsufficientStack(f"Wanted 2 stack items, only had {len(values)}")
        start = _int(values.pop())
        size = _int(values.pop())
        if count == 1:
            if not values:
                raise InsufficientStack("Wanted 1 stack item, had none")
            topics: tuple[int, ...] = (_int(values.pop()),)
        elif count:
            if len(values) < count:
                raise InsufficientStack(f"Wanted {count} stack items, only had {len(values)}")
            topics = tuple(_int(values.pop()) for _ in range(count))
        else:
            topics = ()
        cost = constants.GAS_LOGDATA * size + constants.GAS_LOGTOPIC * count
        if meter.gas_remaining < cost:
            meter.consume_gas(cost, "Log topic and data gas cost")
        meter.gas_remaining -= cost
        computation.extend_memory(start, size)
        data = computation.memory_read_bytes(start, size)
        computation.add_log_entry(account=computation.msg.storage_address, topics=topics, data=data)


def _log_topic_count(logic: Callable[..., None]) -> int | None:
    """N for py-evm's ``ensure_no_static(partial(log_XX, topic_count=N))`` (Byzantium onwards), else None."""
    if getattr(logic, "__code__", None) is not _NO_STATIC_CODE:
        return None
    wrapped = getattr(logic, "__wrapped__", None)
    if not isinstance(wrapped, functools.partial) or wrapped.func is not logging.log_XX or wrapped.args:
        return None
    count = wrapped.keywords.get("topic_count")
    return count if len(wrapped.keywords) == 1 and count in range(5) else None


_NO_STATIC_CODE = byzantium_opcodes.ensure_no_static(lambda computation: None).__code__  # the wrapper's code


def _sstore_schedule(logic: Callable[..., None]) -> NetSStoreGasSchedule | None:
    """The gas schedule of py-evm's ``ensure_no_static(sstore_eip2929_generic(schedule))`` (Berlin's form, a
    curried call) or ``ensure_no_static(partial(sstore_eip2929_generic, schedule))`` (London's), else None."""
    if getattr(logic, "__code__", None) is not _NO_STATIC_CODE:
        return None
    wrapped = getattr(logic, "__wrapped__", None)
    generic = berlin_logic.sstore_eip2929_generic
    if isinstance(wrapped, functools.partial) and wrapped.func is generic:
        args, keywords = wrapped.args, wrapped.keywords
    elif getattr(wrapped, "func", None) is generic.func and hasattr(wrapped, "keywords"):  # a toolz curry
        args, keywords = wrapped.args, wrapped.keywords  # type: ignore[union-attr]
    else:
        return None
    if keywords or len(args) != 1 or not isinstance(args[0], NetSStoreGasSchedule):
        return None
    return args[0]


_BINARY: dict[Callable[..., None], Callable[[int, int], int]] = {
    arithmetic.add: lambda a, b: (a + b) & UINT_256_MAX,
    arithmetic.sub: lambda a, b: (a - b) & UINT_256_MAX,
    comparison.and_op: lambda a, b: a & b,
    comparison.or_op: lambda a, b: a | b,
    comparison.lt: lambda a, b: 1 if a < b else 0,
    comparison.gt: lambda a, b: 1 if a > b else 0,
    comparison.eq: lambda a, b: 1 if a == b else 0,
    comparison.xor: lambda a, b: a ^ b,
    arithmetic.mul: lambda a, b: (a * b) & UINT_256_MAX,
    arithmetic.div: lambda a, b: a // b if b else 0,
    arithmetic.mod: lambda a, b: a % b if b else 0,
    arithmetic.shl: lambda shift, value: (value << shift) & UINT_256_MAX if shift < 256 else 0,
    arithmetic.shr: lambda shift, value: value >> shift if shift < 256 else 0,
}
_SIMPLE: dict[Callable[..., None], type[_Op]] = {
    stack.pop: _Pop, flow.jumpdest: _JumpDest, comparison.iszero: _IsZero, flow.jump: _Jump, flow.jumpi: _JumpI,
    memory.mstore: _MStore, memory.mload: _MLoad, context.callvalue: _CallValue,
    context.calldataload: _CallDataLoad, context.calldatasize: _CallDataSize, berlin_logic.sload_eip2929: _SLoad,
}  # fmt: skip
_PUSH = {getattr(stack, f"push{n}"): n for n in range(33)}  # push0 .. push32
_DUP = {getattr(duplication, f"dup{n}"): n for n in range(1, 17)}
_SWAP = {getattr(swap, f"swap{n}"): n for n in range(1, 17)}


def _fast(original: Any) -> Any:
    if type(original) is not _FastOpcode:
        return original  # dynamic gas, calls, creates, storage: py-evm's own
    logic = original.logic_fn
    if logic in _PUSH:
        return _Push(original, _PUSH[logic])
    if logic in _DUP:
        return _Dup(original, _DUP[logic])
    if logic in _SWAP:
        return _Swap(original, _SWAP[logic])
    if logic in _BINARY:
        return _Binary(original, _BINARY[logic])
    schedule = _sstore_schedule(logic)
    if schedule is not None:
        return _SStore(original, schedule)
    topic_count = _log_topic_count(logic)
    if topic_count is not None:
        return _Log(original, topic_count)
    return _SIMPLE.get(logic, _Op)(original)


def fast_opcodes(opcodes: Mapping[int, Any]) -> dict[int, Any]:
    """``opcodes`` (a fork's table) with its plain opcodes replaced by one-call equivalents."""
    return {op: _fast(fn) for op, fn in opcodes.items()}


class FastOpcodeLoop:
    """Mixin for a py-evm computation class: ``apply_computation`` with a tighter opcode loop.

    py-evm steps through the code with a generator (``CodeStream.__iter__``) and calls each opcode by keyword;
    this loop reads the program counter and the code bytes itself and calls by position: the same opcodes in
    the same order (a read by PUSH or a jump moves the counter between steps, as before; past the end of the
    code comes STOP); 3 % fewer instructions per ``Counter.increment`` transaction. Everything around the loop is
    py-evm's sequence: contracts-created bookkeeping, the initcode charge, precompiles. With py-evm's
    ``debug2`` logging on, py-evm's own loop runs (it logs every step).
    """

    def extend_memory(self, start_position: int, size: int) -> None:
        """py-evm's ``extend_memory`` (the same checks, charge and growth); its reason text and debug line are
        built only when they are used (out of gas, debug2 logging on)."""
        if self.logger.show_debug2:  # type: ignore[attr-defined]
            return super().extend_memory(start_position, size)  # type: ignore[misc]
        validate_uint256(start_position, title="Memory start position")
        validate_uint256(size, title="Memory size")
        if not size:
            return None
        memory_bytes = self._memory._bytes  # type: ignore[attr-defined]
        before_size = (len(memory_bytes) + 31) // 32 * 32
        after_size = (start_position + size + 31) // 32 * 32
        if after_size <= before_size:
            return None  # no growth: no charge, nothing to extend (py-evm's Memory.extend returns too)
        fee = memory_gas_cost(after_size) - memory_gas_cost(before_size)
        meter = self._gas_meter  # type: ignore[attr-defined]
        if meter.gas_remaining < fee:
            meter.consume_gas(fee, f"Expanding memory {before_size} -> {after_size}")
        meter.gas_remaining -= fee
        self._memory.extend(start_position, size)  # type: ignore[attr-defined]
        return None

    @classmethod
    def apply_computation(
        cls, state: Any, message: Any, transaction_context: Any, parent_computation: Any = None
    ) -> Any:
        if cls.logger.show_debug2:  # type: ignore[attr-defined]
            return super().apply_computation(state, message, transaction_context, parent_computation)  # type: ignore[misc]
        with cls(state, message, transaction_context) as computation:  # type: ignore[call-arg]
            if computation.is_origin_computation:
                computation.contracts_created = []
                if message.is_create:  # CREATE and CREATE2 charge theirs in the opcode
                    cls.consume_initcode_gas_cost(computation)  # type: ignore[attr-defined]
            if parent_computation is not None:
                computation.contracts_created = parent_computation.contracts_created
            if message.is_create:
                computation.contracts_created.append(message.storage_address)
            precompile = computation.precompiles.get(message.code_address, NO_RESULT)
            if precompile is not NO_RESULT:
                if not message.is_delegation:
                    precompile(computation)
                return computation
            _run_code(computation)
        return computation


def _run_code(computation: Any) -> None:
    code, lookup = computation.code, computation.opcodes
    raw = code._raw_code_bytes
    length = len(raw)
    try:
        while True:
            pc = code.program_counter
            if pc < length:
                opcode = raw[pc]
                code.program_counter = pc + 1
            else:
                opcode = STOP  # halts
            try:
                opcode_fn = lookup[opcode]
            except KeyError:
                opcode_fn = InvalidOpcode(opcode)
            opcode_fn(computation)
    except Halt:
        pass
