// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AdapterRegistry} from "./AdapterRegistry.sol";
import {DatanetRegistry} from "./DatanetRegistry.sol";
import {LoraChain} from "./LoraChain.sol";

/// @title InferenceRouter
/// @notice Pay for one LoRA inference: checks the adapter's price, runs the AI precompile, records the
///         commitment in an event, and splits the price between the adapter's owner, the contributors of
///         the datanets it was trained on, and the protocol treasury.
/// @dev The split is exact in wei: owner = price * ownerBps / 10000, contributors = price * contributorsBps /
///      10000 (divided over the adapter's datanets by its declared shares, the last datanet taking the
///      remainder; the owner's if it declares none), treasury = the rest. Overpayment is credited back to
///      the caller. Payments are pulled (`claim`); `infer` and `claim` are guarded against reentrancy.
contract InferenceRouter {
    AdapterRegistry public immutable registry;
    DatanetRegistry public immutable datanets;
    address public immutable treasury;
    uint16 public immutable ownerBps;
    uint16 public immutable contributorsBps;

    mapping(address account => uint256) public balanceOf; // claimable wei
    bool private _entered; // reentrancy guard (zero by default, so the contract works as a genesis predeploy)

    event Inference(
        uint256 indexed adapterId,
        address indexed caller,
        bytes32 indexed commitment,
        uint256 price,
        uint32 outputTokens,
        string text
    );
    event Claimed(address indexed account, uint256 amount);

    modifier nonReentrant() {
        require(!_entered, "reentrant call");
        _entered = true;
        _;
        _entered = false;
    }

    constructor(AdapterRegistry registry_, address treasury_, uint16 ownerBps_, uint16 contributorsBps_) {
        require(uint256(ownerBps_) + contributorsBps_ <= 10_000, "shares exceed 10000 bps");
        registry = registry_;
        datanets = registry_.datanets();
        treasury = treasury_;
        ownerBps = ownerBps_;
        contributorsBps = contributorsBps_;
    }

    /// @notice Greedy or sampled completion of `prompt` by adapter `adapterId`, paid with `msg.value`.
    function infer(
        uint256 adapterId,
        string calldata prompt,
        uint32 maxNewTokens,
        uint32 temperatureMilli,
        uint32 topK,
        uint32 topPMilli,
        bytes32 seed
    ) external payable nonReentrant returns (LoraChain.Result memory result) {
        AdapterRegistry.Adapter memory adapter = registry.getAdapter(adapterId);
        require(!adapter.disabled, "adapter disabled");
        require(msg.value >= adapter.pricePerCall, "underpayment: send at least the adapter's price");
        LoraChain.Request memory request;
        request.adapters = new bytes32[](1);
        request.adapters[0] = adapter.contentHash;
        request.prompt = prompt;
        request.maxNewTokens = maxNewTokens;
        request.temperatureMilli = temperatureMilli;
        request.topK = topK;
        request.topPMilli = topPMilli;
        request.seed = seed;
        result = LoraChain.infer(request);
        require(result.modelHash == adapter.baseModelHash, "adapter built for another base model");
        _split(adapter, msg.value);
        emit Inference(adapterId, msg.sender, result.commitment, adapter.pricePerCall, result.outputTokens, result.text);
    }

    /// @notice Withdraw everything credited to the caller.
    function claim() external nonReentrant returns (uint256 amount) {
        amount = balanceOf[msg.sender];
        balanceOf[msg.sender] = 0;
        (bool ok,) = msg.sender.call{value: amount}("");
        require(ok, "transfer failed");
        emit Claimed(msg.sender, amount);
    }

    function _split(AdapterRegistry.Adapter memory adapter, uint256 paid) private {
        uint256 price = adapter.pricePerCall;
        if (paid > price) {
            balanceOf[msg.sender] += paid - price;
        }
        uint256 ownerCut = price * ownerBps / 10_000;
        uint256 contributorsCut = price * contributorsBps / 10_000;
        balanceOf[treasury] += price - ownerCut - contributorsCut; // the rounding remainders land here
        uint256 count = adapter.datanetIds.length;
        if (count == 0) {
            ownerCut += contributorsCut;
        } else {
            uint256 left = contributorsCut;
            for (uint256 i = 0; i < count; i++) {
                uint256 part = i + 1 == count ? left : contributorsCut * adapter.datanetSharesBps[i] / 10_000;
                left -= part;
                if (part > 0) {
                    datanets.reward{value: part}(adapter.datanetIds[i]);
                }
            }
        }
        balanceOf[adapter.owner] += ownerCut;
    }
}
