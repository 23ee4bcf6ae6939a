"""EVM tracing for the ``debug_`` namespace: geth's struct logger and its native tracers.

How tracing hooks into py-evm: the opcode loop (``BaseComputation.apply_computation``) looks every
opcode up in the class attribute ``opcodes``, and child calls and creates go through the instance
method ``generate_child_computation``. For one traced transaction we derive a throw-away subclass of
the state's computation class whose ``opcodes`` wrap each opcode with the tracer's step hooks and
whose frame hooks report calls, creates and logs, and install it on that one state object
(``state.computation_class``, which the transaction executor reads). Nothing global changes, so
untraced execution keeps running py-evm's own classes at full speed.

Tracers (the names geth accepts in ``{"tracer": ...}``):

* :class:`StructLogger` (no tracer name): one entry per executed opcode.
* :class:`CallTracer` (``callTracer``): the tree of call frames, optionally with logs.
* :class:`PrestateTracer` (``prestateTracer``): accounts and slots touched, before (and after) the tx.
* :class:`FourByteTracer` (``4byteTracer``) and :class:`NoopTracer` (``noopTracer``).

:class:`BlockReplay` re-executes a stored block on a throw-away overlay so any of its transactions can
be traced on exactly the state it ran on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eth._utils.address import generate_contract_address
from eth.abc import BlockAPI, ComputationAPI, MessageAPI, ReceiptAPI, StateAPI
from eth.exceptions import (
    ContractCreationCollision,
    FullStack,
    Halt,
    InsufficientFunds,
    InsufficientStack,
    InvalidInstruction,
    InvalidJumpDestination,
    OutOfBoundsRead,
    OutOfGas,
    ReservedBytesInCode,
    Revert,
    StackDepthLimit,
    VMError,
    WriteProtection,
)
from eth.vm.logic.invalid import InvalidOpcode
from eth_utils import ValidationError

from lorachain.node.execution import revert_reason
from lorachain.node.store import PendingWrites

if TYPE_CHECKING:
    from lorachain.node.chain import Blockchain

DEFAULT_TIMEOUT = 5.0  # seconds, per traced transaction (geth's default)
STACK_LIMIT = 1024


class TracerError(ValueError):
    """A tracer that cannot be built (unknown name, bad tracerConfig) or that did not finish."""


class TraceAborted(TracerError):
    """Raised out of the EVM when a trace times out and the execution need not be completed."""


class ReplayError(TracerError):
    """A stored block did not re-execute as recorded, so its transactions cannot be traced faithfully."""


# -- opcodes -------------------------------------------------------------------------------------
def _opcode_table() -> dict[int, tuple[str, int, int]]:
    """geth's opcode names with the stack items each pops and pushes."""
    spec = """
        00 STOP 0 0, 01 ADD 2 1, 02 MUL 2 1, 03 SUB 2 1, 04 DIV 2 1, 05 SDIV 2 1, 06 MOD 2 1, 07 SMOD 2 1,
        08 ADDMOD 3 1, 09 MULMOD 3 1, 0a EXP 2 1, 0b SIGNEXTEND 2 1, 10 LT 2 1, 11 GT 2 1, 12 SLT 2 1,
        13 SGT 2 1, 14 EQ 2 1, 15 ISZERO 1 1, 16 AND 2 1, 17 OR 2 1, 18 XOR 2 1, 19 NOT 1 1, 1a BYTE 2 1,
        1b SHL 2 1, 1c SHR 2 1, 1d SAR 2 1, 20 KECCAK256 2 1, 30 ADDRESS 0 1, 31 BALANCE 1 1,
        32 ORIGIN 0 1, 33 CALLER 0 1, 34 CALLVALUE 0 1, 35 CALLDATALOAD 1 1, 36 CALLDATASIZE 0 1,
        37 CALLDATACOPY 3 0, 38 CODESIZE 0 1, 39 CODECOPY 3 0, 3a GASPRICE 0 1, 3b EXTCODESIZE 1 1,
        3c EXTCODECOPY 4 0, 3d RETURNDATASIZE 0 1, 3e RETURNDATACOPY 3 0, 3f EXTCODEHASH 1 1,
        40 BLOCKHASH 1 1, 41 COINBASE 0 1, 42 TIMESTAMP 0 1, 43 NUMBER 0 1, 44 DIFFICULTY 0 1,
        45 GASLIMIT 0 1, 46 CHAINID 0 1, 47 SELFBALANCE 0 1, 48 BASEFEE 0 1, 49 BLOBHASH 1 1,
        4a BLOBBASEFEE 0 1, 50 POP 1 0, 51 MLOAD 1 1, 52 MSTORE 2 0, 53 MSTORE8 2 0, 54 SLOAD 1 1,
        55 SSTORE 2 0, 56 JUMP 1 0, 57 JUMPI 2 0, 58 PC 0 1, 59 MSIZE 0 1, 5a GAS 0 1, 5b JUMPDEST 0 0,
        5c TLOAD 1 1, 5d TSTORE 2 0, 5e MCOPY 3 0, 5f PUSH0 0 1, f0 CREATE 3 1, f1 CALL 7 1,
        f2 CALLCODE 7 1, f3 RETURN 2 0, f4 DELEGATECALL 6 1, f5 CREATE2 4 1, fa STATICCALL 6 1,
        fd REVERT 2 0, fe INVALID 0 0, ff SELFDESTRUCT 1 0
    """
    table: dict[int, tuple[str, int, int]] = {}
    for item in spec.split(","):
        code, name, pops, pushes = item.split()
        table[int(code, 16)] = (name, int(pops), int(pushes))
    for n in range(1, 33):
        table[0x5F + n] = (f"PUSH{n}", 0, 1)
    for n in range(1, 17):
        table[0x7F + n] = (f"DUP{n}", n, n + 1)
        table[0x8F + n] = (f"SWAP{n}", n + 1, n + 1)
    for n in range(5):
        table[0xA0 + n] = (f"LOG{n}", n + 2, 0)
    return table


