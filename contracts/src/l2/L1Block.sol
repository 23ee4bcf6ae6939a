// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title L1Block
/// @notice The L2 predeploy at 0x4200000000000000000000000000000000000015 that holds the attributes of the
///         L2 chain's current L1 origin. The first transaction of every L2 block, a deposit from the depositor
///         account, sets them; the node reads the fee parameters from these slots to charge each transaction
///         its L1 data fee. The storage layout is the OP Stack's (Ecotone), so tools that read it work alike.
contract L1Block {
    /// @notice The only account allowed to set the values (deposits from the protocol).
    address public constant DEPOSITOR_ACCOUNT = 0xDeaDDEaDDeAdDeAdDEAdDEaddeAddEAdDEAd0001;

    uint64 public number; // slot 0, bytes 0-7
    uint64 public timestamp; // slot 0, bytes 8-15
    uint256 public basefee; // slot 1
    bytes32 public hash; // slot 2
    uint64 public sequenceNumber; // slot 3, bytes 0-7
    uint32 public blobBaseFeeScalar; // slot 3, bytes 8-11
    uint32 public baseFeeScalar; // slot 3, bytes 12-15
    bytes32 public batcherHash; // slot 4
    uint256 public l1FeeOverhead; // slot 5 (pre-Ecotone, unused)
    uint256 public l1FeeScalar; // slot 6 (pre-Ecotone, unused)
    uint256 public blobBaseFee; // slot 7

    error NotDepositor();

    /// @notice Set the L1 attributes from packed calldata (not ABI-encoded), 164 bytes in all:
    ///         selector | baseFeeScalar u32 | blobBaseFeeScalar u32 | sequenceNumber u64 | timestamp u64 |
    ///         number u64 | basefee u256 | blobBaseFee u256 | hash bytes32 | batcherHash bytes32
    function setL1BlockValuesEcotone() external {
        if (msg.sender != DEPOSITOR_ACCOUNT) revert NotDepositor();
        assembly {
            // bytes 4..19 hold baseFeeScalar | blobBaseFeeScalar | sequenceNumber, which is slot 3 read as a
            // 128-bit number; bytes 20..35 hold timestamp | number, which is slot 0.
            sstore(sequenceNumber.slot, shr(128, calldataload(4)))
            sstore(number.slot, shr(128, calldataload(20)))
            sstore(basefee.slot, calldataload(36))
            sstore(blobBaseFee.slot, calldataload(68))
            sstore(hash.slot, calldataload(100))
            sstore(batcherHash.slot, calldataload(132))
        }
    }
}
