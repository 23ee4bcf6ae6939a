"""The LoRA inference precompile (``INFERENCE_ADDRESS``): exact inference through the node's sidecar.

Input and output are :mod:`lorachain.precompiles.abi`. The prompt is tokenized with the model's own
tokenizer (part of the hashed model artifact), the sidecar's exact engine generates, and the output
carries the sidecar's commitment, so every node computes the same bytes.

Gas, charged before any inference (so a call's cost is known from its input alone)::

    gas = AI_BASE_GAS + units * (GAS_PER_PROMPT_TOKEN * promptTokens + GAS_PER_OUTPUT_TOKEN * maxNewTokens)
          + GAS_PER_MERGED_ADAPTER * (adapters if adapters > 1 else 0)
    units = ceil(model parameters / 1,000,000)

Each block may spend at most ``AI_BLOCK_BUDGET`` units x tokens (prompt + maxNewTokens) of AI work, so
every block stays re-executable in bounded time; a call beyond it reverts. Malformed input, an adapter
not registered in the chain's AdapterRegistry (read from state, so every node agrees), a prompt longer
than the context, too many tokens: a revert with the reason (``Error(string)``) after charging
``AI_BASE_GAS``. What depends on this node alone never reverts: a sidecar that cannot be reached, or a
registered adapter whose bytes no configured source has, raises :class:`SidecarUnavailable` out of the
EVM; the builder leaves the transaction in the pool, ``eth_call`` answers an error.

Results are a pure function of (model, input), so they are cached by ``keccak(modelHash || input)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from eth.abc import ComputationAPI, StateAPI
from eth.exceptions import Revert
from eth_utils import keccak

from lorachain.genesis.predeploys import ADAPTER_REGISTRY as _REGISTRY_ADDRESS
from lorachain.precompiles.abi import InferenceCall, InferenceOutput, PrecompileInputError
from lorachain.precompiles.adapter_sources import AdapterSources
from lorachain.precompiles.sidecar_client import SidecarClient, SidecarUnavailable
from lorachain.revert_data import encode_error
from lorachain.sidecar.types import DecodingParams, GenerationRequest, SidecarError, UnknownAdapterError

INFERENCE_ADDRESS = bytes.fromhex("0000000000000000000000000000000000000a01")
AI_BASE_GAS = 30_000
GAS_PER_PROMPT_TOKEN = 8
GAS_PER_OUTPUT_TOKEN = 32
GAS_PER_MERGED_ADAPTER = 20_000
AI_BLOCK_BUDGET = 2_000_000  # units x tokens per block
CACHE_ENTRIES = 4096
ADAPTER_REGISTRY = bytes.fromhex(_REGISTRY_ADDRESS[2:])  # the chain's registry (a genesis predeploy)
ADAPTER_OF_SLOT = 3  # slot of AdapterRegistry.adapterOf (solc layout; the e2e tests rely on it)

__all__ = ["INFERENCE_ADDRESS", "InferencePrecompile", "SidecarUnavailable", "block_ai_budget", "inference_gas"]


def inference_gas(call: InferenceCall, prompt_tokens: int, parameters: int) -> int:
    """The documented gas of one call (see the module docstring)."""
    units = model_units(parameters)
    merged = len(call.adapters) if len(call.adapters) > 1 else 0
    tokens_gas = GAS_PER_PROMPT_TOKEN * prompt_tokens + GAS_PER_OUTPUT_TOKEN * call.max_new_tokens
    return AI_BASE_GAS + units * tokens_gas + GAS_PER_MERGED_ADAPTER * merged


def model_units(parameters: int) -> int:
    return max(1, math.ceil(parameters / 1_000_000))


@dataclass
class _Budget:
    left: int


_BLOCK_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("ai_block_budget", default=None)


@contextlib.contextmanager
def block_ai_budget(units_tokens: int = AI_BLOCK_BUDGET) -> Iterator[None]:
    """Execute a block inside this: AI calls draw on one budget. Outside (``eth_call``) there is none."""
    token = _BLOCK_BUDGET.set(_Budget(units_tokens))
    try:
        yield
    finally:
        _BLOCK_BUDGET.reset(token)


def registered_in(state: StateAPI, registry: bytes, content_hash: bytes) -> bool:
    """``AdapterRegistry.adapterOf(content_hash) != 0`` read straight from ``registry``'s storage."""
    slot = int.from_bytes(keccak(content_hash + ADAPTER_OF_SLOT.to_bytes(32, "big")), "big")
    return state.get_storage(registry, slot) != 0