OPCODES = _opcode_table()
SLOAD, SSTORE, SELFDESTRUCT = 0x54, 0x55, 0xFF
CREATE, CALL, CALLCODE, DELEGATECALL, CREATE2, STATICCALL = 0xF0, 0xF1, 0xF2, 0xF4, 0xF5, 0xFA
CALL_OPS = frozenset((CALL, CALLCODE, DELEGATECALL, STATICCALL))
CREATE_OPS = frozenset((CREATE, CREATE2))
ACCOUNT_OPS = frozenset((0x31, 0x3B, 0x3C, 0x3F, SELFDESTRUCT))  # BALANCE, EXTCODE*, SELFDESTRUCT


def opcode_name(op: int) -> str:
    entry = OPCODES.get(op)
    return entry[0] if entry is not None else f"opcode {op:#x} not defined"


def _word(value: int | bytes) -> int:
    """A stack item as an int (py-evm keeps items as pushed: int or bytes)."""
    return value if isinstance(value, int) else int.from_bytes(value, "big")


def _address(value: int | bytes) -> bytes:
    return (_word(value) & ((1 << 160) - 1)).to_bytes(20, "big")


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


# -- errors in geth's words ----------------------------------------------------------------------
_NEEDED_GAS = re.compile(r"Needed (\d+)")


def error_text(err: BaseException) -> str:
    """geth's message for a py-evm VM error."""
    message = str(err)
    if isinstance(err, Revert):
        return "execution reverted"
    if isinstance(err, OutOfGas):
        if "EIP170" in message:
            return "max code size exceeded"
        if "EIP-3860" in message:
            return "max initcode size exceeded"
        if "contract code" in message:
            return "contract creation code storage out of gas"
        return "out of gas"
    if isinstance(err, InvalidJumpDestination) or (isinstance(err, InvalidInstruction) and "Jump" in message):
        return "invalid jump destination"
    simple: tuple[tuple[type[BaseException], str], ...] = (
        (InsufficientStack, "stack underflow"),
        (FullStack, f"stack limit reached {STACK_LIMIT}"),
        (InvalidInstruction, "invalid opcode"),
        (WriteProtection, "write protection"),
        (OutOfBoundsRead, "return data out of bounds"),
        (ReservedBytesInCode, "invalid code: must not begin with 0xef"),
        (StackDepthLimit, "max call depth exceeded"),
        (InsufficientFunds, "insufficient balance for transfer"),
        (ContractCreationCollision, "contract address collision"),
    )
    for kind, text in simple:
        if isinstance(err, kind):
            return text
    return message or type(err).__name__


def _fault_text(err: VMError, op: int, stack_len: int) -> str:
    """geth's message for an error raised by opcode ``op`` (with the stack detail geth gives)."""
    _, pops, pushes = OPCODES.get(op, ("", 0, 0))
    if isinstance(err, InsufficientStack):
        return f"stack underflow ({stack_len} <=> {pops})"
    if isinstance(err, FullStack):
        return f"stack limit reached {stack_len} ({STACK_LIMIT + pops - pushes})"
    if isinstance(err, InvalidInstruction) and "Jump" not in str(err):
        return f"invalid opcode: {opcode_name(op)}"
    return error_text(err)


# geth's struct logger records an error on a step only when the op fails before it runs (gas and
# stack checks, undefined opcodes); failures while the op runs (a revert, a bad jump) are not shown.
_PRE_EXECUTION_ERRORS = (OutOfGas, InsufficientStack, FullStack)


