"""L1 retrieval, derivation's first stage: the frames the batcher posted in one L1 block.

A batcher transaction is one sent by the rollup's batcher to its batch inbox that succeeded on L1. Its
data is either frames (``0x00 | frames``) or an alt-DA commitment (``0x01 | commitment``) whose payload,
fetched from the DA server, is frames in turn. Data that fails to parse contributes nothing (the spec's
rule: a malformed transaction is skipped whole); a DA derivation error (418) drops that commitment; a DA
server that cannot answer is raised, since skipping would fork the chain.
"""

from __future__ import annotations

import logging

from lorachain.da_client.client import DAClient, DerivationError
from lorachain.da_client.commitment import (
    ALT_DA_CALLDATA_VERSION,
    CommitmentError,
    CommitmentMode,
    EigenDACert,
    decode_altda_calldata,
)
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.frames import Frame, FrameError, decode_frames_calldata
from lorachain.node.rollup.l1_client import L1Client

log = logging.getLogger("lorachain.derivation")


class DARequired(RuntimeError):
    """An alt-DA commitment was posted but no DA client is configured."""


def frames_in_l1_block(l1: L1Client, config: RollupConfig, number: int, da: DAClient | None) -> list[Frame]:
    block = l1.call("eth_getBlockByNumber", hex(number), True)
    frames: list[Frame] = []
    inbox = "0x" + config.batch_inbox.hex()
    for tx in block["transactions"] if block else []:
        if (tx.get("to") or "").lower() != inbox or bytes.fromhex(tx["from"][2:]) != config.batcher:
            continue
        receipt = l1.call("eth_getTransactionReceipt", tx["hash"])
        if receipt is None or int(receipt["status"], 16) != 1:
            continue
        data = bytes.fromhex(tx["input"][2:])
        if data[:1] == bytes((ALT_DA_CALLDATA_VERSION,)):
            data = _fetch(data, da, tx["hash"])
            if data is None:
                continue
        try:
            frames.extend(decode_frames_calldata(data))
        except FrameError as exc:
            log.warning("skipping batcher tx %s: %s", tx["hash"], exc)
    return frames


def _fetch(calldata: bytes, da: DAClient | None, tx_hash: str) -> bytes | None:
    try:
        commitment = decode_altda_calldata(calldata)
    except CommitmentError as exc:
        log.warning("skipping batcher tx %s: bad alt-DA commitment: %s", tx_hash, exc)
        return None
    if da is None:
        raise DARequired(f"batcher tx {tx_hash} posts an alt-DA commitment and no DA server is configured")
    mode = CommitmentMode.OP_GENERIC if isinstance(commitment, EigenDACert) else CommitmentMode.OP_KECCAK
    try:
        return da.get(commitment.encode(mode))
    except DerivationError as exc:
        log.warning("dropping alt-DA commitment of %s: %s", tx_hash, exc)
        return None

