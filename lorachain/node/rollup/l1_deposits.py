"""User deposits of one L1 block: the deposit portal's ``TransactionDeposited`` logs as deposit transactions.

Each deposit's source hash commits to the L1 block hash and the log's index in that whole block, so
every node that derives from the same L1 block gets the same transactions in the same order. A log that
does not decode (the portal would never emit one) is skipped with a warning, as the node cannot let one
bad log stop the chain.
"""

from __future__ import annotations

import logging

from lorachain.node.rollup.deposit_events import TRANSACTION_DEPOSITED_TOPIC, DepositEvent, DepositEventError
from lorachain.node.rollup.deposits import DepositTx
from lorachain.node.rollup.l1_client import L1Client

log = logging.getLogger("lorachain.rollup")


def deposits_in_block(l1: L1Client, portal: bytes, block_hash: bytes) -> list[DepositTx]:
    """The deposit transactions that the L1 block ``block_hash`` makes through ``portal``, in order."""
    deposits = []
    for entry in l1.logs(block_hash, portal, TRANSACTION_DEPOSITED_TOPIC):
        if entry.get("removed"):
            continue
        topics = [bytes.fromhex(topic[2:]) for topic in entry["topics"]]
        try:
            event = DepositEvent.from_log(topics, bytes.fromhex(entry["data"][2:]))
        except DepositEventError as exc:
            log.warning("skipping malformed deposit log %s of L1 block 0x%s: %s", entry["logIndex"],
                        block_hash.hex(), exc)  # fmt: skip
            continue
        deposits.append(event.deposit(block_hash, int(entry["logIndex"], 16)))
    return deposits