# -- frames --------------------------------------------------------------------------------------
class Frame:
    """One message call or create as the tracer follows it."""

    __slots__ = ("child_gas", "child_gas_mark", "children_refund", "computation", "data", "fault", "kind",
                 "op", "parent", "target")  # fmt: skip

    def __init__(self, computation: ComputationAPI, parent: Frame | None, kind: str) -> None:
        self.computation = computation
        self.parent = parent
        self.kind = kind  # CALL, STATICCALL, DELEGATECALL, CALLCODE, CREATE or CREATE2
        self.op = -1  # opcode executing now
        self.target: bytes | None = None  # address a call opcode names (stack item 1)
        self.child_gas: int | None = None  # gas handed to a child spawned by the current opcode
        self.child_gas_mark = 0  # our gas left right before that child ran
        self.children_refund = 0  # refunds of finished (successful) children
        self.fault: str | None = None  # geth's text for the error an opcode raised here
        self.data: Any = None  # the tracer's own per-frame record


class Tracer:
    """Receives the events of one transaction's execution; subclasses turn them into a result.

    Hooks for subclasses: :meth:`on_tx_start`, :meth:`on_enter`, :meth:`on_child`, :meth:`on_opcode`,
    :meth:`on_opcode_end`, :meth:`on_log`, :meth:`on_exit`, :meth:`on_tx_end` and :meth:`build_result`.

    When the timeout passes, the execution is abandoned at once (:class:`TraceAborted` unwinds the
    EVM) unless ``finish_on_timeout`` is set, for replays that must go on to later transactions:
    then hooks stop firing and the execution completes untraced, and :meth:`result` raises
    ``TracerError("execution timeout")``.
    """

    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self.deadline = float("inf")
        self.timed_out = False
        self.finish_on_timeout = False
        self.stack: list[Frame] = []
        self.state: StateAPI | None = None
        self.tx: Any = None
        self.computation: ComputationAPI | None = None
        self.gas_used = 0

    # -- driver side -----------------------------------------------------------------------------
    def start(self, state: StateAPI, tx: Any) -> None:
        self.state, self.tx = state, tx
        if self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout
        self.on_tx_start(state, tx)

    def finish(self, computation: ComputationAPI, gas_used: int) -> None:
        while self.stack:
            self._exit(self.stack[-1].computation)
        self.computation, self.gas_used = computation, gas_used
        if not self.timed_out:
            self.on_tx_end(computation, gas_used)

    def result(self) -> Any:
        if self.timed_out:
            raise TracerError("execution timeout")
        return self.build_result()

    # -- EVM side (called by the traced computation class) ---------------------------------------
    def _enter(self, computation: ComputationAPI) -> None:
        parent = self.stack[-1] if self.stack else None
        if parent is not None and (parent.op in CALL_OPS or parent.op in CREATE_OPS):
            kind = OPCODES[parent.op][0]
        else:
            kind = "CREATE" if computation.msg.is_create else "CALL"
        frame = Frame(computation, parent, kind)
        computation._trace_frame = frame  # type: ignore[attr-defined]
        self.stack.append(frame)
        if not self.timed_out:
            self.on_enter(frame)

    def _exit(self, computation: ComputationAPI) -> None:
        frame: Frame = computation._trace_frame  # type: ignore[attr-defined]
        while self.stack:
            if self.stack.pop() is frame:
                break
        if frame.parent is not None:
            frame.parent.children_refund += computation.get_gas_refund()
        if not self.timed_out:
            self.on_exit(frame)

    def _before_child(self, parent: ComputationAPI, message: MessageAPI) -> None:
        frame: Frame = parent._trace_frame  # type: ignore[attr-defined]
        frame.child_gas_mark = parent.get_gas_remaining()
        frame.child_gas = message.gas
        if not self.timed_out:
            self.on_child(frame, message)

    def _log(self, computation: ComputationAPI, address: bytes, topics: tuple[int, ...], data: bytes) -> None:
        if not self.timed_out:
            self.on_log(computation._trace_frame, address, topics, data)  # type: ignore[attr-defined]

    def _step(self, computation: ComputationAPI, op: int, fn: Callable[..., None]) -> None:
        if not self.timed_out and time.monotonic() > self.deadline:
            self.timed_out = True
            if not self.finish_on_timeout:
                raise TraceAborted("execution timeout")
        if self.timed_out:
            fn(computation=computation)
            return
        frame: Frame = computation._trace_frame  # type: ignore[attr-defined]
        frame.op = op
        frame.child_gas = None
        values = computation._stack.values  # type: ignore[attr-defined]
        if op in CALL_OPS and len(values) >= 2:
            frame.target = _address(values[-2])
        stack_len = len(values)
        gas = computation.get_gas_remaining()
        token = self.on_opcode(frame, computation, op, gas)
        try:
            fn(computation=computation)
        except Halt:
            self.on_opcode_end(frame, computation, token, gas, None)
            raise
        except VMError as err:
            frame.fault = _fault_text(err, op, stack_len)
            self.on_opcode_end(frame, computation, token, gas, err)
            raise
        self.on_opcode_end(frame, computation, token, gas, None)

    # -- helpers for subclasses ------------------------------------------------------------------
    @staticmethod
    def step_cost(frame: Frame, computation: ComputationAPI, gas_before: int, error: VMError | None) -> int:
        """geth's ``gasCost`` of the opcode just run in ``frame``.

        For calls geth counts the gas handed to the callee (the stipend aside), for creates it does
        not; a failed gas charge counts what the op asked for.
        """
        if frame.child_gas is not None:
            cost = gas_before - frame.child_gas_mark
            return cost - frame.child_gas if frame.op in CREATE_OPS else cost
        cost = gas_before - computation._gas_meter.gas_remaining  # type: ignore[attr-defined]
        if isinstance(error, OutOfGas):
            needed = _NEEDED_GAS.search(str(error))
            if needed:
                cost += int(needed.group(1))
        return cost

    @staticmethod
    def frame_error(frame: Frame) -> str | None:
        computation = frame.computation
        if not computation.is_error:
            return None
        return frame.fault or error_text(computation.error)

    # -- hooks -----------------------------------------------------------------------------------
    def on_tx_start(self, state: StateAPI, tx: Any) -> None:
        """Before the transaction touches the state (nonce and gas not yet taken)."""

    def on_enter(self, frame: Frame) -> None:
        """A call or create frame starts (its value is already transferred)."""

    def on_child(self, frame: Frame, message: MessageAPI) -> None:
        """``frame`` is about to run ``message`` as a child call or create."""

    def on_opcode(self, frame: Frame, computation: ComputationAPI, op: int, gas: int) -> Any:
        """Before ``op`` runs with ``gas`` left; the return value comes back to :meth:`on_opcode_end`."""

    def on_opcode_end(
        self, frame: Frame, computation: ComputationAPI, token: Any, gas_before: int, error: VMError | None
    ) -> None:
        """After ``op`` ran (or raised ``error``)."""

    def on_log(self, frame: Frame, address: bytes, topics: tuple[int, ...], data: bytes) -> None:
        """A LOG opcode emitted an entry."""

    def on_exit(self, frame: Frame) -> None:
        """A frame finished, code deposit included."""

    def on_tx_end(self, computation: ComputationAPI, gas_used: int) -> None:
        """The transaction is finalized; ``gas_used`` is its receipt's (refunds applied)."""

    def build_result(self) -> Any:
        raise NotImplementedError


