"""L1 retrieval, derivation's first stage: the frames the batcher posted in one L1 block.

A batcher transaction is one sent by the rollup's batcher to its batch inbox that succeeded on L1. Its
data is either frames (``0x00 | frames``) or an alt-DA commitment (``0x01 | commitment``) whose payload,
fetched from the DA server, is frames in turn. Data that fails to parse contributes nothing (the spec's
rule: a malformed transaction is skipped whole, counted in ``lorachain_derivation_dropped_batcher_txs_total``);
a DA derivation error (418) drops that commitment, as the spec says; a DA server that does not have the data
(404), cannot answer (503, 5xx, unreachable) or refuses the request raises :class:`DataUnavailable`, since
skipping would fork the chain: derivation stays on that L1 block and asks again.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from lorachain.da_client.client import DAClient, DAError, DerivationError
from lorachain.da_client.commitment import (
    ALT_DA_CALLDATA_VERSION,
    CommitmentError,
    CommitmentMode,
    EigenDACert,
    decode_altda_calldata,
)
from lorachain.node import metrics
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.frames import Frame, FrameError, decode_frames_calldata
from lorachain.node.rollup.l1_client import L1Client

log = logging.getLogger("lorachain.derivation")

DROPPED_TXS = Counter("lorachain_derivation_dropped_batcher_txs_total",
                      "Batcher transactions skipped (malformed frames, bad alt-DA commitment, DA 418)",
                      ["reason"], registry=metrics.REGISTRY)  # fmt: skip


class DARequired(RuntimeError):
    """An alt-DA commitment was posted but no DA client is configured."""


class DataUnavailable(DAError):
    """The DA server did not give the payload of a posted commitment (not found, unavailable, failing)."""

    def __init__(self, tx_hash: str, commitment: bytes, cause: DAError) -> None:
        super().__init__(f"DA data of batcher tx {tx_hash} (commitment 0x{commitment.hex()[:24]}...) is unavailable: "
                         f"{type(cause).__name__} (status {cause.status}): {cause}", cause.status)  # fmt: skip
        self.tx_hash, self.commitment, self.cause = tx_hash, commitment, cause


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
            DROPPED_TXS.labels("malformed_frames").inc()
            log.warning("skipping batcher tx %s: %s", tx["hash"], exc)
    return frames


def _fetch(calldata: bytes, da: DAClient | None, tx_hash: str) -> bytes | None:
    try:
        commitment = decode_altda_calldata(calldata)
    except CommitmentError as exc:
        DROPPED_TXS.labels("bad_commitment").inc()
        log.warning("skipping batcher tx %s: bad alt-DA commitment: %s", tx_hash, exc)
        return None
    if da is None:
        raise DARequired(f"batcher tx {tx_hash} posts an alt-DA commitment and no DA server is configured")
    mode = CommitmentMode.OP_GENERIC if isinstance(commitment, EigenDACert) else CommitmentMode.OP_KECCAK
    encoded = commitment.encode(mode)
    try:
        return da.get(encoded)
    except DerivationError as exc:  # 418: the commitment or its blob is invalid; the spec drops it
        DROPPED_TXS.labels("da_derivation_error").inc()
        log.warning("dropping alt-DA commitment of %s: %s", tx_hash, exc)
        return None
    except DAError as exc:  # not found, unavailable, failing: never skip it (that would fork the chain)
        raise DataUnavailable(tx_hash, encoded, exc) from exc
