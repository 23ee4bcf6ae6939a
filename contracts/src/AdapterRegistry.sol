// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {DatanetRegistry} from "./DatanetRegistry.sol";

/// @title AdapterRegistry
/// @notice LoRA adapters as on-chain assets: who owns each, what it costs per call, which base model and
///         which datanets (at which snapshots) it was trained on, and its versions.
/// @dev `contentHash` is the adapter's content address, the id the inference sidecar knows it by
///      (keccak256 of its canonical quantized form). Datanet shares are in basis points summing to 10,000;
///      the InferenceRouter splits the contributors' part of each fee by them, unless the current version has
///      a training record: then it pays the contributions per-inference attribution names instead.
contract AdapterRegistry {
    struct Adapter {
        address owner;
        bool disabled;
        uint32 version; // 1 for the first content, +1 per publishVersion
        uint256 pricePerCall; // wei
        bytes32 contentHash;
        bytes32 baseModelHash;
        string metadataURI;
        uint256[] datanetIds;
        uint16[] datanetSharesBps;
        bytes32[] snapshotRoots; // the datanets' snapshot roots the current version was trained on
    }

    /// @notice The most datanets an attribution query may name (lorachain/precompiles/attribution_abi.py).
    uint256 public constant MAX_ATTRIBUTED_DATANETS = 16;

    DatanetRegistry public immutable datanets;
    uint256 public adapterCount;
    mapping(uint256 adapterId => Adapter) private _adapters;
    mapping(uint256 adapterId => bytes32[]) private _versions;
    mapping(bytes32 contentHash => uint256 adapterId) public adapterOf; // slot 3: the AI precompile reads it
    mapping(uint256 adapterId => bytes32) private _trainingRecords; // of the current version only

    event AdapterRegistered(uint256 indexed adapterId, address indexed owner, bytes32 indexed contentHash, bytes32 baseModelHash, uint256 pricePerCall);
    event VersionPublished(uint256 indexed adapterId, uint32 version, bytes32 indexed contentHash);
    event PriceChanged(uint256 indexed adapterId, uint256 pricePerCall);
    event OwnershipTransferred(uint256 indexed adapterId, address indexed from, address indexed to);
    event Disabled(uint256 indexed adapterId);
    /// @notice `recordHash` (0: none) is the training record of version `version` of the adapter.
    event TrainingRecordSet(uint256 indexed adapterId, uint32 version, bytes32 recordHash);

    modifier onlyOwner(uint256 adapterId) {
        require(_adapters[adapterId].owner == msg.sender, "not the adapter owner");
        _;
    }

    constructor(DatanetRegistry datanetRegistry) {
        datanets = datanetRegistry;
    }

    function register(
        bytes32 contentHash,
        bytes32 baseModelHash,
        uint256 pricePerCall,
        string calldata metadataURI,
        uint256[] calldata datanetIds,
        uint16[] calldata datanetSharesBps,
        bytes32[] calldata snapshotRoots
    ) external returns (uint256 adapterId) {
        require(contentHash != bytes32(0) && baseModelHash != bytes32(0), "missing hash");
        require(adapterOf[contentHash] == 0, "adapter already registered");
        _checkDatanets(datanetIds, datanetSharesBps, snapshotRoots);
        adapterId = ++adapterCount;
        Adapter storage a = _adapters[adapterId];
        a.owner = msg.sender;
        a.version = 1;
        a.pricePerCall = pricePerCall;
        a.contentHash = contentHash;
        a.baseModelHash = baseModelHash;
        a.metadataURI = metadataURI;
        a.datanetIds = datanetIds;
        a.datanetSharesBps = datanetSharesBps;
        a.snapshotRoots = snapshotRoots;
        _versions[adapterId].push(contentHash);
        adapterOf[contentHash] = adapterId;
        emit AdapterRegistered(adapterId, msg.sender, contentHash, baseModelHash, pricePerCall);
    }

    /// @notice A new version (retrained content) of the same adapter; calls use the newest one.
    function publishVersion(uint256 adapterId, bytes32 contentHash, bytes32[] calldata snapshotRoots)
        external
        onlyOwner(adapterId)
    {
        Adapter storage a = _adapters[adapterId];
        require(contentHash != bytes32(0), "missing hash");
        require(adapterOf[contentHash] == 0, "adapter already registered");
        require(snapshotRoots.length == a.datanetIds.length, "one snapshot root per datanet");
        a.contentHash = contentHash;
        a.snapshotRoots = snapshotRoots;
        a.version += 1;
        _versions[adapterId].push(contentHash);
        adapterOf[contentHash] = adapterId;
        emit VersionPublished(adapterId, a.version, contentHash);
        if (_trainingRecords[adapterId] != bytes32(0)) {
            delete _trainingRecords[adapterId]; // a record belongs to the version it was written for
            emit TrainingRecordSet(adapterId, a.version, bytes32(0));
        }
    }

    /// @notice Name the training record (content hash) of the adapter's current version: what the attribution
    ///         precompile needs to attribute its inferences to datanet contributions. bytes32(0) removes it.
    function setTrainingRecord(uint256 adapterId, bytes32 recordHash) external onlyOwner(adapterId) {
        uint256 count = _adapters[adapterId].datanetIds.length;
        require(
            recordHash == bytes32(0) || (count > 0 && count <= MAX_ATTRIBUTED_DATANETS),
            "a training record needs 1 to 16 datanets"
        );
        _trainingRecords[adapterId] = recordHash;
        emit TrainingRecordSet(adapterId, _adapters[adapterId].version, recordHash);
    }

    /// @notice The training record of the adapter's current version (bytes32(0): none).
    function trainingRecordOf(uint256 adapterId) external view returns (bytes32) {
        return _trainingRecords[adapterId];
    }

    function setPrice(uint256 adapterId, uint256 pricePerCall) external onlyOwner(adapterId) {
        _adapters[adapterId].pricePerCall = pricePerCall;
        emit PriceChanged(adapterId, pricePerCall);
    }

    function transferOwnership(uint256 adapterId, address newOwner) external onlyOwner(adapterId) {
        require(newOwner != address(0), "zero owner");
        _adapters[adapterId].owner = newOwner;
        emit OwnershipTransferred(adapterId, msg.sender, newOwner);
    }

    /// @notice Stop all further calls to this adapter (permanent).
    function disable(uint256 adapterId) external onlyOwner(adapterId) {
        _adapters[adapterId].disabled = true;
        emit Disabled(adapterId);
    }

    function getAdapter(uint256 adapterId) external view returns (Adapter memory) {
        require(adapterId != 0 && adapterId <= adapterCount, "unknown adapter");
        return _adapters[adapterId];
    }

    function versions(uint256 adapterId) external view returns (bytes32[] memory) {
        return _versions[adapterId];
    }

    function _checkDatanets(uint256[] calldata ids, uint16[] calldata sharesBps, bytes32[] calldata roots)
        private
        view
    {
        require(ids.length == sharesBps.length && ids.length == roots.length, "one share and root per datanet");
        uint256 total = 0;
        for (uint256 i = 0; i < ids.length; i++) {
            require(datanets.exists(ids[i]), "unknown datanet");
            require(sharesBps[i] > 0, "zero datanet share");
            total += sharesBps[i];
        }
        require(ids.length == 0 || total == 10_000, "datanet shares must sum to 10000 bps");
    }
}