# -- hooking py-evm ------------------------------------------------------------------------------
class _TracedOpcode:
    """An opcode of the traced computation class: runs the real one inside the tracer's step hooks."""

    __slots__ = ("fn", "mnemonic", "op", "tracer")

    def __init__(self, tracer: Tracer, op: int, fn: Callable[..., None]) -> None:
        self.tracer, self.op, self.fn = tracer, op, fn
        self.mnemonic = opcode_name(op)

    def __call__(self, computation: ComputationAPI) -> None:
        self.tracer._step(computation, self.op, self.fn)


class _TracedOpcodes(dict):  # type: ignore[type-arg]
    """The opcode table of a traced class; undefined opcodes fail through the tracer too."""

    def __init__(self, tracer: Tracer, opcodes: dict[int, Any]) -> None:
        super().__init__({op: _TracedOpcode(tracer, op, fn) for op, fn in opcodes.items()})
        self.tracer = tracer

    def __missing__(self, op: int) -> _TracedOpcode:
        return _TracedOpcode(self.tracer, op, InvalidOpcode(op))


class _TracingComputation:
    """Mixed in before a fork's computation class: reports frames and logs to ``tracer``."""

    tracer: Tracer

    def __init__(self, state: StateAPI, message: MessageAPI, transaction_context: Any) -> None:
        super().__init__(state, message, transaction_context)  # type: ignore[call-arg]
        self.tracer._enter(self)  # type: ignore[arg-type]

    def generate_child_computation(self, child_msg: MessageAPI) -> ComputationAPI:
        self.tracer._before_child(self, child_msg)  # type: ignore[arg-type]
        child = super().generate_child_computation(child_msg)  # type: ignore[misc]
        self.tracer._exit(child)
        return child

    def add_log_entry(self, account: bytes, topics: tuple[int, ...], data: bytes) -> None:
        super().add_log_entry(account, topics, data)  # type: ignore[misc]
        self.tracer._log(self, account, topics, data)  # type: ignore[arg-type]


def traced_computation_class(base: type[ComputationAPI], tracer: Tracer) -> type[ComputationAPI]:
    """A subclass of ``base`` whose every opcode, frame and log reports to ``tracer``."""
    traced = type(f"Traced{base.__name__}", (_TracingComputation, base), {"tracer": tracer})
    traced.opcodes = _TracedOpcodes(tracer, base.opcodes)
    return traced  # type: ignore[return-value]


