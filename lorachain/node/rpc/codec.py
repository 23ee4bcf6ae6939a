"""JSON-RPC value encoding: hex quantities and data in, geth-shaped objects out (one home for both)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from eth._utils.address import generate_contract_address
from eth.abc import BlockAPI, BlockHeaderAPI, ReceiptAPI, SignedTransactionAPI
from eth_utils import to_checksum_address

from lorachain.node.rollup.deposit_vm import deposit_of, deposit_receipt_of
from lorachain.node.rollup.deposits import DEPOSIT_TX_TYPE
from lorachain.node.rollup.l1_info import L1_BLOCK_ADDRESS, L1BlockInfo, L1InfoError
from lorachain.node.rollup.l2_fees import L1FeeParams, signed_encoding
from lorachain.node.rpc.errors import invalid_params
from lorachain.node.txpool import tx_type

ZERO_HASH = "0x" + "00" * 32


# -- scalars -----------------------------------------------------------------------------------
def quantity(value: int) -> str:
    return hex(value)


def data(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def address(value: bytes | None) -> str | None:
    if value is None or value == b"":
        return None
    return _checksum(bytes(value))


@lru_cache(maxsize=65536)
def _checksum(value: bytes) -> str:
    return to_checksum_address(value)


def parse_quantity(value: Any, arg: str = "argument") -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise invalid_params(f"invalid {arg}: negative quantity")
        return value
    if not isinstance(value, str):
        raise invalid_params(f"invalid {arg}: json: cannot unmarshal {type(value).__name__} into hex quantity")
    if not value.startswith(("0x", "0X")):
        raise invalid_params(f"invalid {arg}: hex string without 0x prefix")
    digits = value[2:]
    if not digits:
        raise invalid_params(f'invalid {arg}: hex string "0x"')
    if len(digits) > 1 and digits[0] == "0":
        raise invalid_params(f"invalid {arg}: hex number with leading zero digits")
    if len(digits) > 64:
        raise invalid_params(f"invalid {arg}: hex number > 256 bits")
    try:
        return int(digits, 16)
    except ValueError:
        raise invalid_params(f"invalid {arg}: invalid hex string") from None


def parse_data(value: Any, arg: str = "argument", size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise invalid_params(f"invalid {arg}: json: cannot unmarshal {type(value).__name__} into hex data")
    if not value.startswith(("0x", "0X")):
        raise invalid_params(f"invalid {arg}: hex string without 0x prefix")
    digits = value[2:]
    if len(digits) % 2:
        raise invalid_params(f"invalid {arg}: hex string of odd length")
    try:
        raw = bytes.fromhex(digits)
    except ValueError:
        raise invalid_params(f"invalid {arg}: invalid hex string") from None
    if size is not None and len(raw) != size:
        raise invalid_params(f"invalid {arg}: hex string has length {len(digits)}, want {size * 2}")
    return raw


def parse_address(value: Any, arg: str = "address") -> bytes:
    return parse_data(value, arg, size=20)


def parse_hash(value: Any, arg: str = "hash") -> bytes:
    return parse_data(value, arg, size=32)


# -- chain objects -----------------------------------------------------------------------------
def header_json(header: BlockHeaderAPI) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "number": quantity(header.block_number),
        "hash": data(header.hash),
        "parentHash": data(header.parent_hash),
        "nonce": data(header.nonce),
        "mixHash": data(header.mix_hash),
        "sha3Uncles": data(header.uncles_hash),
        "logsBloom": data(header.bloom.to_bytes(256, "big")),
        "transactionsRoot": data(header.transaction_root),
        "stateRoot": data(header.state_root),
        "receiptsRoot": data(header.receipt_root),
        "miner": address(header.coinbase) or address(b"\x00" * 20),
        "difficulty": quantity(header.difficulty),
        "extraData": data(header.extra_data),
        "gasLimit": quantity(header.gas_limit),
        "gasUsed": quantity(header.gas_used),
        "timestamp": quantity(header.timestamp),
    }
    for attr, key, enc in (
        ("base_fee_per_gas", "baseFeePerGas", quantity),
        ("withdrawals_root", "withdrawalsRoot", data),
        ("blob_gas_used", "blobGasUsed", quantity),
        ("excess_blob_gas", "excessBlobGas", quantity),
        ("parent_beacon_block_root", "parentBeaconBlockRoot", data),
        ("requests_hash", "requestsHash", data),
    ):
        value = getattr(header, attr, None)
        if value is not None:
            obj[key] = enc(value)
    return obj


def block_json(block: BlockAPI, full_transactions: bool, encoded_size: int) -> dict[str, Any]:
    obj = header_json(block.header)
    obj["size"] = quantity(encoded_size)
    base_fee = getattr(block.header, "base_fee_per_gas", None)
    if full_transactions:
        obj["transactions"] = [
            transaction_json(tx, block.header, index, base_fee) for index, tx in enumerate(block.transactions)
        ]
    else:
        obj["transactions"] = [data(tx.hash) for tx in block.transactions]
    obj["uncles"] = [data(uncle.hash) for uncle in block.uncles]
    if hasattr(block, "withdrawals"):
        obj["withdrawals"] = []
    return obj


def effective_gas_price(tx: SignedTransactionAPI, base_fee: int | None) -> int:
    if base_fee is None or (tx_type(tx) == 0 and not hasattr(tx, "max_fee_per_gas")):
        return tx.gas_price
    return min(tx.max_fee_per_gas, base_fee + tx.max_priority_fee_per_gas)


def _access_list_json(access_list: Any) -> list[dict[str, Any]]:
    return [
        {"address": address(addr), "storageKeys": [data(slot.to_bytes(32, "big")) for slot in slots]}
        for addr, slots in access_list
    ]


def transaction_json(
    tx: SignedTransactionAPI,
    header: BlockHeaderAPI | None,
    index: int | None,
    base_fee: int | None,
) -> dict[str, Any]:
    kind = tx_type(tx)
    obj: dict[str, Any] = {
        "blockHash": data(header.hash) if header is not None else None,
        "blockNumber": quantity(header.block_number) if header is not None else None,
        "from": address(tx.sender),
        "gas": quantity(tx.gas),
        "hash": data(tx.hash),
        "input": data(tx.data),
        "nonce": quantity(tx.nonce),
        "to": address(tx.to),
        "transactionIndex": quantity(index) if index is not None else None,
        "value": quantity(tx.value),
        "type": quantity(kind),
    }
    if kind == DEPOSIT_TX_TYPE:  # no signature, no fee (op-geth's rendering)
        deposit = deposit_of(tx)
        obj.update(sourceHash=data(deposit.source_hash), mint=quantity(deposit.mint),
                   isSystemTx=deposit.is_system_tx, gasPrice="0x0", v="0x0")  # fmt: skip
    elif kind == 0:
        obj["gasPrice"] = quantity(tx.gas_price)
        obj["v"] = quantity(tx.v)
        if tx.v not in (27, 28):
            obj["chainId"] = quantity((tx.v - 35) // 2)
    else:
        obj["chainId"] = quantity(tx.chain_id)
        obj["accessList"] = _access_list_json(tx.access_list)
        obj["v"] = quantity(tx.y_parity)
        obj["yParity"] = quantity(tx.y_parity)
        if kind == 1:
            obj["gasPrice"] = quantity(tx.gas_price)
        else:
            obj["maxFeePerGas"] = quantity(tx.max_fee_per_gas)
            obj["maxPriorityFeePerGas"] = quantity(tx.max_priority_fee_per_gas)
            obj["gasPrice"] = quantity(effective_gas_price(tx, base_fee) if header is not None else tx.max_fee_per_gas)
        if kind == 4:
            obj["authorizationList"] = [
                {
                    "chainId": quantity(auth.chain_id),
                    "address": address(auth.address),
                    "nonce": quantity(auth.nonce),
                    "yParity": quantity(auth.y_parity),
                    "r": quantity(auth.r),
                    "s": quantity(auth.s),
                }
                for auth in tx.authorization_list
            ]
    obj["r"] = quantity(tx.r)
    obj["s"] = quantity(tx.s)
    return obj


def log_json(
    log: Any,
    header: BlockHeaderAPI,
    tx_hash: bytes,
    tx_index: int,
    log_index: int,
    removed: bool = False,
) -> dict[str, Any]:
    return {
        "address": address(log.address),
        "topics": [data(topic.to_bytes(32, "big")) for topic in log.topics],
        "data": data(log.data),
        "blockNumber": quantity(header.block_number),
        "blockHash": data(header.hash),
        "blockTimestamp": quantity(header.timestamp),
        "transactionHash": data(tx_hash),
        "transactionIndex": quantity(tx_index),
        "logIndex": quantity(log_index),
        "removed": removed,
    }


def receipt_json(block: BlockAPI, receipts: tuple[ReceiptAPI, ...], index: int) -> dict[str, Any]:
    """One receipt with its derived fields (gasUsed, logIndex, contractAddress, effectiveGasPrice)."""
    header = block.header
    tx = block.transactions[index]
    receipt = receipts[index]
    previous_cumulative = receipts[index - 1].gas_used if index else 0
    first_log_index = sum(len(r.logs) for r in receipts[:index])
    deposit = deposit_receipt_of(receipt) if tx_type(tx) == DEPOSIT_TX_TYPE else None
    nonce = tx.nonce if deposit is None else deposit.deposit_nonce  # a deposit's nonce: the one its receipt records
    contract = address(generate_contract_address(tx.sender, nonce)) if tx.to == b"" else None
    obj = {
        "transactionHash": data(tx.hash),
        "transactionIndex": quantity(index),
        "blockHash": data(header.hash),
        "blockNumber": quantity(header.block_number),
        "from": address(tx.sender),
        "to": address(tx.to),
        "cumulativeGasUsed": quantity(receipt.gas_used),
        "gasUsed": quantity(receipt.gas_used - previous_cumulative),
        "contractAddress": contract,
        "logs": [
            log_json(entry, header, tx.hash, index, first_log_index + offset)
            for offset, entry in enumerate(receipt.logs)
        ],
        "logsBloom": data(receipt.bloom.to_bytes(256, "big")),
        "type": quantity(tx_type(tx)),
        "status": quantity(1 if receipt.state_root == b"\x01" else 0),
        "effectiveGasPrice": quantity(
            0 if deposit is not None else effective_gas_price(tx, getattr(header, "base_fee_per_gas", None))
        ),
    }
    if deposit is not None:
        obj["depositNonce"] = quantity(deposit.deposit_nonce)
        obj["depositReceiptVersion"] = quantity(deposit.deposit_receipt_version)
    else:
        obj.update(_l1_fee_fields(block, tx))
    return obj


def _l1_fee_fields(block: BlockAPI, tx: SignedTransactionAPI) -> dict[str, str]:
    """op-geth's L1 fee fields of a receipt, from the L1 attributes the block's first transaction set."""
    first = block.transactions[0] if block.transactions else None
    if first is None or tx_type(first) != DEPOSIT_TX_TYPE or first.to != L1_BLOCK_ADDRESS:
        return {}
    try:
        info = L1BlockInfo.decode(first.data)
    except L1InfoError:
        return {}
    params = L1FeeParams(info.base_fee, info.blob_base_fee, info.base_fee_scalar, info.blob_base_fee_scalar)
    encoded = signed_encoding(tx)
    return {
        "l1GasPrice": quantity(info.base_fee),
        "l1BlobBaseFee": quantity(info.blob_base_fee),
        "l1GasUsed": quantity(params.l1_gas_used(encoded)),
        "l1Fee": quantity(params.l1_fee(encoded)),
        "l1BaseFeeScalar": quantity(info.base_fee_scalar),
        "l1BlobBaseFeeScalar": quantity(info.blob_base_fee_scalar),
    }


def receipts_json(block: BlockAPI, receipts: tuple[ReceiptAPI, ...]) -> list[dict[str, Any]]:
    """All receipts of a block (eth_getBlockReceipts)."""
    return [receipt_json(block, receipts, index) for index in range(len(block.transactions))]
