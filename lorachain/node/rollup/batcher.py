"""The batcher: L2 blocks -> singular batches -> a channel -> frames -> the DA layer (or L1 calldata) -> L1.

Each round takes the L2 blocks after the last one posted (up to ``max_blocks_per_channel``), makes one
channel of them, and posts it: through the DA server, with the alt-DA commitment sent to the batch inbox
(``0x01 | commitment``); or, when the DA server is unavailable (503, unreachable) or refuses the payload,
as frames in calldata (``0x00 | frames``). Frames are at most ``max_frame_data`` bytes; a channel larger
than one calldata transaction's frames goes out as several transactions.

Restart-safe: before a transaction is sent its signed bytes are written to the state file; after its
receipt, the progress. A restarted batcher first settles a pending transaction (mined: move on; not
mined: send the very same bytes again, same nonce), so no block is lost and none is posted twice.

L1 reorgs: the last ``POSTED_KEPT`` batcher transactions are remembered (their L1 block, and the hash of the last
L2 block each completes). Each round, the newest must still be in that L1 block, and its L2 block in the chain;
if not (an L1 reorg dropped it, or the sequencer reset its chain on one), the batcher goes back to the newest
transaction still on L1 for blocks still in the chain and posts the blocks after it again. A transaction
waiting for its receipt is given up as soon as such a reorg shows, and sent again if the L1 lost it.

Test-only faults (``fault``, never on by default; `lorachain rollup batcher --fault`, hidden from --help) make
a misbehaving batcher for the validator's tests:

- ``withhold-da``: the first payload's commitment goes to L1 but the payload never to the DA server (the
  commitment is the one the local DA server would issue; the payload is kept in ``<state>.withheld/`` so a
  test can publish it later); the rest is posted as usual;
- ``malformed-frames``: before each channel, a transaction of truncated frames, and frames of two bad channels
  (not decompressible; a batch that does not decode) beside the first valid frame;
- ``duplicate-batches``: every batch twice in its channel, the first frame posted twice, then the whole
  channel posted again;
- ``out-of-order-frames``: each channel cut into (at least) three frames, posted last frame first.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import rlp
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from prometheus_client import Counter, Gauge

from lorachain.da_client.client import DABadRequest, DAClient, DAError, DAUnavailable, DerivationError
from lorachain.da_client.commitment import CommitmentMode, encode_altda_calldata
from lorachain.da_client.local_cert import LocalCert
from lorachain.node.metrics import SERVICE_REGISTRY
from lorachain.node.rollup.batches import SingularBatch
from lorachain.node.rollup.channels import Compression, channel_frames, compress_batches
from lorachain.node.rollup.config import RollupConfig
from lorachain.node.rollup.deposits import DEPOSIT_TX_TYPE, DepositTx
from lorachain.node.rollup.frames import Frame, encode_frames_calldata
from lorachain.node.rollup.l1_client import L1Client, L1RpcError
from lorachain.node.rollup.l1_info import L1BlockInfo

log = logging.getLogger("lorachain.batcher")

FRAMES_POSTED = Counter("lorachain_batcher_frames_posted_total", "Frame payloads posted, by where their data went",
                        ["via"], registry=SERVICE_REGISTRY)  # fmt: skip
DA_FAILOVERS = Counter("lorachain_batcher_da_failovers_total",
                       "Frame payloads posted as calldata because the DA server refused or failed",
                       ["reason"], registry=SERVICE_REGISTRY)  # fmt: skip
BLOCKS_POSTED = Counter("lorachain_batcher_l2_blocks_posted_total", "L2 blocks posted in channels",
                        registry=SERVICE_REGISTRY)  # fmt: skip
NEXT_BLOCK = Gauge("lorachain_batcher_next_l2_block", "The next L2 block to post", registry=SERVICE_REGISTRY)
ROUND_ERRORS = Counter("lorachain_batcher_round_errors_total", "Batcher rounds that failed (retried)",
                       registry=SERVICE_REGISTRY)  # fmt: skip
L1_REORGS = Counter("lorachain_batcher_l1_reorgs_total", "L1 reorgs that took batcher transactions (re-posted)",
                    registry=SERVICE_REGISTRY)  # fmt: skip

CALLDATA_FRAME_SIZE = 120_000  # keeps one batcher transaction well under L1's 128 KiB tx-size limit
FAULTS = ("withhold-da", "malformed-frames", "duplicate-batches", "out-of-order-frames")  # tests only
POSTED_KEPT = 256  # batcher transactions remembered: how far back an L1 reorg is followed
RECEIPT_TIMEOUT_S = 60.0
RECEIPT_POLL_S = 0.2
RESEND_AFTER_S = 2.0  # a transaction the L1 no longer knows (dropped from its pool by a reorg) is sent again


class BatcherError(RuntimeError):
    """The batcher cannot go on (an L1 transaction failed, an L2 block is not a rollup block, ...)."""


def batch_of_raw_block(number: int, raw_block: bytes) -> SingularBatch:
    """The singular batch of an L2 block given as its RLP (debug_getRawBlock)."""
    header, transactions = rlp.decode(raw_block)[:2]
    parent_hash, timestamp = header[0], int.from_bytes(header[11], "big")
    encoded = [rlp.encode(tx) if isinstance(tx, list) else bytes(tx) for tx in transactions]
    if not encoded or encoded[0][0] != DEPOSIT_TX_TYPE:
        raise BatcherError(f"L2 block #{number} has no L1-info deposit: not a block of this rollup")
    info = L1BlockInfo.decode(DepositTx.decode(encoded[0]).data)
    txs = tuple(tx for tx in encoded if tx[0] != DEPOSIT_TX_TYPE)
    return SingularBatch(parent_hash, info.l1_number, info.l1_block_hash, timestamp, txs)


def batcher_tx_gas(data: bytes) -> int:
    """Gas of a transaction to the (code-less) inbox carrying ``data``: intrinsic gas, or EIP-7623's calldata
    floor where that is higher (Prague: 10 per token, a token per zero byte and four per other byte)."""
    zeros = data.count(0)
    intrinsic = 21_000 + 4 * zeros + 16 * (len(data) - zeros)
    floor = 21_000 + 10 * (zeros + 4 * (len(data) - zeros))
    return max(intrinsic, floor)


class BatcherState:
    """The state file: the next L2 block to post, a sent-but-unsettled L1 transaction and the transactions mined
    (atomic writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.next_block = 1
        self.pending: dict[str, Any] | None = None  # {"raw": hex, "hash": hex, "first": int, "through": int}
        self.posted: list[dict[str, Any]] = []  # mined: {"tx", "first", "through", "l1", "l1_hash", "l2_hash"}
        if path.exists():
            raw = json.loads(path.read_text())
            self.next_block, self.pending, self.posted = raw["next_block"], raw.get("pending"), raw.get("posted", [])

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            json.dump({"next_block": self.next_block, "pending": self.pending, "posted": self.posted}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


class Batcher:
    def __init__(
        self,
        config: RollupConfig,
        l1: L1Client,
        l2: L1Client,
        key: bytes,
        state_path: Path,
        da: DAClient | None = None,
        max_blocks_per_channel: int = 50,
        max_frame_data: int = CALLDATA_FRAME_SIZE,
        compression: Compression = Compression.BROTLI,
        fault: str | None = None,
    ) -> None:
        self.config, self.l1, self.l2, self.da = config, l1, l2, da
        self.account = Account.from_key(key)
        if bytes.fromhex(self.account.address[2:]) != config.batcher:
            raise BatcherError(f"key is for {self.account.address}, the rollup's batcher is 0x{config.batcher.hex()}")
        self.state = BatcherState(state_path)
        self.max_blocks = max_blocks_per_channel
        self.max_frame_data = max_frame_data
        self.compression = compression
        self.posted_via_da = 0
        self.posted_as_calldata = 0
        if fault is not None and fault not in FAULTS:
            raise BatcherError(f"unknown batcher fault {fault!r} (one of {', '.join(FAULTS)})")
        self.fault = fault
        withheld = state_path.with_name(state_path.name + ".withheld")
        self.withheld = len(list(withheld.iterdir())) if withheld.is_dir() else 0  # once, across restarts too
        self._last_hash: str | None = None  # the last block of the channel being posted, as read

    # -- one round -------------------------------------------------------------------------------
    def step(self) -> int:
        """Post the next channel if there are blocks to post; the number of L2 blocks posted."""
        self._follow_reorgs()
        self._settle_pending()
        head = self.l2.block_number()
        first = self.state.next_block
        if first > head:
            return 0
        last = min(head, first + self.max_blocks - 1)
        raw_blocks = [bytes.fromhex(self.l2.call("debug_getRawBlock", hex(n))[2:]) for n in range(first, last + 1)]
        batches = [batch_of_raw_block(n, raw) for n, raw in zip(range(first, last + 1), raw_blocks, strict=True)]
        # the hash of the last block as read here (the sequencer may reset it away before the tx is mined)
        self._last_hash = "0x" + keccak(rlp.encode(rlp.decode(raw_blocks[-1])[0])).hex()
        encoded = [b.encode() for b in batches]
        if self.fault == "duplicate-batches":
            encoded = [batch for batch in encoded for _ in range(2)]
        channel = compress_batches(encoded, self.compression)
        frame_size = self.max_frame_data
        if self.fault in ("out-of-order-frames", "duplicate-batches"):  # several frames to reorder / repeat
            frame_size = max(1, min(frame_size, -(-len(channel) // (3 if self.fault == "out-of-order-frames" else 2))))
        frames = channel_frames(os.urandom(16), channel, frame_size)
        payloads = [encode_frames_calldata(frames[i : i + 1]) for i in range(len(frames))]
        payloads = self._faulty(frames, payloads)
        for index, payload in enumerate(payloads):
            through = last if index == len(payloads) - 1 else first - 1
            self._post(payload, first, through)
        log.info("posted L2 blocks #%d-#%d in %d frame(s)", first, last, len(payloads))
        BLOCKS_POSTED.inc(last - first + 1)
        NEXT_BLOCK.set(self.state.next_block)
        return last - first + 1

    def _faulty(self, frames: list[Frame], payloads: list[bytes]) -> list[bytes]:
        """The payloads a misbehaving batcher posts for one channel (tests only; see the module doc)."""
        if self.fault == "out-of-order-frames":
            log.warning("fault out-of-order-frames: posting %d frames last first", len(payloads))
            return payloads[::-1]
        if self.fault == "duplicate-batches":
            log.warning("fault duplicate-batches: every batch twice, the first frame twice, the channel twice")
            return [payloads[0], *payloads, *payloads]
        if self.fault == "malformed-frames":
            log.warning("fault malformed-frames: a truncated frame and two bad channels before the channel")
            truncated = encode_frames_calldata(frames[:1])[:-1]  # the closing byte of the last frame is missing
            undecompressible = Frame(os.urandom(16), 0, b"\x01\xff\xff\xff\xff", True)
            bad_batch = Frame(os.urandom(16), 0, compress_batches([b"\x00\xc3\x01\x02\x03"], self.compression), True)
            return [truncated, encode_frames_calldata([undecompressible, bad_batch, frames[0]]), *payloads[1:]]
        return payloads

    def _post(self, frames_payload: bytes, first: int, through: int) -> None:
        data = frames_payload
        if self.fault == "withhold-da" and self.da is not None and self.withheld == 0:
            self._send(encode_altda_calldata(self._withhold(frames_payload)), first, through)
            return
        if self.da is not None:
            try:
                data = encode_altda_calldata(self.da.put(frames_payload))
                self.posted_via_da += 1
            except (DAUnavailable, DABadRequest, DerivationError) as exc:
                log.warning("DA server refused or unavailable (%s): posting frames as calldata", exc)
                self.posted_as_calldata += 1
                DA_FAILOVERS.labels("refused_or_unavailable").inc()
            except DAError as exc:  # retried already; still failing: fail over rather than stall
                log.warning("DA server failing (%s): posting frames as calldata", exc)
                self.posted_as_calldata += 1
                DA_FAILOVERS.labels("failing").inc()
        else:
            self.posted_as_calldata += 1
        FRAMES_POSTED.labels("calldata" if data is frames_payload else "da").inc()
        self._send(data, first, through)

    def _withhold(self, payload: bytes) -> bytes:
        """The commitment the local DA server would give ``payload``, which it is never given (tests only)."""
        commitment = LocalCert.for_payload(payload)[0].encode().encode(CommitmentMode.OP_GENERIC)
        folder = self.state.path.with_name(self.state.path.name + ".withheld")
        folder.mkdir(exist_ok=True)
        (folder / f"0x{commitment.hex()}.bin").write_bytes(payload)
        self.withheld += 1
        log.warning("fault withhold-da: commitment 0x%s posted, its data kept from the DA server", commitment.hex())
        return commitment

    def _send(self, data: bytes, first: int, through: int) -> None:
        nonce = int(self.l1.call("eth_getTransactionCount", self.account.address, "pending"), 16)
        gas = batcher_tx_gas(data)
        fee = int(self.l1.call("eth_gasPrice"), 16)
        tx = {"type": 2, "chainId": self.config.l1_chain_id, "nonce": nonce, "value": 0, "gas": gas, "data": data,
              "to": to_checksum_address(self.config.batch_inbox), "maxFeePerGas": 2 * fee,
              "maxPriorityFeePerGas": 1}  # fmt: skip
        signed = self.account.sign_transaction(tx)
        self.state.pending = {"raw": bytes(signed.raw_transaction).hex(), "hash": bytes(signed.hash).hex(),
                              "first": first, "through": through}  # fmt: skip
        if through >= first:  # the channel's last frame: it carries block `through`, read in this round
            self.state.pending["l2_hash"] = self._last_hash
        self.state.save()
        self._settle_pending()

    def _settle_pending(self) -> None:
        pending = self.state.pending
        if pending is None:
            return
        receipt = self.l1.call("eth_getTransactionReceipt", "0x" + pending["hash"])
        if receipt is None:
            try:
                self.l1.call("eth_sendRawTransaction", "0x" + pending["raw"])
            except L1RpcError as exc:  # already known (fine), or refused: then post the blocks anew
                receipt = self.l1.call("eth_getTransactionReceipt", "0x" + pending["hash"])
                if receipt is None and "already known" not in str(exc):
                    self.state.pending = None
                    self.state.save()
                    raise BatcherError(f"the L1 refused batcher tx 0x{pending['hash']}: {exc}") from exc
            if receipt is None:
                receipt = self._wait_for_receipt(pending)
        if int(receipt["status"], 16) != 1:
            raise BatcherError(f"batcher transaction 0x{pending['hash']} failed on L1")
        self.state.next_block = max(self.state.next_block, pending["through"] + 1)
        self.state.pending = None
        # the L2 block the transaction carries as posted (a block read again now may be a reset's new one)
        through_hash = pending.get("l2_hash")
        if through_hash is None:
            through = self.l2.call("eth_getBlockByNumber", hex(pending["through"]), False)
            through_hash = through["hash"] if through is not None else None
        if through_hash is not None:
            self.state.posted.append({"tx": pending["hash"], "first": pending.get("first", pending["through"]),
                                      "through": pending["through"], "l1": int(receipt["blockNumber"], 16),
                                      "l1_hash": receipt["blockHash"], "l2_hash": through_hash})  # fmt: skip
            del self.state.posted[:-POSTED_KEPT]
        self.state.save()

    def _wait_for_receipt(self, pending: dict[str, Any]) -> dict[str, Any]:
        """The receipt of the pending transaction; BatcherError after ``RECEIPT_TIMEOUT_S``, or at once if an L1
        reorg dropped transactions posted before it (the next round posts those blocks again)."""
        tx_hash = "0x" + pending["hash"]
        started = last_sent = time.monotonic()
        while time.monotonic() - started < RECEIPT_TIMEOUT_S:
            receipt = self.l1.call("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                return receipt
            if self.state.posted and not self._still_posted(self.state.posted[-1]):
                raise BatcherError(f"an L1 reorg dropped batcher transactions before 0x{pending['hash']}")
            if time.monotonic() - last_sent > RESEND_AFTER_S:
                last_sent = time.monotonic()
                if self.l1.call("eth_getTransactionByHash", tx_hash) is None:
                    log.warning("batcher tx %s is unknown to the L1 (an L1 reorg?): sending it again", tx_hash)
                    try:
                        self.l1.call("eth_sendRawTransaction", "0x" + pending["raw"])
                    except L1RpcError as exc:
                        log.warning("sending batcher tx %s again failed: %s", tx_hash, exc)
            time.sleep(RECEIPT_POLL_S)
        raise BatcherError(f"batcher transaction {tx_hash} not mined within {RECEIPT_TIMEOUT_S:.0f}s")

    # -- L1 reorgs ---------------------------------------------------------------------------------
    def _still_posted(self, entry: dict[str, Any]) -> bool:
        """Whether a mined batcher transaction is still in its L1 block, for L2 blocks still in the chain."""
        l1_block = self.l1.block_by_number(entry["l1"])
        if l1_block is None or l1_block["hash"] != entry["l1_hash"]:
            return False
        l2_block = self.l2.call("eth_getBlockByNumber", hex(entry["through"]), False)
        return l2_block is not None and l2_block["hash"] == entry["l2_hash"]

    def _follow_reorgs(self) -> None:
        """Post again the L2 blocks whose batcher transactions an L1 reorg (or a sequencer reset) made void."""
        posted = self.state.posted
        if not posted or self._still_posted(posted[-1]):
            return
        keep = len(posted) - 1
        while keep > 0 and not self._still_posted(posted[keep - 1]):
            keep -= 1
        if keep == 0:
            log.error("L1 reorg deeper than the %d batcher transactions remembered: posting again from L2 block #%d",
                      len(posted), posted[0]["first"])  # fmt: skip
        next_block = posted[keep - 1]["through"] + 1 if keep else posted[0]["first"]
        log.warning("L1 reorg: %d batcher transaction(s) no longer on L1 (or their L2 blocks left the chain), from L1 "
                    "block #%d: posting L2 blocks from #%d again (was #%d)", len(posted) - keep, posted[keep]["l1"],
                    next_block, self.state.next_block)  # fmt: skip
        L1_REORGS.inc()
        self.state.posted = posted[:keep]
        self.state.next_block = next_block
        self.state.pending = None  # if the L1 still mines it, its batches are read as already applied
        self.state.save()

    def run(self, poll_s: float = 1.0) -> None:
        while True:
            try:
                posted = self.step()
            except (BatcherError, OSError, RuntimeError) as exc:
                log.error("batcher round failed, retrying: %s", exc)
                ROUND_ERRORS.inc()
                posted = 0
            if not posted:
                time.sleep(poll_s)
