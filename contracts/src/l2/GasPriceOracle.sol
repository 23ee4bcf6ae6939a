// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The L1Block predeploy's getters the oracle reads (contracts/src/l2/L1Block.sol).
interface IL1BlockFees {
    function basefee() external view returns (uint256);
    function blobBaseFee() external view returns (uint256);
    function baseFeeScalar() external view returns (uint32);
    function blobBaseFeeScalar() external view returns (uint32);
}

/// @title GasPriceOracle
/// @notice The L2 predeploy at 0x420000000000000000000000000000000000000F that wallets and dApps ask for the L1
///         data fee of a transaction before sending it. It holds no state: it reads the L1 parameters from the
///         L1Block predeploy, which each block's L1-info deposit sets, and applies the Ecotone formula the node
///         charges with (lorachain/node/rollup/l2_fees.py):
///
///             l1Fee = l1GasUsed * (16 * l1BaseFee * baseFeeScalar + blobBaseFee * blobBaseFeeScalar) / 16e6
///
///         As in the OP Stack's oracle, `_data` is the *unsigned* fully RLP-encoded transaction, and 68 non-zero
///         bytes are added to its size for the signature it lacks; the node charges over the signed encoding.
///         Ecotone is active from genesis (`isEcotone()` is true); Fjord's FastLZ estimate is not (`isFjord()`).
contract GasPriceOracle {
    /// @notice Decimals of the fee scalars (Ecotone: 6).
    uint256 public constant DECIMALS = 6;

    address public constant L1_BLOCK = 0x4200000000000000000000000000000000000015;

    /// @notice Ecotone's fee formula applies (from genesis on this chain).
    bool public constant isEcotone = true;

    /// @notice Fjord's FastLZ-based size estimate does not apply (the node does not charge it).
    bool public constant isFjord = false;

    /// @notice L1 gas the oracle adds for the signature an unsigned transaction lacks: 68 non-zero bytes.
    uint256 internal constant SIGNATURE_GAS = 68 * 16;

    /// @notice The L2 gas price: the block's base fee (as the OP Stack's oracle answers).
    function gasPrice() external view returns (uint256) {
        return block.basefee;
    }

    /// @notice The L2 base fee.
    function baseFee() external view returns (uint256) {
        return block.basefee;
    }

    /// @notice The base fee of the L2 block's L1 origin.
    function l1BaseFee() public view returns (uint256) {
        return IL1BlockFees(L1_BLOCK).basefee();
    }

    /// @notice The blob base fee of the L2 block's L1 origin.
    function blobBaseFee() public view returns (uint256) {
        return IL1BlockFees(L1_BLOCK).blobBaseFee();
    }

    /// @notice The scalar of the L1 base fee in the L1 fee (6 decimals).
    function baseFeeScalar() public view returns (uint32) {
        return IL1BlockFees(L1_BLOCK).baseFeeScalar();
    }

    /// @notice The scalar of the L1 blob base fee in the L1 fee (6 decimals).
    function blobBaseFeeScalar() public view returns (uint32) {
        return IL1BlockFees(L1_BLOCK).blobBaseFeeScalar();
    }

    /// @notice The number of decimals of the scalars.
    function decimals() external pure returns (uint256) {
        return DECIMALS;
    }

    /// @notice The L1 gas of an unsigned RLP-encoded transaction: 4 per zero byte, 16 per other byte, plus the
    ///         signature's 68 non-zero bytes.
    function getL1GasUsed(bytes memory _data) public pure returns (uint256) {
        uint256 total = 0;
        uint256 length = _data.length;
        for (uint256 i = 0; i < length; i++) {
            total += _data[i] == 0 ? 4 : 16;
        }
        return total + SIGNATURE_GAS;
    }

    /// @notice The L1 data fee of an unsigned RLP-encoded transaction, in wei.
    function getL1Fee(bytes memory _data) external view returns (uint256) {
        uint256 scaledBaseFee = uint256(baseFeeScalar()) * 16 * l1BaseFee();
        uint256 scaledBlobBaseFee = uint256(blobBaseFeeScalar()) * blobBaseFee();
        return (getL1GasUsed(_data) * (scaledBaseFee + scaledBlobBaseFee)) / (16 * 10 ** DECIMALS);
    }

    /// @notice Fjord only (as in the OP Stack's oracle), and Fjord is not active here.
    function getL1FeeUpperBound(uint256) external pure returns (uint256) {
        revert("GasPriceOracle: getL1FeeUpperBound only supports Fjord");
    }

    /// @notice The pre-Ecotone fee overhead: deprecated since Ecotone.
    function overhead() external pure returns (uint256) {
        revert("GasPriceOracle: overhead() is deprecated");
    }

    /// @notice The pre-Ecotone fee scalar: deprecated since Ecotone.
    function scalar() external pure returns (uint256) {
        revert("GasPriceOracle: scalar() is deprecated");
    }
}