@contextmanager
def hooked(state: StateAPI, tracer: Tracer) -> Iterator[None]:
    """Route ``state``'s executions through ``tracer`` for the duration of the block."""
    original = state.computation_class
    state.computation_class = traced_computation_class(original, tracer)  # type: ignore[misc]
    try:
        yield
    finally:
        state.computation_class = original  # type: ignore[misc]


# -- replaying a block ---------------------------------------------------------------------------
class BlockReplay:
    """Re-execute a stored block's transactions, in order, on a throw-away overlay.

    The VM starts from the parent's post-state with the block's own header context, replays the
    block's system calls (``block_preprocessing``) as the builder did, then applies transactions one
    by one, traced or not. Nothing is ever written to the store. Each receipt is checked against the
    stored one, so a block that cannot be re-executed as recorded fails with :class:`ReplayError`
    instead of yielding a wrong trace.
    """

    def __init__(self, chain: Blockchain, block: BlockAPI) -> None:
        parent = chain.header_by_hash(block.header.parent_hash)
        fields: dict[str, Any] = {"state_root": parent.state_root, "gas_used": 0}
        if getattr(block.header, "blob_gas_used", None) is not None:
            fields["blob_gas_used"] = 0
        self.header = block.header.copy(**fields)
        scratch = chain.chain_class(PendingWrites(chain.store).atomic_view())
        self.vm = scratch.get_vm(self.header)
        self.vm.block_preprocessing(block)
        self.number = block.number
        self.transactions = block.transactions
        self.expected = chain.receipts(block)
        self.applied = 0

    def apply_next(self, tracer: Tracer | None = None, *, last: bool = False) -> ReceiptAPI:
        """Apply the next transaction (under ``tracer`` if given) and return its receipt.

        With ``last`` (nothing will be applied after it) a timed-out trace abandons the transaction
        by raising :class:`TraceAborted`; otherwise the transaction is completed untraced.
        """
        index = self.applied
        tx = self.transactions[index]
        state = self.vm.state
        try:
            if tracer is None:
                receipt, _ = self.vm.apply_transaction(self.header, tx)
            else:
                tracer.finish_on_timeout = not last
                tracer.start(state, tx)
                with hooked(state, tracer):
                    receipt, computation = self.vm.apply_transaction(self.header, tx)
                tracer.finish(computation, receipt.gas_used - self.header.gas_used)
        except ValidationError as exc:
            raise ReplayError(f"cannot re-execute transaction {index} of block #{self.number}: {exc}") from exc
        recorded = self.expected[index]
        if (receipt.gas_used, receipt.state_root) != (recorded.gas_used, recorded.state_root):
            raise ReplayError(
                f"re-executing block #{self.number} diverged at transaction {index} "
                f"(cumulative gas {receipt.gas_used}, recorded {recorded.gas_used})"
            )
        self.header = self.vm.add_receipt_to_header(self.header, receipt)
        self.header = self.vm.increment_blob_gas_used(self.header, tx)
        self.applied += 1
        return receipt


