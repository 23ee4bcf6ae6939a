"""geth-format ``genesis.json``: parse, validate, and turn into a py-evm chain.

The fork schedule follows geth's config keys. Block-numbered forks (``homesteadBlock`` … ``londonBlock``,
``mergeNetsplitBlock``) map onto py-evm's block-numbered VM configuration. Timestamp forks
(``shanghaiTime``, ``cancunTime``, ``pragueTime``) are supported when active at genesis, which is how
rollups and devnets launch; a later timestamp transition is rejected with a clear error.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth.abc import VirtualMachineAPI
from eth.chains.base import Chain
from eth.constants import BLANK_ROOT_HASH
from eth.vm.forks import (
    ArrowGlacierVM,
    BerlinVM,
    ByzantiumVM,
    CancunVM,
    ConstantinopleVM,
    FrontierVM,
    GrayGlacierVM,
    HomesteadVM,
    IstanbulVM,
    LondonVM,
    MuirGlacierVM,
    ParisVM,
    PetersburgVM,
    PragueVM,
    ShanghaiVM,
    SpuriousDragonVM,
    TangerineWhistleVM,
)
from eth.vm.forks.cancun.constants import BEACON_ROOTS_ADDRESS, BEACON_ROOTS_CONTRACT_CODE
from eth.vm.forks.prague.constants import HISTORY_STORAGE_ADDRESS, HISTORY_STORAGE_CONTRACT_CODE
from eth_utils import to_canonical_address, to_checksum_address

from lorachain.genesis.accounts import DEV_BALANCE_WEI, dev_accounts

DEVNET_CHAIN_ID = 901
DEFAULT_GAS_LIMIT = 30_000_000
DEFAULT_BASE_FEE = 1_000_000_000

# (geth config key, VM) in activation order.
_BLOCK_FORKS: tuple[tuple[str, type[VirtualMachineAPI]], ...] = (
    ("homesteadBlock", HomesteadVM),
    ("eip150Block", TangerineWhistleVM),
    ("eip158Block", SpuriousDragonVM),
    ("byzantiumBlock", ByzantiumVM),
    ("constantinopleBlock", ConstantinopleVM),
    ("petersburgBlock", PetersburgVM),
    ("istanbulBlock", IstanbulVM),
    ("muirGlacierBlock", MuirGlacierVM),
    ("berlinBlock", BerlinVM),
    ("londonBlock", LondonVM),
    ("arrowGlacierBlock", ArrowGlacierVM),
    ("grayGlacierBlock", GrayGlacierVM),
    ("mergeNetsplitBlock", ParisVM),
)
_TIME_FORKS: tuple[tuple[str, type[VirtualMachineAPI]], ...] = (
    ("shanghaiTime", ShanghaiVM),
    ("cancunTime", CancunVM),
    ("pragueTime", PragueVM),
)


class GenesisError(ValueError):
    """The genesis file is malformed or asks for something this node cannot run."""


def _quantity(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value.lower().startswith("0x") else int(value)
        except ValueError:
            pass
    raise GenesisError(f"genesis field {name!r}: expected a number or hex quantity, got {value!r}")


def _data(value: Any, name: str, size: int | None = None) -> bytes:
    if value is None:
        return b"" if size is None else b"\x00" * size
    if not isinstance(value, str) or not value.startswith("0x"):
        raise GenesisError(f"genesis field {name!r}: expected 0x-prefixed hex, got {value!r}")
    try:
        digits = value[2:]
        raw = bytes.fromhex(digits if len(digits) % 2 == 0 else "0" + digits)
    except ValueError as exc:
        raise GenesisError(f"genesis field {name!r}: invalid hex") from exc
    if size is not None:
        if len(raw) > size:
            raise GenesisError(f"genesis field {name!r}: longer than {size} bytes")
        raw = raw.rjust(size, b"\x00")
    return raw


@dataclass(frozen=True)
class AllocAccount:
    balance: int = 0
    nonce: int = 0
    code: bytes = b""
    storage: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Genesis:
    """A validated genesis: chain parameters plus the initial state."""

    chain_id: int
    vm_configuration: tuple[tuple[int, type[VirtualMachineAPI]], ...]
    gas_limit: int
    base_fee: int
    timestamp: int
    extra_data: bytes
    coinbase: bytes
    difficulty: int
    nonce: bytes
    mix_hash: bytes
    alloc: dict[bytes, AllocAccount]
    raw: dict[str, Any]

    @property
    def fork_name(self) -> str:
        return self.vm_configuration[-1][1].fork

    @property
    def op_stack(self) -> bool:
        """An OP Stack chain (op-geth's ``config.optimism``): deposit transactions and the L2 rules apply."""
        return isinstance((self.raw.get("config") or {}).get("optimism"), dict)

    def chain_class(self, precompiles: dict[bytes, Any] | None = None) -> type[Chain]:
        """A py-evm ``Chain`` subclass configured with this genesis' forks and chain id, its computations
        answering ``precompiles`` (address -> function) besides each fork's own."""
        from lorachain.node.rollup.deposit_vm import op_stack_vm
        from lorachain.node.vm import fast_vm, with_precompiles

        if self.op_stack:
            from lorachain.node.rollup.eip1559 import Eip1559Params

            params = Eip1559Params.from_optimism_config(self.raw["config"]["optimism"])

            def rules(vm: type) -> type:
                return op_stack_vm(vm, params)
        else:

            def rules(vm: type) -> type:
                return vm

        vms = tuple(
            (block, with_precompiles(rules(fast_vm(vm)), precompiles or {})) for block, vm in self.vm_configuration
        )
        return Chain.configure(__name__="LoraChain", vm_configuration=vms, chain_id=self.chain_id)

    def header_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "coinbase": self.coinbase,
            "difficulty": self.difficulty,
            "gas_limit": self.gas_limit,
            "timestamp": self.timestamp,
            "extra_data": self.extra_data,
            "mix_hash": self.mix_hash,
            "nonce": self.nonce,
        }
        vm = self.vm_configuration[0][1]
        if issubclass(vm, LondonVM):
            params["base_fee_per_gas"] = self.base_fee
        if issubclass(vm, ShanghaiVM):
            params["withdrawals_root"] = BLANK_ROOT_HASH
        if issubclass(vm, CancunVM):
            params["blob_gas_used"] = 0
            params["excess_blob_gas"] = 0
            params["parent_beacon_block_root"] = b"\x00" * 32
        return params

    def state(self) -> dict[bytes, dict[str, Any]]:
        """Initial state in py-evm's ``apply_state_dict`` form."""
        return {
            address: {
                "balance": acct.balance,
                "nonce": acct.nonce,
                "code": acct.code,
                "storage": dict(acct.storage),
            }
            for address, acct in self.alloc.items()
        }


