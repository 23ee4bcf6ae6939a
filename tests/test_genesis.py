"""geth-format genesis: the built-in devnet, parsing of custom files, validation errors, datadir init."""

from __future__ import annotations

import copy
import json

import pytest
from eth_utils import to_canonical_address

from lorachain.genesis.accounts import DEV_BALANCE_WEI, dev_accounts
from lorachain.genesis.genesis import (
    DEVNET_CHAIN_ID,
    GenesisError,
    devnet_genesis,
    load_genesis,
    parse_genesis,
)
from lorachain.node.chain import Blockchain

HARDHAT_ACCOUNT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
HARDHAT_ACCOUNT_9 = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"

# A post-merge, all-forks-at-genesis config as geth's `--dev` writes it.
PRAGUE_CONFIG = {
    "chainId": 1337,
    "homesteadBlock": 0,
    "eip150Block": 0,
    "eip155Block": 0,
    "eip158Block": 0,
    "byzantiumBlock": 0,
    "constantinopleBlock": 0,
    "petersburgBlock": 0,
    "istanbulBlock": 0,
    "berlinBlock": 0,
    "londonBlock": 0,
    "mergeNetsplitBlock": 0,
    "terminalTotalDifficulty": 0,
    "shanghaiTime": 0,
    "cancunTime": 0,
    "pragueTime": 0,
}

CONTRACT = "0x" + "c0" * 20
HOLDER = "1111111111111111111111111111111111111111"  # geth allows alloc keys without 0x


def custom_genesis() -> dict:
    return {
        "config": dict(PRAGUE_CONFIG),
        "nonce": "0x0",
        "timestamp": "0x10",
        "extraData": "0x" + b"custom".hex(),
        "gasLimit": "0x1c9c380",  # 30,000,000 as hex
        "difficulty": "0x0",
        "baseFeePerGas": "1000000000",  # decimal string
        "alloc": {
            CONTRACT: {
                "balance": "0x0de0b6b3a7640000",  # 1 ether, hex with leading zero
                "nonce": "0x5",
                "code": "0x6001600055",
                "storage": {
                    "0x00": "0x2a",
                    "0x" + "00" * 31 + "01": "0x" + "00" * 31 + "07",
                    "0x02": "0x0",  # zero values are not stored
                },
            },
            HOLDER: {"balance": "123456789"},  # decimal quantity
        },
    }


# -- the devnet genesis ------------------------------------------------------------------------


def test_devnet_genesis_chain_id_accounts_and_fork() -> None:
    genesis = parse_genesis(devnet_genesis())
    assert genesis.chain_id == DEVNET_CHAIN_ID == 901
    assert genesis.fork_name == "prague"
    assert genesis.base_fee == 10**9
    assert genesis.gas_limit == 30_000_000
    accounts = dev_accounts()
    assert len(accounts) == 10
    assert accounts[0].address == HARDHAT_ACCOUNT_0
    assert accounts[9].address == HARDHAT_ACCOUNT_9
    for acct in accounts:
        alloc = genesis.alloc[to_canonical_address(acct.address)]
        assert alloc.balance == DEV_BALANCE_WEI == 10_000 * 10**18
        assert alloc.code == b"" and alloc.nonce == 0
    # Plus the EIP-4788 and EIP-2935 system contracts and the three payable-AI predeploys, with code.
    with_code = [acct for acct in genesis.alloc.values() if acct.code]
    assert len(with_code) == 5
    assert all(acct.nonce == 1 for acct in with_code)


def test_devnet_genesis_state_in_a_datadir(tmp_path) -> None:
    chain = Blockchain.initialize(tmp_path / "a", parse_genesis(devnet_genesis()))
    try:
        head = chain.head
        assert head.block_number == 0
        assert head.base_fee_per_gas == 10**9
        assert head.extra_data == b"lorachain"
        state = chain.state_at(head)
        assert state.get_balance(to_canonical_address(HARDHAT_ACCOUNT_0)) == 10_000 * 10**18
        assert state.get_balance(to_canonical_address("0x" + "99" * 20)) == 0
        genesis_hash = head.hash
    finally:
        chain.close()
    # The devnet genesis is deterministic: another datadir gets the same genesis block.
    other = Blockchain.initialize(tmp_path / "b", parse_genesis(devnet_genesis()))
    try:
        assert other.head.hash == genesis_hash
    finally:
        other.close()


# -- parsing a custom geth genesis -----------------------------------------------------------


