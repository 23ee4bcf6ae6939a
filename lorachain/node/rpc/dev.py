"""Devnet helpers as Hardhat and Anvil offer them: ``evm_*``, ``anvil_*`` / ``hardhat_*``."""

from __future__ import annotations

from typing import Any

from lorachain.node.node import Node
from lorachain.node.rpc import codec
from lorachain.node.rpc.calls import storage_slot
from lorachain.node.rpc.errors import invalid_params, server_error


class DevApi:
    namespaces = ("evm", "anvil", "hardhat")

    def __init__(self, node: Node) -> None:
        self.node = node

    def evm_mine(self, options: Any = None) -> str:
        timestamp = None
        if isinstance(options, dict) and options.get("timestamp") is not None:
            timestamp = codec.parse_quantity(options["timestamp"], "timestamp")
        elif options is not None and not isinstance(options, dict):
            timestamp = codec.parse_quantity(options, "timestamp")
        if timestamp is not None and timestamp <= self.node.chain.head.timestamp:
            raise server_error(
                f"timestamp {timestamp} is lower than or equal to previous block's timestamp "
                f"{self.node.chain.head.timestamp}"
            )
        if timestamp is not None:
            self.node.clock.set_next(timestamp)  # replaces a pending evm_setNextBlockTimestamp
        try:
            self.node.mine()
        except ValueError as exc:
            raise server_error(str(exc)) from None
        return "0x0"

    def anvil_mine(self, blocks: Any = "0x1", interval: Any = None) -> None:
        count = codec.parse_quantity(blocks, "blocks")
        step = codec.parse_quantity(interval, "interval") if interval is not None else None
        for _ in range(count):
            ts = self.node.chain.head.timestamp + step if step else None
            self.node.mine(ts)

    hardhat_mine = anvil_mine

    def evm_snapshot(self) -> str:
        return codec.quantity(self.node.snapshot())

    def evm_revert(self, snapshot_id: Any) -> bool:
        return self.node.revert(codec.parse_quantity(snapshot_id, "snapshot id"))

    def evm_increaseTime(self, seconds: Any) -> str:
        amount = seconds if isinstance(seconds, int) else codec.parse_quantity(seconds, "seconds")
        return codec.quantity(self.node.clock.increase(amount))

    def evm_setNextBlockTimestamp(self, timestamp: Any) -> None:
        ts = timestamp if isinstance(timestamp, int) else codec.parse_quantity(timestamp, "timestamp")
        if ts <= self.node.chain.head.timestamp:
            raise server_error(
                f"timestamp {ts} is lower than or equal to previous block's timestamp {self.node.chain.head.timestamp}"
            )
        self.node.clock.set_next(ts)

    def evm_setAutomine(self, enabled: Any) -> None:
        if not isinstance(enabled, bool):
            raise invalid_params("expected a boolean")
        self.node.set_mining_mode("auto" if enabled else "manual")

    def anvil_setBalance(self, address: Any, balance: Any) -> None:
        addr = codec.parse_address(address, "argument 0")
        self.node.edit_state(lambda state: state.set_balance(addr, codec.parse_quantity(balance, "balance")))

    hardhat_setBalance = anvil_setBalance

    def anvil_setCode(self, address: Any, code: Any) -> None:
        addr = codec.parse_address(address, "argument 0")
        self.node.edit_state(lambda state: state.set_code(addr, codec.parse_data(code, "code")))

    hardhat_setCode = anvil_setCode

    def anvil_setNonce(self, address: Any, nonce: Any) -> None:
        addr = codec.parse_address(address, "argument 0")
        self.node.edit_state(lambda state: state.set_nonce(addr, codec.parse_quantity(nonce, "nonce")))

    hardhat_setNonce = anvil_setNonce

    def anvil_setStorageAt(self, address: Any, slot: Any, value: Any) -> bool:
        addr = codec.parse_address(address, "argument 0")
        key = storage_slot(slot)
        val = int.from_bytes(codec.parse_hash(value, "value"), "big")
        self.node.edit_state(lambda state: state.set_storage(addr, key, val))
        return True

    hardhat_setStorageAt = anvil_setStorageAt

    def anvil_impersonateAccount(self, address: Any) -> None:
        self.node.impersonated.add(codec.parse_address(address, "argument 0"))

    hardhat_impersonateAccount = anvil_impersonateAccount

    def anvil_stopImpersonatingAccount(self, address: Any) -> None:
        self.node.impersonated.discard(codec.parse_address(address, "argument 0"))

    hardhat_stopImpersonatingAccount = anvil_stopImpersonatingAccount
