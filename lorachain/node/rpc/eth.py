"""The ``eth_`` namespace: what wallets and libraries call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import rlp
from eth.abc import BlockHeaderAPI
from eth.constants import BLANK_ROOT_HASH
from eth.exceptions import HeaderNotFound
from eth.rlp.accounts import Account as StateAccount
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils import keccak
from trie import HexaryTrie

from lorachain.node import execution
from lorachain.node.chain import LRU, ChainError
from lorachain.node.execution import ExecutionError
from lorachain.node.node import Node
from lorachain.node.rpc import codec
from lorachain.node.rpc.blocks import block_number_or_none, resolve_block
from lorachain.node.rpc.calls import apply_state_overrides, block_overrides, parse_call, storage_slot
from lorachain.node.rpc.errors import EXECUTION_REVERTED, RpcError, invalid_params, server_error
from lorachain.node.txpool import TxPoolError

MAX_LOG_BLOCK_RANGE = 10_000
MAX_LOG_RESULTS = 10_000
MAX_FEE_HISTORY = 1024


def execution_rpc_error(err: ExecutionError) -> RpcError:
    if err.reverted:
        return RpcError(EXECUTION_REVERTED, str(err), codec.data(err.data))
    return server_error(str(err))


class EthApi:
    namespaces = ("eth",)

    def __init__(self, node: Node) -> None:
        self.node = node
        self._call_cache = LRU(4096)

    @property
    def chain(self) -> Any:
        return self.node.chain

    # -- chain info ------------------------------------------------------------------------------
    def eth_chainId(self) -> str:
        return codec.quantity(self.chain.chain_id)

    def eth_blockNumber(self) -> str:
        return codec.quantity(self.chain.head.block_number)

    def eth_syncing(self) -> bool:
        return False

    def eth_mining(self) -> bool:
        return self.node.config.mining != "manual"

    def eth_hashrate(self) -> str:
        return "0x0"

    def eth_coinbase(self) -> str:
        return codec.address(self.node.config.coinbase) or codec.address(b"\x00" * 20)

    def eth_accounts(self) -> list[str]:
        return [codec.address(a) for a in self.node.config.unlocked_keys]

    def eth_protocolVersion(self) -> str:
        return "0x44"

    # -- fees ------------------------------------------------------------------------------------
    def eth_gasPrice(self) -> str:
        return codec.quantity(self.node.next_base_fee() + self._suggested_tip())

    def eth_maxPriorityFeePerGas(self) -> str:
        return codec.quantity(self._suggested_tip())

    def eth_blobBaseFee(self) -> str:
        return "0x1"

    def _suggested_tip(self) -> int:
        """60th percentile of recent tips, at least 1 gwei (geth's oracle default) unless blocks are empty."""
        tips: list[int] = []
        header = self.chain.head
        for _ in range(20):
            block = self.chain.block_by_header(header)
            base_fee = getattr(header, "base_fee_per_gas", 0) or 0
            tips.extend(codec.effective_gas_price(tx, base_fee) - base_fee for tx in block.transactions)
            if header.block_number == 0:
                break
            header = self.chain.header_by_hash(header.parent_hash)
        if not tips:
            return 10**9
        tips.sort()
        return max(tips[(len(tips) - 1) * 60 // 100], 1)

    def eth_feeHistory(self, block_count: Any, newest: Any, percentiles: Any = None) -> dict[str, Any]:
        count = codec.parse_quantity(block_count, "block count")
        if count == 0:
            return {"oldestBlock": "0x0", "baseFeePerGas": [], "gasUsedRatio": [], "baseFeePerBlobGas": []}
        count = min(count, MAX_FEE_HISTORY)
        if percentiles is not None:
            if not isinstance(percentiles, list) or not all(isinstance(p, (int, float)) for p in percentiles):
                raise invalid_params("invalid reward percentiles")
            if any(p < 0 or p > 100 for p in percentiles) or percentiles != sorted(percentiles):
                raise invalid_params(f"invalid reward percentile: {percentiles}")
        last = resolve_block(self.node, newest, "newest block")
        first_number = max(0, last.block_number - count + 1)
        base_fees, ratios, rewards = [], [], []
        for number in range(first_number, last.block_number + 1):
            header = self.chain.header_by_number(number)
            base_fee = getattr(header, "base_fee_per_gas", 0) or 0
            base_fees.append(codec.quantity(base_fee))
            ratios.append(header.gas_used / header.gas_limit if header.gas_limit else 0.0)
            if percentiles is not None:
                rewards.append([codec.quantity(r) for r in self._block_rewards(header, percentiles)])
        base_fees.append(codec.quantity(self._child_base_fee(last)))
        result: dict[str, Any] = {
            "oldestBlock": codec.quantity(first_number),
            "baseFeePerGas": base_fees,
            "gasUsedRatio": ratios,
            "baseFeePerBlobGas": ["0x1"] * len(base_fees),
            "blobGasUsedRatio": [0.0] * len(ratios),
        }
        if percentiles is not None:
            result["reward"] = rewards
        return result

    def _child_base_fee(self, header: BlockHeaderAPI) -> int:
        if header.hash == self.chain.head.hash:
            return self.node.next_base_fee()
        child = self.chain.header_by_number(header.block_number + 1)
        return getattr(child, "base_fee_per_gas", 0) or 0

    def _block_rewards(self, header: BlockHeaderAPI, percentiles: list[float]) -> list[int]:
        block = self.chain.block_by_header(header)
        if not block.transactions:
            return [0] * len(percentiles)
        base_fee = getattr(header, "base_fee_per_gas", 0) or 0
        receipts = self.chain.receipts(block)
        used, prev = [], 0
        for tx, receipt in zip(block.transactions, receipts, strict=True):
            used.append((codec.effective_gas_price(tx, base_fee) - base_fee, receipt.gas_used - prev))
            prev = receipt.gas_used
        used.sort()
        total = sum(g for _, g in used)
        out, index, cumulative = [], 0, used[0][1]
        for p in percentiles:
            threshold = total * p / 100
            while cumulative < threshold and index < len(used) - 1:
                index += 1
                cumulative += used[index][1]
            out.append(used[index][0])
        return out

    # -- state -----------------------------------------------------------------------------------
    def _read_state(self, block: Any, read: Any) -> Any:
        """Apply ``read`` to the (warm, cached) state at ``block``."""
        with self.chain.scratch_state(resolve_block(self.node, block)) as state:
            return read(state)

    def eth_getBalance(self, address: Any, block: Any = "latest") -> str:
        addr = codec.parse_address(address, "argument 0")
        return codec.quantity(self._read_state(block, lambda state: state.get_balance(addr)))

    def eth_getCode(self, address: Any, block: Any = "latest") -> str:
        addr = codec.parse_address(address, "argument 0")
        return codec.data(self._read_state(block, lambda state: state.get_code(addr)))

    def eth_getStorageAt(self, address: Any, slot: Any, block: Any = "latest") -> str:
        addr = codec.parse_address(address, "argument 0")
        position = storage_slot(slot)
        value = self._read_state(block, lambda state: state.get_storage(addr, position))
        return codec.data(value.to_bytes(32, "big"))

    def eth_getTransactionCount(self, address: Any, block: Any = "latest") -> str:
        addr = codec.parse_address(address, "argument 0")
        if block == "pending":
            return codec.quantity(self.node.pool.pending_nonce(addr))
        return codec.quantity(self._read_state(block, lambda state: state.get_nonce(addr)))

    def eth_getProof(self, address: Any, keys: Any, block: Any = "latest") -> dict[str, Any]:
        addr = codec.parse_address(address, "argument 0")
        if not isinstance(keys, list):
            raise invalid_params("invalid argument 1: expected an array of storage keys")
        header = resolve_block(self.node, block)
        state = self.chain.state_at(header)
        db = self.chain.chaindb.db
        state_trie = HexaryTrie(db, header.state_root)
        account_key = keccak(addr)
        account_proof = state_trie.get_proof(account_key)
        encoded_account = state_trie.get(account_key)
        storage_root = (
            rlp.decode(encoded_account, sedes=StateAccount).storage_root if encoded_account else BLANK_ROOT_HASH
        )
        storage_trie = HexaryTrie(db, storage_root)
        storage_proofs = []
        for key in keys:
            slot = storage_slot(key)
            proof = storage_trie.get_proof(keccak(slot.to_bytes(32, "big")))
            storage_proofs.append(
                {
                    "key": key,
                    "value": codec.quantity(state.get_storage(addr, slot)),
                    "proof": [codec.data(rlp.encode(node)) for node in proof],
                }
            )
        return {
            "address": codec.address(addr),
            "accountProof": [codec.data(rlp.encode(node)) for node in account_proof],
            "balance": codec.quantity(state.get_balance(addr)),
            "codeHash": codec.data(state.get_code_hash(addr)),
            "nonce": codec.quantity(state.get_nonce(addr)),
            "storageHash": codec.data(storage_root),
            "storageProof": storage_proofs,
        }

    # -- calls -----------------------------------------------------------------------------------
    @contextmanager
    def _call_state(
        self, tx_obj: Any, header: BlockHeaderAPI, overrides: Any, block_over: Any
    ) -> Iterator[tuple[Any, ...]]:
        """(params, state, vm class) for a call at ``header``; state changes are reverted when the block exits."""
        params = parse_call(tx_obj)
        context = block_overrides(header, block_over)
        if not params.fee_given and hasattr(header, "base_fee_per_gas"):
            context.setdefault("base_fee_per_gas", 0)  # geth's NoBaseFee for calls without a price
        vm_class = self.chain.chain_class.get_vm_class(header)
        with self.chain.scratch_state(header, **context) as state:
            apply_state_overrides(state, overrides)
            yield params, state, vm_class

    def eth_call(self, tx_obj: Any, block: Any = "latest", overrides: Any = None, block_over: Any = None) -> str:
        """Execute a call; results are memoised per block, since a call's outcome is a pure function of
        (block, call object, overrides) — dApps poll the same views every block."""
        header = resolve_block(self.node, block)
        key = _call_key(header.hash, tx_obj, overrides, block_over)
        cached = self._call_cache.get(key) if key is not None else None
        if cached is None:
            try:
                cached = (True, self._execute_call(tx_obj, header, overrides, block_over))
            except RpcError as err:
                cached = (False, err)
            if key is not None:
                self._call_cache.put(key, cached)
        ok, value = cached
        if not ok:
            raise value
        return value

    def _execute_call(self, tx_obj: Any, header: BlockHeaderAPI, overrides: Any, block_over: Any) -> str:
        with self._call_state(tx_obj, header, overrides, block_over) as (params, state, vm_class):
            if params.gas is None:
                params.gas = execution.RPC_GAS_CAP
            computation = self._run(state, vm_class, params)
        if computation.is_error:
            raise execution_rpc_error(execution.computation_error(computation))
        return codec.data(computation.output)

    def _run(self, state: Any, vm_class: Any, params: Any) -> Any:
        tx = execution.build_call_transaction(vm_class, state, params)
        try:
            return execution.execute(state, tx)
        except ExecutionError as err:
            raise execution_rpc_error(err) from None
        except Exception as exc:  # py-evm ValidationError for value > balance and similar
            raise server_error(_call_failure(exc)) from None

    def eth_estimateGas(self, tx_obj: Any, block: Any = "latest", overrides: Any = None) -> str:
        """Binary search for the lowest gas limit that succeeds, as geth's estimator."""
        header = resolve_block(self.node, block)
        cap = min(header.gas_limit, execution.RPC_GAS_CAP)
        requested = parse_call(tx_obj).gas
        if requested is not None:
            cap = min(cap, requested)

        def attempt(gas: int) -> tuple[Any, Any]:
            with self._call_state(tx_obj, header, overrides, None) as (params, state, vm_class):
                params.gas = gas
                tx = execution.build_call_transaction(vm_class, state, params)
                if tx.intrinsic_gas > gas:
                    return tx, None
                try:
                    return tx, execution.execute(state, tx)
                except Exception as exc:
                    raise server_error(_call_failure(exc)) from None

        tx, first = attempt(cap)
        if first is not None and not first.is_error and not tx.data and tx.to:
            with self._call_state(tx_obj, header, overrides, None) as (params, state, _):
                plain_transfer = not state.get_code(params.to)
            if plain_transfer:  # exactly the intrinsic gas, as geth
                return codec.quantity(tx.intrinsic_gas)
        if first is None:
            raise server_error(f"intrinsic gas too low: gas {cap}, minimum needed {tx.intrinsic_gas}")
        if first.is_error:
            err = execution.computation_error(first)
            if err.reverted:
                raise execution_rpc_error(err)
            raise server_error(f"gas required exceeds allowance ({cap})")
        lo = max(execution.gas_used(tx, first) - 1, tx.intrinsic_gas - 1)
        hi = cap
        optimistic = (tx.intrinsic_gas + first.get_gas_used() + first.get_gas_refund() + 2300) * 64 // 63
        if lo < optimistic < hi:
            _, result = attempt(optimistic)
            if result is not None and not result.is_error:
                hi = optimistic
            else:
                lo = optimistic
        while lo + 1 < hi and (hi - lo) * 1000 >= hi * 15:  # stop within 1.5%, as geth
            mid = (lo + hi) // 2
            _, result = attempt(mid)
            if result is None or result.is_error:
                lo = mid
            else:
                hi = mid
        return codec.quantity(hi)

    def eth_createAccessList(self, tx_obj: Any, block: Any = "latest") -> dict[str, Any]:
        """Run the call, collect the addresses and slots it touched, and price the call with them."""
        header = resolve_block(self.node, block)
        with self._call_state(tx_obj, header, None, None) as (params, state, vm_class):
            if params.gas is None:
                params.gas = execution.RPC_GAS_CAP
            computation = self._run(state, vm_class, params)
            touched = execution.touched_state(state)
        excluded = {params.sender, params.to, *vm_class._state_class.computation_class._precompiles}
        access_list = [(addr, sorted(slots)) for addr, slots in touched.items() if addr not in excluded or slots]
        with self._call_state(tx_obj, header, None, None) as (params2, state2, _):
            params2.gas = params.gas
            params2.access_list = access_list
            tx2 = execution.build_call_transaction(vm_class, state2, params2)
            computation2 = execution.execute(state2, tx2)
            gas = execution.gas_used(tx2, computation2)
        result: dict[str, Any] = {
            "accessList": [
                {"address": codec.address(a), "storageKeys": [codec.data(k.to_bytes(32, "big")) for k in slots]}
                for a, slots in access_list
            ],
            "gasUsed": codec.quantity(gas),
        }
        if computation.is_error:
            result["error"] = str(execution.computation_error(computation))
        return result

    # -- transactions ----------------------------------------------------------------------------
    async def eth_sendRawTransaction(self, raw: Any) -> str:
        payload = codec.parse_data(raw, "argument 0")
        try:
            tx_hash = await self.node.submit_and_wait(payload)
        except TxPoolError as err:
            raise server_error(str(err)) from None
        return codec.data(tx_hash)

    async def eth_sendTransaction(self, tx_obj: Any) -> str:
        fields = self.fill_transaction(tx_obj)
        sender = codec.parse_address(tx_obj.get("from"), "from")
        try:
            if sender in self.node.impersonated and sender not in self.node.config.unlocked_keys:
                return codec.data(await self.node.send_impersonated(sender, fields))
            raw = self.node.sign_with_unlocked(sender, fields)
        except TxPoolError as err:
            raise server_error(str(err)) from None
        return await self.eth_sendRawTransaction(codec.data(raw))

    def _unlocked_key(self, address: Any, arg: str) -> bytes:
        key = self.node.config.unlocked_keys.get(codec.parse_address(address, arg))
        if key is None:
            raise server_error("unknown account")
        return key

    def eth_sign(self, address: Any, message: Any) -> str:
        """EIP-191 personal-message signature by an unlocked account (as geth's eth_sign)."""
        key = self._unlocked_key(address, "argument 0")
        signed = Account.sign_message(encode_defunct(codec.parse_data(message, "argument 1")), key)
        return codec.data(signed.signature)

    def eth_signTypedData_v4(self, address: Any, typed_data: Any) -> str:
        """EIP-712 signature by an unlocked account (the payload as an object or a JSON string)."""
        key = self._unlocked_key(address, "argument 0")
        if isinstance(typed_data, str):
            try:
                typed_data = json.loads(typed_data)
            except ValueError:
                raise invalid_params("invalid argument 1: typed data is not JSON") from None
        if not isinstance(typed_data, dict):
            raise invalid_params("invalid argument 1: typed data must be an object")
        try:
            message = encode_typed_data(full_message=typed_data)
        except Exception as exc:  # eth-account raises several kinds for malformed EIP-712 payloads
            raise invalid_params(f"invalid argument 1: {exc}") from None
        return codec.data(Account.sign_message(message, key).signature)

    def fill_transaction(self, tx_obj: Any) -> dict[str, Any]:
        """Complete a transaction object the way geth's SendTransaction does (nonce, gas, fees)."""
        if not isinstance(tx_obj, dict) or tx_obj.get("from") is None:
            raise invalid_params("invalid argument 0: transaction needs a 'from' field")
        params = parse_call(tx_obj)
        fields: dict[str, Any] = {
            "chainId": self.chain.chain_id,
            "nonce": params.nonce if params.nonce is not None else self.node.pool.pending_nonce(params.sender),
            "value": params.value,
            "data": params.data,
        }
        if params.to is not None:
            fields["to"] = params.to
        if params.gas_price is not None:
            fields["gasPrice"] = params.gas_price
        else:
            tip = params.max_priority_fee_per_gas
            if tip is None:
                tip = self._suggested_tip()
            max_fee = params.max_fee_per_gas
            if max_fee is None:
                max_fee = 2 * self.node.next_base_fee() + tip
            fields.update({"maxFeePerGas": max_fee, "maxPriorityFeePerGas": min(tip, max_fee), "type": 2})
        if params.access_list:
            fields["accessList"] = [
                {"address": codec.address(a), "storageKeys": [codec.data(s.to_bytes(32, "big")) for s in slots]}
                for a, slots in params.access_list
            ]
        if params.gas is not None:
            fields["gas"] = params.gas
        else:
            estimate_obj = {k: v for k, v in tx_obj.items() if k not in ("nonce",)}
            fields["gas"] = int(self.eth_estimateGas(estimate_obj, "pending"), 16)
        return fields

    def _tx_in_block(self, header: BlockHeaderAPI, index: int) -> dict[str, Any] | None:
        block = self.chain.block_by_header(header)
        if index >= len(block.transactions):
            return None
        base_fee = getattr(header, "base_fee_per_gas", None)
        return codec.transaction_json(block.transactions[index], header, index, base_fee)

    def eth_getTransactionByHash(self, tx_hash: Any) -> dict[str, Any] | None:
        h = codec.parse_hash(tx_hash, "argument 0")
        location = self.chain.tx_location(h)
        if location is None:
            pending = self.node.pool.get(h)
            return codec.transaction_json(pending, None, None, None) if pending is not None else None
        return self._tx_in_block(self.chain.header_by_hash(location.block_hash), location.index)

    def eth_getTransactionByBlockHashAndIndex(self, block_hash: Any, index: Any) -> dict[str, Any] | None:
        try:
            header = self.chain.header_by_hash(codec.parse_hash(block_hash, "argument 0"))
        except HeaderNotFound:
            return None
        return self._tx_in_block(header, codec.parse_quantity(index, "argument 1"))

    def eth_getTransactionByBlockNumberAndIndex(self, number: Any, index: Any) -> dict[str, Any] | None:
        header = block_number_or_none(self.node, number)
        if header is None:
            return None
        return self._tx_in_block(header, codec.parse_quantity(index, "argument 1"))

    def eth_getRawTransactionByHash(self, tx_hash: Any) -> str | None:
        tx = self.node.find_transaction(codec.parse_hash(tx_hash, "argument 0"))
        return codec.data(tx.encode()) if tx is not None else None

    def eth_getTransactionReceipt(self, tx_hash: Any) -> dict[str, Any] | None:
        h = codec.parse_hash(tx_hash, "argument 0")
        location = self.chain.tx_location(h)
        if location is None:
            return None
        block = self.chain.block_by_header(self.chain.header_by_hash(location.block_hash))
        return codec.receipt_json(block, self.chain.receipts(block), location.index)

    # -- blocks ----------------------------------------------------------------------------------
    def _block_json(self, header: BlockHeaderAPI | None, full: Any) -> dict[str, Any] | None:
        if not isinstance(full, bool):
            raise invalid_params("invalid argument 1: expected a boolean")
        if header is None:
            return None
        block = self.chain.block_by_header(header)
        return codec.block_json(block, full, len(self.chain.encode_block(block)))

    def eth_getBlockByNumber(self, number: Any, full: Any = False) -> dict[str, Any] | None:
        return self._block_json(block_number_or_none(self.node, number), full)

    def eth_getBlockByHash(self, block_hash: Any, full: Any = False) -> dict[str, Any] | None:
        try:
            header = self.chain.header_by_hash(codec.parse_hash(block_hash, "argument 0"))
        except HeaderNotFound:
            return None
        return self._block_json(header, full)

    def eth_getHeaderByNumber(self, number: Any) -> dict[str, Any] | None:
        header = block_number_or_none(self.node, number)
        return None if header is None else codec.header_json(header)

    def eth_getHeaderByHash(self, block_hash: Any) -> dict[str, Any] | None:
        try:
            return codec.header_json(self.chain.header_by_hash(codec.parse_hash(block_hash, "argument 0")))
        except HeaderNotFound:
            return None

    def eth_getBlockReceipts(self, block: Any) -> list[dict[str, Any]] | None:
        try:
            header = resolve_block(self.node, block)
        except RpcError:
            return None
        b = self.chain.block_by_header(header)
        return codec.receipts_json(b, self.chain.receipts(b))

    def eth_getBlockTransactionCountByNumber(self, number: Any) -> str | None:
        header = block_number_or_none(self.node, number)
        return None if header is None else codec.quantity(len(self.chain.block_by_header(header).transactions))

    def eth_getBlockTransactionCountByHash(self, block_hash: Any) -> str | None:
        try:
            header = self.chain.header_by_hash(codec.parse_hash(block_hash, "argument 0"))
        except HeaderNotFound:
            return None
        return codec.quantity(len(self.chain.block_by_header(header).transactions))

    def eth_getUncleCountByBlockNumber(self, number: Any) -> str | None:
        return None if block_number_or_none(self.node, number) is None else "0x0"

    def eth_getUncleCountByBlockHash(self, block_hash: Any) -> str:
        return "0x0"

    def eth_getUncleByBlockNumberAndIndex(self, number: Any, index: Any) -> None:
        return None

    def eth_getUncleByBlockHashAndIndex(self, block_hash: Any, index: Any) -> None:
        return None


def _call_failure(exc: Exception) -> str:
    text = str(exc)
    if "balance" in text.lower():
        return "insufficient funds for gas * price + value"
    return text or type(exc).__name__


__all__ = ["ChainError", "EthApi"]


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a JSON value (dicts as sorted item tuples, lists as tuples)."""
    if isinstance(value, dict):
        return ("{", *sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("[", *map(_frozen, value))
    if isinstance(value, str):
        return value
    hash(value)
    return (type(value), value)  # keeps 1, 1.0 and true apart


def _call_key(block_hash: bytes, *call: Any) -> tuple[Any, ...] | None:
    """The memo key of an eth_call at a block: its parameters as given (None if some are not hashable)."""
    try:
        return (block_hash, *map(_frozen, call))
    except TypeError:
        return None
