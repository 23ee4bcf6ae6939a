"""The ``debug_`` namespace: transaction and call tracing, and raw consensus encodings, as geth.

Tracing re-executes on throw-away state: a mined transaction on its block's replay (the parent's
post-state, the block's system calls, then the transactions before it), a call on the state of the
block it names. The tracers themselves live in :mod:`lorachain.node.tracing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI
from eth.exceptions import HeaderNotFound, VMError
from eth_utils import ValidationError

from lorachain.node import execution
from lorachain.node.execution import ExecutionError
from lorachain.node.node import Node
from lorachain.node.rpc import codec
from lorachain.node.rpc.blocks import block_number_or_none, resolve_block
from lorachain.node.rpc.calls import apply_state_overrides, block_overrides, parse_call
from lorachain.node.rpc.errors import invalid_params, server_error
from lorachain.node.tracing import (
    DEFAULT_TIMEOUT,
    BlockReplay,
    LoggerOptions,
    ReplayError,
    Tracer,
    TracerError,
    hooked,
    make_tracer,
    parse_duration,
)

_LOGGER_FLAGS = {
    "disableStack": "disable_stack",
    "disableStorage": "disable_storage",
    "enableMemory": "enable_memory",
    "enableReturnData": "enable_return_data",
}


@dataclass
class TraceConfig:
    """geth's ``TraceConfig`` (and ``TraceCallConfig``'s overrides), decoded."""

    tracer: str | None = None
    tracer_config: dict[str, Any] | None = None
    logger: LoggerOptions | None = None
    timeout: float = DEFAULT_TIMEOUT
    state_overrides: Any = None
    block_overrides: Any = None

    def new_tracer(self) -> Tracer:
        try:
            return make_tracer(self.tracer, self.tracer_config, self.logger, self.timeout)
        except TracerError as err:
            raise server_error(str(err)) from None


def parse_trace_config(obj: Any, arg: str, call: bool = False) -> TraceConfig:
    if obj is None:
        return TraceConfig(logger=LoggerOptions())
    if not isinstance(obj, dict):
        raise invalid_params(f"invalid {arg}: json: cannot unmarshal {type(obj).__name__} into TraceConfig")
    config = TraceConfig(logger=LoggerOptions())
    tracer = obj.get("tracer")
    if tracer is not None and not isinstance(tracer, str):
        raise invalid_params(f"invalid {arg}: json: cannot unmarshal {type(tracer).__name__} into tracer name")
    config.tracer = tracer or None
    tracer_config = obj.get("tracerConfig")
    if tracer_config is not None and not isinstance(tracer_config, dict):
        raise invalid_params(f"invalid {arg}: tracerConfig must be an object")
    config.tracer_config = tracer_config
    for key, attr in _LOGGER_FLAGS.items():
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise invalid_params(f"invalid {arg}: json: cannot unmarshal {type(value).__name__} into {key} (bool)")
        setattr(config.logger, attr, value)
    if obj.get("limit") is not None:
        config.logger.limit = codec.parse_quantity(obj["limit"], f"{arg}: limit")  # type: ignore[union-attr]
    timeout = obj.get("timeout")
    if timeout is not None:
        if not isinstance(timeout, str):
            raise invalid_params(f"invalid {arg}: json: cannot unmarshal {type(timeout).__name__} into timeout")
        try:
            config.timeout = parse_duration(timeout)
        except TracerError as err:
            raise server_error(str(err)) from None
    if call:
        config.state_overrides = obj.get("stateOverrides")
        config.block_overrides = obj.get("blockOverrides")
    return config


def _result(tracer: Tracer) -> Any:
    try:
        return tracer.result()
    except TracerError as err:
        raise server_error(str(err)) from None


class DebugApi:
    namespaces = ("debug",)

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def chain(self) -> Any:
        return self.node.chain

    # -- tracing ---------------------------------------------------------------------------------
    def debug_traceTransaction(self, tx_hash: Any, config: Any = None) -> Any:
        h = codec.parse_hash(tx_hash, "argument 0")
        options = parse_trace_config(config, "argument 1")
        location = self.chain.tx_location(h)
        if location is None:
            raise server_error(f"transaction {codec.data(h)} not found")
        tracer = options.new_tracer()
        block = self.chain.block_by_header(self.chain.header_by_hash(location.block_hash))
        replay = BlockReplay(self.chain, block)
        try:
            for _ in range(location.index):
                replay.apply_next()
            replay.apply_next(tracer, last=True)
        except TracerError as err:
            raise server_error(str(err)) from None
        return _result(tracer)

    def debug_traceBlockByNumber(self, number: Any, config: Any = None) -> list[dict[str, Any]]:
        header = block_number_or_none(self.node, number)
        if header is None:
            raise server_error(f"block #{codec.parse_quantity(number, 'argument 0')} not found")
        return self._trace_block(header, parse_trace_config(config, "argument 1"))

    def debug_traceBlockByHash(self, block_hash: Any, config: Any = None) -> list[dict[str, Any]]:
        h = codec.parse_hash(block_hash, "argument 0")
        try:
            header = self.chain.header_by_hash(h)
        except HeaderNotFound:
            raise server_error(f"block {codec.data(h)} not found") from None
        return self._trace_block(header, parse_trace_config(config, "argument 1"))

    def _trace_block(self, header: BlockHeaderAPI, options: TraceConfig) -> list[dict[str, Any]]:
        if header.block_number == 0:
            raise server_error("genesis is not traceable")
        options.new_tracer()  # reject an unknown tracer before replaying anything
        block = self.chain.block_by_header(header)
        replay = BlockReplay(self.chain, block)
        results: list[dict[str, Any]] = []
        for index, tx in enumerate(block.transactions):
            tracer = options.new_tracer()
            try:
                replay.apply_next(tracer, last=index == len(block.transactions) - 1)
                results.append({"txHash": codec.data(tx.hash), "result": tracer.result()})
            except ReplayError as err:
                raise server_error(str(err)) from None
            except TracerError as err:
                results.append({"txHash": codec.data(tx.hash), "error": str(err)})
        return results

    def debug_traceCall(self, tx_obj: Any, block: Any = "latest", config: Any = None) -> Any:
        params = parse_call(tx_obj)
        header = resolve_block(self.node, block, "argument 1")
        options = parse_trace_config(config, "argument 2", call=True)
        tracer = options.new_tracer()
        context = block_overrides(header, options.block_overrides)
        if not params.fee_given and hasattr(header, "base_fee_per_gas"):
            context.setdefault("base_fee_per_gas", 0)  # as eth_call: a call without fees pays none
        state = self.chain.state_at(header, **context)
        apply_state_overrides(state, options.state_overrides)
        vm_class = self.chain.chain_class.get_vm_class(header)
        if params.gas is None:
            params.gas = execution.RPC_GAS_CAP
        tx = execution.build_call_transaction(vm_class, state, params)
        tracer.start(state, tx)
        try:
            with hooked(state, tracer):
                computation = execution.execute(state, tx)
        except (ExecutionError, TracerError) as err:
            raise server_error(str(err)) from None
        except (ValidationError, VMError) as exc:  # py-evm's checks: value beyond balance and the like
            text = str(exc) or type(exc).__name__
            if "funds" in text.lower() or "balance" in text.lower():
                text = "insufficient funds for gas * price + value"
            raise server_error(text) from None
        tracer.finish(computation, vm_class.finalize_gas_used(tx, computation))
        return _result(tracer)

    # -- raw consensus encodings -----------------------------------------------------------------
    def debug_getRawHeader(self, block: Any) -> str:
        return codec.data(rlp.encode(resolve_block(self.node, block, "argument 0")))

    def debug_getRawBlock(self, block: Any) -> str:
        header = resolve_block(self.node, block, "argument 0")
        return codec.data(self.chain.encode_block(self.chain.block_by_header(header)))

    def debug_getRawReceipts(self, block: Any) -> list[str]:
        header = resolve_block(self.node, block, "argument 0")
        receipts = self.chain.receipts(self.chain.block_by_header(header))
        return [codec.data(receipt.encode()) for receipt in receipts]

    def debug_getRawTransaction(self, tx_hash: Any) -> str | None:
        tx = self.node.find_transaction(codec.parse_hash(tx_hash, "argument 0"))
        return codec.data(tx.encode()) if tx is not None else None
