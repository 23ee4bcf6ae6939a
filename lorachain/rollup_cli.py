"""``lorachain rollup …``: set up an OP Stack L2 against an L1 (deploy the portal, write genesis and rollup.json)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import DEVNET_CHAIN_ID, devnet_genesis
from lorachain.node.rollup.config import L1BlockRef, RollupConfig
from lorachain.node.rollup.l1_info import L1_BLOCK_ADDRESS
from lorachain.node.rollup.outputs import L2_TO_L1_MESSAGE_PASSER

DEFAULT_BATCHER_INDEX = 9  # the 10th devnet account posts batches; the first ones stay for users
DEFAULT_PROPOSER_INDEX = 8  # the 9th proposes output roots
GAS_PRICE_ORACLE = bytes.fromhex("420000000000000000000000000000000000000f")  # the L1-fee oracle (Ecotone)


def batch_inbox_address(l2_chain_id: int) -> bytes:
    """op-deployer's convention: 0x00 ++ keccak256(bytes32(chainId))[:19]."""
    from eth_utils import keccak

    return b"\x00" + keccak(l2_chain_id.to_bytes(32, "big"))[:19]


def op_stack_genesis(chain_id: int = DEVNET_CHAIN_ID, with_predeploys: bool = True) -> dict[str, Any]:
    """The devnet genesis as an OP Stack L2: config.optimism, the L1Block, L2ToL1MessagePasser and GasPriceOracle
    predeploys (code only: none of them needs initial storage)."""
    from lorachain.toolchain.solc import load_artifact

    raw = devnet_genesis(chain_id=chain_id, with_predeploys=with_predeploys)
    raw["config"]["optimism"] = {"eip1559Elasticity": 6, "eip1559Denominator": 50, "eip1559DenominatorCanyon": 250}
    predeploys = ((L1_BLOCK_ADDRESS, "L1Block"), (L2_TO_L1_MESSAGE_PASSER, "L2ToL1MessagePasser"),
                  (GAS_PRICE_ORACLE, "GasPriceOracle"))  # fmt: skip
    for address, name in predeploys:
        raw["alloc"]["0x" + address.hex()] = {"balance": "0x0", "code": load_artifact(name)["deployedBytecode"]}
    return raw


def add_commands(sub: Any) -> None:
    p = sub.add_parser("rollup", help="OP Stack rollup set-up")
    rollup = p.add_subparsers(dest="rollup_command", required=True)
    q = rollup.add_parser("init", help="deploy the deposit portal on the L1, write the L2 genesis.json and rollup.json")
    q.add_argument("--l1", required=True, help="L1 JSON-RPC URL")
    q.add_argument("--out", required=True, help="folder for genesis.json and rollup.json")
    q.add_argument("--l2-chain-id", type=int, default=DEVNET_CHAIN_ID)
    q.add_argument("--deployer-key", default=None, help="L1 key paying the deployment (default: devnet account 0)")
    q.add_argument("--l1-confirmations", type=int, default=0)
    q.add_argument("--seq-window-size", type=int, default=3600,
                   help="L1 blocks after its epoch a batch may be included in; then deposit-only blocks")  # fmt: skip
    q.add_argument("--submission-interval", type=int, default=10, help="L2 blocks between output proposals")
    q.add_argument("--finalization-period", type=int, default=12, help="seconds from proving a withdrawal to paying it")
    q.set_defaults(func=cmd_init)

    q = rollup.add_parser("proposer", help="post the L2's output roots to the L1 output oracle")
    q.add_argument("--l1", required=True, help="L1 JSON-RPC URL")
    q.add_argument("--l2", required=True, help="the L2 node's JSON-RPC URL (serving optimism_outputAtBlock)")
    q.add_argument("--rollup-config", required=True)
    q.add_argument("--key", default=None, help="the proposer's L1 key (default: the devnet proposer account)")
    q.add_argument("--poll", type=float, default=1.0)
    # tests only: a lying proposer, for the validator's output-root check (lorachain.node.rollup.proposer)
    q.add_argument("--fault", choices=["wrong-output-root"], default=None, help=argparse.SUPPRESS)
    _metrics_flags(q)
    q.set_defaults(func=cmd_proposer)

    q = rollup.add_parser("batcher", help="post the L2's blocks to the DA server (or L1 calldata) and the L1 inbox")
    q.add_argument("--l1", required=True, help="L1 JSON-RPC URL")
    q.add_argument("--l2", required=True, help="the sequencer's JSON-RPC URL")
    q.add_argument("--rollup-config", required=True)
    q.add_argument("--da", default=None, help="DA server URL (eigenda-proxy API); without one, frames go as calldata")
    q.add_argument("--key", default=None, help="the batcher's L1 key (default: the devnet batcher account)")
    q.add_argument("--state", required=True, help="state file (progress and the unsettled transaction)")
    q.add_argument("--poll", type=float, default=1.0, help="seconds between rounds when nothing is new")
    q.add_argument("--max-blocks", type=int, default=50, help="L2 blocks per channel")
    # tests only: a misbehaving batcher, for the validator's fault tests (lorachain.node.rollup.batcher.FAULTS)
    q.add_argument("--fault", choices=["withhold-da", "malformed-frames", "duplicate-batches", "out-of-order-frames"],
                   default=None, help=argparse.SUPPRESS)  # fmt: skip
    _metrics_flags(q)
    q.set_defaults(func=cmd_batcher)


