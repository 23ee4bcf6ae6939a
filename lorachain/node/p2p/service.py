"""The gossip service: a libp2p host (py-libp2p, TCP + Noise + yamux/mplex) with gossipsub, on a trio loop in
its own thread beside the node's asyncio loop, publishing and reading signed unsafe blocks (:mod:`codec`).

- Publishing (the sequencer): :meth:`GossipService.publish_block` signs the block's payload envelope with the
  unsafe-block signer key and hands the message to the trio loop (``TrioToken.run_sync_soon``: thread-safe and
  non-blocking, so block production never waits on the network).
- Reading (validators): every message on the blocks topics is validated *before* it is relayed (a gossipsub
  topic validator): snappy, size, signature by the configured signer for this chain id (a message signed for
  another chain recovers another address), payload decoding, and the rebuilt header's hash. A valid block goes
  to ``on_block`` (called on the trio thread; the node hands it to its own loop). Messages signed as op-node
  does, with ``StrictNoSign``: no libp2p author or signature; ids by content (:func:`codec.message_id`).
- Peers: static peers are dialled at start and redialled while disconnected; bootnodes are dialled at start
  until they answer (there is no discv5 here: the bootnode list is simply the first peers). Each invalid
  message costs its forwarder score (:data:`PENALTIES`); at or below ``ban_threshold`` the peer is
  blacklisted in pubsub (its messages dropped, its stream reset) and disconnected, and static peers that are
  banned are not redialled. Ignored messages (a block this node already has) cost nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from lorachain.node import metrics
from lorachain.node.p2p import codec
from lorachain.node.p2p.codec import GossipDecodeError

log = logging.getLogger("lorachain.p2p")

PEERS = Gauge("lorachain_p2p_peers", "Connected libp2p peers", registry=metrics.REGISTRY)
UNSAFE_BLOCKS = Counter("lorachain_p2p_unsafe_blocks_total", "Unsafe-block gossip messages by outcome", ["result"],
                        registry=metrics.REGISTRY)  # fmt: skip
PEER_PENALTIES = Counter("lorachain_p2p_peer_penalties_total", "Score taken from peers, by reason", ["reason"],
                         registry=metrics.REGISTRY)  # fmt: skip
BANNED = Counter("lorachain_p2p_peers_banned_total", "Peers disconnected and banned for their score",
                 registry=metrics.REGISTRY)  # fmt: skip
GOSSIP_LATENCY = Histogram(
    "lorachain_p2p_gossip_latency_seconds",
    "From a block message's arrival at the gossip layer (before validation) to the block as unsafe head",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=metrics.REGISTRY,
)

GOSSIPSUB_PROTOCOLS = ("/meshsub/1.1.0", "/meshsub/1.0.0")
PENALTIES = {"undecodable": 10.0, "bad_signature": 20.0, "wrong_signer": 20.0, "bad_payload": 10.0,
             "hash_mismatch": 20.0, "invalid_block": 20.0}  # fmt: skip
DEFAULT_BAN_THRESHOLD = -40.0  # two badly signed blocks and a peer is gone
REDIAL_S = 2.0
DIAL_TIMEOUT_S = 10.0  # libp2p's own upgrade timeout: a loaded host takes seconds over a Noise handshake


def _admission() -> Any:
    """libp2p's resource manager with its connection and stream limits, but without the parts that refuse every
    peer for reasons that are not the peer's: a circuit breaker that stays open for 60 s after five internal
    errors, "graceful degradation" that lowers limits under load, and system-memory limits (a busy machine is
    not a bad peer). Who may stay connected is decided by peer scores and the ban gate here."""
    from libp2p.rcmgr import ResourceManager

    return ResourceManager(enable_circuit_breaker=False, enable_graceful_degradation=False,
                           enable_memory_limits=False)  # fmt: skip


@dataclass
class P2PConfig:
    chain_id: int
    listen: str = "/ip4/127.0.0.1/tcp/0"
    static_peers: list[str] = field(default_factory=list)
    bootnodes: list[str] = field(default_factory=list)
    node_key: bytes | None = None  # the libp2p identity (secp256k1); None: a new one
    signer_key: bytes | None = None  # the sequencer: signs the blocks it publishes
    unsafe_signer: bytes | None = None  # validators: the only address whose blocks are accepted
    ban_threshold: float = DEFAULT_BAN_THRESHOLD


def load_or_create_node_key(path: Path) -> bytes:
    """The node's libp2p identity key (hex in ``path``), made once so the peer id stays the same."""
    if path.exists():
        return bytes.fromhex(path.read_text().strip().removeprefix("0x"))
    from eth_keys import keys

    key = keys.PrivateKey(__import__("os").urandom(32)).to_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return key


