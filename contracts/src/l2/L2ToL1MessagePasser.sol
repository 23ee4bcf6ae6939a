// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title L2ToL1MessagePasser
/// @notice The L2 predeploy at 0x4200000000000000000000000000000000000016 where withdrawals start: each one is
///         recorded as `sentMessages[withdrawalHash] = true` (slot 0), so its inclusion in the storage root —
///         which every output root commits to — can be proven on L1. The ETH sent stays here.
contract L2ToL1MessagePasser {
    uint16 public constant MESSAGE_VERSION = 1;
    mapping(bytes32 => bool) public sentMessages; // slot 0
    uint240 internal msgNonce; // slot 1

    event MessagePassed(
        uint256 indexed nonce,
        address indexed sender,
        address indexed target,
        uint256 value,
        uint256 gasLimit,
        bytes data,
        bytes32 withdrawalHash
    );

    /// @notice Withdraw the ETH sent to yourself on L1.
    receive() external payable {
        initiateWithdrawal(msg.sender, 100_000, bytes(""));
    }

    /// @notice Start a withdrawal: `msg.value` to `target` on L1, calling it with `data` and `gasLimit`.
    function initiateWithdrawal(address target, uint256 gasLimit, bytes memory data) public payable {
        uint256 nonce = messageNonce();
        bytes32 withdrawalHash = keccak256(abi.encode(nonce, msg.sender, target, msg.value, gasLimit, data));
        sentMessages[withdrawalHash] = true;
        emit MessagePassed(nonce, msg.sender, target, msg.value, gasLimit, data, withdrawalHash);
        unchecked {
            ++msgNonce;
        }
    }

    /// @notice The next withdrawal's nonce, its version in the top 16 bits.
    function messageNonce() public view returns (uint256) {
        return (uint256(MESSAGE_VERSION) << 240) | msgNonce;
    }
}
