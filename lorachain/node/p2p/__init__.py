"""Unsafe-block gossip over libp2p, as op-node's p2p: the wire format (:mod:`codec`), the gossipsub service on its
own trio thread (:mod:`service`), and the validator's optimistic import of gossiped blocks (:mod:`unsafe`).

:func:`attach` wires it into a rollup node's :class:`~lorachain.node.node.NodeConfig` from ``lorachain node``'s
``--p2p.*`` options.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

DEV_UNSAFE_SIGNER_INDEX = 7  # devnets: the 8th dev account signs unsafe blocks (batcher 9, proposer 8)


def _split(values: list[str] | None) -> list[str]:
    return [part for value in values or [] for part in value.split(",") if part.strip()]


def _trace_writer(path: str | None) -> Any:
    if not path:
        return None
    lock = threading.Lock()
    out = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the node

    def write(event: dict) -> None:
        with lock:
            out.write(json.dumps(event) + "\n")

    return write


def attach(config: Any, chain: Any, rollup: Any, args: Any, datadir: str) -> None:
    """Give ``config`` (a NodeConfig whose role is already set) a GossipService, and a validator its UnsafeBlocks."""
    from eth_utils import to_canonical_address

    from lorachain.genesis.accounts import dev_accounts
    from lorachain.node.p2p.codec import block_of_envelope
    from lorachain.node.p2p.service import GossipService, P2PConfig, load_or_create_node_key
    from lorachain.node.p2p.unsafe import UnsafeBlocks

    validator = config.deriver is not None
    dev_signer = dev_accounts()[DEV_UNSAFE_SIGNER_INDEX]
    key_path = Path(args.p2p_priv_path) if args.p2p_priv_path else Path(datadir) / "p2p" / "node.key"
    p2p = P2PConfig(chain_id=chain.chain_id, listen=args.p2p_listen or "/ip4/127.0.0.1/tcp/0",
                    static_peers=_split(args.p2p_static), bootnodes=_split(args.p2p_bootnodes),
                    node_key=load_or_create_node_key(key_path))  # fmt: skip
    if args.p2p_ban_threshold is not None:
        p2p.ban_threshold = args.p2p_ban_threshold
    if args.p2p_unsafe_signer:
        p2p.unsafe_signer = to_canonical_address(args.p2p_unsafe_signer)
    elif rollup.unsafe_block_signer != bytes(20):
        p2p.unsafe_signer = rollup.unsafe_block_signer
    elif args.dev:
        p2p.unsafe_signer = to_canonical_address(dev_signer.address)
    if not validator:
        key = args.p2p_sequencer_key or (dev_signer.private_key.hex() if args.dev else None)
        if key is None:
            raise SystemExit("--p2p.* on a sequencer needs --p2p.sequencer.key (the unsafe-block signer's key)")
        p2p.signer_key = bytes.fromhex(key.removeprefix("0x"))
    elif p2p.unsafe_signer is None:
        raise SystemExit("a validator with --p2p.* needs the unsafe-block signer: unsafe_block_signer in the rollup "
                         "config or --p2p.unsafe-signer")  # fmt: skip
    trace = _trace_writer(args.p2p_trace)
    vm_class = chain.chain_class.get_vm_class_for_block_number(chain.head.block_number + 1)
    block_class, builder = vm_class.get_block_class(), vm_class.get_transaction_builder()

    def make_block(envelope: Any) -> Any:
        return block_of_envelope(envelope, block_class, builder)

    unsafe = None
    if validator:
        unsafe = UnsafeBlocks(None, trace=trace)  # the node is set once it exists (attach_node)
    service = GossipService(p2p, make_block=make_block if validator else None,
                            on_block=unsafe.deliver if unsafe else None,
                            is_known=unsafe.is_known if unsafe else None, trace=trace)  # fmt: skip
    if unsafe is not None:
        unsafe.service = service
        if args.sequencer:  # gaps below gossiped blocks (before this node peered) come from the sequencer's RPC
            from lorachain.node.rollup.l1_client import L1Client

            unsafe.backup_rpc = L1Client(args.sequencer)
    config.p2p, config.unsafe = service, unsafe


def attach_node(node: Any) -> None:
    """Point the validator's UnsafeBlocks at the node (made after :func:`attach`)."""
    if node.config.unsafe is not None:
        node.config.unsafe.node = node