def peer_id_of(node_key: bytes) -> str:
    """The libp2p peer id (base58) of a secp256k1 identity key."""
    from libp2p.crypto.secp256k1 import create_new_key_pair
    from libp2p.peer.id import ID

    return ID.from_pubkey(create_new_key_pair(node_key).public_key).to_string()


@dataclass
class ReceivedBlock:
    block: Any
    peer: str  # the forwarder's peer id
    arrived: float  # time.monotonic() at the gossip layer
    arrived_wall: float  # time.time()


class PeerScores:
    """Application score per peer: penalties only (honest peers stay at 0)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.scores: dict[str, float] = {}
        self.banned: set[str] = set()

    def penalize(self, peer: str, reason: str) -> bool:
        """Take the penalty for ``reason``; True when this takes the peer to the ban threshold."""
        PEER_PENALTIES.labels(reason).inc()
        score = self.scores.get(peer, 0.0) - PENALTIES.get(reason, 10.0)
        self.scores[peer] = score
        if score <= self.threshold and peer not in self.banned:
            self.banned.add(peer)
            return True
        return False


class GossipService:
    def __init__(
        self,
        config: P2PConfig,
        make_block: Callable[[codec.PayloadEnvelope], Any] | None = None,
        on_block: Callable[[ReceivedBlock], None] | None = None,
        is_known: Callable[[bytes], bool] | None = None,
        trace: Callable[[dict], None] | None = None,
    ) -> None:
        self.config = config
        self.make_block = make_block  # payload -> py-evm block (codec.block_of_envelope with this chain's classes)
        self.on_block = on_block
        self.is_known = is_known or (lambda _hash: False)
        self.trace = trace
        self.scores = PeerScores(config.ban_threshold)
        self.topics = [codec.blocks_topic(config.chain_id, v) for v in codec.BLOCK_VERSIONS]
        self.peer_id: str | None = None
        self.addrs: list[str] = []
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._token: Any = None
        self._send: Any = None
        self._stop: Any = None
        self._pubsub: Any = None
        self._host: Any = None
        self._nursery: Any = None

    # -- lifecycle (any thread) ------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        self._thread = threading.Thread(target=self._run, name="lorachain-p2p", daemon=True)
        self._thread.start()
        if not self.ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"p2p did not start: {self.error!r}")

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            with contextlib.suppress(Exception):  # the trio loop may be gone already
                self._token.run_sync_soon(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        import trio

        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to start() / the log, never lost
            self.error = exc
            log.exception("p2p service stopped")
        finally:
            self.ready.set()

    # -- publishing (the node's thread) ------------------------------------------------------------------
    def publish_block(self, block: Any) -> bytes:
        """Sign and gossip ``block`` (the sequencer); returns the message data."""
        if self.config.signer_key is None:
            raise RuntimeError("no unsafe-block signer key: this node cannot publish blocks")
        version = codec.block_version(block)
        payload = codec.envelope_of_block(block).encode(version)
        data = codec.encode_message(codec.sign_payload(self.config.signer_key, self.config.chain_id, payload), payload)
        self.publish_raw(codec.blocks_topic(self.config.chain_id, version), data)
        if self.trace is not None:
            self.trace({"event": "publish", "number": block.number, "hash": "0x" + block.hash.hex(), "t": time.time()})
        return data

    def publish_raw(self, topic: str, data: bytes) -> None:
        if self._token is None:
            raise RuntimeError("p2p service not started")
        self._token.run_sync_soon(self._send.send_nowait, (topic, data))

    # -- the trio side ----------------------------------------------------------------------------------
    async def _main(self) -> None:
        import multiaddr
        import trio
        from libp2p import new_host
        from libp2p.crypto.secp256k1 import create_new_key_pair
        from libp2p.pubsub.gossipsub import GossipSub
        from libp2p.pubsub.pubsub import Pubsub
        from libp2p.tools.anyio_service import background_trio_service

        key_pair = create_new_key_pair(self.config.node_key)
        host = new_host(key_pair=key_pair, resource_manager=_admission())
        gossipsub = GossipSub(
            protocols=list(GOSSIPSUB_PROTOCOLS), degree=8, degree_low=6, degree_high=12,  # op-node's D, Dlo, Dhi
            heartbeat_interval=1, heartbeat_initial_delay=0.1, time_to_live=60, gossip_window=3, gossip_history=5,
            max_messages_per_topic_per_second=1000.0,  # blocks come as fast as the sequencer makes them
            eclipse_protection_enabled=False,  # devnets: every peer on 127.0.0.1
        )  # fmt: skip
        pubsub = Pubsub(host, gossipsub, strict_signing=False, msg_id_constructor=self._message_id,
                        max_inbound_rpc_size=codec.MAX_GOSSIP_SIZE + 4096)  # fmt: skip
        self._host, self._pubsub = host, pubsub
        host.get_network().register_notifee(_BanGate(self))
        send, receive = trio.open_memory_channel(1024)
        self._send, self._stop, self._token = send, trio.Event(), trio.lowlevel.current_trio_token()
        async with host.run(listen_addrs=[multiaddr.Multiaddr(self.config.listen)]), trio.open_nursery() as nursery:
            self._nursery = nursery
            async with background_trio_service(pubsub), background_trio_service(gossipsub):
                await pubsub.wait_until_ready()
                for topic in self.topics:
                    pubsub.set_topic_validator(topic, self._validate, False)
                    subscription = await pubsub.subscribe(topic)
                    nursery.start_soon(self._drain, subscription)
                self.peer_id = host.get_id().to_string()
                self.addrs = [f"{addr}" if "/p2p/" in str(addr) else f"{addr}/p2p/{self.peer_id}"
                              for addr in host.get_addrs()]  # fmt: skip
                log.info("p2p: peer id %s listening on %s, topics %s", self.peer_id, " ".join(self.addrs),
                         " ".join(self.topics))  # fmt: skip
                print(f"lorachain p2p: {' '.join(self.addrs)}", flush=True)
                nursery.start_soon(self._publisher, receive)
                nursery.start_soon(self._dial_loop, list(self.config.static_peers), True)
                nursery.start_soon(self._dial_loop, list(self.config.bootnodes), False)
                nursery.start_soon(self._peer_gauge)
                self.ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

    @staticmethod
    def _message_id(msg: Any) -> bytes:
        return codec.message_id(msg.topicIDs[0] if msg.topicIDs else "", msg.data)

    async def _publisher(self, receive: Any) -> None:
        async for topic, data in receive:
            try:
                await self._pubsub.publish(topic, data)
            except Exception:
                log.exception("p2p: publishing on %s failed", topic)

    async def _drain(self, subscription: Any) -> None:
        """Subscriptions keep a queue; blocks were handed on in the validator already."""
        while True:
            await subscription.get()

    async def _dial_loop(self, addrs: list[str], keep: bool) -> None:
        import multiaddr
        import trio
        from libp2p.peer.peerinfo import info_from_p2p_addr

        infos = []
        for addr in addrs:
            try:
                infos.append(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
            except Exception as exc:
                log.error("p2p: ignoring peer address %s: %s", addr, exc)
        pending = list(infos)
        while pending:
            for info in list(pending):
                peer = info.peer_id.to_string()
                if peer in self.scores.banned:
                    pending.remove(info)
                    continue
                if info.peer_id in self._host.get_connected_peers():
                    if not keep:
                        pending.remove(info)
                    continue
                try:
                    with trio.fail_after(DIAL_TIMEOUT_S):
                        await self._host.connect(info)
                    log.info("p2p: connected to %s peer %s", "static" if keep else "boot", peer)
                    if not keep:
                        pending.remove(info)
                except Exception as exc:
                    log.debug("p2p: dialling %s failed (%s); again in %.0fs", peer, exc, REDIAL_S)
            await trio.sleep(REDIAL_S)

    async def _peer_gauge(self) -> None:
        import trio

        while True:
            PEERS.set(len(self._host.get_connected_peers()))
            await trio.sleep(0.5)

    # -- validation (runs before relaying) ----------------------------------------------------------------
    def _validate(self, forwarder: Any, msg: Any) -> bool:
        arrived, arrived_wall = time.monotonic(), time.time()
        peer = forwarder.to_string()
        if peer == self.peer_id:
            return True  # what this node publishes (signed by it, or a test's deliberately bad message)
        topic = msg.topicIDs[0] if msg.topicIDs else ""
        version = codec.topic_version(topic)
        try:
            if version is None:
                raise _Reject("undecodable", f"not a blocks topic: {topic}")
            try:
                signature, payload = codec.decode_message(msg.data)
            except GossipDecodeError as exc:
                raise _Reject("undecodable", str(exc)) from exc
            try:
                signer = codec.recover_signer(signature, self.config.chain_id, payload)
            except GossipDecodeError as exc:
                raise _Reject("bad_signature", str(exc)) from exc
            expected = self.config.unsafe_signer
            if expected is not None and signer != expected:
                raise _Reject(
                    "wrong_signer", f"signed by 0x{signer.hex()}, not the unsafe-block signer 0x{expected.hex()}"
                )
            try:
                envelope = codec.PayloadEnvelope.decode(payload, version)
            except GossipDecodeError as exc:
                raise _Reject("bad_payload", str(exc)) from exc
            if self.on_block is None or self.make_block is None:
                return True  # a node that only relays (the sequencer)
            if self.is_known(envelope.payload.block_hash):
                UNSAFE_BLOCKS.labels("known").inc()
                return True  # relay (others may not have it) without applying again
            try:
                block = self.make_block(envelope)
            except GossipDecodeError as exc:
                raise _Reject("hash_mismatch" if "hash mismatch" in str(exc) else "bad_payload", str(exc)) from exc
        except _Reject as reject:
            UNSAFE_BLOCKS.labels(reject.reason).inc()
            log.warning("p2p: rejecting block message from %s: %s: %s", peer, reject.reason, reject.detail)
            self.penalize(forwarder, reject.reason)
            return False
        UNSAFE_BLOCKS.labels("valid").inc()
        self.on_block(ReceivedBlock(block, peer, arrived, arrived_wall))
        return True

    def penalize(self, forwarder: Any, reason: str) -> None:
        """Score ``forwarder`` (a libp2p ID or its string) down; ban and disconnect it at the threshold (trio
        thread, or any thread through :meth:`penalize_soon`)."""
        from libp2p.peer.id import ID

        peer_id = forwarder if isinstance(forwarder, ID) else ID.from_base58(forwarder)
        peer = peer_id.to_string()
        if self.scores.penalize(peer, reason):
            BANNED.inc()
            log.warning("p2p: peer %s scored %.0f (threshold %.0f): banned and disconnected", peer,
                        self.scores.scores[peer], self.scores.threshold)  # fmt: skip
            self._pubsub.add_to_blacklist(peer_id)
            self._nursery.start_soon(self._disconnect, peer_id)

    def penalize_soon(self, peer: str, reason: str) -> None:
        if self._token is not None:
            self._token.run_sync_soon(self.penalize, peer, reason)

    async def _disconnect(self, peer_id: Any) -> None:
        with contextlib.suppress(Exception):
            await self._host.disconnect(peer_id)


class _BanGate:
    """A network notifee that closes every new connection of a banned peer (an IP gate cannot: devnet peers
    share 127.0.0.1)."""

    def __init__(self, service: GossipService) -> None:
        self.service = service

    async def connected(self, network: Any, conn: Any) -> None:
        peer_id = conn.muxed_conn.peer_id
        if peer_id.to_string() in self.service.scores.banned:
            log.info("p2p: refusing banned peer %s", peer_id.to_string())
            with contextlib.suppress(Exception):
                await conn.close()

    async def opened_stream(self, network: Any, stream: Any) -> None:
        pass

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def disconnected(self, network: Any, conn: Any) -> None:
        pass

    async def listen(self, network: Any, multiaddr: Any) -> None:
        pass

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        pass


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail
