"""The sequencer drift on the sequencer's side: a block more than ``max_sequencer_drift`` seconds after its L1
origin takes no pool transactions (deposits only; derivation would drop its batch), and the held transactions go
into the first block that may take them again, once a new L1 block can be adopted. A real L1 node (idle, so that
the L2 runs ahead of it), the node's own block production in process."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from eth_account import Account

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import parse_genesis
from lorachain.node.chain import Blockchain
from lorachain.node.node import MINING_MANUAL, Node, NodeConfig
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.l1_client import L1Client
from lorachain.node.rollup.sequencer import PAST_DRIFT_BLOCKS, Sequencer, origin_of
from tests.rollup_fixtures import start_l1_and_rollup

pytestmark = pytest.mark.e2e

DRIFT = 10


def transfer(nonce: int) -> bytes:
    tx = {"to": "0x" + "42" * 20, "value": 1 + nonce, "gas": 21_000, "maxFeePerGas": 10**11,
          "maxPriorityFeePerGas": 1, "nonce": nonce, "chainId": 901}  # fmt: skip
    return bytes(Account.sign_transaction(tx, dev_accounts()[2].private_key).raw_transaction)


def test_past_the_drift_the_sequencer_builds_deposit_only_blocks(tmp_path: Path) -> None:
    l1_node, rollup, _ = start_l1_and_rollup(tmp_path)
    l1 = L1Client(l1_node.url)
    chain = Blockchain.initialize(tmp_path / "l2", parse_genesis(json.loads((rollup / "genesis.json").read_text())))
    config = dataclasses.replace(RollupConfig.load(rollup / "rollup.json"), max_sequencer_drift=DRIFT)
    node = Node(chain, NodeConfig(mining=MINING_MANUAL, sequencer=Sequencer(config, l1)))
    try:
        l1_time = int(l1.block_by_number(l1.block_number())["timestamp"], 16)
        node.submit(transfer(0))
        within = node.mine(timestamp=l1_time + DRIFT).block  # at the drift's edge: still takes the pool
        assert within is not None and len(within.transactions) == 2  # L1-info deposit + the transfer

        node.submit(transfer(1))
        before = PAST_DRIFT_BLOCKS._value.get()
        late = node.mine(timestamp=l1_time + DRIFT + 50).block  # the idle L1 has no next origin to adopt
        assert late is not None and len(late.transactions) == 1  # the L1-info deposit alone
        assert origin_of(late).l1_timestamp == l1_time
        assert PAST_DRIFT_BLOCKS._value.get() == before + 1
        assert len(list(node.pool.ordered_pending())) == 1  # the transfer waits in the pool

        l1_node.rpc("evm_setNextBlockTimestamp", l1_time + DRIFT + 50)  # a new L1 block: the next origin
        l1_node.rpc("evm_mine")
        caught_up = node.mine(timestamp=l1_time + DRIFT + 51).block
        assert caught_up is not None and origin_of(caught_up).l1_number == origin_of(late).l1_number + 1
        assert len(caught_up.transactions) == 2 and not list(node.pool.ordered_pending())
    finally:
        chain.close()
        l1.close()
        l1_node.stop()