# -- the struct logger ---------------------------------------------------------------------------
class StructLogger(Tracer):
    """geth's default tracer: every opcode with pc, gas, cost, depth, stack, and optionally memory."""

    def __init__(
        self,
        *,
        disable_stack: bool = False,
        disable_storage: bool = False,
        enable_memory: bool = False,
        enable_return_data: bool = False,
        limit: int = 0,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(timeout)
        self.disable_stack = disable_stack
        self.disable_storage = disable_storage
        self.enable_memory = enable_memory
        self.enable_return_data = enable_return_data
        self.limit = limit
        self.logs: list[dict[str, Any]] = []
        self.storage: dict[bytes, dict[int, int]] = {}  # per contract: slots seen so far

    def on_opcode(self, frame: Frame, computation: ComputationAPI, op: int, gas: int) -> Any:
        if self.limit and len(self.logs) >= self.limit:
            return None
        entry: dict[str, Any] = {
            "pc": computation.code.program_counter - 1,
            "op": opcode_name(op),
            "gas": gas,
            "gasCost": 0,
            "depth": computation.msg.depth + 1,
        }
        values = computation._stack.values  # type: ignore[attr-defined]
        if not self.disable_stack:
            entry["stack"] = [hex(_word(v)) for v in values]
        if self.enable_return_data and computation.return_data:
            entry["returnData"] = _hex(computation.return_data)
        if self.enable_memory:
            memory = computation._memory._bytes  # type: ignore[attr-defined]
            entry["memory"] = [memory[i : i + 32].hex() for i in range(0, len(memory), 32)]
        if not self.disable_storage and op in (SLOAD, SSTORE):
            self._storage(entry, computation, op, values)
        refund = self._refund_counter(frame)
        if refund:
            entry["refund"] = refund
        self.logs.append(entry)
        return entry

    def _storage(self, entry: dict[str, Any], computation: ComputationAPI, op: int, values: list[Any]) -> None:
        address = computation.msg.storage_address
        slots = self.storage.setdefault(address, {})
        if op == SLOAD and len(values) >= 1:
            slot = _word(values[-1])
            slots[slot] = computation.state.get_storage(address, slot)
        elif op == SSTORE and len(values) >= 2:
            slots[_word(values[-1])] = _word(values[-2])
        else:
            return
        entry["storage"] = {f"{k:064x}": f"{v:064x}" for k, v in slots.items()}

    @staticmethod
    def _refund_counter(frame: Frame | None) -> int:
        """The transaction-wide refund counter (geth's ``StateDB.GetRefund``) right now."""
        total = 0
        while frame is not None:
            computation = frame.computation
            total += computation.msg.refund + computation._gas_meter.gas_refunded + frame.children_refund  # type: ignore[attr-defined]
            frame = frame.parent
        return max(total, 0)

    def on_opcode_end(
        self, frame: Frame, computation: ComputationAPI, token: Any, gas_before: int, error: VMError | None
    ) -> None:
        if token is None:
            return
        token["gasCost"] = self.step_cost(frame, computation, gas_before, error)
        if isinstance(error, _PRE_EXECUTION_ERRORS) or (
            isinstance(error, InvalidInstruction) and "Jump" not in str(error)
        ):
            token["error"] = frame.fault

    def build_result(self) -> dict[str, Any]:
        computation = self.computation
        assert computation is not None
        failed = computation.is_error
        output = bytes(computation.output)
        keep = not failed or isinstance(computation.error, Revert)
        return {
            "gas": self.gas_used,
            "failed": failed,
            "returnValue": output.hex() if keep else "",
            "structLogs": self.logs,
        }


# -- callTracer ----------------------------------------------------------------------------------
@dataclass
class CallFrame:
    type: str
    sender: bytes
    to: bytes | None
    value: int | None
    gas: int
    input: bytes
    gas_used: int = 0
    output: bytes = b""
    error: str | None = None
    revert_reason: str | None = None
    calls: list[CallFrame] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)

    def clear_failed_logs(self, parent_failed: bool = False) -> None:
        failed = parent_failed or self.error is not None
        if failed:
            self.logs = []
        for call in self.calls:
            call.clear_failed_logs(failed)

    def to_json(self) -> dict[str, Any]:
        """geth's field order and encodings (omitempty fields left out when empty)."""
        out: dict[str, Any] = {"from": _hex(self.sender), "gas": hex(self.gas), "gasUsed": hex(self.gas_used)}
        if self.to is not None:
            out["to"] = _hex(self.to)
        out["input"] = _hex(self.input)
        if self.output:
            out["output"] = _hex(self.output)
        if self.error:
            out["error"] = self.error
        if self.revert_reason:
            out["revertReason"] = self.revert_reason
        if self.calls:
            out["calls"] = [call.to_json() for call in self.calls]
        if self.logs:
            out["logs"] = self.logs
        if self.value is not None:
            out["value"] = hex(self.value)
        out["type"] = self.type
        return out