def _vm_configuration(config: dict[str, Any], timestamp: int) -> tuple[tuple[int, type], ...]:
    schedule: list[tuple[int, type]] = [(0, FrontierVM)]
    for key, vm in _BLOCK_FORKS:
        if key in config and config[key] is not None:
            schedule.append((_quantity(config[key], f"config.{key}"), vm))
    ttd = config.get("terminalTotalDifficulty")
    if ttd is not None and "mergeNetsplitBlock" not in config and _quantity(ttd, "config.terminalTotalDifficulty") == 0:
        schedule.append((0, ParisVM))
    for key, vm in _TIME_FORKS:
        if key in config and config[key] is not None:
            activation = _quantity(config[key], f"config.{key}")
            if activation > timestamp:
                raise GenesisError(
                    f"config.{key}={activation} is after the genesis timestamp {timestamp}: "
                    "timestamp forks must be active at genesis on this node"
                )
            schedule.append((0, vm))
    # Keep, for every activation block, the latest fork; drop forks superseded at the same block.
    keys = dict(_BLOCK_FORKS + _TIME_FORKS)
    named = [(key, _quantity(config[key], key)) for key in keys if config.get(key) is not None]
    for (earlier_key, earlier_at), (later_key, later_at) in itertools.pairwise(named):
        if later_at < earlier_at and later_key.endswith("Block") and earlier_key.endswith("Block"):
            raise GenesisError(
                f"unsupported fork ordering: {earlier_key} enabled at block {earlier_at}, "
                f"but {later_key} enabled at block {later_at}"
            )
    by_block: dict[int, type] = {}
    for block, vm in schedule:
        by_block[block] = vm
    ordered = sorted(by_block.items())
    for (_, earlier), (_, later) in itertools.pairwise(ordered):
        if not issubclass(later, earlier):
            raise GenesisError(f"fork schedule out of order: {later.fork} activates before {earlier.fork}")
    return tuple(ordered)


