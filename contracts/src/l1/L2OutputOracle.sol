// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title L2OutputOracle
/// @notice Where the proposer commits to the L2 chain on L1: every `submissionInterval` L2 blocks, the v0
///         output root keccak256(bytes32(0) | stateRoot | L2ToL1MessagePasser storageRoot | blockHash) of that
///         block. Withdrawals are proven against these roots; validators compare them with what they derive.
contract L2OutputOracle {
    struct OutputProposal {
        bytes32 outputRoot;
        uint128 timestamp;
        uint128 l2BlockNumber;
    }

    address public immutable proposer;
    uint256 public immutable submissionInterval;
    uint256 public immutable startingBlockNumber;
    OutputProposal[] internal outputs;

    event OutputProposed(
        bytes32 indexed outputRoot, uint256 indexed l2OutputIndex, uint256 indexed l2BlockNumber, uint256 l1Timestamp
    );

    error NotProposer();
    error WrongBlockNumber(uint256 expected);
    error EmptyOutputRoot();
    error L1BlockHashMismatch();
    error NoOutputs();

    constructor(address _proposer, uint256 _submissionInterval, uint256 _startingBlockNumber) {
        require(_submissionInterval > 0, "submission interval must be positive");
        proposer = _proposer;
        submissionInterval = _submissionInterval;
        startingBlockNumber = _startingBlockNumber;
    }

    /// @notice Post the output root of L2 block `l2BlockNumber` (which must be `nextBlockNumber()`); with a
    ///         non-zero `l1BlockHash`, only if L1 block `l1BlockNumber` is that block (so the proposal cannot
    ///         land on an L1 fork it was not made for).
    function proposeL2Output(bytes32 outputRoot, uint256 l2BlockNumber, bytes32 l1BlockHash, uint256 l1BlockNumber)
        external
    {
        if (msg.sender != proposer) revert NotProposer();
        if (l2BlockNumber != nextBlockNumber()) revert WrongBlockNumber(nextBlockNumber());
        if (outputRoot == bytes32(0)) revert EmptyOutputRoot();
        if (l1BlockHash != bytes32(0) && blockhash(l1BlockNumber) != l1BlockHash) revert L1BlockHashMismatch();
        emit OutputProposed(outputRoot, outputs.length, l2BlockNumber, block.timestamp);
        outputs.push(OutputProposal(outputRoot, uint128(block.timestamp), uint128(l2BlockNumber)));
    }

    function latestBlockNumber() public view returns (uint256) {
        return outputs.length == 0 ? startingBlockNumber : outputs[outputs.length - 1].l2BlockNumber;
    }

    function nextBlockNumber() public view returns (uint256) {
        return latestBlockNumber() + submissionInterval;
    }

    function outputCount() external view returns (uint256) {
        return outputs.length;
    }

    function getL2Output(uint256 index) external view returns (OutputProposal memory) {
        if (index >= outputs.length) revert NoOutputs();
        return outputs[index];
    }
}
