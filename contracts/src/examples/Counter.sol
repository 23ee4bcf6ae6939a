// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Counter
/// @notice A minimal counter, used by benchmarks as a cheap state-changing call.
contract Counter {
    /// @notice The current value of the counter.
    uint256 public number;

    /// @notice Emitted whenever the counter changes.
    /// @param by The account that changed the counter.
    /// @param newValue The value after the change.
    event Incremented(address indexed by, uint256 newValue);

    /// @notice Add one to the counter.
    function increment() external {
        _add(1);
    }

    /// @notice Add `amount` to the counter.
    /// @param amount How much to add; reverts on overflow.
    function add(uint256 amount) external {
        _add(amount);
    }

    function _add(uint256 amount) private {
        uint256 newValue = number + amount;
        number = newValue;
        emit Incremented(msg.sender, newValue);
    }
}
