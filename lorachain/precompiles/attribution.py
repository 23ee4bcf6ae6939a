"""The attribution precompile (``ATTRIBUTION_ADDRESS``): which datanet contributions shaped an inference.

Input and output are :mod:`lorachain.precompiles.attribution_abi`. The query carries the inference it is
about (the exact input of the inference precompile, its output ids and commitment); the precompile
recomputes the commitment with the model's hash and tokenizer and refuses a query whose commitment does not
match (an unknown commitment). The adapter's training record (content-addressed, named by the caller,
normally from ``AdapterRegistry.trainingRecordOf``) is fetched like an adapter when the sidecar lacks it,
and checked against the adapter and its snapshot roots; the sidecar's deterministic engine answers
(see :mod:`lorachain.attribution.service`), so every node computes the same bytes.

Gas, charged before the work (known from the input and the record alone)::

    gas = ATTRIBUTION_BASE_GAS + units * GAS_PER_TOKEN * (promptTokens + outputTokens)
          + ceil(examples * dims / 1024) * GAS_PER_KILO_MAC
    units = ceil(model parameters / 1,000,000)

The work draws ``units * (promptTokens + outputTokens)`` from the block's AI budget, as inference does.
Malformed input, an unknown commitment, a record that does not match the adapter: a revert with the reason
after ``ATTRIBUTION_BASE_GAS``. A sidecar that cannot be reached, or a record no source has, raises
:class:`SidecarUnavailable` (the transaction waits in the pool). Answers are cached by their input.
"""

from __future__ import annotations

from collections import OrderedDict

from eth.abc import ComputationAPI
from eth_utils import keccak

from lorachain.precompiles.abi import InferenceCall, PrecompileInputError
from lorachain.precompiles.attribution_abi import AttributionOutput, AttributionQuery, Contribution, Method
from lorachain.precompiles.inference import (
    _BLOCK_BUDGET,
    InferencePrecompile,
    model_units,
    registered_in,
)
from lorachain.precompiles.sidecar_client import SidecarUnavailable
from lorachain.sidecar import wire
from lorachain.sidecar.commitment import inference_commitment
from lorachain.sidecar.types import DecodingParams, SidecarError, UnknownRecordError

ATTRIBUTION_ADDRESS = bytes.fromhex("0000000000000000000000000000000000000a02")
ATTRIBUTION_BASE_GAS = 40_000
GAS_PER_TOKEN = 48  # one traced forward and backward pass per token
GAS_PER_KILO_MAC = 2  # the matrix-vector product over the record's vectors
CACHE_ENTRIES = 4096


def attribution_gas(tokens: int, parameters: int, examples: int, dims: int) -> int:
    """The documented gas of one query (see the module docstring)."""
    macs = -(-examples * max(dims, 1) // 1024)
    return ATTRIBUTION_BASE_GAS + model_units(parameters) * GAS_PER_TOKEN * tokens + macs * GAS_PER_KILO_MAC


class AttributionPrecompile:
    """``precompile(computation)`` as py-evm calls it; shares the inference precompile's sidecar and sources."""

    def __init__(self, inference: InferencePrecompile) -> None:
        self.inference = inference
        self._records: dict[bytes, dict] = {}
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()

    def __call__(self, computation: ComputationAPI) -> ComputationAPI:
        data = bytes(computation.msg.data)
        revert = InferencePrecompile._revert
        try:
            query = AttributionQuery.decode(data)
            call = InferenceCall.decode(query.inference_input)
        except PrecompileInputError as exc:
            revert(computation, ATTRIBUTION_BASE_GAS, str(exc))
        if len(call.adapters) != 1:
            revert(computation, ATTRIBUTION_BASE_GAS, "attribution is for an inference by exactly one adapter")
        adapter = call.adapters[0]
        if not registered_in(computation.state, self.inference.registry, adapter):
            revert(computation, ATTRIBUTION_BASE_GAS, f"adapter 0x{adapter.hex()} is not registered")
        client = self.inference._client()
        model = client.model()
        prompt_ids = tuple(client.tokenizer().encode(call.prompt).ids)
        params = DecodingParams(call.max_new_tokens, call.temperature_milli, call.top_k, call.top_p_milli, call.seed)
        model_hash = bytes.fromhex(model["model_hash"][2:])
        if inference_commitment(model_hash, (adapter,), prompt_ids, query.output_ids, params) != query.commitment:
            revert(computation, ATTRIBUTION_BASE_GAS, "unknown commitment: it does not match the inference given")
        try:
            info = self._record_info(client, query.record_hash)
        except SidecarError as exc:  # the record's bytes are fixed by its hash: every node refuses alike
            revert(computation, ATTRIBUTION_BASE_GAS, f"attribution: {exc}")
        tokens = len(prompt_ids) + len(query.output_ids)
        gas = attribution_gas(tokens, model["parameters"], info["examples"], info["influence_dims"])
        computation.consume_gas(gas, reason="AI attribution precompile")
        budget = _BLOCK_BUDGET.get()
        work = model_units(model["parameters"]) * tokens
        if budget is not None and work > budget.left:
            revert(computation, 0, "AI work budget of this block exhausted")
        self.inference._ensure_available(client, adapter)
        key = keccak(model_hash + data)
        output = self._cache.get(key)
        refusal = None
        if output is None:
            request = wire.AttributeRequest(
                query.record_hash, "0x" + adapter.hex(), prompt_ids, query.output_ids, int(query.method), query.top_k,
                tuple(zip(query.datanet_ids, query.snapshot_roots, strict=True)),
            )  # fmt: skip
            try:
                method, rows = client.attribute(request)
            except UnknownRecordError as exc:  # the sidecar lost it after we checked: wait, don't revert
                self._records.pop(query.record_hash, None)
                raise SidecarUnavailable(f"the sidecar lost training record 0x{query.record_hash.hex()}") from exc
            except SidecarError as exc:  # deterministic refusal (record does not match, ...): the caller's
                refusal = f"attribution: {exc}"
            else:
                contributions = tuple(Contribution(d, i, w, h) for d, i, w, h in rows)
                output = AttributionOutput(Method(method), contributions).encode()
                self._cache[key] = output
                if len(self._cache) > CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        if budget is not None:
            budget.left -= work
        if refusal is not None:
            revert(computation, 0, refusal)
        computation.output = output
        return computation

    def _record_info(self, client, record_hash: bytes) -> dict:
        """The record's summary, storing it in the sidecar from a source first if needed."""
        cached = self._records.get(record_hash)
        if cached is not None:
            return cached
        record_id = "0x" + record_hash.hex()
        info = client.record_info(record_id)
        if info is None:
            blob = self.inference.sources.fetch(record_id, suffix=".record")
            if blob is None:
                raise SidecarUnavailable(f"training record {record_id} is not in the sidecar and no source has it")
            info = client.put_record(record_id, blob)
        self._records[record_hash] = info
        return info