def cmd_init(args: argparse.Namespace) -> int:
    from web3 import Web3

    from lorachain.toolchain.solc import load_artifact

    w3 = Web3(Web3.HTTPProvider(args.l1))
    deployer = w3.eth.account.from_key(args.deployer_key or dev_accounts()[0].private_key)
    proposer = dev_accounts()[DEFAULT_PROPOSER_INDEX].address

    def deploy(name: str, *constructor_args: Any) -> Any:
        artifact = load_artifact(name)
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        tx = factory.constructor(*constructor_args).build_transaction(
            {"from": deployer.address, "nonce": w3.eth.get_transaction_count(deployer.address)}
        )
        tx_hash = w3.eth.send_raw_transaction(deployer.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt.status != 1:
            raise SystemExit(f"deploying {name} failed on the L1")
        return receipt

    oracle = deploy("L2OutputOracle", proposer, args.submission_interval, 0)
    receipt = deploy("DepositPortal", oracle.contractAddress, args.finalization_period)
    block = w3.eth.get_block(receipt.blockNumber)
    config = RollupConfig(
        l1_chain_id=w3.eth.chain_id,
        l2_chain_id=args.l2_chain_id,
        genesis_l1=L1BlockRef(block.number, bytes(block.hash), block.timestamp),
        deposit_portal=bytes.fromhex(receipt.contractAddress[2:]),
        batch_inbox=batch_inbox_address(args.l2_chain_id),
        batcher=bytes.fromhex(dev_accounts()[DEFAULT_BATCHER_INDEX].address[2:]),
        output_oracle=bytes.fromhex(oracle.contractAddress[2:]),
        proposer=bytes.fromhex(proposer[2:]),
        submission_interval=args.submission_interval,
        l1_confirmations=args.l1_confirmations,
        seq_window_size=args.seq_window_size,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    genesis = op_stack_genesis(args.l2_chain_id)
    genesis["timestamp"] = hex(block.timestamp)  # the L2 starts at its genesis L1 block's time
    (out / "genesis.json").write_text(json.dumps(genesis, indent=2) + "\n")
    config.save(out / "rollup.json")
    print(json.dumps({"deposit_portal": receipt.contractAddress, "output_oracle": oracle.contractAddress,
                      "genesis_l1": block.number,
                      "genesis": str(out / "genesis.json"), "rollup_config": str(out / "rollup.json")}))  # fmt: skip
    return 0


def _metrics_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics.port", dest="metrics_port", type=int, default=None,
                        help="serve Prometheus metrics at http://ADDR:PORT/metrics (default: not served)")  # fmt: skip
    parser.add_argument("--metrics.addr", dest="metrics_addr", default="127.0.0.1")


def _serve_metrics(args: argparse.Namespace) -> None:
    if args.metrics_port is not None:
        from lorachain.node.metrics import serve_service_metrics

        serve_service_metrics(args.metrics_port, args.metrics_addr)


def cmd_batcher(args: argparse.Namespace) -> int:
    from lorachain.da_client.client import DAClient
    from lorachain.node.rollup.batcher import Batcher
    from lorachain.node.rollup.l1_client import L1Client

    config = RollupConfig.load(Path(args.rollup_config))
    key = _key(args.key, DEFAULT_BATCHER_INDEX)
    batcher = Batcher(config, L1Client(args.l1), L1Client(args.l2), key, Path(args.state),
                      da=DAClient(args.da) if args.da else None, max_blocks_per_channel=args.max_blocks,
                      fault=args.fault)  # fmt: skip
    _serve_metrics(args)
    batcher.run(args.poll)
    return 0


def _key(value: str | None, default_index: int) -> bytes:
    if value is None:
        return dev_accounts()[default_index].private_key
    return bytes.fromhex(value[2:] if value.startswith("0x") else value)


def cmd_proposer(args: argparse.Namespace) -> int:
    from lorachain.node.rollup.l1_client import L1Client
    from lorachain.node.rollup.proposer import Proposer

    config = RollupConfig.load(Path(args.rollup_config))
    _serve_metrics(args)
    Proposer(config, L1Client(args.l1), L1Client(args.l2), _key(args.key, DEFAULT_PROPOSER_INDEX),
             fault=args.fault).run(args.poll)  # fmt: skip
    return 0
