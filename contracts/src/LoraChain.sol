// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title LoraChain
/// @notice Typed calls to lorachain's AI precompiles for dApps.
/// @dev Inference (INFERENCE): the ABI mirrors lorachain/precompiles/abi.py, the format's one definition:
///      input  abi.encode(bytes32[] adapters, uint32[] weightsMilli, string prompt, uint32 maxNewTokens,
///                        uint32 temperatureMilli, uint32 topK, uint32 topPMilli, bytes32 seed)
///      output abi.encode(string text, uint32[] outputIds, bytes32 commitment, bytes32 modelHash,
///                        uint32 promptTokens, uint32 outputTokens)
///      Attribution (ATTRIBUTION): the ABI mirrors lorachain/precompiles/attribution_abi.py:
///      input  abi.encode(bytes inferenceInput, uint32[] outputIds, bytes32 commitment, bytes32 recordHash,
///                        uint256[] datanetIds, bytes32[] snapshotRoots, uint8 method, uint32 topK)
///      output abi.encode(uint8 method, uint256[] datanetIds, uint256[] contributionIndexes, uint256[] weights,
///                        bytes32[] contentHashes)
///      `inferenceInput` must be the very bytes the inference precompile was given: `encodeRequest` makes
///      them, `infer` sends them, so a caller can keep them for `attribute`.
///      A failed call reverts with the precompile's reason, which `infer` and `attribute` pass on unchanged.
library LoraChain {
    /// @notice The LoRA inference precompile.
    address internal constant INFERENCE = 0x0000000000000000000000000000000000000a01;
    /// @notice The attribution precompile: which datanet contributions shaped one inference's output.
    address internal constant ATTRIBUTION = 0x0000000000000000000000000000000000000a02;

    /// @notice Attribution methods (`AttributionQuery.method`, `Attribution.method`).
    uint8 internal constant METHOD_AUTO = 0; // influence when the record carries gradients, else spans
    uint8 internal constant METHOD_INFLUENCE = 1; // DataInf on projected LoRA gradients
    uint8 internal constant METHOD_SPANS = 2; // longest matching spans of the output in the corpus
    uint8 internal constant METHOD_BM25 = 3; // fixed-point BM25 retrieval (RAG citations)
    uint32 internal constant MAX_ATTRIBUTION_TOP_K = 32;

    struct Request {
        bytes32[] adapters; // adapter content hashes: none = base model, several = weighted merge
        uint32[] weightsMilli; // one per adapter when merging, summing to 1000
        string prompt;
        uint32 maxNewTokens;
        uint32 temperatureMilli; // 0 = greedy
        uint32 topK; // 0 = all tokens
        uint32 topPMilli; // 1000 = no nucleus cut
        bytes32 seed; // sampling seed (ignored when greedy)
    }

    struct Result {
        string text;
        uint32[] outputIds;
        bytes32 commitment; // keccak256 over model, adapters, prompt, output and decoding parameters
        bytes32 modelHash;
        uint32 promptTokens;
        uint32 outputTokens;
    }

    struct AttributionQuery {
        bytes inferenceInput; // the exact input the inference precompile was given (`encodeRequest`)
        uint32[] outputIds; // its answer's output ids
        bytes32 commitment; // and commitment
        bytes32 recordHash; // the adapter's training record
        uint256[] datanetIds; // the adapter's datanets
        bytes32[] snapshotRoots; // and the snapshot roots it was trained on
        uint8 method; // METHOD_*
        uint32 topK; // 1..MAX_ATTRIBUTION_TOP_K
    }

    /// @notice At most topK contributions (datanetIds[i], contributionIndexes[i]) with positive weights[i],
    ///         by weight descending then (datanetId, index) ascending. contentHashes[i] is the content the
    ///         training record says that contribution holds: pay it only if the registry agrees.
    struct Attribution {
        uint8 method; // the method that produced it (AUTO resolved)
        uint256[] datanetIds;
        uint256[] contributionIndexes;
        uint256[] weights;
        bytes32[] contentHashes;
    }

    /// @notice Greedy completion of `prompt` by one adapter (bytes32(0) for the base model).
    function complete(bytes32 adapter, string memory prompt, uint32 maxNewTokens)
        internal
        returns (Result memory)
    {
        Request memory request;
        if (adapter != bytes32(0)) {
            request.adapters = new bytes32[](1);
            request.adapters[0] = adapter;
        }
        request.prompt = prompt;
        request.maxNewTokens = maxNewTokens;
        request.topPMilli = 1000;
        return infer(request);
    }

    /// @notice Run one inference request through the precompile.
    function infer(Request memory request) internal returns (Result memory result) {
        return inferEncoded(encodeRequest(request));
    }

    /// @notice The inference precompile's input for `request`: what `infer` sends, and what an attribution
    ///         query of its answer must carry.
    function encodeRequest(Request memory request) internal pure returns (bytes memory) {
        return abi.encode(
            request.adapters,
            request.weightsMilli,
            request.prompt,
            request.maxNewTokens,
            request.temperatureMilli,
            request.topK,
            request.topPMilli,
            request.seed
        );
    }

    /// @notice Run an encoded inference request (`encodeRequest`) through the precompile.
    function inferEncoded(bytes memory input) internal returns (Result memory result) {
        bytes memory output = _call(INFERENCE, input);
        (result.text, result.outputIds, result.commitment, result.modelHash, result.promptTokens, result.outputTokens)
        = abi.decode(output, (string, uint32[], bytes32, bytes32, uint32, uint32));
    }

    /// @notice Ask the attribution precompile which contributions shaped one inference's output.
    function attribute(AttributionQuery memory query) internal returns (Attribution memory answer) {
        bytes memory output = _call(
            ATTRIBUTION,
            abi.encode(
                query.inferenceInput,
                query.outputIds,
                query.commitment,
                query.recordHash,
                query.datanetIds,
                query.snapshotRoots,
                query.method,
                query.topK
            )
        );
        require(output.length > 0, "attribution precompile gave no answer"); // e.g. none at ATTRIBUTION
        (answer.method, answer.datanetIds, answer.contributionIndexes, answer.weights, answer.contentHashes) =
            abi.decode(output, (uint8, uint256[], uint256[], uint256[], bytes32[]));
        uint256 count = answer.weights.length;
        require(
            answer.datanetIds.length == count && answer.contributionIndexes.length == count
                && answer.contentHashes.length == count,
            "attribution answer lengths differ"
        );
    }

    /// @dev Call a precompile; a failure reverts with its revert data (its reason) unchanged.
    function _call(address precompile, bytes memory input) private returns (bytes memory output) {
        bool ok;
        (ok, output) = precompile.call(input);
        if (!ok) {
            assembly {
                revert(add(output, 32), mload(output))
            }
        }
    }
}