class InferencePrecompile:
    """``precompile(computation)`` as py-evm calls it, bound to one sidecar.

    Adapters must be registered in the chain's AdapterRegistry (read from state, so every node agrees;
    an unregistered one reverts). A registered adapter the sidecar lacks is fetched from ``sources`` by its
    hash; if none has it, the call raises :class:`SidecarUnavailable` like an unreachable sidecar would.
    """

    def __init__(
        self, client: SidecarClient | None, sources: AdapterSources | None = None, registry: bytes = ADAPTER_REGISTRY
    ) -> None:
        self.client = client
        self.sources = sources or AdapterSources()
        self.registry = registry
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._merges: dict[tuple[tuple[bytes, ...], tuple[int, ...]], str] = {}
        self._available: set[bytes] = set()
        self.cache_hits = 0
        self.cache_misses = 0

    def __call__(self, computation: ComputationAPI) -> ComputationAPI:
        data = bytes(computation.msg.data)
        try:
            call = InferenceCall.decode(data)
        except PrecompileInputError as exc:
            self._revert(computation, AI_BASE_GAS, str(exc))
        for adapter in call.adapters:
            if not registered_in(computation.state, self.registry, adapter):
                self._revert(computation, AI_BASE_GAS, f"adapter 0x{adapter.hex()} is not registered")
        client = self._client()
        model = client.model()
        prompt_ids = tuple(client.tokenizer().encode(call.prompt).ids)
        gas = inference_gas(call, len(prompt_ids), model["parameters"])
        computation.consume_gas(gas, reason="AI inference precompile")
        budget = _BLOCK_BUDGET.get()
        work = model_units(model["parameters"]) * (len(prompt_ids) + call.max_new_tokens)
        if budget is not None and work > budget.left:
            self._revert(computation, 0, "AI work budget of this block exhausted")
        try:
            output = self._output(client, call, prompt_ids, data, model)
        except SidecarError as exc:  # the sidecar refused the request: the caller's mistake, same on every node
            refusal = str(exc)
        else:
            refusal = None
        # Drawn only once the outcome is known: an unreachable sidecar (raised above) leaves the block as if
        # this call never ran, so the builder's block and every validator's replay agree.
        if budget is not None:
            budget.left -= work
        if refusal is not None:
            self._revert(computation, 0, refusal)
        computation.output = output
        return computation

    def _output(self, client: SidecarClient, call: InferenceCall, prompt_ids, data: bytes, model) -> bytes:
        key = keccak(bytes.fromhex(model["model_hash"][2:]) + data)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return cached
        self.cache_misses += 1
        params = DecodingParams(call.max_new_tokens, call.temperature_milli, call.top_k, call.top_p_milli, call.seed)
        try:
            result = client.generate(GenerationRequest(prompt_ids, self._adapter_id(client, call), params))
        except UnknownAdapterError:  # the sidecar lost it (restarted with another store?): fetch again, once
            self._available.difference_update(call.adapters)
            self._merges.pop((call.adapters, call.weights_milli), None)
            try:
                result = client.generate(GenerationRequest(prompt_ids, self._adapter_id(client, call), params))
            except UnknownAdapterError as exc:  # registered, so never the caller's fault: wait, don't revert
                raise SidecarUnavailable(f"the sidecar cannot find a registered adapter: {exc}") from exc
        output = InferenceOutput(
            text=client.tokenizer().decode(list(result.output_ids)),
            output_ids=result.output_ids,
            commitment=result.commitment,
            model_hash=result.model_hash,
            prompt_tokens=result.prompt_tokens,
            output_tokens=len(result.output_ids),
        ).encode()
        self._cache[key] = output
        if len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return output

    def _adapter_id(self, client: SidecarClient, call: InferenceCall) -> str | None:
        for adapter in call.adapters:
            self._ensure_available(client, adapter)
        if not call.adapters:
            return None
        if len(call.adapters) == 1:
            return "0x" + call.adapters[0].hex()
        key = (call.adapters, call.weights_milli)
        if key not in self._merges:
            self._merges[key] = client.merge(["0x" + a.hex() for a in call.adapters], list(call.weights_milli))
        return self._merges[key]

    def _ensure_available(self, client: SidecarClient, adapter: bytes) -> None:
        if adapter in self._available:
            return
        adapter_id = "0x" + adapter.hex()
        if not client.has_adapter(adapter_id):
            blob = self.sources.fetch(adapter_id)
            if blob is None:
                raise SidecarUnavailable(f"adapter {adapter_id} is registered but no source has its bytes")
            client.put_artifact(adapter_id, blob)
        self._available.add(adapter)

    def _client(self) -> SidecarClient:
        if self.client is None:
            raise SidecarUnavailable("this node runs without an inference sidecar (start it with --sidecar URL)")
        return self.client

    @staticmethod
    def _revert(computation: ComputationAPI, gas: int, reason: str) -> None:
        if gas:
            computation.consume_gas(min(gas, computation.get_gas_remaining()), reason="AI precompile revert")
        computation.output = encode_error(reason)
        raise Revert(computation.output)