def test_parse_custom_genesis_with_code_storage_nonce(tmp_path) -> None:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(custom_genesis()))
    genesis = load_genesis(path)
    assert genesis.chain_id == 1337
    assert genesis.fork_name == "prague"
    assert genesis.gas_limit == 30_000_000
    assert genesis.base_fee == 1_000_000_000
    assert genesis.timestamp == 16
    assert genesis.nonce == b"\x00" * 8
    assert genesis.extra_data == b"custom"
    contract = genesis.alloc[to_canonical_address(CONTRACT)]
    assert contract.balance == 10**18
    assert contract.nonce == 5
    assert contract.code == bytes.fromhex("6001600055")
    assert contract.storage == {0: 42, 1: 7}
    assert genesis.alloc[to_canonical_address("0x" + HOLDER)].balance == 123456789

    chain = Blockchain.initialize(tmp_path / "data", genesis)
    try:
        state = chain.state_at(chain.head)
        addr = to_canonical_address(CONTRACT)
        assert state.get_code(addr) == bytes.fromhex("6001600055")
        assert state.get_nonce(addr) == 5
        assert state.get_storage(addr, 0) == 42
        assert state.get_storage(addr, 1) == 7
        assert state.get_storage(addr, 2) == 0
        assert state.get_balance(to_canonical_address("0x" + HOLDER)) == 123456789
        assert chain.head.timestamp == 16
        assert chain.chain_id == 1337
    finally:
        chain.close()


@pytest.mark.parametrize("value", [30_000_000, "30000000", "0x1c9c380", "0x1C9C380"])
def test_quantities_accept_numbers_decimal_and_hex_strings(value) -> None:
    raw = custom_genesis()
    raw["gasLimit"] = value
    raw["config"]["chainId"] = "0x539" if isinstance(value, str) else 1337
    genesis = parse_genesis(raw)
    assert genesis.gas_limit == 30_000_000
    assert genesis.chain_id == 1337


def test_block_numbered_fork_schedule() -> None:
    config = {
        "chainId": 5,
        "homesteadBlock": 0,
        "eip150Block": 0,
        "eip158Block": 0,
        "byzantiumBlock": 0,
        "constantinopleBlock": 0,
        "petersburgBlock": 0,
        "istanbulBlock": 0,
        "berlinBlock": 10,
        "londonBlock": 20,
    }
    genesis = parse_genesis({"config": config, "alloc": {}})
    forks = [(block, vm.fork) for block, vm in genesis.vm_configuration]
    assert forks == [(0, "istanbul"), (10, "berlin"), (20, "london")]
    assert genesis.fork_name == "london"


def test_pre_merge_genesis_keeps_nonce_and_difficulty(tmp_path) -> None:
    raw = {
        "config": {"chainId": 7, "homesteadBlock": 0, "eip150Block": 0, "eip158Block": 0, "byzantiumBlock": 0,
                   "constantinopleBlock": 0, "petersburgBlock": 0, "istanbulBlock": 0, "berlinBlock": 0,
                   "londonBlock": 0},
        "nonce": "0x42",
        "difficulty": "0x20000",
        "alloc": {HOLDER: {"balance": "0x10"}},
    }  # fmt: skip
    genesis = parse_genesis(raw)
    assert genesis.fork_name == "london"
    assert genesis.nonce == (0x42).to_bytes(8, "big")
    assert genesis.difficulty == 0x20000
    chain = Blockchain.initialize(tmp_path, genesis)
    try:
        assert chain.head.nonce == (0x42).to_bytes(8, "big")
        assert chain.head.difficulty == 0x20000
    finally:
        chain.close()


def test_post_merge_genesis_with_nonzero_nonce_is_a_genesis_error(tmp_path) -> None:
    """geth takes any genesis nonce; this node may refuse one after the merge, but as a GenesisError."""
    raw = custom_genesis()
    raw["nonce"] = "0x42"
    try:
        chain = Blockchain.initialize(tmp_path, parse_genesis(raw))
    except GenesisError as exc:
        assert "nonce" in str(exc)
    else:
        chain.close()


# -- bad inputs --------------------------------------------------------------------------------


def _error(raw) -> str:
    with pytest.raises(GenesisError) as info:
        parse_genesis(raw)
    return str(info.value)


def test_missing_config_or_chain_id() -> None:
    raw = custom_genesis()
    del raw["config"]
    assert "config" in _error(raw) and "chainId" in _error(raw)
    raw = custom_genesis()
    del raw["config"]["chainId"]
    assert "chainId" in _error(raw)
    assert "JSON object" in _error([1, 2, 3])