def _parse_alloc(alloc: Any) -> dict[bytes, AllocAccount]:
    if not isinstance(alloc, dict):
        raise GenesisError("genesis field 'alloc' must be an object of address -> account")
    parsed: dict[bytes, AllocAccount] = {}
    for key, entry in alloc.items():
        addr_hex = key if key.startswith("0x") else "0x" + key
        try:
            address = to_canonical_address(addr_hex)
        except ValueError as exc:
            raise GenesisError(f"alloc: invalid address {key!r}") from exc
        if not isinstance(entry, dict):
            raise GenesisError(f"alloc[{key}]: expected an object")
        storage = {
            _quantity(k, f"alloc[{key}].storage key"): _quantity(v, f"alloc[{key}].storage value")
            for k, v in (entry.get("storage") or {}).items()
        }
        parsed[address] = AllocAccount(
            balance=_quantity(entry.get("balance", 0), f"alloc[{key}].balance"),
            nonce=_quantity(entry.get("nonce", 0), f"alloc[{key}].nonce"),
            code=_data(entry.get("code"), f"alloc[{key}].code"),
            storage={k: v for k, v in storage.items() if v},
        )
    return parsed


def parse_genesis(raw: dict[str, Any]) -> Genesis:
    """Validate a geth-format genesis object."""
    if not isinstance(raw, dict):
        raise GenesisError("genesis must be a JSON object")
    config = raw.get("config")
    if not isinstance(config, dict) or "chainId" not in config:
        raise GenesisError("genesis needs a 'config' object with 'chainId'")
    timestamp = _quantity(raw.get("timestamp", 0), "timestamp")
    vm_configuration = _vm_configuration(config, timestamp)
    if issubclass(vm_configuration[0][1], ParisVM):
        for field_name in ("nonce", "difficulty"):
            if _quantity(raw.get(field_name, 0), field_name) != 0:
                raise GenesisError(f"genesis {field_name} must be 0 for a chain that starts after the merge")
    extra = _data(raw.get("extraData", "0x"), "extraData")
    if len(extra) > 32:
        raise GenesisError("extraData is longer than 32 bytes")
    return Genesis(
        chain_id=_quantity(config["chainId"], "config.chainId"),
        vm_configuration=vm_configuration,
        gas_limit=_quantity(raw.get("gasLimit", DEFAULT_GAS_LIMIT), "gasLimit"),
        base_fee=_quantity(raw.get("baseFeePerGas", DEFAULT_BASE_FEE), "baseFeePerGas"),
        timestamp=timestamp,
        extra_data=extra,
        coinbase=_data(raw.get("coinbase"), "coinbase", 20),
        difficulty=_quantity(raw.get("difficulty", 0), "difficulty"),
        nonce=_quantity(raw.get("nonce", 0), "nonce").to_bytes(8, "big"),
        mix_hash=_data(raw.get("mixHash"), "mixHash", 32),
        alloc=_parse_alloc(raw.get("alloc", {})),
        raw=raw,
    )


def load_genesis(path: str | Path) -> Genesis:
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise GenesisError(f"genesis file not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise GenesisError(f"genesis file {path} is not valid JSON: {exc}") from exc
    return parse_genesis(raw)


def system_contracts_alloc() -> dict[str, dict[str, Any]]:
    """EIP-4788 beacon-roots and EIP-2935 block-history contracts, as geth's dev genesis has them."""
    return {
        to_checksum_address(BEACON_ROOTS_ADDRESS): {
            "balance": "0x0",
            "nonce": "0x1",
            "code": "0x" + BEACON_ROOTS_CONTRACT_CODE.hex(),
        },
        to_checksum_address(HISTORY_STORAGE_ADDRESS): {
            "balance": "0x0",
            "nonce": "0x1",
            "code": "0x" + HISTORY_STORAGE_CONTRACT_CODE.hex(),
        },
    }


def devnet_genesis(chain_id: int = DEVNET_CHAIN_ID, timestamp: int = 0, with_predeploys: bool = True) -> dict[str, Any]:
    """The built-in devnet genesis (geth format): Prague from block 0, ten funded dev accounts, the system
    contracts and the payable-AI predeploys (:mod:`lorachain.genesis.predeploys`)."""
    alloc: dict[str, dict[str, Any]] = {acct.address: {"balance": hex(DEV_BALANCE_WEI)} for acct in dev_accounts()}
    alloc.update(system_contracts_alloc())
    if with_predeploys:
        from lorachain.genesis.predeploys import predeploys_alloc

        alloc.update(predeploys_alloc())
    return {
        "config": {
            "chainId": chain_id,
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
        },
        "nonce": "0x0",
        "timestamp": hex(timestamp),
        "extraData": "0x" + b"lorachain".hex(),
        "gasLimit": hex(DEFAULT_GAS_LIMIT),
        "difficulty": "0x0",
        "mixHash": "0x" + "00" * 32,
        "coinbase": "0x" + "00" * 20,
        "baseFeePerGas": hex(DEFAULT_BASE_FEE),
        "alloc": alloc,
    }
