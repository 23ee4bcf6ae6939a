"""The proposer: every ``submissionInterval`` L2 blocks, the block's v0 output root to the L1 output oracle.

Stateless and restart-safe: the next block to propose is read from the oracle itself
(``nextBlockNumber()``), and the output root from the L2 node (``optimism_outputAtBlock``). Each proposal
names the L1 head it was made against, so it cannot land on another L1 fork.

Tests only: ``fault="wrong-output-root"`` (``lorachain rollup proposer --fault``) posts a root built with the
previous block's state root (a stale-state proposer), for the validator's output-root check to catch.
"""

from __future__ import annotations

import logging
import time

from eth_account import Account
from eth_utils import keccak, to_checksum_address
from prometheus_client import Counter, Gauge

from lorachain.node.metrics import SERVICE_REGISTRY
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.l1_client import L1Client, L1RpcError, L1Unavailable
from lorachain.node.rollup.outputs import output_root_v0

log = logging.getLogger("lorachain.proposer")

PROPOSED = Counter("lorachain_proposer_outputs_proposed_total", "Output roots proposed on L1",
                   registry=SERVICE_REGISTRY)  # fmt: skip
LAST_PROPOSED = Gauge("lorachain_proposer_last_proposed_l2_block", "The L2 block of the last output proposed",
                      registry=SERVICE_REGISTRY)  # fmt: skip
PROPOSER_ERRORS = Counter("lorachain_proposer_round_errors_total", "Proposal rounds that failed (retried)",
                          registry=SERVICE_REGISTRY)  # fmt: skip

_NEXT_BLOCK = keccak(b"nextBlockNumber()")[:4]
_PROPOSE = keccak(b"proposeL2Output(bytes32,uint256,bytes32,uint256)")[:4]


class ProposerError(RuntimeError):
    """A proposal failed on L1."""


class Proposer:
    def __init__(self, config: RollupConfig, l1: L1Client, l2: L1Client, key: bytes, fault: str | None = None) -> None:
        self.config, self.l1, self.l2, self.fault = config, l1, l2, fault
        self.account = Account.from_key(key)
        self.oracle = to_checksum_address(config.output_oracle)

    def next_block(self) -> int:
        return int(self.l1.call("eth_call", {"to": self.oracle, "data": "0x" + _NEXT_BLOCK.hex()}, "latest"), 16)

    def step(self) -> int | None:
        """Propose the next output if the L2 has reached it; the L2 block number proposed, or None."""
        number = self.next_block()
        if self.l2.block_number() < number:
            return None
        output = self.l2.call("optimism_outputAtBlock", hex(number))
        if self.fault == "wrong-output-root":
            stale = self.l2.call("optimism_outputAtBlock", hex(number - 1))["stateRoot"]
            root = output_root_v0(bytes.fromhex(stale[2:]), bytes.fromhex(output["withdrawalStorageRoot"][2:]),
                                  bytes.fromhex(output["blockRef"]["hash"][2:]))  # fmt: skip
            log.warning("fault wrong-output-root: proposing #%d with the state root of #%d", number, number - 1)
            output = {**output, "outputRoot": "0x" + root.hex()}
        head = self.l1.call("eth_getBlockByNumber", "latest", False)
        data = (_PROPOSE + bytes.fromhex(output["outputRoot"][2:]) + number.to_bytes(32, "big")
                + bytes.fromhex(head["hash"][2:]) + int(head["number"], 16).to_bytes(32, "big"))  # fmt: skip
        fee = int(self.l1.call("eth_gasPrice"), 16)
        tx = {"type": 2, "chainId": self.config.l1_chain_id, "to": self.oracle, "value": 0, "gas": 200_000,
              "data": data, "maxFeePerGas": 2 * fee, "maxPriorityFeePerGas": 1,
              "nonce": int(self.l1.call("eth_getTransactionCount", self.account.address, "pending"), 16)}  # fmt: skip
        raw = bytes(self.account.sign_transaction(tx).raw_transaction)
        tx_hash = self.l1.call("eth_sendRawTransaction", "0x" + raw.hex())
        try:
            receipt = self.l1.wait_for_receipt(tx_hash)
        except TimeoutError as exc:
            raise ProposerError(str(exc)) from exc
        if int(receipt["status"], 16) != 1:
            raise ProposerError(f"proposal of L2 block #{number} failed on L1 (tx {tx_hash})")
        log.info("proposed output 0x%s of L2 block #%d", output["outputRoot"][2:14], number)
        PROPOSED.inc()
        LAST_PROPOSED.set(number)
        return number

    def run(self, poll_s: float = 1.0) -> None:
        while True:
            try:
                proposed = self.step()
            except (ProposerError, L1Unavailable, L1RpcError) as exc:
                log.error("proposal round failed, retrying: %s", exc)
                PROPOSER_ERRORS.inc()
                proposed = None
            if proposed is None:
                time.sleep(poll_s)
