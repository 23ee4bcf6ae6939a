// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title MessageBoard
/// @notice A public board where anyone can post short messages and tip their authors in ether.
/// @dev Tips follow the pull-payment pattern: they are credited to the author's balance and the
///      author collects them with `withdraw()`, so a tip never calls into untrusted code.
contract MessageBoard {
    /// @notice Longest accepted message, in bytes.
    uint256 public constant MAX_MESSAGE_BYTES = 280;

    struct Message {
        address author;
        uint64 postedAt;
        uint256 tips;
        string text;
    }

    Message[] private _messages;
    mapping(address author => uint256[] ids) private _idsByAuthor;

    /// @notice Tips credited to each author and not yet withdrawn, in wei.
    mapping(address author => uint256 amount) public balanceOf;

    /// @notice Emitted when a message is posted.
    /// @param author The account that posted the message.
    /// @param id The message id, its index in posting order.
    /// @param text The message text.
    event MessagePosted(address indexed author, uint256 indexed id, string text);

    /// @notice Emitted when a message receives a tip.
    /// @param tipper The account that sent the tip.
    /// @param id The tipped message.
    /// @param amount The tip, in wei.
    event Tipped(address indexed tipper, uint256 indexed id, uint256 amount);

    /// @notice Emitted when an author withdraws their tips.
    /// @param author The withdrawing author.
    /// @param amount The amount paid out, in wei.
    event Withdrawn(address indexed author, uint256 amount);

    /// @notice The message is longer than `MAX_MESSAGE_BYTES`.
    /// @param length The length of the rejected message, in bytes.
    /// @param maxLength The longest accepted length, in bytes.
    error MessageTooLong(uint256 length, uint256 maxLength);

    /// @notice Post a message.
    /// @param text The message, 1 to `MAX_MESSAGE_BYTES` bytes of UTF-8.
    /// @return id The id of the new message.
    function post(string calldata text) external returns (uint256 id) {
        uint256 length = bytes(text).length;
        require(length > 0, "empty message");
        if (length > MAX_MESSAGE_BYTES) revert MessageTooLong(length, MAX_MESSAGE_BYTES);

        id = _messages.length;
        _messages.push(Message({author: msg.sender, postedAt: uint64(block.timestamp), tips: 0, text: text}));
        _idsByAuthor[msg.sender].push(id);
        emit MessagePosted(msg.sender, id, text);
    }

    /// @notice Tip the author of message `id` with the ether sent along.
    /// @param id The message to tip.
    function tip(uint256 id) external payable {
        require(id < _messages.length, "no such message");
        require(msg.value > 0, "empty tip");
        Message storage message = _messages[id];
        message.tips += msg.value;
        balanceOf[message.author] += msg.value;
        emit Tipped(msg.sender, id, msg.value);
    }

    /// @notice Pay out all tips credited to the caller.
    function withdraw() external {
        uint256 amount = balanceOf[msg.sender];
        require(amount > 0, "nothing to withdraw");
        balanceOf[msg.sender] = 0; // effects before the external call
        (bool ok, ) = payable(msg.sender).call{value: amount}("");
        require(ok, "transfer failed");
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Number of messages posted so far.
    function count() external view returns (uint256) {
        return _messages.length;
    }

    /// @notice Read message `id`.
    /// @param id The message id.
    /// @return author The account that posted it.
    /// @return postedAt The block timestamp at posting.
    /// @return tips Total tips it received, in wei.
    /// @return text The message text.
    function messages(
        uint256 id
    ) external view returns (address author, uint64 postedAt, uint256 tips, string memory text) {
        require(id < _messages.length, "no such message");
        Message storage message = _messages[id];
        return (message.author, message.postedAt, message.tips, message.text);
    }

    /// @notice Ids of the messages posted by `author`, oldest first.
    /// @param author The account to look up.
    function messagesBy(address author) external view returns (uint256[] memory) {
        return _idsByAuthor[author];
    }
}
