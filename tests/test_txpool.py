"""TxPool over a real chain: pending/queued, ordering, replacement, limits, reset, geth's error wording."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import to_canonical_address

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import devnet_genesis, parse_genesis
from lorachain.node.chain import Blockchain
from lorachain.node.node import Node
from lorachain.node.txpool import MAX_TX_SIZE, PoolLimits, TxPool, TxPoolError

GWEI = 10**9
RECIPIENT = "0x" + "42" * 20
ACCTS = dev_accounts()
A, B, C = (acct.private_key for acct in ACCTS[:3])


def addr(key: bytes) -> bytes:
    return to_canonical_address(Account.from_key(key).address)


class Harness:
    """A chain in a tmp dir, a pool wired the way Node wires it, and a helper to sign transactions."""

    def __init__(self, chain: Blockchain, limits: PoolLimits | None = None) -> None:
        self.chain = chain
        self.node = Node(chain)
        self.pool = TxPool(
            chain_id=chain.chain_id,
            state_provider=lambda: chain.state_at(chain.head),
            base_fee_provider=self.node.next_base_fee,
            block_gas_limit=lambda: chain.head.gas_limit,
            limits=limits,
        )

    def raw(self, key: bytes, nonce: int, *, tip: int = GWEI, fee: int = 10 * GWEI, **fields) -> bytes:
        tx = {
            "to": RECIPIENT,
            "value": 1,
            "gas": 21000,
            "maxFeePerGas": fee,
            "maxPriorityFeePerGas": tip,
            "nonce": nonce,
            "chainId": self.chain.chain_id,
            "type": 2,
        }
        tx.update(fields)
        if "gasPrice" in tx:
            for name in ("maxFeePerGas", "maxPriorityFeePerGas", "type"):
                tx.pop(name)
        return bytes(Account.sign_transaction(tx, key).raw_transaction)

    def tx(self, key: bytes, nonce: int, **kw):
        return self.node.decode_transaction(self.raw(key, nonce, **kw))

    def add(self, key: bytes, nonce: int, **kw) -> tuple[object, bool]:
        raw = self.raw(key, nonce, **kw)
        tx = self.node.decode_transaction(raw)
        return tx, self.pool.add(tx, len(raw))

    def error(self, key: bytes, nonce: int, **kw) -> str:
        with pytest.raises(TxPoolError) as info:
            self.add(key, nonce, **kw)
        return str(info.value)

    def mine(self, txs) -> None:
        built = self.chain.build_block(
            list(txs), timestamp=self.chain.head.timestamp + 2, coinbase=b"\x00" * 20, mix_hash=b"\x00" * 32
        )
        assert not built.rejected
        self.pool.reset()


@pytest.fixture
def h(tmp_path):
    chain = Blockchain.initialize(tmp_path, parse_genesis(devnet_genesis()))
    yield Harness(chain)
    chain.close()


@pytest.fixture
def small(tmp_path):
    chain = Blockchain.initialize(tmp_path, parse_genesis(devnet_genesis()))
    yield Harness(chain, PoolLimits(account_slots=3, global_slots=4, global_queue=1))
    chain.close()


def _nonces(txs) -> list[int]:
    return [tx.nonce for tx in txs]


# -- pending vs queued ---------------------------------------------------------------------------


def test_pending_and_queued_by_nonce_then_promotion(h: Harness) -> None:
    a = addr(A)
    _, executable = h.add(A, 0)
    assert executable is True
    _, executable = h.add(A, 2)  # gap at 1
    assert executable is False
    _, executable = h.add(A, 3)
    assert executable is False
    pending, queued = h.pool.split()
    assert _nonces(pending[a]) == [0]
    assert _nonces(queued[a]) == [2, 3]
    assert h.pool.counts() == (1, 2)
    assert h.pool.pending_nonce(a) == 1
    assert _nonces(h.pool.ordered_pending()) == [0]

    _, executable = h.add(A, 1)  # fills the gap: 1, 2, 3 all become executable
    assert executable is True
    pending, queued = h.pool.split()
    assert _nonces(pending[a]) == [0, 1, 2, 3]
    assert a not in queued
    assert h.pool.counts() == (4, 0)
    assert h.pool.pending_nonce(a) == 4
    assert _nonces(h.pool.ordered_pending()) == [0, 1, 2, 3]
    assert len(h.pool) == 4


def test_future_only_sender_is_all_queued(h: Harness) -> None:
    tx, executable = h.add(B, 5)
    assert executable is False
    assert tx.hash in h.pool and h.pool.get(tx.hash) is tx
    pending, queued = h.pool.split()
    assert pending == {}
    assert _nonces(queued[addr(B)]) == [5]
    assert list(h.pool.ordered_pending()) == []
    assert h.pool.pending_nonce(addr(B)) == 0


# -- ordering ------------------------------------------------------------------------------------


def test_ordered_pending_by_effective_tip_across_senders(h: Harness) -> None:
    base_fee = h.node.next_base_fee()
    assert 0 < base_fee <= GWEI  # 1 gwei at genesis, lower after an empty block
    # A: tip 1 gwei, then 5 gwei (but nonce order comes first within a sender).
    a0, _ = h.add(A, 0, tip=1 * GWEI)
    a1, _ = h.add(A, 1, tip=5 * GWEI)
    # B: tip 3 gwei then 2 gwei.
    b0, _ = h.add(B, 0, tip=3 * GWEI)
    b1, _ = h.add(B, 1, tip=2 * GWEI)
    # C: a tip cap as big as its fee cap, but the fee cap leaves an effective tip of only 0.5 gwei.
    c0, _ = h.add(C, 0, tip=base_fee + GWEI // 2, fee=base_fee + GWEI // 2)
    order = [tx.hash for tx in h.pool.ordered_pending()]
    assert order == [b0.hash, b1.hash, a0.hash, a1.hash, c0.hash]


def test_ordered_pending_ties_and_legacy_transactions(h: Harness) -> None:
    base_fee = h.node.next_base_fee()
    legacy, _ = h.add(A, 0, gasPrice=base_fee + 3 * GWEI)  # effective tip 3 gwei
    dynamic, _ = h.add(B, 0, tip=2 * GWEI)
    order = [tx.hash for tx in h.pool.ordered_pending()]
    assert order == [legacy.hash, dynamic.hash]


def test_ordered_pending_mined_in_that_order(h: Harness) -> None:
    h.add(A, 0, tip=1 * GWEI)
    h.add(B, 0, tip=9 * GWEI)
    ordered = list(h.pool.ordered_pending())
    h.mine(ordered)
    block = h.chain.block_by_header(h.chain.head)
    assert [tx.sender for tx in block.transactions] == [addr(B), addr(A)]
    assert len(h.pool) == 0


# -- replacement ---------------------------------------------------------------------------------


def test_replacement_needs_ten_percent_on_fee_cap_and_tip(h: Harness) -> None:
    old, _ = h.add(A, 0, tip=10 * GWEI, fee=100 * GWEI)
    assert h.error(A, 0, tip=11 * GWEI, fee=109 * GWEI) == "replacement transaction underpriced"
    assert h.error(A, 0, tip=10 * GWEI + GWEI // 2, fee=200 * GWEI) == "replacement transaction underpriced"
    assert h.error(A, 0, tip=10 * GWEI, fee=100 * GWEI, value=2) == "replacement transaction underpriced"
    assert old.hash in h.pool
    new, executable = h.add(A, 0, tip=11 * GWEI, fee=110 * GWEI)  # exactly +10% on both
    assert executable is True
    assert new.hash in h.pool and old.hash not in h.pool
    assert len(h.pool) == 1
    assert [tx.hash for tx in h.pool.ordered_pending()] == [new.hash]
    # Replacing a queued transaction works the same way.
    q_old, _ = h.add(A, 5, tip=GWEI, fee=10 * GWEI)
    assert h.error(A, 5, tip=GWEI, fee=20 * GWEI) == "replacement transaction underpriced"
    q_new, executable = h.add(A, 5, tip=2 * GWEI, fee=20 * GWEI)
    assert executable is False
    assert q_new.hash in h.pool and q_old.hash not in h.pool
    assert len(h.pool) == 2


def test_replacement_threshold_rounds_down_as_geth(h: Harness) -> None:
    """geth (legacypool list.go): new tip >= old tip * 110 / 100 in integer division, and > old tip."""
    h.add(A, 0, tip=15, fee=10 * GWEI)
    # threshold tip = 15 * 110 // 100 = 16: geth accepts 16.
    replaced, _ = h.add(A, 0, tip=16, fee=11 * GWEI)
    assert replaced.hash in h.pool


def test_replacement_of_a_zero_tip_needs_a_higher_tip_as_geth(h: Harness) -> None:
    """geth rejects a replacement whose tip is not strictly higher (0 -> 0), whatever the fee cap."""
    old, _ = h.add(B, 0, tip=0, fee=10 * GWEI)
    assert h.error(B, 0, tip=0, fee=20 * GWEI) == "replacement transaction underpriced"
    assert old.hash in h.pool


def test_already_known(h: Harness) -> None:
    raw = h.raw(A, 0)
    tx = h.node.decode_transaction(raw)
    h.pool.add(tx, len(raw))
    with pytest.raises(TxPoolError, match=r"^already known$"):
        h.pool.add(h.node.decode_transaction(raw), len(raw))


# -- limits --------------------------------------------------------------------------------------


def test_per_sender_limit(small: Harness) -> None:
    for nonce in range(3):
        small.add(A, nonce)
    assert small.error(A, 3) == "account limit exceeded"
    assert small.error(A, 10) == "account limit exceeded"
    # Replacing one of the sender's transactions is still allowed at the limit.
    small.add(A, 1, tip=2 * GWEI, fee=20 * GWEI)
    assert len(small.pool) == 3
    # Other senders are not affected by A's limit.
    small.add(B, 0)
    assert len(small.pool) == 4


def test_global_limit(small: Harness) -> None:
    small.add(A, 0)
    small.add(A, 1)
    small.add(B, 0)
    small.add(B, 1)
    small.add(C, 0)  # global_slots + global_queue = 5
    assert len(small.pool) == 5
    assert small.error(C, 1) == "txpool is full"
    assert small.error(ACCTS[3].private_key, 0) == "txpool is full"
    # After the block includes them, the pool has room again.
    small.mine(small.pool.ordered_pending())
    assert len(small.pool) == 0
    small.add(C, 1)
    assert len(small.pool) == 1


# -- reset -----------------------------------------------------------------------------------------


def test_reset_drops_mined_nonces_and_keeps_the_rest(h: Harness) -> None:
    a = addr(A)
    txs = [h.add(A, n)[0] for n in range(4)]
    queued, _ = h.add(A, 6)
    b0, _ = h.add(B, 0)
    # A block with A's nonces 0 and 1 only (B's tx is not included).
    h.mine(txs[:2])
    assert h.pool.state_nonce(a) == 2
    assert txs[0].hash not in h.pool and txs[1].hash not in h.pool
    assert all(tx.hash in h.pool for tx in (txs[2], txs[3], queued, b0))
    pending, queued_map = h.pool.split()
    assert _nonces(pending[a]) == [2, 3]
    assert _nonces(queued_map[a]) == [6]
    assert _nonces(pending[addr(B)]) == [0]
    assert h.pool.pending_nonce(a) == 4
    # A nonce already used is now too low.
    assert h.error(A, 1).startswith("nonce too low")
    # Mining the rest empties the sender.
    h.mine([txs[2], txs[3], b0])
    pending, queued_map = h.pool.split()
    assert a not in pending and addr(B) not in pending
    assert _nonces(queued_map[a]) == [6]
    assert len(h.pool) == 1


def test_remove_and_clear(h: Harness) -> None:
    tx, _ = h.add(A, 0)
    h.add(A, 1)
    h.pool.remove(tx.hash)
    assert tx.hash not in h.pool
    assert h.pool.counts() == (0, 1)  # nonce 1 is now gapped
    h.pool.remove(b"\x00" * 32)  # unknown: no error
    h.pool.clear()
    assert len(h.pool) == 0 and h.pool.split() == ({}, {})


# -- geth's error strings ------------------------------------------------------------------------


def test_nonce_too_low(h: Harness) -> None:
    h.mine([h.tx(A, 0)])
    message = h.error(A, 0)
    assert message.startswith("nonce too low")
    assert addr(A).hex() in message.lower()


def test_insufficient_funds(h: Harness) -> None:
    poor = bytes.fromhex("11" * 32)
    message = h.error(poor, 0)
    assert message.startswith("insufficient funds for gas * price + value")
    balance = 10_000 * 10**18
    message = h.error(A, 0, value=balance)  # value alone uses the whole balance: no gas money left
    assert message.startswith("insufficient funds for gas * price + value")


def test_insufficient_funds_counts_the_senders_pending_spend(h: Harness) -> None:
    """geth refuses a transaction whose cost plus the sender's pending costs overdraws the balance."""
    balance = 10_000 * 10**18
    h.add(A, 0, value=balance * 6 // 10)
    message = h.error(A, 1, value=balance * 6 // 10)
    assert message.startswith("insufficient funds for gas * price + value")


def test_intrinsic_gas_too_low(h: Harness) -> None:
    assert h.error(A, 0, gas=20999) == "intrinsic gas too low: gas 20999, minimum needed 21000"
    message = h.error(A, 0, gas=21000, data=b"\x01" * 10)  # 10 non-zero bytes: 21000 + 160
    assert message == "intrinsic gas too low: gas 21000, minimum needed 21160"


def test_floor_data_gas(h: Harness) -> None:
    # 100 non-zero bytes: intrinsic 21000 + 1600 = 22600; EIP-7623 floor 21000 + 10 * 400 = 25000.
    message = h.error(A, 0, gas=23000, data=b"\x01" * 100)
    assert message == "insufficient gas for floor data gas cost: gas 23000, minimum needed 25000"
    _, executable = h.add(A, 0, gas=25000, data=b"\x01" * 100)
    assert executable


def test_fee_cap_below_base_fee(h: Harness) -> None:
    base_fee = h.node.next_base_fee()
    message = h.error(A, 0, fee=base_fee - 1, tip=0)
    assert message.startswith("max fee per gas less than block base fee")
    assert f"maxFeePerGas: {base_fee - 1}, baseFee: {base_fee}" in message
    _, executable = h.add(A, 0, fee=base_fee, tip=0)
    assert executable


def test_tip_above_fee_cap(h: Harness) -> None:
    assert h.error(A, 0, fee=2 * GWEI, tip=3 * GWEI) == "max priority fee per gas higher than max fee per gas"


def test_gas_above_block_limit(h: Harness) -> None:
    assert h.error(A, 0, gas=h.chain.head.gas_limit + 1) == "exceeds block gas limit"


def test_wrong_chain_id(h: Harness) -> None:
    assert h.error(A, 0, chainId=1) == "invalid chain id for signer"
    assert h.error(A, 0, chainId=1, gasPrice=2 * GWEI) == "invalid chain id for signer"


def test_unprotected_legacy_tx(h: Harness) -> None:
    raw = h.raw(A, 0, gasPrice=2 * GWEI, chainId=None)
    tx = h.node.decode_transaction(raw)
    assert tx.v in (27, 28)
    with pytest.raises(TxPoolError, match=r"^only replay-protected \(EIP-155\) transactions allowed over RPC$"):
        h.pool.add(tx, len(raw))
    h.pool.allow_unprotected = True
    assert h.pool.add(tx, len(raw)) is True


def test_oversized_data(h: Harness) -> None:
    raw = h.raw(A, 0)
    tx = h.node.decode_transaction(raw)
    with pytest.raises(
        TxPoolError, match=rf"^oversized data: transaction size {MAX_TX_SIZE + 1}, limit {MAX_TX_SIZE}$"
    ):
        h.pool.add(tx, MAX_TX_SIZE + 1)


def test_set_code_tx_errors(h: Harness) -> None:
    auth = Account.sign_authorization({"chainId": h.chain.chain_id, "address": "0x" + "77" * 20, "nonce": 1}, A)
    base = {"type": 4, "maxFeePerGas": 10 * GWEI, "maxPriorityFeePerGas": GWEI, "gas": 100_000, "nonce": 0,
            "chainId": h.chain.chain_id, "value": 0, "to": RECIPIENT}  # fmt: skip
    raw = bytes(Account.sign_transaction({**base, "authorizationList": [auth]}, A).raw_transaction)
    assert h.pool.add(h.node.decode_transaction(raw), len(raw)) is True
    empty = _set_code_raw(A, h.chain.chain_id, 1, to=bytes.fromhex("42" * 20), auths=[])
    with pytest.raises(TxPoolError, match=r"^EIP-7702 transaction with empty auth list$"):
        h.pool.add(h.node.decode_transaction(empty), len(empty))
    auths = [[h.chain.chain_id, b"\x77" * 20, 1, auth.y_parity, auth.r, auth.s]]
    create = _set_code_raw(A, h.chain.chain_id, 1, to=b"", auths=auths)
    with pytest.raises(TxPoolError, match=r"^EIP-7702 transaction cannot be used to create contract$"):
        h.pool.add(h.node.decode_transaction(create), len(create))


def _set_code_raw(key: bytes, chain_id: int, nonce: int, *, to: bytes, auths: list) -> bytes:
    """A type-4 transaction signed by hand (eth-account refuses to sign the invalid shapes)."""
    import rlp
    from eth_keys import keys
    from eth_utils import keccak

    payload = [chain_id, nonce, GWEI, 10 * GWEI, 100_000, to, 0, b"", [], auths]
    signature = keys.PrivateKey(key).sign_msg_hash(keccak(b"\x04" + rlp.encode(payload)))
    return b"\x04" + rlp.encode([*payload, signature.v, signature.r, signature.s])


def test_decode_errors_are_rlp_errors(h: Harness) -> None:
    with pytest.raises(TxPoolError, match=r"^rlp: "):
        h.node.decode_transaction(b"\x02\xc0garbage")
