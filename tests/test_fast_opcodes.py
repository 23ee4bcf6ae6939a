"""The one-call opcode table and the opcode loop (lorachain.node.fast_opcodes) against py-evm's own: random
programs of the replaced opcodes (and some that are not, and an undefined one), random gas, both computation
classes; stack, gas, program counter, memory, output and error must be the same. Precompiles and creations go
through the same preamble."""

from __future__ import annotations

import random

import pytest
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.vm.forks.prague import PragueVM
from eth.vm.message import Message

from lorachain.node.fast_opcodes import _Op, fast_opcodes
from lorachain.node.vm import fast_vm

SENDER, TARGET = b"\x01" * 20, b"\x02" * 20
SIMPLE = [0x01, 0x03, 0x16, 0x17, 0x10, 0x11, 0x14, 0x15, 0x50, 0x5B]  # ADD SUB AND OR LT GT EQ ISZERO POP JUMPDEST
# MUL DIV MOD XOR SHL SHR SAR MLOAD MSTORE MSTORE8 CALLVALUE CALLDATALOAD CALLDATASIZE PC GAS MSIZE STOP RETURN REVERT
# INVALID LOG0..LOG4 CALLDATACOPY
OTHERS = [0x02, 0x04, 0x06, 0x18, 0x1B, 0x1C, 0x1D, 0x51, 0x52, 0x53, 0x34, 0x35, 0x36, 0x58, 0x5A, 0x59, 0x00, 0xF3,
          0xFD, 0xFE, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0x37, 0x0C]  # fmt: skip  (0x0C: undefined)


@pytest.fixture(scope="module")
def state():
    chain = MiningChain.configure(vm_configuration=((0, PragueVM),), chain_id=1).from_genesis(
        AtomicDB(), {"difficulty": 0, "gas_limit": 30_000_000, "timestamp": 0, "extra_data": b"",
                     "mix_hash": b"\0" * 32, "nonce": b"\0" * 8}, {})  # fmt: skip
    return chain.get_vm().state


def run(state, computation_class, code: bytes, gas: int, data: bytes = b"", static: bool = False) -> tuple:
    context = state.get_transaction_context_class()(gas_price=1, origin=SENDER)
    message = Message(gas=gas, to=TARGET, sender=SENDER, value=0, data=data, code=code, is_static=static)
    c = computation_class.apply_computation(state, message, context)
    stack = [v if isinstance(v, int) else int.from_bytes(v, "big") for v in c._stack.values]
    error = None if c.is_success else (type(c.error).__name__, str(c.error))
    return (error, c.get_gas_remaining(), stack, c.code.program_counter, bytes(c._memory._bytes), c.output,
            tuple(c._log_entries))  # fmt: skip


def random_program(rng: random.Random) -> bytes:
    code = bytearray()
    for _ in range(rng.choice([0, rng.randint(1, 20)])):  # a prelude of pushes: operands for what follows
        size = rng.randint(0, 32)
        code += bytes([0x5F + size]) + rng.randbytes(size)
    for _ in range(rng.randint(1, 60)):
        kind = rng.random()
        if kind < 0.3:
            size = rng.randint(0, 32)
            code.append(0x5F + size)
            code += rng.randbytes(size) if rng.random() < 0.7 else bytes(rng.choice([0, 1, 2, 31, 32, 33]) % 256
                                                                        for _ in range(size))  # fmt: skip
        elif kind < 0.5:
            code.append(0x80 + min(rng.randint(0, 15), rng.randint(0, 15)))  # DUP1..16, mostly shallow
        elif kind < 0.65:
            code.append(0x90 + min(rng.randint(0, 15), rng.randint(0, 15)))  # SWAP1..16, mostly shallow
        elif kind < 0.85:
            code.append(rng.choice(SIMPLE))
        elif kind < 0.93:
            destination = rng.randint(0, min(len(code) + 8, 255))
            code += bytes([0x60, destination, rng.choice([0x56, 0x57])])  # PUSH1 destination; JUMP or JUMPI
        else:
            code.append(rng.choice(OTHERS))
    if rng.random() < 0.2:
        code = code[: rng.randint(0, len(code))]  # a PUSH cut off by the end of the code
    return bytes(code)


def test_fast_vm_uses_the_fast_table() -> None:
    computation = fast_vm(PragueVM)._state_class.computation_class
    replaced = [op for op, fn in computation.opcodes.items() if isinstance(fn, _Op)]
    assert {0x01, 0x50, 0x5B, 0x5F, 0x60, 0x7F, 0x80, 0x8F, 0x90, 0x9F} <= set(replaced)
    assert {0x02, 0x04, 0x06, 0x18, 0x1B, 0x1C, 0x34, 0x35, 0x36, 0x51, 0x52, 0x56, 0x57} <= set(replaced)
    assert not isinstance(computation.opcodes[0xF1], _Op)  # CALL (an opcode class of its own) stays py-evm's
    assert all(computation.opcodes[op].gas_cost == PragueVM._state_class.computation_class.opcodes[op].gas_cost
               for op in replaced)  # fmt: skip