class CallTracer(Tracer):
    """geth's ``callTracer``: nested call frames; ``onlyTopCall`` and ``withLog`` as geth."""

    def __init__(
        self, *, only_top_call: bool = False, with_log: bool = False, timeout: float | None = DEFAULT_TIMEOUT
    ) -> None:
        super().__init__(timeout)
        self.only_top_call = only_top_call
        self.with_log = with_log
        self.root: CallFrame | None = None

    def on_enter(self, frame: Frame) -> None:
        message = frame.computation.msg
        input_data = bytes(message.code if message.is_create else message.data)
        if frame.parent is None:
            call = CallFrame(
                frame.kind, message.sender, message.storage_address, message.value, self.tx.gas, input_data
            )
            self.root = call
        else:
            is_call = frame.kind in ("CALL", "CALLCODE", "DELEGATECALL", "STATICCALL")
            to = frame.parent.target if is_call and frame.parent.target is not None else message.storage_address
            value = None if frame.kind == "STATICCALL" else message.value
            sender = frame.parent.computation.msg.storage_address
            call = CallFrame(frame.kind, sender, to, value, message.gas, input_data)
        frame.data = call

    def on_opcode(self, frame: Frame, computation: ComputationAPI, op: int, gas: int) -> Any:
        if op != SELFDESTRUCT or self.only_top_call:
            return None
        values = computation._stack.values  # type: ignore[attr-defined]
        if not values:
            return None
        address = computation.msg.storage_address
        return _address(values[-1]), computation.state.get_balance(address)

    def on_opcode_end(
        self, frame: Frame, computation: ComputationAPI, token: Any, gas_before: int, error: VMError | None
    ) -> None:
        if token is None or error is not None:
            return
        beneficiary, balance = token
        sender = computation.msg.storage_address
        frame.data.calls.append(CallFrame("SELFDESTRUCT", sender, beneficiary, balance, 0, b""))

    def on_log(self, frame: Frame, address: bytes, topics: tuple[int, ...], data: bytes) -> None:
        if not self.with_log or (self.only_top_call and frame.parent is not None):
            return
        call: CallFrame = frame.data
        call.logs.append(
            {
                "address": _hex(address),
                "topics": [_hex(topic.to_bytes(32, "big")) for topic in topics],
                "data": _hex(data),
                "position": hex(len(call.calls)),
            }
        )

    def on_exit(self, frame: Frame) -> None:
        call: CallFrame = frame.data
        computation = frame.computation
        call.gas_used = computation.get_gas_used()
        error = self.frame_error(frame)
        output = bytes(computation.output)
        if error is None:
            call.output = output
        else:
            call.error = error
            if call.type in ("CREATE", "CREATE2"):
                call.to = None
            if isinstance(computation.error, Revert) and output:
                call.output = output
                call.revert_reason = revert_reason(output) if len(output) >= 4 else None
        if frame.parent is not None and not self.only_top_call:
            frame.parent.data.calls.append(call)

    def on_tx_end(self, computation: ComputationAPI, gas_used: int) -> None:
        if self.root is not None:
            self.root.gas_used = gas_used
            if self.with_log:
                self.root.clear_failed_logs()

    def build_result(self) -> dict[str, Any]:
        assert self.root is not None
        return self.root.to_json()


# -- prestateTracer ------------------------------------------------------------------------------
@dataclass
class _Account:
    balance: int
    nonce: int
    code: bytes
    existed: bool
    storage: dict[int, int] = field(default_factory=dict)


