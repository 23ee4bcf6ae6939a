"""The attribution precompile's wire format: ABI-encoded query in, ABI-encoded top-k contributions out.

This module is the format's only definition; ``contracts/src/LoraChain.sol`` mirrors it for Solidity.

  input   abi.encode(bytes inferenceInput, uint32[] outputIds, bytes32 commitment, bytes32 recordHash,
                     uint256[] datanetIds, bytes32[] snapshotRoots, uint8 method, uint32 topK)
  output  abi.encode(uint8 method, uint256[] datanetIds, uint256[] contributionIndexes, uint256[] weights,
                     bytes32[] contentHashes)

``inferenceInput`` is the exact input the caller gave the inference precompile, ``outputIds`` and
``commitment`` what it answered: the precompile recomputes the commitment from them and refuses a query
whose commitment does not match (an unknown commitment). ``recordHash`` names the adapter's training
record (content-addressed); ``datanetIds``/``snapshotRoots`` are the adapter's registered datanets and the
snapshot roots it was trained on, which the record must match. The answer lists at most ``topK``
contributions, each ``(datanetId, contributionIndex)`` of the DatanetRegistry with a positive integer
weight and the content hash the training record gives it (the router pays a row only while the registry's
contribution at that index holds that very hash: a record's index labels are claims, its hashes are checked
against the snapshot roots), ordered by weight descending then by (datanetId, index); ``method`` says which
method produced it
(``AUTO`` resolves to span matching when the output reuses the corpus, else to influence when the record
carries gradients, else to BM25).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import eth_abi
from eth_abi.exceptions import DecodingError

from lorachain.precompiles.abi import PrecompileInputError

INPUT_TYPES = ("bytes", "uint32[]", "bytes32", "bytes32", "uint256[]", "bytes32[]", "uint8", "uint32")
OUTPUT_TYPES = ("uint8", "uint256[]", "uint256[]", "uint256[]", "bytes32[]")
MAX_TOP_K = 32
MAX_DATANETS = 16


class Method(IntEnum):
    AUTO = 0
    INFLUENCE = 1  # DataInf on projected LoRA gradients
    SPANS = 2  # longest matching spans of the output in the datanet corpus (suffix array)
    BM25 = 3  # fixed-point BM25 retrieval of the prompt + output over the corpus (RAG citations)


@dataclass(frozen=True)
class AttributionQuery:
    inference_input: bytes
    output_ids: tuple[int, ...]
    commitment: bytes
    record_hash: bytes
    datanet_ids: tuple[int, ...]
    snapshot_roots: tuple[bytes, ...]
    method: Method = Method.AUTO
    top_k: int = 8

    def encode(self) -> bytes:
        return eth_abi.encode(
            INPUT_TYPES,
            [self.inference_input, list(self.output_ids), self.commitment, self.record_hash,
             list(self.datanet_ids), list(self.snapshot_roots), int(self.method), self.top_k],
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> AttributionQuery:
        try:
            fields = eth_abi.decode(INPUT_TYPES, data)
        except (DecodingError, ValueError, OverflowError) as exc:
            raise PrecompileInputError(f"malformed input: {exc}") from exc
        inference_input, output_ids, commitment, record, datanets, roots, method, top_k = fields
        if method not in Method._value2member_map_:
            raise PrecompileInputError(f"unknown attribution method {method}")
        query = cls(inference_input, tuple(output_ids), commitment, record, tuple(datanets), tuple(roots),
                    Method(method), top_k)  # fmt: skip
        query.validate()
        return query

    def validate(self) -> None:
        if not 1 <= self.top_k <= MAX_TOP_K:
            raise PrecompileInputError(f"topK must be in 1..{MAX_TOP_K}, got {self.top_k}")
        if self.record_hash == b"\x00" * 32:
            raise PrecompileInputError("the adapter has no training record")
        if not self.output_ids:
            raise PrecompileInputError("the inference has no output tokens to attribute")
        if len(self.datanet_ids) != len(self.snapshot_roots):
            raise PrecompileInputError("datanetIds and snapshotRoots differ in length")
        if not 1 <= len(self.datanet_ids) <= MAX_DATANETS:
            raise PrecompileInputError(f"an attribution needs 1..{MAX_DATANETS} datanets")


@dataclass(frozen=True)
class Contribution:
    datanet_id: int
    index: int
    weight: int
    content_hash: bytes


@dataclass(frozen=True)
class AttributionOutput:
    method: Method
    contributions: tuple[Contribution, ...]

    def encode(self) -> bytes:
        c = self.contributions
        return eth_abi.encode(
            OUTPUT_TYPES,
            [int(self.method), [x.datanet_id for x in c], [x.index for x in c], [x.weight for x in c],
             [x.content_hash for x in c]],
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> AttributionOutput:
        method, datanets, indexes, weights, hashes = eth_abi.decode(OUTPUT_TYPES, data)
        rows = zip(datanets, indexes, weights, hashes, strict=True)
        return cls(Method(method), tuple(Contribution(d, i, w, h) for d, i, w, h in rows))
