"""The payable-AI contracts as genesis predeploys at fixed addresses.

``predeploys.json`` (beside this module) holds each contract's runtime code as it stands at its address:
built by executing the contracts' creation code (compiled by the pinned solc) with the fixed addresses as
constructor arguments, in a scratch py-evm chain, and taking the code each deployment returns
(immutables filled in). The contracts keep no constructor-written storage, so code alone is their whole
genesis state. The file is generated, committed, and checked against a fresh build by the tests::

    python -m lorachain.genesis.predeploys    # rebuild predeploys.json after changing contracts/src
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from eth_utils import to_canonical_address, to_checksum_address

DATANET_REGISTRY = to_checksum_address("0x4c43000000000000000000000000000000000001")
ADAPTER_REGISTRY = to_checksum_address("0x4c43000000000000000000000000000000000002")
INFERENCE_ROUTER = to_checksum_address("0x4c43000000000000000000000000000000000003")
ROUTER_OWNER_BPS, ROUTER_CONTRIBUTORS_BPS = 7000, 2000  # the treasury gets the remaining 10 %
PREDEPLOYS_FILE = Path(__file__).with_name("predeploys.json")


def devnet_treasury() -> str:
    """The devnet's protocol treasury: dev account #9 (a real chain would name a multisig)."""
    from lorachain.genesis.accounts import dev_accounts

    return dev_accounts()[9].address


PREDEPLOY_NAMES = {
    DATANET_REGISTRY: "DatanetRegistry",
    ADAPTER_REGISTRY: "AdapterRegistry",
    INFERENCE_ROUTER: "InferenceRouter",
}


def _load() -> dict[str, Any]:
    return json.loads(PREDEPLOYS_FILE.read_text())


def predeploys_alloc() -> dict[str, dict[str, Any]]:
    """Genesis ``alloc`` entries of the predeploys (code only)."""
    return {address: {"balance": "0x0", "nonce": "0x1", "code": code} for address, code in _load()["code"].items()}


def contract_abi(name: str) -> list[dict[str, Any]]:
    """The ABI of a payable-AI contract, as shipped with the package (no compiler needed)."""
    return _load()["contracts"][name]["abi"]


def contract_bytecode(name: str) -> str:
    """Creation bytecode (0x hex) of a payable-AI contract, to deploy it on any chain."""
    return _load()["contracts"][name]["bytecode"]


def build_predeploy_codes() -> dict[str, str]:
    """Compile and deploy the contracts in a scratch chain; return address -> runtime code (0x hex)."""
    from eth.chains.base import MiningChain
    from eth.db.atomic import AtomicDB
    from eth_account import Account

    from lorachain.genesis.accounts import dev_accounts
    from lorachain.genesis.genesis import devnet_genesis, parse_genesis
    from lorachain.toolchain.solc import build_contracts, load_artifact

    build_contracts()
    genesis = parse_genesis(devnet_genesis(with_predeploys=False))
    chain_class = MiningChain.configure(vm_configuration=genesis.vm_configuration, chain_id=genesis.chain_id)
    chain = chain_class.from_genesis(AtomicDB(), genesis.header_params(), genesis.state())
    vm = chain.get_vm()
    deployer = dev_accounts()[0]
    plan = (
        (DATANET_REGISTRY, "DatanetRegistry", (), ()),
        (ADAPTER_REGISTRY, "AdapterRegistry", ("address",), (DATANET_REGISTRY,)),
        (INFERENCE_ROUTER, "InferenceRouter", ("address", "address", "uint16", "uint16"),
         (ADAPTER_REGISTRY, devnet_treasury(), ROUTER_OWNER_BPS, ROUTER_CONTRIBUTORS_BPS)),
    )  # fmt: skip
    codes: dict[str, str] = {}
    import eth_abi

    for nonce, (address, name, types, args) in enumerate(plan):
        creation = bytes.fromhex(load_artifact(name)["bytecode"][2:]) + eth_abi.encode(list(types), list(args))
        fields = {"nonce": nonce, "gas": 15_000_000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 0,
                  "chainId": genesis.chain_id, "data": creation, "value": 0, "type": 2}  # fmt: skip
        raw = Account.sign_transaction(fields, deployer.private_key).raw_transaction
        tx = vm.get_transaction_builder().decode(bytes(raw))
        _, computation = vm.apply_transaction(vm.get_header(), tx)
        if computation.is_error:
            raise RuntimeError(f"deploying {name} failed: {computation.error}")
        runtime = vm.state.get_code(computation.msg.storage_address)
        vm.state.set_code(to_canonical_address(address), runtime)  # later constructors call it there
        codes[address] = "0x" + runtime.hex()
    return codes


def write_predeploys(path: Path = PREDEPLOYS_FILE) -> None:
    from lorachain.toolchain.solc import load_artifact, pinned_solc_version

    contracts = {}
    for name in (*PREDEPLOY_NAMES.values(), "AdapterQA"):
        artifact = load_artifact(name)
        contracts[name] = {"abi": artifact["abi"], "bytecode": artifact["bytecode"]}
    data = {"solc": pinned_solc_version(), "treasury": devnet_treasury(), "code": build_predeploy_codes(),
            "contracts": contracts}  # fmt: skip
    path.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    write_predeploys()
    print(f"wrote {PREDEPLOYS_FILE}", file=sys.stderr)