def test_random_programs_run_alike_on_both_tables(state) -> None:
    base = PragueVM._state_class.computation_class
    fast = fast_vm(PragueVM)._state_class.computation_class  # the table and the loop
    table_only = type("FastPrague", (base,), {"opcodes": fast_opcodes(base.opcodes)})
    rng = random.Random(20261202)
    errors = set()
    logged = 0
    for _ in range(5000):
        code = random_program(rng)
        gas = rng.choice([rng.randint(0, 40), rng.randint(0, 400), rng.randint(0, 5000), 100_000])
        data = rng.randbytes(rng.randint(0, 40))
        static = rng.random() < 0.05
        ours, theirs = run(state, fast, code, gas, data, static), run(state, base, code, gas, data, static)
        assert ours == theirs == run(state, table_only, code, gas, data, static), code.hex()
        errors.add(theirs[0][0] if theirs[0] else None)
        logged += bool(theirs[-1])
    # the programs reach the error paths, not only the happy one, and some leave logs
    assert {None, "OutOfGas", "InsufficientStack", "InvalidJumpDestination", "InvalidInstruction",
            "WriteProtection"} <= errors  # fmt: skip
    assert logged > 5


def test_precompiles_and_creations_run_alike(state) -> None:
    base, fast = PragueVM._state_class.computation_class, fast_vm(PragueVM)._state_class.computation_class
    context = state.get_transaction_context_class()(gas_price=1, origin=SENDER)
    sha256 = Message(gas=10_000, to=b"\x00" * 19 + b"\x02", sender=SENDER, value=0, data=b"abc", code=b"")
    initcode = bytes.fromhex("600160005260206000f3")  # return a 32-byte word holding 1
    creation = Message(gas=100_000, to=b"", sender=SENDER, value=0, data=b"", code=initcode,
                       create_address=TARGET)  # fmt: skip
    for message in (sha256, creation):
        ours, theirs = fast.apply_computation(state, message, context), base.apply_computation(state, message, context)
        assert (ours.output, ours.get_gas_remaining(), ours.is_success) == (
            theirs.output, theirs.get_gas_remaining(), theirs.is_success)  # fmt: skip
        assert ours.is_success and ours.output
        assert ours.contracts_created == theirs.contracts_created


@pytest.mark.parametrize("loop", [
    bytes([0x5B, 0x5F, 0x5F, 0x56]),  # JUMPDEST PUSH0 PUSH0 JUMP: one more item per round
    bytes([0x5F, 0x5B, 0x80, 0x60, 0x01, 0x56]),  # PUSH0 JUMPDEST DUP1 PUSH1 1 JUMP
    bytes([0x5F, 0x5B, 0x80, 0x80, 0x50, 0x60, 0x01, 0x56]),  # ... DUP1 DUP1 POP ...: the 1025th item from a DUP
])  # fmt: skip
def test_stack_overflow_alike(state, loop: bytes) -> None:
    base = PragueVM._state_class.computation_class
    table_only = type("FastPrague", (base,), {"opcodes": fast_opcodes(base.opcodes)})
    fast = fast_vm(PragueVM)._state_class.computation_class  # the table and the loop
    ours, theirs = run(state, fast, loop, 1_000_000), run(state, base, loop, 1_000_000)
    assert ours == theirs == run(state, table_only, loop, 1_000_000)
    assert theirs[0] == ("FullStack", "Stack limit reached") and len(theirs[2]) == 1024


@pytest.mark.parametrize("code", [
    bytes([0x61, 0x5B, 0x5B, 0x60, 0x01, 0x56]),  # PUSH2 0x5b5b; PUSH1 1; JUMP: a JUMPDEST byte inside PUSH data
    bytes([0x61, 0x5B, 0x5B, 0x60, 0x01, 0x60, 0x02, 0x57]),  # the same through JUMPI
    bytes([0x60, 0x05, 0x56, 0x00, 0x00, 0x5B, 0x60, 0x2A]),  # a good jump, then on
    bytes([0x60, 0xFF, 0x56]),  # past the end of the code
    bytes([0x7F]) + bytes([0x5B]) * 32 + bytes([0x60, 0x10, 0x56]),  # into a PUSH32's data
])  # fmt: skip
def test_jump_destinations_alike(state, code: bytes) -> None:
    base = PragueVM._state_class.computation_class
    table_only = type("FastPrague", (base,), {"opcodes": fast_opcodes(base.opcodes)})
    fast = fast_vm(PragueVM)._state_class.computation_class
    assert run(state, fast, code, 10_000) == run(state, base, code, 10_000) == run(state, table_only, code, 10_000)


