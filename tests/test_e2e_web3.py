"""web3.py against a real node subprocess: deploy the example dApp, transact, read events, fees."""

from __future__ import annotations

import asyncio

import pytest
import rlp
from eth_utils import keccak
from trie import HexaryTrie
from web3 import AsyncWeb3, Web3
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.providers.persistent import WebSocketProvider

from lorachain.toolchain.solc import load_artifact


@pytest.fixture(scope="module")
def board(w3: Web3):
    artifact = load_artifact("MessageBoard")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx_hash = factory.constructor().transact({"from": w3.eth.accounts[0]})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt.status == 1
    assert receipt.contractAddress is not None
    assert w3.eth.get_code(receipt.contractAddress) == bytes.fromhex(artifact["deployedBytecode"][2:])
    return w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"])


def test_deploy_transact_and_read(w3: Web3, board) -> None:
    alice = w3.eth.accounts[1]
    tx_hash = board.functions.post("hello lorachain").transact({"from": alice})
    receipt = w3.eth.get_transaction_receipt(tx_hash)  # automine: mined when the hash returns
    assert receipt.status == 1
    assert board.functions.count().call() >= 1
    events = board.events.MessagePosted().process_receipt(receipt)
    assert events[0].args.author == alice
    assert events[0].args.text == "hello lorachain"
    tx = w3.eth.get_transaction(tx_hash)
    assert tx["from"] == alice and tx.to == board.address and tx.blockNumber == receipt.blockNumber
    block = w3.eth.get_block(receipt.blockNumber, full_transactions=True)
    assert block.transactions[receipt.transactionIndex]["hash"] == tx_hash
    assert w3.eth.get_block_receipts(receipt.blockNumber)[receipt.transactionIndex].transactionHash == tx_hash


def test_get_logs_and_topic_filters(w3: Web3, board) -> None:
    bob = w3.eth.accounts[2]
    start = w3.eth.block_number + 1
    for text in ("one", "two", "three"):
        board.functions.post(text).transact({"from": bob})
    logs = board.events.MessagePosted().get_logs(from_block=start, argument_filters={"author": bob})
    assert [entry.args.text for entry in logs] == ["one", "two", "three"]
    raw = w3.eth.get_logs({"fromBlock": start, "toBlock": "latest", "address": board.address})
    assert len(raw) == 3
    assert all(entry["address"] == board.address for entry in raw)
    assert [entry["logIndex"] for entry in raw] == [0, 0, 0]  # one post per block
    nobody = "0x" + "00" * 12 + "11" * 20
    none = w3.eth.get_logs({"fromBlock": start, "address": board.address, "topics": [None, nobody]})
    assert none == []


def test_polling_filters(w3: Web3, board) -> None:
    log_filter = w3.eth.filter({"address": board.address})
    block_filter = w3.eth.filter("latest")
    board.functions.post("filtered").transact({"from": w3.eth.accounts[3]})
    changes = log_filter.get_new_entries()
    assert len(changes) == 1 and changes[0]["address"] == board.address
    assert log_filter.get_new_entries() == []  # consumed
    assert len(block_filter.get_new_entries()) >= 1
    assert len(w3.eth.get_filter_logs(log_filter.filter_id)) >= 1
    assert w3.eth.uninstall_filter(log_filter.filter_id) is True
    with pytest.raises(Web3RPCError, match="filter not found"):
        w3.eth.get_filter_changes(log_filter.filter_id)


def test_websocket_subscriptions(node, w3: Web3, board) -> None:
    async def scenario() -> tuple[dict, dict]:
        async with AsyncWeb3(WebSocketProvider(node.ws_url)) as aw3:
            head_sub = await aw3.eth.subscribe("newHeads")
            log_sub = await aw3.eth.subscribe("logs", {"address": board.address})
            await asyncio.to_thread(board.functions.post("over websocket").transact, {"from": w3.eth.accounts[4]})
            got: dict[str, dict] = {}
            async for message in aw3.socket.process_subscriptions():
                kind = {head_sub: "head", log_sub: "log"}[message["subscription"]]
                got.setdefault(kind, message["result"])
                if len(got) == 2:
                    break
            assert await aw3.eth.unsubscribe(head_sub) is True
            return got["head"], got["log"]

    head, log = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert head["number"] == w3.eth.block_number
    assert log["address"] == board.address


