"""The inference precompile's wire format: ABI-encoded call in, ABI-encoded result out.

This module is the format's only definition; ``contracts/src/LoraChain.sol`` mirrors it for Solidity.

  input   abi.encode(bytes32[] adapters, uint32[] weightsMilli, string prompt, uint32 maxNewTokens,
                     uint32 temperatureMilli, uint32 topK, uint32 topPMilli, bytes32 seed)
  output  abi.encode(string text, uint32[] outputIds, bytes32 commitment, bytes32 modelHash,
                     uint32 promptTokens, uint32 outputTokens)

``adapters`` are adapter content hashes (the sidecar's adapter ids): none for the base model, one for an
adapter, several with ``weightsMilli`` (thousandths, summing to 1000) for a weighted merge. Decoding
checks every field and raises :class:`PrecompileInputError` with a reason the precompile reverts with.
"""

from __future__ import annotations

from dataclasses import dataclass

import eth_abi
from eth_abi.exceptions import DecodingError

INPUT_TYPES = ("bytes32[]", "uint32[]", "string", "uint32", "uint32", "uint32", "uint32", "bytes32")
OUTPUT_TYPES = ("string", "uint32[]", "bytes32", "bytes32", "uint32", "uint32")
MAX_ADAPTERS = 16
MAX_PROMPT_BYTES = 16_384
WEIGHTS_TOTAL_MILLI = 1000


class PrecompileInputError(ValueError):
    """The call's input is malformed or out of range; the message is the revert reason."""


@dataclass(frozen=True)
class InferenceCall:
    adapters: tuple[bytes, ...] = ()
    weights_milli: tuple[int, ...] = ()
    prompt: str = ""
    max_new_tokens: int = 16
    temperature_milli: int = 0
    top_k: int = 0
    top_p_milli: int = 1000
    seed: bytes = b"\x00" * 32

    def encode(self) -> bytes:
        return eth_abi.encode(
            INPUT_TYPES,
            [list(self.adapters), list(self.weights_milli), self.prompt, self.max_new_tokens,
             self.temperature_milli, self.top_k, self.top_p_milli, self.seed],
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> InferenceCall:
        try:
            fields = eth_abi.decode(INPUT_TYPES, data)
        except (DecodingError, ValueError, OverflowError) as exc:
            raise PrecompileInputError(f"malformed input: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise PrecompileInputError("malformed input: prompt is not valid UTF-8") from exc
        adapters, weights, prompt, max_new, temperature, top_k, top_p, seed = fields
        call = cls(tuple(adapters), tuple(weights), prompt, max_new, temperature, top_k, top_p, seed)
        call.validate()
        return call

    def validate(self) -> None:
        if len(self.adapters) > MAX_ADAPTERS:
            raise PrecompileInputError(f"at most {MAX_ADAPTERS} adapters per call, got {len(self.adapters)}")
        if len(self.adapters) > 1 or self.weights_milli:
            if len(self.weights_milli) != len(self.adapters):
                raise PrecompileInputError("weightsMilli must give one weight per adapter")
            if sum(self.weights_milli) != WEIGHTS_TOTAL_MILLI or 0 in self.weights_milli:
                raise PrecompileInputError("weightsMilli must be positive and sum to 1000")
        if len(set(self.adapters)) != len(self.adapters):
            raise PrecompileInputError("an adapter is listed twice")
        if not self.prompt:
            raise PrecompileInputError("the prompt is empty")
        if len(self.prompt.encode()) > MAX_PROMPT_BYTES:
            raise PrecompileInputError(f"the prompt exceeds {MAX_PROMPT_BYTES} bytes")
        if self.max_new_tokens < 1:
            raise PrecompileInputError("maxNewTokens must be at least 1")
        if self.top_p_milli > 1000:
            raise PrecompileInputError("topPMilli must be at most 1000")


@dataclass(frozen=True)
class InferenceOutput:
    text: str
    output_ids: tuple[int, ...]
    commitment: bytes
    model_hash: bytes
    prompt_tokens: int
    output_tokens: int

    def encode(self) -> bytes:
        return eth_abi.encode(
            OUTPUT_TYPES,
            [self.text, list(self.output_ids), self.commitment, self.model_hash, self.prompt_tokens,
             self.output_tokens],
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> InferenceOutput:
        text, ids, commitment, model_hash, prompt_tokens, output_tokens = eth_abi.decode(OUTPUT_TYPES, data)
        return cls(text, tuple(ids), commitment, model_hash, prompt_tokens, output_tokens)
