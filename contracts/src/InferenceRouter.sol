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
///      10000, treasury = the rest; overpayment is credited back to the caller. The contributors' cut goes
///      - when the adapter's current version has a training record (`AdapterRegistry.trainingRecordOf`): to the
///        contributions the attribution precompile names for this very inference (method AUTO, top
///        ATTRIBUTION_TOP_K), by their weights (`WeightedSplit`: floor, then largest remainders, ties by
///        (datanetId, index)); contributions no longer accepted (rejected, penalized, unknown), whose registered
///        content is not the one the training record names, or of datanets the adapter does not declare are
///        dropped first. Each contributor is credited here (`claim`); one
///        `Attributed` event per payee and an `AttributionSplit` summary make the split auditable;
///      - otherwise, or when attribution leaves no payee (`AttributionSplit` with 0 payees): to the adapter's
///        datanets by its declared shares, pro rata to accepted sizes (`DatanetRegistry.reward`; the last
///        datanet takes the rounding remainder);
///      - to the owner when the adapter declares no datanet.
///      A failing precompile (inference or attribution) reverts the whole call with its reason: nothing is paid.
///      Payments are pulled (`claim`); `infer` and `claim` are guarded against reentrancy.
contract InferenceRouter {
    /// @notice Contributions asked of the attribution precompile per inference (at most 32).
    uint32 public constant ATTRIBUTION_TOP_K = 8;

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
    /// @notice One payee of an attributed split: contribution (datanetId, index) of `contributor`, holding
    ///         `contentHash`, its weight in the attribution and the wei credited to it.
    event Attributed(
        bytes32 indexed commitment,
        uint256 indexed datanetId,
        uint256 index,
        address indexed contributor,
        bytes32 contentHash,
        uint256 weight,
        uint256 amount
    );
    /// @notice The contributors' cut of inference `commitment` was split over `payees` attributed contributions
    ///         found by `method` (0 payees: none left after dropping, and the cut went the pro-rata way).
    event AttributionSplit(bytes32 indexed commitment, uint8 method, uint256 contributorsCut, uint256 payees);
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
        LoraChain.Request memory request;
        request.adapters = new bytes32[](1);
        request.prompt = prompt;
        request.maxNewTokens = maxNewTokens;
        request.temperatureMilli = temperatureMilli;
        request.topK = topK;
        request.topPMilli = topPMilli;
        request.seed = seed;
        return _infer(adapterId, request);
    }

    /// @notice Withdraw everything credited to the caller.
    function claim() external nonReentrant returns (uint256 amount) {
        amount = balanceOf[msg.sender];
        balanceOf[msg.sender] = 0;
        (bool ok,) = msg.sender.call{value: amount}("");
        require(ok, "transfer failed");
        emit Claimed(msg.sender, amount);
    }

    function _infer(uint256 adapterId, LoraChain.Request memory request)
        private
        returns (LoraChain.Result memory result)
    {
        AdapterRegistry.Adapter memory adapter = registry.getAdapter(adapterId);
        require(!adapter.disabled, "adapter disabled");
        require(msg.value >= adapter.pricePerCall, "underpayment: send at least the adapter's price");
        request.adapters[0] = adapter.contentHash;
        bytes memory input = LoraChain.encodeRequest(request);
        result = LoraChain.inferEncoded(input);
        require(result.modelHash == adapter.baseModelHash, "adapter built for another base model");
        uint256 contributorsCut = _payOwnerAndTreasury(adapter, msg.value);
        if (contributorsCut > 0) {
            bytes32 record = registry.trainingRecordOf(adapterId);
            bool attributed =
                record != bytes32(0) && result.outputIds.length > 0 && _payAttributed(adapter, record, input, result, contributorsCut);
            if (!attributed) {
                _rewardDatanets(adapter, contributorsCut);
            }
        }
        emit Inference(adapterId, msg.sender, result.commitment, adapter.pricePerCall, result.outputTokens, result.text);
    }

    /// @dev Credit the refund, the owner's cut and the treasury's; return the contributors' cut still to place
    ///      (0 when the adapter declares no datanet: the owner takes it).
    function _payOwnerAndTreasury(AdapterRegistry.Adapter memory adapter, uint256 paid)
        private
        returns (uint256 contributorsCut)
    {
        uint256 price = adapter.pricePerCall;
        if (paid > price) {
            balanceOf[msg.sender] += paid - price;
        }
        uint256 ownerCut = price * ownerBps / 10_000;
        contributorsCut = price * contributorsBps / 10_000;
        balanceOf[treasury] += price - ownerCut - contributorsCut; // the rounding remainders land here
        if (adapter.datanetIds.length == 0) {
            ownerCut += contributorsCut;
            contributorsCut = 0;
        }
        balanceOf[adapter.owner] += ownerCut;
    }

    /// @dev The pro-rata path: the cut over the adapter's datanets by its declared shares.
    function _rewardDatanets(AdapterRegistry.Adapter memory adapter, uint256 contributorsCut) private {
        uint256 count = adapter.datanetIds.length;
        uint256 left = contributorsCut;
        for (uint256 i = 0; i < count; i++) {
            uint256 part = i + 1 == count ? left : contributorsCut * adapter.datanetSharesBps[i] / 10_000;
            left -= part;
            if (part > 0) {
                datanets.reward{value: part}(adapter.datanetIds[i]);
            }
        }
    }

    /// @dev The attributed path; false when no attributed contribution is left to pay (nothing credited).
    function _payAttributed(
        AdapterRegistry.Adapter memory adapter,
        bytes32 record,
        bytes memory input,
        LoraChain.Result memory result,
        uint256 contributorsCut
    ) private returns (bool) {
        LoraChain.Attribution memory answer = LoraChain.attribute(
            LoraChain.AttributionQuery({
                inferenceInput: input,
                outputIds: result.outputIds,
                commitment: result.commitment,
                recordHash: record,
                datanetIds: adapter.datanetIds,
                snapshotRoots: adapter.snapshotRoots,
                method: LoraChain.METHOD_AUTO,
                topK: ATTRIBUTION_TOP_K
            })
        );
        address[] memory contributors = _keepPayable(answer, adapter.datanetIds);
        uint256 payees = contributors.length;
        emit AttributionSplit(result.commitment, answer.method, contributorsCut, payees);
        if (payees == 0) {
            return false;
        }
        uint256[] memory amounts =
            WeightedSplit.split(contributorsCut, answer.weights, answer.datanetIds, answer.contributionIndexes);
        for (uint256 i = 0; i < payees; i++) {
            if (amounts[i] > 0) {
                balanceOf[contributors[i]] += amounts[i];
            }
            emit Attributed(
                result.commitment,
                answer.datanetIds[i],
                answer.contributionIndexes[i],
                contributors[i],
                answer.contentHashes[i],
                answer.weights[i],
                amounts[i]
            );
        }
        return true;
    }

    /// @dev Drop, in place, the answer's rows not to pay: zero weight, a datanet the adapter does not declare,
    ///      a contribution not accepted now (pending, rejected, penalized, unknown) or not holding the content
    ///      the record names. Returns the kept rows' contributors; the answer's arrays are shortened to the kept
    ///      rows, in their order.
    function _keepPayable(LoraChain.Attribution memory answer, uint256[] memory trainedOn)
        private
        view
        returns (address[] memory contributors)
    {
        uint256 count = answer.weights.length;
        require(count <= ATTRIBUTION_TOP_K, "attribution answered more than topK contributions");
        if (count == 0) {
            return new address[](0);
        }
        contributors =
            datanets.acceptedContributors(answer.datanetIds, answer.contributionIndexes, answer.contentHashes);
        uint256 kept = 0;
        for (uint256 i = 0; i < count; i++) {
            bool accepted = contributors[i] != address(0) && answer.weights[i] > 0;
            if (!accepted || !_contains(trainedOn, answer.datanetIds[i])) {
                continue;
            }
            _moveRow(answer, contributors, i, kept);
            kept++;
        }
        _truncate(answer, contributors, kept);
    }

    /// @dev Row `from` of the answer to position `to` (<= from), refusing a contribution named twice.
    function _moveRow(LoraChain.Attribution memory answer, address[] memory contributors, uint256 from, uint256 to)
        private
        pure
    {
        uint256 id = answer.datanetIds[from];
        uint256 index = answer.contributionIndexes[from];
        for (uint256 j = 0; j < to; j++) {
            require(
                answer.datanetIds[j] != id || answer.contributionIndexes[j] != index,
                "attribution named a contribution twice"
            );
        }
        answer.datanetIds[to] = id;
        answer.contributionIndexes[to] = index;
        answer.weights[to] = answer.weights[from];
        answer.contentHashes[to] = answer.contentHashes[from];
        contributors[to] = contributors[from];
    }

    function _truncate(LoraChain.Attribution memory answer, address[] memory contributors, uint256 kept) private pure {
        uint256[] memory ids = answer.datanetIds;
        uint256[] memory indexes = answer.contributionIndexes;
        uint256[] memory weights = answer.weights;
        bytes32[] memory hashes = answer.contentHashes;
        assembly ("memory-safe") {
            mstore(ids, kept)
            mstore(indexes, kept)
            mstore(weights, kept)
            mstore(hashes, kept)
            mstore(contributors, kept)
        }
    }

    function _contains(uint256[] memory values, uint256 value) private pure returns (bool) {
        for (uint256 i = 0; i < values.length; i++) {
            if (values[i] == value) {
                return true;
            }
        }
        return false;
    }
}

