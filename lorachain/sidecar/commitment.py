"""The commitment to one inference: keccak256 over everything that determines its output.

``keccak256(abi.encode("lorachain-inference-v1", modelHash, adapterHashes, promptIds, outputIds,
maxNewTokens, temperatureMilli, topK, topPMilli, seed, stopIds))`` with Solidity ABI encoding, so a contract
or another node recomputes it from the same facts. This module is its only definition.
"""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from lorachain.sidecar.types import DecodingParams

DOMAIN = "lorachain-inference-v1"
TYPES = ["string", "bytes32", "bytes32[]", "uint32[]", "uint32[]", "uint32", "uint32", "uint32", "uint32", "bytes32",
         "uint32[]"]  # fmt: skip


def commitment_preimage(
    model_hash: bytes,
    adapter_hashes: tuple[bytes, ...],
    prompt_ids: tuple[int, ...] | list[int],
    output_ids: tuple[int, ...] | list[int],
    params: DecodingParams,
) -> bytes:
    return encode(
        TYPES,
        [
            DOMAIN,
            model_hash,
            list(adapter_hashes),
            list(prompt_ids),
            list(output_ids),
            params.max_new_tokens,
            params.temperature_milli,
            params.top_k,
            params.top_p_milli,
            params.seed,
            list(params.stop_ids),
        ],
    )


def inference_commitment(
    model_hash: bytes,
    adapter_hashes: tuple[bytes, ...],
    prompt_ids: tuple[int, ...] | list[int],
    output_ids: tuple[int, ...] | list[int],
    params: DecodingParams,
) -> bytes:
    """The 32-byte commitment of one generation."""
    return keccak(commitment_preimage(model_hash, adapter_hashes, prompt_ids, output_ids, params))
