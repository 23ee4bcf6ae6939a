// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title LoraChain
/// @notice Typed calls to lorachain's AI precompiles for dApps.
/// @dev The ABI mirrors lorachain/precompiles/abi.py, the format's one definition:
///      input  abi.encode(bytes32[] adapters, uint32[] weightsMilli, string prompt, uint32 maxNewTokens,
///                        uint32 temperatureMilli, uint32 topK, uint32 topPMilli, bytes32 seed)
///      output abi.encode(string text, uint32[] outputIds, bytes32 commitment, bytes32 modelHash,
///                        uint32 promptTokens, uint32 outputTokens)
///      A failed call reverts with the precompile's reason, which `infer` passes on unchanged.
library LoraChain {
    /// @notice The LoRA inference precompile.
    address internal constant INFERENCE = 0x0000000000000000000000000000000000000a01;

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
        bytes memory input = abi.encode(
            request.adapters,
            request.weightsMilli,
            request.prompt,
            request.maxNewTokens,
            request.temperatureMilli,
            request.topK,
            request.topPMilli,
            request.seed
        );
        (bool ok, bytes memory output) = INFERENCE.call(input);
        if (!ok) {
            assembly {
                revert(add(output, 32), mload(output))
            }
        }
        (result.text, result.outputIds, result.commitment, result.modelHash, result.promptTokens, result.outputTokens)
        = abi.decode(output, (string, uint32[], bytes32, bytes32, uint32, uint32));
    }
}
