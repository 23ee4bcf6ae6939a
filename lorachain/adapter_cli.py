"""``lorachain adapter publish|ls|call`` and ``lorachain contracts deploy``: the payable-AI contracts from
the command line, over JSON-RPC (web3.py) and the sidecar's API.

Keys: ``--key 0x…`` (or ``LORACHAIN_KEY``), else ``--account N``: dev account N of the devnet mnemonic.
Contracts: the devnet predeploys unless ``--registry``/``--router`` name other addresses.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from lorachain.genesis.predeploys import (
    ADAPTER_REGISTRY,
    DATANET_REGISTRY,
    INFERENCE_ROUTER,
    ROUTER_CONTRIBUTORS_BPS,
    ROUTER_OWNER_BPS,
    contract_abi,
    contract_bytecode,
)

DEFAULT_RPC = "http://127.0.0.1:8545"
DEFAULT_SIDECAR = "http://127.0.0.1:8600"


class CliError(Exception):
    """A user-facing failure; printed without a traceback."""


def add_commands(sub: Any) -> None:
    p = sub.add_parser("adapter", help="publish, list and call LoRA adapters on chain")
    adapter = p.add_subparsers(dest="adapter_command", required=True)

    q = adapter.add_parser("publish", help="store a peft adapter in the sidecar and register it on chain")
    q.add_argument("path", help="peft adapter folder (adapter_config.json + adapter_model.safetensors)")
    q.add_argument("--price", type=int, default=0, help="price per call in wei")
    q.add_argument("--metadata", default="", help="metadata URI")
    q.add_argument(
        "--datanet",
        action="append",
        default=[],
        metavar="ID:BPS",
        help="a datanet it was trained on and its share of the contributors' fees (repeat; sum 10000)",
    )
    q.add_argument("--record", default=None, help="the Model Factory's training record (record.bin): stored in the "
                   "sidecar and set on chain, so each inference pays the contributions it names")  # fmt: skip
    q.add_argument("--da", default=None, metavar="URL", help="also put the adapter's artifact and the record in "
                   "this DA server (content-addressed: nodes fetch them with --adapter-source da+URL)")  # fmt: skip
    _common(q, sidecar=True)
    q.set_defaults(func=cmd_publish)

    q = adapter.add_parser("ls", help="list registered adapters")
    _common(q)
    q.set_defaults(func=cmd_ls)

    q = adapter.add_parser("call", help="pay for one inference through the InferenceRouter")
    q.add_argument("adapter_id", type=int)
    q.add_argument("prompt")
    q.add_argument("--max-tokens", type=int, default=16)
    q.add_argument("--temperature-milli", type=int, default=0)
    q.add_argument("--dry-run", action="store_true", help="eth_call only: show the answer, pay nothing")
    _common(q)
    q.set_defaults(func=cmd_call)

    p = sub.add_parser("contracts", help="the payable-AI contracts")
    contracts = p.add_subparsers(dest="contracts_command", required=True)
    q = contracts.add_parser("deploy", help="deploy DatanetRegistry, AdapterRegistry and InferenceRouter anywhere")
    q.add_argument("--treasury", help="protocol treasury address (default: the deployer)")
    q.add_argument("--owner-bps", type=int, default=ROUTER_OWNER_BPS)
    q.add_argument("--contributors-bps", type=int, default=ROUTER_CONTRIBUTORS_BPS)
    _common(q)
    q.set_defaults(func=cmd_deploy)  # fmt: skip


def _common(p: argparse.ArgumentParser, sidecar: bool = False) -> None:
    p.add_argument("--rpc", default=DEFAULT_RPC, help="JSON-RPC URL (default: %(default)s)")
    p.add_argument("--key", default=os.environ.get("LORACHAIN_KEY"), help="private key (or LORACHAIN_KEY)")
    p.add_argument("--account", type=int, default=0, help="dev account index when no key is given")
    p.add_argument("--registry", default=ADAPTER_REGISTRY, help="AdapterRegistry address")
    p.add_argument("--router", default=INFERENCE_ROUTER, help="InferenceRouter address")
    if sidecar:
        p.add_argument("--sidecar", default=DEFAULT_SIDECAR, help="sidecar URL (default: %(default)s)")


class _Session:
    """web3, the signing account and the contracts of one command."""

    def __init__(self, args: argparse.Namespace, with_contracts: bool = True) -> None:
        from eth_account import Account
        from web3 import Web3

        self.w3 = Web3(Web3.HTTPProvider(args.rpc, request_kwargs={"timeout": 300}))
        try:
            self.chain_id = self.w3.eth.chain_id
        except Exception as exc:
            raise CliError(f"no JSON-RPC node at {args.rpc}: {exc}") from exc
        if args.key:
            self.account = Account.from_key(args.key)
        else:
            from lorachain.genesis.accounts import dev_accounts

            self.account = Account.from_key(dev_accounts()[args.account].private_key)
        if with_contracts:
            self.registry = self.contract(args.registry, "AdapterRegistry")
            self.router = self.contract(args.router, "InferenceRouter")

    def contract(self, address: str, name: str) -> Any:
        from web3 import Web3

        checksum = Web3.to_checksum_address(address)
        if not self.w3.eth.get_code(checksum):
            raise CliError(f"no {name} at {checksum} on this chain (deploy with `lorachain contracts deploy`)")
        return self.w3.eth.contract(address=checksum, abi=contract_abi(name))

    def send(self, fn: Any, value: int = 0) -> Any:
        """Sign and send ``fn`` as a transaction; return the receipt, raising with the revert reason."""
        from web3.exceptions import ContractLogicError

        params = {"from": self.account.address, "value": value}
        try:
            tx = fn.build_transaction({**params, "nonce": self.w3.eth.get_transaction_count(self.account.address)})
        except ContractLogicError as exc:  # estimateGas ran it and it reverted
            raise CliError(f"reverted: {exc.message}") from exc
        signed = self.account.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_raw_transaction(signed.raw_transaction))
        if receipt.status != 1:
            raise CliError(f"transaction 0x{receipt.transactionHash.hex()} failed")
        return receipt


def cmd_publish(args: argparse.Namespace) -> int:
    from lorachain.precompiles.sidecar_client import SidecarClient, SidecarUnavailable
    from lorachain.sidecar.types import SidecarError

    session = _Session(args)
    datanet_ids, shares = _parse_datanets(args.datanet)
    client = SidecarClient(args.sidecar)
    try:
        info = client._call("POST", "/v1/lorachain/adapters/load", {"path": os.path.abspath(args.path)})
        model_hash = client.model()["model_hash"]
    except (SidecarUnavailable, SidecarError) as exc:
        raise CliError(f"the sidecar could not take the adapter: {exc}") from exc
    datanets = session.contract(session.registry.functions.datanets().call(), "DatanetRegistry")
    roots = [datanets.functions.getDatanet(i).call()[4] for i in datanet_ids]
    content = bytes.fromhex(info["id"][2:])
    record = _checked_record(args.record, content, model_hash, dict(zip(datanet_ids, roots, strict=True)))
    stored = _put_in_da(args.da, args.sidecar, info["id"], record) if args.da else None
    existing = session.registry.functions.adapterOf(content).call()
    if existing:
        out = {"adapter_id": existing, "content_hash": info["id"], "already_registered": True}
    else:
        fn = session.registry.functions.register(
            content, bytes.fromhex(model_hash[2:]), args.price, args.metadata, datanet_ids, shares, roots
        )
        receipt = session.send(fn)
        event = session.registry.events.AdapterRegistered().process_receipt(receipt)[0]["args"]
        out = {"adapter_id": event["adapterId"], "content_hash": info["id"], "base_model": model_hash,
               "price_wei": args.price, "rank": info["rank"], "tx": "0x" + receipt.transactionHash.hex()}  # fmt: skip
    if record is not None:
        from eth_utils import keccak

        record_id = "0x" + keccak(record).hex()
        try:
            client.put_record(record_id, record)
        except (SidecarUnavailable, SidecarError) as exc:
            raise CliError(f"the sidecar could not take the training record: {exc}") from exc
        session.send(session.registry.functions.setTrainingRecord(out["adapter_id"], bytes.fromhex(record_id[2:])))
        out["training_record"] = record_id
    if stored is not None:
        out["da_commitments"] = stored
    print(json.dumps(out))
    return 0


def _put_in_da(da_url: str, sidecar_url: str, adapter_id: str, record: bytes | None) -> dict[str, str]:
    """Put the adapter's artifact (as the sidecar holds it: its keccak is the adapter id) and the training record
    in the DA server, OP keccak mode; their commitments. Sizes are checked before anything is stored."""
    from lorachain.da_client.blob_codec import MAX_PAYLOAD_SIZE
    from lorachain.da_client.client import DAClient, DAError
    from lorachain.da_client.commitment import CommitmentMode
    from lorachain.precompiles.adapter_sources import AdapterSources

    blob = AdapterSources([f"{sidecar_url.rstrip('/')}/v1/lorachain/artifacts"]).fetch(adapter_id)
    if blob is None:
        raise CliError(f"the sidecar at {sidecar_url} did not serve adapter {adapter_id}'s artifact bytes")
    items = {"adapter": blob} if record is None else {"adapter": blob, "record": record}
    for name, data in items.items():
        if len(data) > MAX_PAYLOAD_SIZE:
            raise CliError(f"the {name} is {len(data)} bytes: more than one DA blob carries ({MAX_PAYLOAD_SIZE})")
    client = DAClient(da_url, CommitmentMode.OP_KECCAK, retries=2)
    stored = {}
    try:
        for name, data in items.items():
            try:
                stored[name] = "0x" + client.put(data).hex()
            except DAError as exc:
                raise CliError(f"the DA server at {da_url} did not store the {name}: {exc}") from exc
    finally:
        client.close()
    return stored


def _checked_record(path: str | None, adapter: bytes, model_hash: str, roots: dict[int, bytes]) -> bytes | None:
    """The training record at ``path``, refused unless it belongs to this adapter, model and snapshots."""
    if path is None:
        return None
    from lorachain.attribution.record import RecordError, decode_record

    try:
        blob = Path(path).read_bytes()
        record = decode_record(blob)
    except OSError as exc:
        raise CliError(f"cannot read the training record {path}: {exc}") from exc
    except RecordError as exc:
        raise CliError(f"{path}: {exc}") from exc
    if record.adapter_hash != adapter:
        raise CliError(f"{path} is the training record of adapter 0x{record.adapter_hash.hex()}, not this one")
    if "0x" + record.model_hash.hex() != model_hash:
        raise CliError(f"{path} was recorded on another base model")
    if dict(record.snapshots) != roots:
        raise CliError(f"{path} covers snapshots {_roots(dict(record.snapshots))}; the datanets given are at "
                       f"{_roots(roots)} (take a snapshot, or name the datanets it was trained on)")  # fmt: skip
    return blob


def _roots(roots: dict[int, bytes]) -> str:
    return ", ".join(f"{d}:0x{r.hex()[:12]}..." for d, r in sorted(roots.items())) or "none"


def cmd_ls(args: argparse.Namespace) -> int:
    session = _Session(args)
    count = session.registry.functions.adapterCount().call()
    print(f"{'id':>4}  {'content hash':<66}  {'price (wei)':>14}  {'ver':>3}  {'state':<8}  owner")
    for adapter_id in range(1, count + 1):
        a = session.registry.functions.getAdapter(adapter_id).call()
        owner, disabled, version, price, content = a[0], a[1], a[2], a[3], a[4]
        state = "disabled" if disabled else "active"
        print(f"{adapter_id:>4}  0x{content.hex():<64}  {price:>14}  {version:>3}  {state:<8}  {owner}")
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    from web3.exceptions import ContractLogicError

    session = _Session(args)
    try:
        price = session.registry.functions.getAdapter(args.adapter_id).call()[3]
    except ContractLogicError as exc:
        raise CliError(exc.message) from exc
    fn = session.router.functions.infer(
        args.adapter_id, args.prompt, args.max_tokens, args.temperature_milli, 0, 1000, b"\x00" * 32
    )
    if args.dry_run:
        try:
            result = fn.call({"from": session.account.address, "value": price})
        except ContractLogicError as exc:
            raise CliError(f"reverted: {exc.message}") from exc
        print(json.dumps({"text": result[0], "commitment": "0x" + result[2].hex(), "price_wei": price}))
        return 0
    receipt = session.send(fn, value=price)
    from web3.logs import DISCARD

    event = session.router.events.Inference().process_receipt(receipt, errors=DISCARD)[0]["args"]
    print(json.dumps({"text": event["text"], "commitment": "0x" + event["commitment"].hex(), "price_wei": price,
                      "output_tokens": event["outputTokens"], "gas_used": receipt.gasUsed,
                      "tx": "0x" + receipt.transactionHash.hex()}))  # fmt: skip
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from web3 import Web3

    session = _Session(args, with_contracts=False)
    treasury = Web3.to_checksum_address(args.treasury or session.account.address)
    addresses = {}
    for name, ctor_args in (
        ("DatanetRegistry", ()),
        ("AdapterRegistry", lambda: (addresses["DatanetRegistry"],)),
        ("InferenceRouter", lambda: (addresses["AdapterRegistry"], treasury, args.owner_bps, args.contributors_bps)),
    ):
        factory = session.w3.eth.contract(abi=contract_abi(name), bytecode=contract_bytecode(name))
        values = ctor_args() if callable(ctor_args) else ctor_args
        receipt = session.send(factory.constructor(*values))
        addresses[name] = receipt.contractAddress
    print(json.dumps(addresses))
    return 0


def _parse_datanets(specs: list[str]) -> tuple[list[int], list[int]]:
    ids, shares = [], []
    for spec in specs:
        try:
            datanet, bps = spec.split(":")
            ids.append(int(datanet))
            shares.append(int(bps))
        except ValueError as exc:
            raise CliError(f"--datanet takes ID:BPS (e.g. 1:10000), got {spec!r}") from exc
    return ids, shares


__all__ = ["DATANET_REGISTRY", "CliError", "add_commands"]