class PrestateTracer(Tracer):
    """geth's ``prestateTracer``: every account and slot the transaction touched, as it was before.

    With ``diffMode`` the result is ``{"pre", "post"}`` holding only what changed.
    """

    def __init__(
        self,
        *,
        diff_mode: bool = False,
        disable_code: bool = False,
        disable_storage: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(timeout)
        self.diff_mode = diff_mode
        self.disable_code = disable_code
        self.disable_storage = disable_storage
        self.pre: dict[bytes, _Account] = {}
        self.post: dict[bytes, dict[str, Any]] = {}
        self.created: set[bytes] = set()

    def _lookup(self, address: bytes) -> _Account:
        account = self.pre.get(address)
        if account is None:
            state = self.state
            assert state is not None
            account = _Account(
                state.get_balance(address), state.get_nonce(address), state.get_code(address),
                state.account_exists(address),
            )  # fmt: skip
            self.pre[address] = account
        return account

    def _lookup_storage(self, address: bytes, slot: int) -> None:
        account = self._lookup(address)
        if slot not in account.storage:
            account.storage[slot] = self.state.get_storage(address, slot)  # type: ignore[union-attr]

    def on_tx_start(self, state: StateAPI, tx: Any) -> None:
        if tx.to == b"":
            to = generate_contract_address(tx.sender, state.get_nonce(tx.sender))
            self.created.add(to)
        else:
            to = tx.to
        self._lookup(tx.sender)
        self._lookup(to)
        self._lookup(state.coinbase)

    def on_opcode(self, frame: Frame, computation: ComputationAPI, op: int, gas: int) -> Any:
        values = computation._stack.values  # type: ignore[attr-defined]
        if op in (SLOAD, SSTORE) and values:
            self._lookup_storage(computation.msg.storage_address, _word(values[-1]))
        elif op in ACCOUNT_OPS and values:
            self._lookup(_address(values[-1]))
        elif op in CALL_OPS and len(values) >= 5:
            self._lookup(_address(values[-2]))
        return None

    def on_child(self, frame: Frame, message: MessageAPI) -> None:
        if message.is_create:
            self._lookup(message.storage_address)
            self.created.add(message.storage_address)

    def on_tx_end(self, computation: ComputationAPI, gas_used: int) -> None:
        if self.diff_mode:
            self._diff()
        for address in self.created:
            account = self.pre.get(address)
            if account is not None and not account.existed:
                del self.pre[address]

    def _diff(self) -> None:
        """Keep in ``pre`` and ``post`` only what the transaction changed (geth's diff mode)."""
        state = self.state
        assert state is not None
        for address, account in list(self.pre.items()):
            if account.existed and not state.account_exists(address):
                continue  # destroyed: kept in pre, absent from post
            modified = False
            post: dict[str, Any] = {}
            balance, nonce, code = state.get_balance(address), state.get_nonce(address), state.get_code(address)
            if balance != account.balance:
                modified, post["balance"] = True, hex(balance)
            if code != account.code:
                modified = True
                if not self.disable_code:
                    post["code"] = _hex(code)
            if nonce != account.nonce:
                modified, post["nonce"] = True, nonce
            slots: dict[str, str] = {}
            for slot, before in list(account.storage.items()):
                after = state.get_storage(address, slot)
                if before == 0 or before == after:
                    del account.storage[slot]  # empty before, or unchanged: not part of the diff
                if before != after:
                    modified = True
                    if after:
                        slots[_slot(slot)] = _slot(after)
            if slots and not self.disable_storage:
                post["storage"] = slots
            if modified:
                self.post[address] = post
            else:
                del self.pre[address]

    def _account_json(self, account: _Account) -> dict[str, Any]:
        out: dict[str, Any] = {"balance": hex(account.balance)}
        if account.code and not self.disable_code:
            out["code"] = _hex(account.code)
        if account.nonce:
            out["nonce"] = account.nonce
        if account.storage and not self.disable_storage:
            out["storage"] = {_slot(k): _slot(v) for k, v in account.storage.items()}
        return out

    def build_result(self) -> dict[str, Any]:
        pre = {_hex(address): self._account_json(account) for address, account in self.pre.items()}
        if not self.diff_mode:
            return pre
        return {"pre": pre, "post": {_hex(address): post for address, post in self.post.items()}}


def _slot(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


# -- 4byteTracer and noopTracer ------------------------------------------------------------------
class FourByteTracer(Tracer):
    """geth's ``4byteTracer``: how often each selector was called, keyed ``0xsel-argsize``."""

    def __init__(self, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        super().__init__(timeout)
        self.counts: dict[str, int] = {}

    def on_enter(self, frame: Frame) -> None:
        if frame.kind not in ("CALL", "CALLCODE", "DELEGATECALL", "STATICCALL"):
            return
        computation = frame.computation
        data = bytes(computation.msg.data)
        to = frame.parent.target if frame.parent is not None else computation.msg.to
        if len(data) < 4 or to in computation.precompiles:
            return
        key = f"0x{data[:4].hex()}-{len(data) - 4}"
        self.counts[key] = self.counts.get(key, 0) + 1

    def build_result(self) -> dict[str, int]:
        return self.counts


class NoopTracer(Tracer):
    """geth's ``noopTracer``: runs the transaction, reports nothing."""

    def build_result(self) -> dict[str, Any]:
        return {}


# -- building tracers from a request -------------------------------------------------------------
@dataclass
class LoggerOptions:
    """The struct logger's switches (geth's ``logger.Config``)."""

    disable_stack: bool = False
    disable_storage: bool = False
    enable_memory: bool = False
    enable_return_data: bool = False
    limit: int = 0


def _flags(config: dict[str, Any], names: dict[str, str], tracer: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, attr in names.items():
        value = config.get(key)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise TracerError(
                f"json: cannot unmarshal {type(value).__name__} into Go struct field {tracer}Config.{key} of type bool"
            )
        out[attr] = value
    return out


NATIVE_TRACERS = ("callTracer", "prestateTracer", "4byteTracer", "noopTracer")


def make_tracer(
    name: str | None,
    tracer_config: dict[str, Any] | None = None,
    logger: LoggerOptions | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Tracer:
    """The tracer geth would build for ``{"tracer": name, "tracerConfig": ...}``."""
    if name is None:
        opts = logger or LoggerOptions()
        return StructLogger(
            disable_stack=opts.disable_stack,
            disable_storage=opts.disable_storage,
            enable_memory=opts.enable_memory,
            enable_return_data=opts.enable_return_data,
            limit=opts.limit,
            timeout=timeout,
        )
    config = tracer_config or {}
    if not isinstance(config, dict):
        raise TracerError("json: cannot unmarshal tracerConfig: expected an object")
    if name == "callTracer":
        flags = _flags(config, {"onlyTopCall": "only_top_call", "withLog": "with_log"}, "callTracer")
        return CallTracer(timeout=timeout, **flags)
    if name == "prestateTracer":
        names = {"diffMode": "diff_mode", "disableCode": "disable_code", "disableStorage": "disable_storage"}
        return PrestateTracer(timeout=timeout, **_flags(config, names, "prestateTracer"))
    if name == "4byteTracer":
        return FourByteTracer(timeout=timeout)
    if name == "noopTracer":
        return NoopTracer(timeout=timeout)
    raise TracerError(
        f"tracer not found: {name!r} (available: {', '.join(NATIVE_TRACERS)}, or no tracer for the struct logger;"
        " JavaScript tracers are not supported)"
    )


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (``"5s"``, ``"1m30s"``, ``"250ms"``), as ``time.ParseDuration``."""
    body, sign = text, 1.0
    if body[:1] in "+-" and body:
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise TracerError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None:
            raise TracerError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * total