def test_estimate_gas_is_enough_and_tight(w3: Web3, board) -> None:
    sender = w3.eth.accounts[5]
    estimate = board.functions.post("estimate me").estimate_gas({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(
        board.functions.post("estimate me").transact({"from": sender, "gas": estimate})
    )
    assert receipt.status == 1
    assert receipt.gasUsed <= estimate <= receipt.gasUsed * 1.1
    assert w3.eth.estimate_gas({"from": sender, "to": w3.eth.accounts[6], "value": 1}) == 21000


def test_revert_reason_in_call_estimate_and_receipt(w3: Web3, board) -> None:
    sender = w3.eth.accounts[6]
    with pytest.raises(ContractLogicError, match="empty message"):
        board.functions.post("").call({"from": sender})
    with pytest.raises(ContractLogicError, match="empty message"):
        board.functions.post("").estimate_gas({"from": sender})
    response = w3.provider.make_request(
        "eth_call", [{"from": sender, "to": board.address, "data": board.encode_abi("post", [""])}, "latest"]
    )
    assert response["error"]["code"] == 3  # geth: code 3 with the revert data
    assert response["error"]["message"] == "execution reverted: empty message"
    assert response["error"]["data"].startswith("0x08c379a0")


def test_reverted_transaction_is_mined_with_status_zero(w3: Web3, board) -> None:
    sender = w3.eth.accounts[6]
    tx_hash = board.functions.withdraw().transact({"from": sender, "gas": 100_000})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt.status == 0
    assert 21_000 < receipt.gasUsed < 100_000


def test_eip1559_fee_accounting(w3: Web3) -> None:
    sender, recipient = w3.eth.accounts[7], w3.eth.accounts[8]
    coinbase = w3.eth.get_block("latest").miner
    before_sender = w3.eth.get_balance(sender)
    before_recipient = w3.eth.get_balance(recipient)
    before_coinbase = w3.eth.get_balance(coinbase)
    tip = 2 * 10**9
    tx_hash = w3.eth.send_transaction(
        {"from": sender, "to": recipient, "value": 12345, "maxPriorityFeePerGas": tip, "maxFeePerGas": 50 * 10**9}
    )
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    block = w3.eth.get_block(receipt.blockNumber)
    assert receipt.type == 2
    assert receipt.effectiveGasPrice == block.baseFeePerGas + tip
    assert w3.eth.get_balance(recipient) - before_recipient == 12345
    assert before_sender - w3.eth.get_balance(sender) == 12345 + receipt.gasUsed * receipt.effectiveGasPrice
    assert w3.eth.get_balance(coinbase) - before_coinbase == receipt.gasUsed * tip  # base fee is burnt
    history = w3.eth.fee_history(4, "latest", [25, 75])
    assert len(history.baseFeePerGas) == len(history.gasUsedRatio) + 1
    assert w3.eth.max_priority_fee >= 1


def test_legacy_and_access_list_transactions(w3: Web3) -> None:
    from eth_account import Account

    from lorachain.genesis.accounts import dev_accounts

    key = dev_accounts()[9].private_key
    sender = Account.from_key(key).address
    nonce = w3.eth.get_transaction_count(sender, "pending")
    gas_price = w3.eth.gas_price
    legacy = Account.sign_transaction(
        {"to": w3.eth.accounts[0], "value": 1, "gas": 21000, "gasPrice": gas_price, "nonce": nonce, "chainId": 901},
        key,
    )
    access = Account.sign_transaction(
        {
            "to": w3.eth.accounts[0], "value": 1, "gas": 30000, "gasPrice": gas_price, "nonce": nonce + 1,
            "chainId": 901, "accessList": [{"address": w3.eth.accounts[1], "storageKeys": ["0x" + "00" * 32]}],
        },
        key,
    )  # fmt: skip
    h1 = w3.eth.send_raw_transaction(legacy.raw_transaction)
    h2 = w3.eth.send_raw_transaction(access.raw_transaction)
    r1, r2 = w3.eth.wait_for_transaction_receipt(h1), w3.eth.wait_for_transaction_receipt(h2)
    assert (r1.type, r1.status, r2.type, r2.status) == (0, 1, 1, 1)
    assert w3.eth.get_transaction(h2).accessList[0]["address"] == w3.eth.accounts[1]


def test_state_and_block_overrides_in_eth_call(w3: Web3, board) -> None:
    poor = Web3.to_checksum_address("0x" + "ab" * 20)
    code = "0x4760005260206000f3"  # SELFBALANCE; return it
    result = w3.eth.call({"to": poor, "data": "0x"}, "latest", {poor: {"balance": hex(777), "code": code}})
    assert int.from_bytes(result, "big") == 777
    number_code = "0x4360005260206000f3"  # NUMBER; return it
    response = w3.provider.make_request(
        "eth_call", [{"to": poor}, "latest", {poor: {"code": number_code}}, {"number": hex(424242)}]
    )
    assert int(response["result"], 16) == 424242


def test_get_proof_matches_state(w3: Web3, board) -> None:
    board.functions.post("make slot 0 non-zero").transact({"from": w3.eth.accounts[0]})
    proof = w3.eth.get_proof(board.address, ["0x0"], "latest")
    assert proof.balance == w3.eth.get_balance(board.address)
    assert len(proof.accountProof) >= 1
    slot0 = int.from_bytes(w3.eth.get_storage_at(board.address, 0), "big")
    assert int.from_bytes(proof.storageProof[0].value, "big") == slot0
    # The proofs verify against the block's state root and the account's storage root.
    state_root = w3.eth.get_block("latest").stateRoot
    nodes = [rlp.decode(bytes(n)) for n in proof.accountProof]
    account = rlp.decode(HexaryTrie.get_from_proof(state_root, keccak(hexstr=board.address), nodes))
    assert int.from_bytes(account[1], "big") == proof.balance
    assert account[2] == proof.storageHash
    storage_nodes = [rlp.decode(bytes(n)) for n in proof.storageProof[0].proof]
    value = HexaryTrie.get_from_proof(proof.storageHash, keccak(b"\x00" * 32), storage_nodes)
    assert int.from_bytes(rlp.decode(value), "big") == slot0


def test_pending_nonce_and_txpool(w3: Web3) -> None:
    from eth_account import Account

    from lorachain.genesis.accounts import dev_accounts

    key = dev_accounts()[3].private_key
    sender = Account.from_key(key).address
    nonce = w3.eth.get_transaction_count(sender)
    gap = Account.sign_transaction(
        {"to": sender, "value": 0, "gas": 21000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 1,
         "nonce": nonce + 1, "chainId": 901},
        key,
    )  # fmt: skip
    w3.eth.send_raw_transaction(gap.raw_transaction)
    status = w3.provider.make_request("txpool_status", [])["result"]
    assert int(status["queued"], 16) >= 1
    content = w3.provider.make_request("txpool_content", [])["result"]
    assert str(nonce + 1) in content["queued"][sender]
    assert w3.eth.get_transaction_count(sender, "pending") == nonce  # gap: pending nonce unchanged
    fill = Account.sign_transaction(
        {"to": sender, "value": 0, "gas": 21000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 1,
         "nonce": nonce, "chainId": 901},
        key,
    )  # fmt: skip
    w3.eth.send_raw_transaction(fill.raw_transaction)
    w3.eth.wait_for_transaction_receipt(gap.hash)
    assert w3.eth.get_transaction_count(sender) == nonce + 2


def test_impersonated_account_can_send(w3: Web3, board) -> None:
    whale = Web3.to_checksum_address("0x" + "7e" * 20)
    assert w3.provider.make_request("anvil_setBalance", [whale, hex(5 * 10**18)])["result"] is None
    assert w3.provider.make_request("anvil_impersonateAccount", [whale])["result"] is None
    tx_hash = board.functions.post("from a key we do not hold").transact({"from": whale})
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    assert receipt.status == 1 and receipt["from"] == whale
    assert w3.eth.get_transaction(tx_hash)["from"] == whale
    assert board.events.MessagePosted().process_receipt(receipt)[0].args.author == whale
    assert w3.eth.get_transaction_count(whale) == 1
    w3.provider.make_request("anvil_stopImpersonatingAccount", [whale])
    response = w3.provider.make_request("eth_sendTransaction", [{"from": whale, "to": whale, "value": "0x1"}])
    assert response["error"]["message"] == "unknown account"


def test_headers_and_rpc_modules(w3: Web3) -> None:
    latest = w3.eth.get_block("latest")
    header = w3.provider.make_request("eth_getHeaderByNumber", [hex(latest.number)])["result"]
    assert header["hash"] == latest.hash.to_0x_hex() and "transactions" not in header
    by_hash = w3.provider.make_request("eth_getHeaderByHash", [latest.hash.to_0x_hex()])["result"]
    assert by_hash == header
    modules = w3.provider.make_request("rpc_modules", [])["result"]
    assert {"eth", "net", "web3", "txpool", "debug", "evm", "rpc"} <= set(modules)


def test_signing_with_unlocked_accounts(w3: Web3) -> None:
    from eth_account import Account
    from eth_account.messages import encode_defunct, encode_typed_data

    signer = w3.eth.accounts[0]
    signature = w3.provider.make_request("eth_sign", [signer, "0x68656c6c6f"])["result"]
    assert Account.recover_message(encode_defunct(b"hello"), signature=signature) == signer
    personal = w3.provider.make_request("personal_sign", ["0x68656c6c6f", signer])["result"]
    assert personal == signature
    typed = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
            "Mail": [{"name": "to", "type": "address"}, {"name": "contents", "type": "string"}],
        },
        "primaryType": "Mail",
        "domain": {"name": "lorachain", "chainId": 901},
        "message": {"to": w3.eth.accounts[1], "contents": "hi"},
    }
    sig712 = w3.provider.make_request("eth_signTypedData_v4", [signer, typed])["result"]
    assert Account.recover_message(encode_typed_data(full_message=typed), signature=sig712) == signer
    stranger = "0x" + "12" * 20
    assert w3.provider.make_request("eth_sign", [stranger, "0x00"])["error"]["message"] == "unknown account"
