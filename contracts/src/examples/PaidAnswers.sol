// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {InferenceRouter} from "../InferenceRouter.sol";
import {LoraChain} from "../LoraChain.sol";

/// @title PaidAnswers
/// @notice A dApp that pays for its users' questions through the InferenceRouter: the adapter's owner, the
///         contributors attribution names and the treasury are paid; the answer is stored here.
/// @dev Send exactly the adapter's price: the router credits any overpayment to its caller, this contract.
contract PaidAnswers {
    InferenceRouter public immutable router;

    struct Answer {
        address asker;
        uint256 adapterId;
        bytes32 commitment;
        string text;
    }

    Answer[] private _answers;

    event Answered(uint256 indexed id, address indexed asker, uint256 indexed adapterId, bytes32 commitment, string text);

    constructor(InferenceRouter router_) {
        router = router_;
    }

    /// @notice Pay `msg.value` for a greedy answer of adapter `adapterId` to `question`.
    function ask(uint256 adapterId, string calldata question, uint32 maxNewTokens)
        external
        payable
        returns (uint256 id)
    {
        LoraChain.Result memory result =
            router.infer{value: msg.value}(adapterId, question, maxNewTokens, 0, 0, 1000, bytes32(0));
        id = _answers.length;
        _answers.push(Answer(msg.sender, adapterId, result.commitment, result.text));
        emit Answered(id, msg.sender, adapterId, result.commitment, result.text);
    }

    function answer(uint256 id) external view returns (Answer memory) {
        return _answers[id];
    }

    function answerCount() external view returns (uint256) {
        return _answers.length;
    }
}