def test_a_jump_into_push_data_is_an_invalid_instruction(state) -> None:
    fast = type("FastPrague", (PragueVM._state_class.computation_class,), {"opcodes": fast_opcodes(
        PragueVM._state_class.computation_class.opcodes)})  # fmt: skip
    error = run(state, fast, bytes([0x61, 0x5B, 0x5B, 0x60, 0x01, 0x56]), 10_000)[0]
    assert error == ("InvalidInstruction", "Jump resulted in invalid instruction")


SLOTS = [0, 1, 2, 3, 2**255 + 7]  # 0-2 hold values before the transaction, 3 and the big one do not
STORED = {0: 5, 1: 9, 2: 1}


def storage_program(rng: random.Random) -> bytes:
    """SSTOREs and SLOADs of a few slots with values that walk every net-metering branch (set, reset, clear,
    restore to the original, no-op), with the odd POP, underflow or 2,300-gas cliff on the way."""

    def push(value: int) -> bytes:
        return bytes([0x7F]) + value.to_bytes(32, "big")

    code = bytearray()
    for _ in range(rng.randint(1, 12)):
        slot = rng.choice(SLOTS)
        kind = rng.random()
        if kind < 0.55:
            value = rng.choice([0, 0, 1, 5, 9, 2**256 - 1, STORED.get(slot, 0)])
            code += push(value) + push(slot) + b"\x55"  # SSTORE
        elif kind < 0.9:
            code += push(slot) + b"\x54"  # SLOAD
        elif kind < 0.95:
            code += b"\x50"  # POP (an underflow when the stack is empty)
        else:
            code += push(slot) + b"\x55"  # SSTORE with one operand short, unless the stack has more
    return bytes(code)


def run_storage(state, computation_class, code: bytes, gas: int, static: bool, warm: list[int]) -> tuple:
    snapshot = state.snapshot()
    try:
        for slot in warm:
            state.mark_storage_warm(TARGET, slot)
        context = state.get_transaction_context_class()(gas_price=1, origin=SENDER)
        message = Message(gas=gas, to=TARGET, sender=SENDER, value=0, data=b"", code=code, is_static=static)
        c = computation_class.apply_computation(state, message, context)
        error = None if c.is_success else (type(c.error).__name__, str(c.error))
        stack = [v if isinstance(v, int) else int.from_bytes(v, "big") for v in c._stack.values]
        storage = [state.get_storage(TARGET, slot) for slot in SLOTS]
        warmth = [state.is_storage_warm(TARGET, slot) for slot in SLOTS]
        return error, c.get_gas_remaining(), c.get_gas_refund(), stack, storage, warmth
    finally:
        state.revert(snapshot)


def test_storage_opcodes_run_alike_on_both_tables() -> None:
    """SLOAD and SSTORE (EIP-2929 access lists, EIP-2200/3529 net metering) of the fast table against py-evm's,
    on a state whose slots have original values; random gas reaches each out-of-gas point."""
    chain = MiningChain.configure(vm_configuration=((0, PragueVM),), chain_id=1).from_genesis(
        AtomicDB(), {"difficulty": 0, "gas_limit": 30_000_000, "timestamp": 0, "extra_data": b"",
                     "mix_hash": b"\0" * 32, "nonce": b"\0" * 8},
        {TARGET: {"balance": 0, "nonce": 1, "code": b"\x00", "storage": STORED}})  # fmt: skip
    state = chain.get_vm().state
    base = PragueVM._state_class.computation_class
    fast = fast_vm(PragueVM)._state_class.computation_class
    assert type(fast.opcodes[0x54]).__name__ == "_SLoad" and type(fast.opcodes[0x55]).__name__ == "_SStore"
    rng = random.Random(20261204)
    outcomes = set()
    for _ in range(3000):
        code = storage_program(rng)
        gas = rng.choice([rng.randint(0, 3000), rng.randint(2000, 30_000), rng.randint(20_000, 120_000), 1_000_000])
        static = rng.random() < 0.05
        warm = rng.sample(SLOTS, rng.randint(0, 2))
        ours = run_storage(state, fast, code, gas, static, warm)
        theirs = run_storage(state, base, code, gas, static, warm)
        assert ours == theirs, (code.hex(), gas, static, warm)
        outcomes.add(theirs[0][0] if theirs[0] else ("refund" if theirs[2] else None))
    assert {None, "refund", "OutOfGas", "InsufficientStack", "WriteProtection"} <= outcomes
