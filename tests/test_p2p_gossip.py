"""Unsafe-block gossip end to end: L1 + sequencer + validator as real processes, statically peered over libp2p.

The validator's head follows the sequencer's head from gossip alone, before any batch is on L1 (derivation's
safe head stays at genesis; the blocks made before the two peered come from the sequencer's RPC, checked
against the signed block's parent hash); once the batcher posts, derivation consolidates those unsafe blocks
(no reorg, no divergence). A peer publishing blocks signed by the wrong key (an in-test libp2p node) and an undecodable
message is scored down, banned and disconnected, while the validator goes on following the sequencer.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from eth_keys import keys

from lorachain.genesis.accounts import dev_accounts
from lorachain.node.p2p import codec
from lorachain.node.p2p.service import GossipService, P2PConfig, peer_id_of
from tests.conftest import LORACHAIN, REPO, free_port, start_node
from tests.rollup_fixtures import metric, start_l1_and_rollup, stop_all
from tests.test_sequencer_e2e import wait_for

pytestmark = pytest.mark.e2e

SEQUENCER_ID_KEY = b"\x51" * 32
VALIDATOR_ID_KEY = b"\x52" * 32
ATTACKER_ID_KEY = b"\x53" * 32
WRONG_SIGNER_KEY = dev_accounts()[3].private_key  # not the unsafe-block signer (dev account 7)


def _number(node, tag: str = "latest") -> int:
    return int(node.rpc("eth_getBlockByNumber", tag, False)["result"]["number"], 16)


def _bad_messages(i: int) -> list[tuple[str, bytes]]:
    """A block message signed by the wrong key, and one that is no snappy at all (each one unique: message ids
    are by content, and a repeated message is not validated again)."""
    payload = codec.PayloadEnvelope(bytes(32), codec.ExecutionPayload(
        parent_hash=b"\x01" * 32, fee_recipient=bytes(20), state_root=bytes(32), receipts_root=bytes(32),
        logs_bloom=bytes(256), prev_randao=bytes(32), block_number=10**6 + i, gas_limit=30_000_000, gas_used=0,
        timestamp=int(time.time()), extra_data=b"", base_fee_per_gas=1, block_hash=b"\x02" * 32, transactions=(),
        withdrawals_root=codec.EMPTY_TRIE_ROOT)).encode(codec.V4)  # fmt: skip
    topic = codec.blocks_topic(901, codec.V4)
    signed = codec.encode_message(codec.sign_payload(WRONG_SIGNER_KEY, 901, payload), payload)
    return [(topic, signed), (topic, b"\xff\xfe garbage " + i.to_bytes(4, "big"))]


def test_validator_follows_gossip_and_bans_a_bad_peer(tmp_path: Path) -> None:
    l1, rollup, common = start_l1_and_rollup(tmp_path, "--block-time", "0.5")
    sequencer = validator = batcher = attacker = None
    try:
        seq_key, val_key = tmp_path / "seq.key", tmp_path / "val.key"
        seq_key.write_text(SEQUENCER_ID_KEY.hex())
        val_key.write_text(VALIDATOR_ID_KEY.hex())
        seq_p2p, val_p2p = free_port(), free_port()
        seq_addr = f"/ip4/127.0.0.1/tcp/{seq_p2p}/p2p/{peer_id_of(SEQUENCER_ID_KEY)}"
        val_addr = f"/ip4/127.0.0.1/tcp/{val_p2p}/p2p/{peer_id_of(VALIDATOR_ID_KEY)}"
        sequencer = start_node(tmp_path / "sequencer", *common, "--block-time", "0.5", "--p2p.listen",
                               f"/ip4/127.0.0.1/tcp/{seq_p2p}", "--p2p.priv.path", str(seq_key))  # fmt: skip
        validator = start_node(tmp_path / "validator", *common, "--role", "validator", "--sequencer", sequencer.url,
                               "--p2p.listen", f"/ip4/127.0.0.1/tcp/{val_p2p}", "--p2p.priv.path", str(val_key),
                               "--p2p.static", seq_addr)  # fmt: skip

        # no batch on L1 yet: the validator's head comes from gossip alone, the safe head stays at genesis
        def applied() -> float:
            return metric(validator.url, "lorachain_p2p_unsafe_blocks_total", result="applied")

        wait_for(lambda: _number(validator) >= 6 and applied() >= 3, timeout=40, what="the validator's unsafe head")
        assert _number(validator, "safe") == 0
        assert _number(sequencer) - _number(validator) <= 2
        number = _number(validator)
        assert validator.rpc("eth_getBlockByNumber", hex(number), False)["result"]["hash"] == \
            sequencer.rpc("eth_getBlockByNumber", hex(number), False)["result"]["hash"]  # fmt: skip
        backfilled = metric(validator.url, "lorachain_p2p_unsafe_blocks_total", result="backfilled")
        assert applied() + backfilled >= 6  # blocks before the peering: from the sequencer's RPC
        wait_for(lambda: metric(validator.url, "lorachain_p2p_peers") == 1, timeout=10, what="the peer count")

        # a peer gossiping blocks signed by another key (and junk) is scored down and dropped
        attacker = GossipService(P2PConfig(chain_id=901, static_peers=[val_addr], node_key=ATTACKER_ID_KEY,
                                           signer_key=WRONG_SIGNER_KEY))  # fmt: skip
        attacker.start()
        wait_for(lambda: metric(validator.url, "lorachain_p2p_peers") == 2, timeout=45, what="the attacker peering")
        time.sleep(1.0)  # subscriptions exchanged
        for i in range(6):
            if metric(validator.url, "lorachain_p2p_peers_banned_total") >= 1:
                break
            for topic, data in _bad_messages(i):
                attacker.publish_raw(topic, data)
            time.sleep(0.5)
        wait_for(lambda: metric(validator.url, "lorachain_p2p_peers_banned_total") == 1, timeout=20,
                 what="the bad peer's ban")  # fmt: skip
        assert metric(validator.url, "lorachain_p2p_unsafe_blocks_total", result="wrong_signer") >= 1
        wait_for(lambda: metric(validator.url, "lorachain_p2p_peers") == 1, timeout=10, what="the disconnect")
        target = _number(sequencer) + 3
        wait_for(lambda: _number(validator) >= target, timeout=20, what="gossip after the ban")

        # the batcher posts: derivation reaches the unsafe blocks and consolidates them (no reorg)
        batcher = subprocess.Popen(
            [*LORACHAIN, "rollup", "batcher", "--l1", l1.url, "--l2", sequencer.url, "--rollup-config",
             str(rollup / "rollup.json"), "--state", str(tmp_path / "batcher.json"), "--poll", "0.3"],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: _number(validator, "safe") >= target, timeout=60, what="derivation to reach the unsafe head")
        assert _number(validator) >= _number(validator, "safe")
        for n in range(1, target + 1):
            assert validator.rpc("eth_getBlockByNumber", hex(n), False)["result"]["hash"] == \
                sequencer.rpc("eth_getBlockByNumber", hex(n), False)["result"]["hash"], f"block {n}"  # fmt: skip
        assert not (tmp_path / "validator" / "unsafe-divergence.json").exists()
        assert not (tmp_path / "validator" / "divergence.json").exists()
        assert metric(validator.url, "lorachain_derivation_unsafe_divergences_total") == 0
        assert metric(validator.url, "lorachain_p2p_gossip_latency_seconds_count") >= 3
    finally:
        if attacker is not None:
            attacker.stop()
        stop_all(batcher, validator, sequencer, l1)


def test_peer_ids_are_the_libp2p_ones() -> None:
    from libp2p.crypto.secp256k1 import create_new_key_pair
    from libp2p.peer.id import ID

    assert peer_id_of(SEQUENCER_ID_KEY) == ID.from_pubkey(create_new_key_pair(SEQUENCER_ID_KEY).public_key).to_string()
    assert peer_id_of(SEQUENCER_ID_KEY).startswith("16Uiu2")  # secp256k1 identities, as op-node's
    assert keys.PrivateKey(SEQUENCER_ID_KEY).public_key  # a valid key
