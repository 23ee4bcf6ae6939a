"""Output roots (v0) and optimism_outputAtBlock on an OP Stack chain."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from eth.constants import BLANK_ROOT_HASH
from eth_utils import keccak

from lorachain.genesis.genesis import devnet_genesis, parse_genesis
from lorachain.node.app import build_dispatcher
from lorachain.node.chain import Blockchain
from lorachain.node.node import Node
from lorachain.node.rollup.deposit_vm import deposit_transaction
from lorachain.node.rollup.deposits import DepositTx
from lorachain.node.rollup.outputs import L2_TO_L1_MESSAGE_PASSER, output_at, output_root_v0, storage_root_of
from lorachain.node.rpc.server import CallContext
from tests import rollup_fixtures

# A stand-in message passer: SSTORE(CALLVALUE, 1) -- each deposit's value marks a slot, so its storage root moves.
MARKER_CODE = "0x6001345500"  # PUSH1 1, CALLVALUE, SSTORE, STOP


def op_genesis() -> dict:
    return rollup_fixtures.op_genesis({L2_TO_L1_MESSAGE_PASSER: MARKER_CODE})


def test_output_root_formula() -> None:
    state, storage, block = os.urandom(32), os.urandom(32), os.urandom(32)
    assert output_root_v0(state, storage, block) == keccak(bytes(32) + state + storage + block)


def test_output_at_block_over_json_rpc(tmp_path: Path) -> None:
    chain = Blockchain.initialize(tmp_path / "l2", parse_genesis(op_genesis()))
    genesis_header = chain.head
    assert storage_root_of(chain.chaindb.db, genesis_header.state_root, L2_TO_L1_MESSAGE_PASSER) == BLANK_ROOT_HASH
    send = DepositTx(os.urandom(32), os.urandom(20), L2_TO_L1_MESSAGE_PASSER, 10, 7, 100_000, False, b"")
    built = chain.build_block([deposit_transaction(send)], timestamp=5, coinbase=bytes(20), mix_hash=bytes(32))
    header = built.block.header
    output = output_at(chain.chaindb.db, header.hash, header.state_root)
    assert output.withdrawal_storage_root != BLANK_ROOT_HASH  # the marker slot was written

    dispatcher = build_dispatcher(Node(chain), dev=False)
    assert "optimism_outputAtBlock" in dispatcher.methods
    request = {"jsonrpc": "2.0", "id": 1, "method": "optimism_outputAtBlock", "params": [hex(header.block_number)]}
    reply = asyncio.run(dispatcher.handle_payload(request, CallContext()))["result"]
    assert reply["outputRoot"] == "0x" + output_root_v0(header.state_root, output.withdrawal_storage_root,
                                                           header.hash).hex()  # fmt: skip
    assert reply["blockRef"]["number"] == 1 and reply["stateRoot"] == "0x" + header.state_root.hex()
    chain.close()


def test_plain_chains_have_no_optimism_namespace(tmp_path: Path) -> None:
    chain = Blockchain.initialize(tmp_path / "l1", parse_genesis(devnet_genesis(with_predeploys=False)))
    assert "optimism_outputAtBlock" not in build_dispatcher(Node(chain), dev=False).methods
    chain.close()
