// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title DepositPortal
/// @notice The L1 entry point of the rollup: a deposit here becomes a deposit transaction (type 0x7E) on L2,
///         derived by every L2 node from the TransactionDeposited event (version 0, the OP Stack format):
///         opaqueData = mint (uint256) | value (uint256) | gasLimit (uint64) | isCreation (bool) | data.
///         ETH sent along is minted to the sender on L2. A call from a contract is credited to its aliased
///         address (address + 0x1111000000000000000000000000000000001111), so no L1 contract can pose as an
///         L2 account of the same address.
contract DepositPortal {
    uint256 public constant DEPOSIT_VERSION = 0;
    uint160 internal constant ALIAS_OFFSET = uint160(0x1111000000000000000000000000000000001111);
    uint64 public constant RECEIVE_DEFAULT_GAS_LIMIT = 100_000;
    uint256 public constant MAX_DATA_SIZE = 120_000;

    event TransactionDeposited(address indexed from, address indexed to, uint256 indexed version, bytes opaqueData);

    error CreationNeedsZeroTarget();
    error GasLimitTooLow(uint64 minimum);
    error DataTooLarge();

    /// @notice Deposit ETH to yourself on L2.
    receive() external payable {
        depositTransaction(msg.sender, msg.value, RECEIVE_DEFAULT_GAS_LIMIT, false, bytes(""));
    }

    /// @notice The least gas a deposit carrying `byteCount` bytes of data may ask for on L2.
    function minimumGasLimit(uint64 byteCount) public pure returns (uint64) {
        return byteCount * 16 + 21_000;
    }

    /// @notice Send a transaction to L2: `msg.value` is minted to the sender there, `value` of it sent on.
    function depositTransaction(address to, uint256 value, uint64 gasLimit, bool isCreation, bytes memory data)
        public
        payable
    {
        if (isCreation && to != address(0)) revert CreationNeedsZeroTarget();
        uint64 minimum = minimumGasLimit(uint64(data.length));
        if (gasLimit < minimum) revert GasLimitTooLow(minimum);
        if (data.length > MAX_DATA_SIZE) revert DataTooLarge();
        address from = msg.sender;
        if (msg.sender != tx.origin) {
            unchecked {
                from = address(uint160(msg.sender) + ALIAS_OFFSET);
            }
        }
        bytes memory opaqueData = abi.encodePacked(msg.value, value, gasLimit, isCreation, data);
        emit TransactionDeposited(from, to, DEPOSIT_VERSION, opaqueData);
    }
}
