"""One automine cycle in process, without HTTP: admit pre-signed transactions (``Node.submit``), build the block.

Run by ``scripts/bench/instructions`` under valgrind, against the lorachain tree given by ``--repo`` (the
working tree or an older revision's worktree). ``--setup-only`` stops before the measured loop, so the
instructions of the loop alone are the difference of the two runs. Without valgrind it prints wall times.

    python scripts/bench/automine_cycle.py --repo . --workload increment --blocks 30 --block-size 10
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, required=True, help="the lorachain tree to import")
    p.add_argument("--workload", choices=("transfer", "increment"), default="transfer")
    p.add_argument("--blocks", type=int, default=30)
    p.add_argument("--block-size", type=int, default=10, help="transactions per block (one per sender, at most 10)")
    p.add_argument("--signed", type=Path, default=None, help="cache of the pre-signed transactions (pickle)")
    p.add_argument("--setup-only", action="store_true", help="stop before the measured loop")
    args = p.parse_args()
    sys.path.insert(0, str(args.repo.resolve()))
    sys.path.insert(1, str(Path(__file__).resolve().parent))

    importlib.import_module("lorachain")  # first: it picks the keccak backend before rpc_load hashes anything

    import rlp
    import rpc_load
    from eth_account import Account
    from eth_utils import keccak, to_checksum_address

    from lorachain.genesis.accounts import dev_accounts
    from lorachain.genesis.genesis import devnet_genesis, parse_genesis
    from lorachain.node.chain import Blockchain
    from lorachain.node.node import Node, NodeConfig

    senders = dev_accounts()[: args.block_size]
    chain = Blockchain.initialize(
        tempfile.mkdtemp(prefix="automine-cycle-"), parse_genesis(devnet_genesis()), sync="none"
    )
    node = Node(chain, NodeConfig(mining="manual"))
    to, data = "0x" + "42" * 20, b""
    if args.workload == "increment":
        deployer = senders[0]
        create = {"to": None, "value": 0, "gas": 500_000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9,
                  "nonce": 0, "chainId": 901, "type": 2, "data": rpc_load.COUNTER_CREATION_CODE}  # fmt: skip
        node.submit(bytes(Account.sign_transaction(create, deployer.private_key).raw_transaction))
        node.mine()
        to = to_checksum_address(keccak(rlp.encode([bytes.fromhex(deployer.address[2:]), 0]))[12:])
        data = bytes.fromhex(rpc_load.SELECTOR_INCREMENT[2:])

    def sign(i: int) -> bytes:
        sender = senders[i % args.block_size]
        nonce = i // args.block_size + (1 if args.workload == "increment" and i % args.block_size == 0 else 0)
        tx = {"to": to, "value": 1 if args.workload == "transfer" else 0, "gas": 100_000, "maxFeePerGas": 10**11,
              "maxPriorityFeePerGas": 10**9, "nonce": nonce, "chainId": 901, "type": 2, "data": data}  # fmt: skip
        return bytes(Account.sign_transaction(tx, sender.private_key).raw_transaction)

    count = args.blocks * args.block_size
    if args.signed is not None and args.signed.exists():
        raw = pickle.loads(args.signed.read_bytes())
    else:
        raw = [sign(i) for i in range(count)]
        if args.signed is not None:
            args.signed.write_bytes(pickle.dumps(raw))
    if args.setup_only:
        return 0
    submit_s = mine_s = 0.0
    for block in range(args.blocks):
        started = time.perf_counter()
        for tx in raw[block * args.block_size : (block + 1) * args.block_size]:
            node.submit(tx)
        admitted = time.perf_counter()
        built = node.mine()
        mine_s += time.perf_counter() - admitted
        submit_s += admitted - started
        if len(built.block.transactions) != args.block_size or any(r.state_root != b"\x01" for r in built.receipts):
            raise SystemExit(f"block {built.block.number}: not every transaction was included and succeeded")
    print(f"submit {submit_s / count * 1e6:.0f} us/tx, mine {mine_s / args.blocks * 1e3:.2f} ms/block", flush=True)
    chain.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
