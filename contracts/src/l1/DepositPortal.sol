// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {L2OutputOracle} from "./L2OutputOracle.sol";
import {TrieProof} from "./TrieProof.sol";

/// @title DepositPortal
/// @notice The L1 gate of the rollup, both ways. In: a deposit here becomes a deposit transaction (type 0x7E) on L2,
///         derived by every L2 node from the TransactionDeposited event (version 0, the OP Stack format):
///         opaqueData = mint (uint256) | value (uint256) | gasLimit (uint64) | isCreation (bool) | data.
///         ETH sent along is minted to the sender on L2. A call from a contract is credited to its aliased
///         address (address + 0x1111000000000000000000000000000000001111), so no L1 contract can pose as an
///         L2 account of the same address.
///         Out: a withdrawal started in the L2ToL1MessagePasser is proven here against an output root the
///         proposer posted (a storage proof of `sentMessages[hash]` under the root's message-passer storage
///         root) and, `finalizationPeriod` seconds later, paid out of the ETH the portal holds.
contract DepositPortal {
    struct WithdrawalTransaction {
        uint256 nonce;
        address sender;
        address target;
        uint256 value;
        uint256 gasLimit;
        bytes data;
    }

    struct OutputRootProof {
        bytes32 version;
        bytes32 stateRoot;
        bytes32 messagePasserStorageRoot;
        bytes32 latestBlockhash;
    }

    struct ProvenWithdrawal {
        bytes32 outputRoot;
        uint128 timestamp;
        uint128 l2OutputIndex;
    }

    L2OutputOracle public immutable oracle;
    uint256 public immutable finalizationPeriod;
    mapping(bytes32 => ProvenWithdrawal) public provenWithdrawals;
    mapping(bytes32 => bool) public finalizedWithdrawals;

    uint256 public constant DEPOSIT_VERSION = 0;
    uint160 internal constant ALIAS_OFFSET = uint160(0x1111000000000000000000000000000000001111);
    uint64 public constant RECEIVE_DEFAULT_GAS_LIMIT = 100_000;
    uint256 public constant MAX_DATA_SIZE = 120_000;

    event TransactionDeposited(address indexed from, address indexed to, uint256 indexed version, bytes opaqueData);
    event WithdrawalProven(bytes32 indexed withdrawalHash, address indexed from, address indexed to);
    event WithdrawalFinalized(bytes32 indexed withdrawalHash, bool success);

    error CreationNeedsZeroTarget();
    error GasLimitTooLow(uint64 minimum);
    error DataTooLarge();
    error InvalidOutputRootProof();
    error WithdrawalNotSent();
    error NotProven();
    error NotYetFinalized();
    error AlreadyFinalized();
    error OutputRootChanged();
    error BadTarget();

    constructor(L2OutputOracle _oracle, uint256 _finalizationPeriod) {
        oracle = _oracle;
        finalizationPeriod = _finalizationPeriod;
    }

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

    function hashWithdrawal(WithdrawalTransaction memory w) public pure returns (bytes32) {
        return keccak256(abi.encode(w.nonce, w.sender, w.target, w.value, w.gasLimit, w.data));
    }

    /// @notice Prove that withdrawal `w` was sent on L2, against the output at `l2OutputIndex`.
    function proveWithdrawalTransaction(
        WithdrawalTransaction calldata w,
        uint256 l2OutputIndex,
        OutputRootProof calldata p,
        bytes[] calldata withdrawalProof
    ) external {
        if (w.target == address(this)) revert BadTarget();
        bytes32 outputRoot = oracle.getL2Output(l2OutputIndex).outputRoot;
        if (keccak256(abi.encode(p.version, p.stateRoot, p.messagePasserStorageRoot, p.latestBlockhash)) != outputRoot)
        {
            revert InvalidOutputRootProof();
        }
        bytes32 withdrawalHash = hashWithdrawal(w);
        bytes32 slot = keccak256(abi.encode(withdrawalHash, uint256(0))); // sentMessages[withdrawalHash]
        bytes memory value =
            TrieProof.get(abi.encodePacked(keccak256(abi.encode(slot))), withdrawalProof, p.messagePasserStorageRoot);
        if (value.length != 1 || value[0] != 0x01) revert WithdrawalNotSent();
        provenWithdrawals[withdrawalHash] = ProvenWithdrawal(outputRoot, uint128(block.timestamp), uint128(l2OutputIndex));
        emit WithdrawalProven(withdrawalHash, w.sender, w.target);
    }

    /// @notice Pay out a proven withdrawal once its finalization period has passed (once).
    function finalizeWithdrawalTransaction(WithdrawalTransaction calldata w) external {
        bytes32 withdrawalHash = hashWithdrawal(w);
        if (finalizedWithdrawals[withdrawalHash]) revert AlreadyFinalized();
        ProvenWithdrawal memory proven = provenWithdrawals[withdrawalHash];
        if (proven.timestamp == 0) revert NotProven();
        if (block.timestamp < proven.timestamp + finalizationPeriod) revert NotYetFinalized();
        if (oracle.getL2Output(proven.l2OutputIndex).outputRoot != proven.outputRoot) revert OutputRootChanged();
        finalizedWithdrawals[withdrawalHash] = true;
        (bool success,) = w.target.call{value: w.value, gas: w.gasLimit}(w.data);
        emit WithdrawalFinalized(withdrawalHash, success);
    }
}
