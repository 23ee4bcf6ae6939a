// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {LoraChain} from "../LoraChain.sol";

/// @title AdapterQA
/// @notice Ask a LoRA adapter a question on chain; the answer and its inference commitment are stored.
contract AdapterQA {
    struct Answer {
        address asker;
        bytes32 adapter;
        string question;
        string answer;
        bytes32 commitment;
    }

    Answer[] private _answers;

    /// @notice Emitted for every answered question.
    event Answered(uint256 indexed id, address indexed asker, bytes32 indexed adapter, bytes32 commitment, string answer);

    /// @notice Ask `adapter` (bytes32(0): the base model) and store its greedy answer.
    function ask(bytes32 adapter, string calldata question, uint32 maxNewTokens) external returns (uint256 id) {
        LoraChain.Result memory result = LoraChain.complete(adapter, question, maxNewTokens);
        id = _answers.length;
        _answers.push(Answer(msg.sender, adapter, question, result.text, result.commitment));
        emit Answered(id, msg.sender, adapter, result.commitment, result.text);
    }

    /// @notice What `ask` would answer, without storing it (for eth_call).
    function preview(bytes32 adapter, string calldata question, uint32 maxNewTokens)
        external
        returns (string memory text, bytes32 commitment)
    {
        LoraChain.Result memory result = LoraChain.complete(adapter, question, maxNewTokens);
        return (result.text, result.commitment);
    }

    function answer(uint256 id) external view returns (Answer memory) {
        return _answers[id];
    }

    function answerCount() external view returns (uint256) {
        return _answers.length;
    }
}