/// @title WeightedSplit
/// @notice Split an integer amount over weighted payees exactly (the rule of lorachain/attribution/splits.py):
///         payee i gets floor(total * w_i / W), W = sum of the weights; the leftover units (fewer than the
///         payees) go one each to the payees with the largest remainders (total * w_i) mod W, ties by payee id
///         ascending. The amounts sum to `total` exactly. Products are taken at full 512-bit precision.
library WeightedSplit {
    /// @param weights the payees' weights (their sum must be positive and fit 256 bits)
    /// @param idHi first part of each payee's id, @param idLo its second part: ids order by (idHi, idLo)
    ///        and should be distinct (equal ids tie by position)
    /// @return amounts one per payee, in the order given
    function split(uint256 total, uint256[] memory weights, uint256[] memory idHi, uint256[] memory idLo)
        internal
        pure
        returns (uint256[] memory amounts)
    {
        uint256 count = weights.length;
        require(idHi.length == count && idLo.length == count, "one id per weight");
        uint256 sum = 0;
        for (uint256 i = 0; i < count; i++) {
            sum += weights[i];
        }
        require(sum > 0, "total weight is zero");
        amounts = new uint256[](count);
        uint256[] memory remainders = new uint256[](count);
        uint256 placed = 0;
        for (uint256 i = 0; i < count; i++) {
            amounts[i] = mulDiv(total, weights[i], sum);
            remainders[i] = mulmod(total, weights[i], sum);
            placed += amounts[i];
        }
        uint256 leftover = total - placed;
        if (leftover == 0) {
            return amounts;
        }
        // rank the payees by (remainder descending, id ascending): an insertion sort, which is linear on the
        // usual input (attribution answers come ordered by weight, then id); zero remainders never get a unit
        uint256[] memory order = new uint256[](count);
        uint256 ranked = 0;
        for (uint256 i = 0; i < count; i++) {
            if (remainders[i] == 0) {
                continue;
            }
            uint256 j = ranked;
            while (j > 0 && _ranksBefore(remainders, idHi, idLo, i, order[j - 1])) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = i;
            ranked++;
        }
        for (uint256 k = 0; k < leftover; k++) {
            amounts[order[k]] += 1; // leftover < ranked: the leftover is the remainders' sum over W
        }
    }

    /// @dev Payee `a` ranks before payee `b`: a larger remainder, or an equal one and a smaller id (equal ids:
    ///      the earlier position, as the sort is stable).
    function _ranksBefore(
        uint256[] memory remainders,
        uint256[] memory idHi,
        uint256[] memory idLo,
        uint256 a,
        uint256 b
    ) private pure returns (bool) {
        if (remainders[a] != remainders[b]) {
            return remainders[a] > remainders[b];
        }
        if (idHi[a] != idHi[b]) {
            return idHi[a] < idHi[b];
        }
        return idLo[a] < idLo[b];
    }

    /// @notice floor(a * b / d) at full precision (the result must fit 256 bits; here it is at most `a`).
    function mulDiv(uint256 a, uint256 b, uint256 d) internal pure returns (uint256 result) {
        unchecked {
            uint256 prod0 = a * b; // the product's low 256 bits
            uint256 prod1; // and high 256 bits
            assembly {
                let mm := mulmod(a, b, not(0))
                prod1 := sub(sub(mm, prod0), lt(mm, prod0))
            }
            if (prod1 == 0) {
                return prod0 / d;
            }
            require(d > prod1, "mulDiv overflow");
            uint256 remainder;
            assembly {
                remainder := mulmod(a, b, d)
                prod1 := sub(prod1, gt(remainder, prod0))
                prod0 := sub(prod0, remainder)
            }
            uint256 twos = d & (~d + 1); // the largest power of two dividing d
            assembly {
                d := div(d, twos)
                prod0 := div(prod0, twos)
                twos := add(div(sub(0, twos), twos), 1)
            }
            prod0 |= prod1 * twos;
            uint256 inverse = (3 * d) ^ 2; // d's inverse mod 2^4, then Newton-Raphson up to 2^256
            inverse *= 2 - d * inverse;
            inverse *= 2 - d * inverse;
            inverse *= 2 - d * inverse;
            inverse *= 2 - d * inverse;
            inverse *= 2 - d * inverse;
            inverse *= 2 - d * inverse;
            result = prod0 * inverse;
        }
    }
}
