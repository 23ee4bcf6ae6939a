// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title DatanetRegistry
/// @notice Datanets: curated collections of training-data contributions, and the rewards they earn.
/// @dev A contribution is a content hash with a declared size. The datanet's owner and curators accept or
///      reject it; accepted sizes are each contributor's share of the datanet's rewards, paid by pull
///      (`claim`). Rewards use a reward-per-size accumulator, so paying a datanet costs O(1) gas whatever its
///      number of contributors; the division remainder is carried into the next reward, so no wei is lost.
///      `snapshot` folds the accepted contributions into a root that adapters trained on it refer to.
contract DatanetRegistry {
    enum Status {
        Pending,
        Accepted,
        Rejected
    }

    struct Datanet {
        address owner;
        string name;
        string metadataURI;
        uint256 acceptedSize; // sum of accepted contribution sizes
        bytes32 snapshotRoot; // keccak fold of accepted contributions up to the last snapshot
        uint64 snapshotCount; // accepted contributions covered by snapshotRoot
        uint64 acceptedCount;
    }

    struct Contribution {
        bytes32 contentHash;
        address contributor;
        uint64 size;
        Status status;
    }

    uint256 private constant SCALE = 1e18;

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

    event DatanetCreated(uint256 indexed datanetId, address indexed owner, string name);
    event CuratorSet(uint256 indexed datanetId, address indexed curator, bool enabled);
    event Contributed(uint256 indexed datanetId, uint256 indexed index, address indexed contributor, bytes32 contentHash, uint64 size);
    event Reviewed(uint256 indexed datanetId, uint256 indexed index, bool accepted);
    event Snapshot(uint256 indexed datanetId, bytes32 root, uint64 contributions);
    event Rewarded(uint256 indexed datanetId, uint256 amount);
    event Claimed(address indexed account, uint256 amount);

    modifier onlyOwner(uint256 datanetId) {
        require(_datanets[datanetId].owner == msg.sender, "not the datanet owner");
        _;
    }

    function createDatanet(string calldata name, string calldata metadataURI) external returns (uint256 datanetId) {
        require(bytes(name).length > 0, "empty name");
        datanetId = ++datanetCount;
        Datanet storage d = _datanets[datanetId];
        d.owner = msg.sender;
        d.name = name;
        d.metadataURI = metadataURI;
        emit DatanetCreated(datanetId, msg.sender, name);
    }

    function setCurator(uint256 datanetId, address curator, bool enabled) external onlyOwner(datanetId) {
        isCurator[datanetId][curator] = enabled;
        emit CuratorSet(datanetId, curator, enabled);
    }

    function transferDatanet(uint256 datanetId, address newOwner) external onlyOwner(datanetId) {
        require(newOwner != address(0), "zero owner");
        _datanets[datanetId].owner = newOwner;
    }

    function contribute(uint256 datanetId, bytes32 contentHash, uint64 size) external returns (uint256 index) {
        require(exists(datanetId), "unknown datanet");
        require(contentHash != bytes32(0) && size > 0, "empty contribution");
        index = _contributions[datanetId].length;
        _contributions[datanetId].push(Contribution(contentHash, msg.sender, size, Status.Pending));
        emit Contributed(datanetId, index, msg.sender, contentHash, size);
    }

    function review(uint256 datanetId, uint256 index, bool accept) external {
        Datanet storage d = _datanets[datanetId];
        require(d.owner == msg.sender || isCurator[datanetId][msg.sender], "not a curator");
        require(index < _contributions[datanetId].length, "unknown contribution");
        Contribution storage c = _contributions[datanetId][index];
        require(c.status == Status.Pending, "already reviewed");
        c.status = accept ? Status.Accepted : Status.Rejected;
        if (accept) {
            _settle(datanetId, c.contributor);
            sizeOf[datanetId][c.contributor] += c.size;
            _rewardDebt[datanetId][c.contributor] = sizeOf[datanetId][c.contributor] * _rewardPerSize[datanetId] / SCALE;
            d.acceptedSize += c.size;
            d.acceptedCount += 1;
            _accepted[datanetId].push(c.contentHash);
        }
        emit Reviewed(datanetId, index, accept);
    }

    /// @notice Fold the accepted contributions not yet covered into the snapshot root.
    function snapshot(uint256 datanetId) external returns (bytes32 root) {
        Datanet storage d = _datanets[datanetId];
        require(d.owner == msg.sender || isCurator[datanetId][msg.sender], "not a curator");
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
        Datanet storage d = _datanets[datanetId];
        if (d.acceptedSize == 0) {
            _settled[d.owner] += msg.value;
        } else {
            uint256 pool = msg.value + _carry[datanetId];
            uint256 perSize = pool * SCALE / d.acceptedSize;
            _rewardPerSize[datanetId] += perSize;
            _carry[datanetId] = pool - perSize * d.acceptedSize / SCALE;
        }
        emit Rewarded(datanetId, msg.value);
    }

    /// @notice Wei `account` can claim from `datanetIds` and earlier settlements.
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
        return _contributions[datanetId][index];
    }

    function contributionCount(uint256 datanetId) external view returns (uint256) {
        return _contributions[datanetId].length;
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