def test_bad_hex_and_bad_quantities() -> None:
    raw = custom_genesis()
    raw["extraData"] = "0xzz"
    message = _error(raw)
    assert "extraData" in message and "hex" in message

    raw = custom_genesis()
    raw["extraData"] = "6c6f7261"  # no 0x prefix
    assert "extraData" in _error(raw)

    raw = custom_genesis()
    raw["gasLimit"] = "0xnothex"
    message = _error(raw)
    assert "gasLimit" in message and "0xnothex" in message

    raw = custom_genesis()
    raw["alloc"][CONTRACT]["code"] = "0x60zz"
    message = _error(raw)
    assert "code" in message and "hex" in message

    raw = custom_genesis()
    raw["alloc"][CONTRACT]["balance"] = "lots"
    assert "balance" in _error(raw)

    raw = custom_genesis()
    raw["config"]["chainId"] = True
    assert "chainId" in _error(raw)


def test_extra_data_longer_than_32_bytes() -> None:
    raw = custom_genesis()
    raw["extraData"] = "0x" + "ab" * 32
    assert parse_genesis(raw).extra_data == b"\xab" * 32  # exactly 32 is fine
    raw["extraData"] = "0x" + "ab" * 33
    message = _error(raw)
    assert "extraData" in message and "32 bytes" in message


def test_timestamp_fork_after_genesis_is_rejected() -> None:
    raw = custom_genesis()
    raw["timestamp"] = "0x0"
    raw["config"]["pragueTime"] = 1_800_000_000
    message = _error(raw)
    assert "pragueTime" in message and "1800000000" in message and "genesis timestamp" in message
    # Active at (or before) the genesis timestamp is fine.
    raw["timestamp"] = hex(1_800_000_000)
    assert parse_genesis(raw).fork_name == "prague"


def test_out_of_order_forks_are_rejected_with_a_true_message() -> None:
    raw = {"config": {"chainId": 5, "berlinBlock": 10, "londonBlock": 5}, "alloc": {}}
    message = _error(raw)
    lowered = message.lower()
    assert "berlin" in lowered and "london" in lowered
    assert "order" in lowered
    # London (block 5) activates before Berlin (block 10): the message must not claim the opposite.
    assert "berlin activates before london" not in lowered, message


def test_invalid_alloc_entries() -> None:
    raw = custom_genesis()
    raw["alloc"]["0x1234"] = {"balance": "0x1"}
    message = _error(raw)
    assert "alloc" in message and "0x1234" in message and "address" in message

    raw = custom_genesis()
    raw["alloc"]["0x" + "zz" * 20] = {"balance": "0x1"}
    assert "invalid address" in _error(raw)

    raw = custom_genesis()
    raw["alloc"][CONTRACT] = "0x1"
    assert "expected an object" in _error(raw)

    raw = custom_genesis()
    raw["alloc"] = ["not", "an", "object"]
    assert "alloc" in _error(raw)


def test_load_genesis_missing_file_and_bad_json(tmp_path) -> None:
    with pytest.raises(GenesisError, match="not found"):
        load_genesis(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GenesisError, match="not valid JSON"):
        load_genesis(bad)


# -- datadir initialisation ----------------------------------------------------------------------


def test_initialize_twice_is_idempotent(tmp_path) -> None:
    genesis = parse_genesis(custom_genesis())
    first = Blockchain.initialize(tmp_path, genesis)
    genesis_hash = first.head.hash
    first.close()
    again = Blockchain.initialize(tmp_path, parse_genesis(copy.deepcopy(custom_genesis())))
    try:
        assert again.head.hash == genesis_hash
        assert again.head.block_number == 0
        assert again.chain_id == 1337
    finally:
        again.close()
    opened = Blockchain.open(tmp_path)
    try:
        assert opened.head.hash == genesis_hash
        assert opened.genesis.raw == custom_genesis()
    finally:
        opened.close()


def test_initialize_with_a_different_genesis_fails(tmp_path) -> None:
    first = Blockchain.initialize(tmp_path, parse_genesis(custom_genesis()))
    genesis_hash = first.head.hash
    first.close()
    changed = custom_genesis()
    changed["alloc"][HOLDER]["balance"] = "1"
    with pytest.raises(GenesisError, match="different genesis"):
        Blockchain.initialize(tmp_path, parse_genesis(changed))
    with pytest.raises(GenesisError, match="different genesis"):
        Blockchain.initialize(tmp_path, parse_genesis(devnet_genesis()))
    # The failed attempts left the datadir as it was, and it can be opened again.
    reopened = Blockchain.open(tmp_path)
    try:
        assert reopened.head.hash == genesis_hash
        assert reopened.chain_id == 1337
    finally:
        reopened.close()
