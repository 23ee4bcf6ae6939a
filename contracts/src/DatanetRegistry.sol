// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title DatanetRegistry
/// @notice Datanets: curated collections of training-data contributions, the stakes their contributors put up,
///         and the rewards they earn.
/// @dev A contribution is a content hash with a declared size, staked with at least the datanet's `minStake`
///      (0 by default). A content hash enters a datanet once (exact duplicates are refused, whatever the first
///      one's status). The datanet's owner and curators review each contribution once:
///      - accepted: the size joins the contributor's share of the datanet's rewards, and the stake is returned
///        (credited to the contributor's claimable balance) at once, or, when the datanet sets a challenge
///        window, held for that long (`releaseStake` after it): an accepted contribution penalized within the
///        window loses its stake like a rejected one;
///      - rejected (low quality, near-duplicate found off chain, malformed, adversarial): the stake is
///        slashed into the datanet's reward pool, spread over the accepted contributors (to the owner while
///        none is accepted), so no wei is lost; a rejected contribution never earns.
///      An accepted contribution later found redundant or adversarial can be penalized: its rewards up to
///      then are settled, its size leaves the datanet's accepted size, it earns nothing more (attribution
///      skips it too: see `acceptedContributors`), and a stake still held in the challenge window is slashed.
///      Rewards use a reward-per-size accumulator, so paying a datanet costs O(1) gas whatever its number of
///      contributors; the division remainder is carried into the next reward. Payments are pulled (`claim`).
///      `snapshot` folds the accepted content hashes, in acceptance order, into a root that adapters trained
///      on the datanet refer to (a penalized contribution stays in that history: it was accepted then).
///      Predeploy-compatible: no constructor, nothing written at deployment; the reentrancy guard is zero.
contract DatanetRegistry {
    enum Status {
        Pending,
        Accepted,
        Rejected,
        Penalized
    }

    /// @notice Reasons for `reject` and `penalize`.
    uint8 public constant REASON_LOW_QUALITY = 1;
    uint8 public constant REASON_DUPLICATE = 2; // a near-duplicate, found off chain (n-gram overlap)
    uint8 public constant REASON_MALFORMED = 3;
    uint8 public constant REASON_ADVERSARIAL = 4;

    struct Datanet {
        address owner;
        string name;
        string metadataURI;
        uint256 acceptedSize; // sum of the sizes of the accepted (and not penalized) contributions
        bytes32 snapshotRoot; // keccak fold of accepted contributions up to the last snapshot
        uint64 snapshotCount; // accepted contributions covered by snapshotRoot
        uint64 acceptedCount; // contributions ever accepted (the acceptance list's length; penalized included)
        uint64 penalizedCount; // of those, penalized since
        uint256 minStake; // wei a contribution must stake
    }

    struct Contribution {
        bytes32 contentHash;
        address contributor;
        uint64 size;
        Status status;
        uint8 reason; // why it was rejected or penalized (0 otherwise)
        uint256 stake; // wei staked: returned on acceptance, slashed on rejection
    }

    uint256 private constant SCALE = 1e18;
    /// @notice The longest challenge window a datanet may set.
    uint64 public constant MAX_CHALLENGE_WINDOW = 90 days;

    uint256 public datanetCount;
    mapping(uint256 datanetId => Datanet) private _datanets;
    mapping(uint256 datanetId => Contribution[]) private _contributions;
    mapping(uint256 datanetId => bytes32[]) private _accepted; // accepted content hashes, in acceptance order
    mapping(uint256 datanetId => mapping(address account => bool)) public isCurator;
    mapping(uint256 datanetId => mapping(address contributor => uint256)) public sizeOf;

    mapping(uint256 datanetId => uint256) private _rewardPerSize; // scaled by SCALE
    mapping(uint256 datanetId => uint256) private _carry; // wei not yet spread over sizes
    mapping(uint256 datanetId => mapping(address contributor => uint256)) private _rewardDebt;
    mapping(address account => uint256) private _settled;
    bool private _entered; // reentrancy guard (zero by default, so the contract works as a genesis predeploy)
    mapping(uint256 datanetId => mapping(bytes32 contentHash => uint256)) private _indexPlusOne;
    /// @notice Seconds an accepted contribution's stake stays held, open to a penalty (0: returned at once).
    mapping(uint256 datanetId => uint64) public challengeWindowOf;
    mapping(uint256 datanetId => mapping(uint256 index => uint64)) private _stakeHeldUntil; // 0: not held

    event DatanetCreated(uint256 indexed datanetId, address indexed owner, string name);
    event MinStakeSet(uint256 indexed datanetId, uint256 minStake);
    event CuratorSet(uint256 indexed datanetId, address indexed curator, bool enabled);
    event Contributed(
        uint256 indexed datanetId,
        uint256 indexed index,
        address indexed contributor,
        bytes32 contentHash,
        uint64 size,
        uint256 stake
    );
    event Reviewed(uint256 indexed datanetId, uint256 indexed index, bool accepted, uint8 reason);
    event StakeReturned(uint256 indexed datanetId, uint256 indexed index, address indexed contributor, uint256 amount);
    event StakeHeld(
        uint256 indexed datanetId, uint256 indexed index, address indexed contributor, uint256 amount, uint64 until
    );
    event ChallengeWindowSet(uint256 indexed datanetId, uint64 window);
    event Slashed(
        uint256 indexed datanetId, uint256 indexed index, address indexed contributor, uint256 amount, uint8 reason
    );
    event Penalized(
        uint256 indexed datanetId, uint256 indexed index, address indexed contributor, uint8 reason, uint64 size
    );
    event Snapshot(uint256 indexed datanetId, bytes32 root, uint64 contributions);
    event Rewarded(uint256 indexed datanetId, uint256 amount);
    event Claimed(address indexed account, uint256 amount);

    modifier onlyOwner(uint256 datanetId) {
        require(_datanets[datanetId].owner == msg.sender, "not the datanet owner");
        _;
    }

    modifier onlyCurator(uint256 datanetId) {
        require(_datanets[datanetId].owner == msg.sender || isCurator[datanetId][msg.sender], "not a curator");
        _;
    }

    function createDatanet(string calldata name, string calldata metadataURI) external returns (uint256 datanetId) {
        return _create(name, metadataURI, 0);
    }

    /// @notice A datanet whose contributions must each stake at least `minStake` wei.
    function createDatanet(string calldata name, string calldata metadataURI, uint256 minStake)
        external
        returns (uint256 datanetId)
    {
        return _create(name, metadataURI, minStake);
    }

    /// @notice The stake later contributions must put up (earlier ones keep theirs).
    function setMinStake(uint256 datanetId, uint256 minStake) external onlyOwner(datanetId) {
        _datanets[datanetId].minStake = minStake;
        emit MinStakeSet(datanetId, minStake);
    }

    /// @notice Hold the stake of contributions accepted from now on for `window` seconds after acceptance.
    function setChallengeWindow(uint256 datanetId, uint64 window) external onlyOwner(datanetId) {
        require(window <= MAX_CHALLENGE_WINDOW, "challenge window above 90 days");
        challengeWindowOf[datanetId] = window;
        emit ChallengeWindowSet(datanetId, window);
    }

    /// @notice Return the stake of an accepted contribution whose challenge window is over (anyone may call).
    function releaseStake(uint256 datanetId, uint256 index) external {
        Contribution storage c = _contribution(datanetId, index);
        uint64 until = _stakeHeldUntil[datanetId][index];
        require(until != 0, "no stake held");
        require(block.timestamp >= until, "challenge window still open");
        _returnStake(datanetId, index, c);
    }

    /// @notice The stake held for contribution `index` and when it can be released (0, 0 when none is held).
    function heldStake(uint256 datanetId, uint256 index) external view returns (uint256 amount, uint64 until) {
        until = _stakeHeldUntil[datanetId][index];
        amount = until == 0 ? 0 : _contribution(datanetId, index).stake;
    }

    function setCurator(uint256 datanetId, address curator, bool enabled) external onlyOwner(datanetId) {
        isCurator[datanetId][curator] = enabled;
        emit CuratorSet(datanetId, curator, enabled);
    }

    function transferDatanet(uint256 datanetId, address newOwner) external onlyOwner(datanetId) {
        require(newOwner != address(0), "zero owner");
        _datanets[datanetId].owner = newOwner;
    }

    /// @notice Offer the content `contentHash` of `size` bytes to the datanet, staking `msg.value`.
    function contribute(uint256 datanetId, bytes32 contentHash, uint64 size)
        external
        payable
        returns (uint256 index)
    {
        require(exists(datanetId), "unknown datanet");
        require(contentHash != bytes32(0) && size > 0, "empty contribution");
        require(msg.value >= _datanets[datanetId].minStake, "stake below the datanet's minimum");
        require(_indexPlusOne[datanetId][contentHash] == 0, "duplicate contribution");
        index = _contributions[datanetId].length;
        _contributions[datanetId].push(Contribution(contentHash, msg.sender, size, Status.Pending, 0, msg.value));
        _indexPlusOne[datanetId][contentHash] = index + 1;
        emit Contributed(datanetId, index, msg.sender, contentHash, size, msg.value);
    }

    /// @notice Accept a pending contribution, or reject it as low quality.
    function review(uint256 datanetId, uint256 index, bool accept) external onlyCurator(datanetId) {
        if (accept) {
            _accept(datanetId, index);
        } else {
            _reject(datanetId, index, REASON_LOW_QUALITY);
        }
    }

    /// @notice Reject a pending contribution for `reason` (REASON_*): its stake is slashed into the reward pool.
    function reject(uint256 datanetId, uint256 index, uint8 reason) external onlyCurator(datanetId) {
        _reject(datanetId, index, reason);
    }

    /// @notice Stop an accepted contribution found redundant or adversarial from earning: its rewards up to now
    ///         are settled, its size leaves the datanet's accepted size.
    function penalize(uint256 datanetId, uint256 index, uint8 reason) external onlyCurator(datanetId) {
        _checkReason(reason);
        Contribution storage c = _contribution(datanetId, index);
        require(c.status == Status.Accepted, "not an accepted contribution");
        Datanet storage d = _datanets[datanetId];
        address contributor = c.contributor;
        _settle(datanetId, contributor);
        sizeOf[datanetId][contributor] -= c.size;
        _rewardDebt[datanetId][contributor] = sizeOf[datanetId][contributor] * _rewardPerSize[datanetId] / SCALE;
        d.acceptedSize -= c.size;
        d.penalizedCount += 1;
        c.status = Status.Penalized;
        c.reason = reason;
        emit Penalized(datanetId, index, contributor, reason, c.size);
        uint64 until = _stakeHeldUntil[datanetId][index];
        if (until != 0) {
            if (block.timestamp < until) {
                delete _stakeHeldUntil[datanetId][index];
                _distribute(datanetId, c.stake); // over the others: its own size has just left
                emit Slashed(datanetId, index, contributor, c.stake, reason);
            } else {
                _returnStake(datanetId, index, c); // the window was over: the stake was already the contributor's
            }
        }
    }

    /// @notice Fold the accepted contributions not yet covered into the snapshot root.
    function snapshot(uint256 datanetId) external onlyCurator(datanetId) returns (bytes32 root) {
        Datanet storage d = _datanets[datanetId];
        root = d.snapshotRoot;
        bytes32[] storage accepted = _accepted[datanetId];
        for (uint256 i = d.snapshotCount; i < accepted.length; i++) {
            root = keccak256(abi.encodePacked(root, accepted[i]));
        }
        d.snapshotRoot = root;
        d.snapshotCount = uint64(accepted.length);
        emit Snapshot(datanetId, root, d.snapshotCount);
    }

    /// @notice Pay `msg.value` to the datanet's contributors, pro rata to their accepted sizes (to its owner
    ///         while nothing is accepted).
    function reward(uint256 datanetId) external payable {
        require(exists(datanetId), "unknown datanet");
        _distribute(datanetId, msg.value);
        emit Rewarded(datanetId, msg.value);
    }

    /// @notice Wei `account` can claim from `datanetIds` and earlier settlements (returned stakes included).
    function claimable(address account, uint256[] calldata datanetIds) external view returns (uint256 amount) {
        amount = _settled[account];
        for (uint256 i = 0; i < datanetIds.length; i++) {
            amount += _pending(datanetIds[i], account);
        }
    }

    function claim(uint256[] calldata datanetIds) external returns (uint256 amount) {
        require(!_entered, "reentrant call");
        _entered = true;
        for (uint256 i = 0; i < datanetIds.length; i++) {
            _settle(datanetIds[i], msg.sender);
        }
        amount = _settled[msg.sender];
        _settled[msg.sender] = 0;
        (bool ok,) = msg.sender.call{value: amount}("");
        require(ok, "transfer failed");
        emit Claimed(msg.sender, amount);
        _entered = false;
    }

    function exists(uint256 datanetId) public view returns (bool) {
        return datanetId != 0 && datanetId <= datanetCount;
    }

    function getDatanet(uint256 datanetId) external view returns (Datanet memory) {
        require(exists(datanetId), "unknown datanet");
        return _datanets[datanetId];
    }

    function getContribution(uint256 datanetId, uint256 index) external view returns (Contribution memory) {
        return _contribution(datanetId, index);
    }

    function contributionStatus(uint256 datanetId, uint256 index) external view returns (Status) {
        return _contribution(datanetId, index).status;
    }

    function contributionCount(uint256 datanetId) external view returns (uint256) {
        return _contributions[datanetId].length;
    }

    /// @notice The contribution of `contentHash` to the datanet, if any (any status).
    function contributionIndexOf(uint256 datanetId, bytes32 contentHash)
        external
        view
        returns (bool found, uint256 index)
    {
        uint256 plusOne = _indexPlusOne[datanetId][contentHash];
        return (plusOne != 0, plusOne == 0 ? 0 : plusOne - 1);
    }

    /// @notice The `position`-th accepted contribution in acceptance order (the order `snapshot` folds).
    function acceptedAt(uint256 datanetId, uint256 position) external view returns (uint256 index, bytes32 contentHash) {
        require(position < _accepted[datanetId].length, "unknown accepted position");
        contentHash = _accepted[datanetId][position];
        index = _indexPlusOne[datanetId][contentHash] - 1;
    }

    /// @notice For each (datanetIds[i], indexes[i]): its contributor while it is accepted and holds the content
    ///         contentHashes[i], else address(0) (unknown, pending, rejected, penalized, or another content:
    ///         a training record that labels a content with someone else's index is not paid). What
    ///         per-inference attribution pays.
    function acceptedContributors(
        uint256[] calldata datanetIds,
        uint256[] calldata indexes,
        bytes32[] calldata contentHashes
    ) external view returns (address[] memory contributors) {
        require(datanetIds.length == indexes.length, "one index per datanet id");
        require(contentHashes.length == indexes.length, "one content hash per index");
        contributors = new address[](indexes.length);
        for (uint256 i = 0; i < indexes.length; i++) {
            Contribution[] storage list = _contributions[datanetIds[i]];
            if (indexes[i] < list.length) {
                Contribution storage c = list[indexes[i]];
                if (c.status == Status.Accepted && c.contentHash == contentHashes[i]) {
                    contributors[i] = c.contributor;
                }
            }
        }
    }

    function _create(string calldata name, string calldata metadataURI, uint256 minStake)
        private
        returns (uint256 datanetId)
    {
        require(bytes(name).length > 0, "empty name");
        datanetId = ++datanetCount;
        Datanet storage d = _datanets[datanetId];
        d.owner = msg.sender;
        d.name = name;
        d.metadataURI = metadataURI;
        d.minStake = minStake;
        emit DatanetCreated(datanetId, msg.sender, name);
        if (minStake > 0) {
            emit MinStakeSet(datanetId, minStake);
        }
    }

    function _accept(uint256 datanetId, uint256 index) private {
        Contribution storage c = _pendingReview(datanetId, index);
        Datanet storage d = _datanets[datanetId];
        address contributor = c.contributor;
        c.status = Status.Accepted;
        _settle(datanetId, contributor);
        sizeOf[datanetId][contributor] += c.size;
        _rewardDebt[datanetId][contributor] = sizeOf[datanetId][contributor] * _rewardPerSize[datanetId] / SCALE;
        d.acceptedSize += c.size;
        d.acceptedCount += 1;
        _accepted[datanetId].push(c.contentHash);
        emit Reviewed(datanetId, index, true, 0);
        if (c.stake == 0) {
            return;
        }
        uint64 window = challengeWindowOf[datanetId];
        if (window == 0) {
            _settled[contributor] += c.stake;
            emit StakeReturned(datanetId, index, contributor, c.stake);
        } else {
            uint64 until = uint64(block.timestamp) + window;
            _stakeHeldUntil[datanetId][index] = until;
            emit StakeHeld(datanetId, index, contributor, c.stake, until);
        }
    }

    function _returnStake(uint256 datanetId, uint256 index, Contribution storage c) private {
        delete _stakeHeldUntil[datanetId][index];
        _settled[c.contributor] += c.stake;
        emit StakeReturned(datanetId, index, c.contributor, c.stake);
    }

    function _reject(uint256 datanetId, uint256 index, uint8 reason) private {
        _checkReason(reason);
        Contribution storage c = _pendingReview(datanetId, index);
        c.status = Status.Rejected;
        c.reason = reason;
        uint256 stake = c.stake;
        if (stake > 0) {
            _distribute(datanetId, stake);
            emit Slashed(datanetId, index, c.contributor, stake, reason);
        }
        emit Reviewed(datanetId, index, false, reason);
    }

    /// @dev Spread `amount` over the accepted sizes (the owner's while there are none).
    function _distribute(uint256 datanetId, uint256 amount) private {
        Datanet storage d = _datanets[datanetId];
        if (d.acceptedSize == 0) {
            _settled[d.owner] += amount;
        } else {
            uint256 pool = amount + _carry[datanetId];
            uint256 perSize = pool * SCALE / d.acceptedSize;
            _rewardPerSize[datanetId] += perSize;
            _carry[datanetId] = pool - perSize * d.acceptedSize / SCALE;
        }
    }

    function _contribution(uint256 datanetId, uint256 index) private view returns (Contribution storage) {
        require(index < _contributions[datanetId].length, "unknown contribution");
        return _contributions[datanetId][index];
    }

    function _pendingReview(uint256 datanetId, uint256 index) private view returns (Contribution storage c) {
        c = _contribution(datanetId, index);
        require(c.status == Status.Pending, "already reviewed");
    }

    function _checkReason(uint8 reason) private pure {
        require(reason >= REASON_LOW_QUALITY && reason <= REASON_ADVERSARIAL, "unknown reason");
    }

    function _pending(uint256 datanetId, address account) private view returns (uint256) {
        return sizeOf[datanetId][account] * _rewardPerSize[datanetId] / SCALE - _rewardDebt[datanetId][account];
    }

    function _settle(uint256 datanetId, address account) private {
        uint256 owed = _pending(datanetId, account);
        if (owed > 0) {
            _settled[account] += owed;
        }
        _rewardDebt[datanetId][account] = sizeOf[datanetId][account] * _rewardPerSize[datanetId] / SCALE;
    }
}
