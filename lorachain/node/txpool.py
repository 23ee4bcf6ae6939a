"""Transaction pool: pending (executable) and queued (nonce-gapped) transactions per sender.

Validation and error wording follow geth's txpool, so clients that match on geth's messages work:
"nonce too low", "insufficient funds for gas * price + value", "intrinsic gas too low",
"replacement transaction underpriced", "max fee per gas less than block base fee", …
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from eth.abc import SignedTransactionAPI, StateAPI

MAX_TX_SIZE = 128 * 1024
PRICE_BUMP_PERCENT = 10
TX_TYPE_LEGACY, TX_TYPE_ACCESS_LIST, TX_TYPE_DYNAMIC_FEE, TX_TYPE_BLOB, TX_TYPE_SET_CODE = 0, 1, 2, 3, 4
SUPPORTED_TX_TYPES = {TX_TYPE_LEGACY, TX_TYPE_ACCESS_LIST, TX_TYPE_DYNAMIC_FEE, TX_TYPE_SET_CODE}


class TxPoolError(Exception):
    """A transaction the pool refuses; the message is geth's wording."""


@dataclass(frozen=True)
class PoolLimits:
    account_slots: int = 64  # pending + queued per sender
    global_slots: int = 5120  # pending, all senders
    global_queue: int = 1024  # queued, all senders


def tx_type(tx: SignedTransactionAPI) -> int:
    type_id = getattr(tx, "type_id", None)
    return TX_TYPE_LEGACY if type_id is None else type_id


def max_fee(tx: SignedTransactionAPI) -> int:
    return tx.max_fee_per_gas


def tip_cap(tx: SignedTransactionAPI) -> int:
    return tx.max_priority_fee_per_gas


def effective_tip(tx: SignedTransactionAPI, base_fee: int) -> int:
    return min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base_fee)


def cost(tx: SignedTransactionAPI) -> int:
    """The most a transaction can cost its sender: value + gas limit x fee cap."""
    return tx.value + tx.gas * tx.max_fee_per_gas


def is_priced_replacement(old: SignedTransactionAPI, new: SignedTransactionAPI) -> bool:
    """geth's rule: both fee cap and tip strictly higher, and each at least +PRICE_BUMP_PERCENT."""
    if new.max_fee_per_gas <= old.max_fee_per_gas or new.max_priority_fee_per_gas <= old.max_priority_fee_per_gas:
        return False
    bump = 100 + PRICE_BUMP_PERCENT
    return (
        new.max_fee_per_gas >= old.max_fee_per_gas * bump // 100
        and new.max_priority_fee_per_gas >= old.max_priority_fee_per_gas * bump // 100
    )


def floor_data_gas(data: bytes) -> int:
    """EIP-7623 (Prague) minimum gas for a transaction's calldata."""
    zeros = data.count(0)
    tokens = zeros + (len(data) - zeros) * 4
    return 21_000 + 10 * tokens


@dataclass
class _SenderTxs:
    by_nonce: dict[int, SignedTransactionAPI]

    def sorted(self) -> list[SignedTransactionAPI]:
        return [self.by_nonce[n] for n in sorted(self.by_nonce)]


class TxPool:
    """Holds valid transactions until the builder includes them.

    ``state_provider`` returns a read-only state at the current head; ``base_fee_provider`` the
    base fee of the next block. Both are asked again after every :meth:`reset`.
    """

    def __init__(
        self,
        chain_id: int,
        state_provider: Callable[[], StateAPI],
        base_fee_provider: Callable[[], int],
        block_gas_limit: Callable[[], int],
        limits: PoolLimits | None = None,
        allow_unprotected: bool = False,
    ) -> None:
        self.chain_id = chain_id
        self.limits = limits or PoolLimits()
        self.allow_unprotected = allow_unprotected
        self._state_provider = state_provider
        self._base_fee_provider = base_fee_provider
        self._block_gas_limit = block_gas_limit
        self._by_hash: dict[bytes, SignedTransactionAPI] = {}
        self._senders: dict[bytes, _SenderTxs] = {}
        self._state: StateAPI | None = None

    # -- queries ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    def get(self, tx_hash: bytes) -> SignedTransactionAPI | None:
        return self._by_hash.get(tx_hash)

    def _state_now(self) -> StateAPI:
        if self._state is None:
            self._state = self._state_provider()
        return self._state

    def state_nonce(self, sender: bytes) -> int:
        return self._state_now().get_nonce(sender)

    def pending_nonce(self, sender: bytes) -> int:
        """The next nonce after the sender's executable run in the pool (eth_getTransactionCount pending)."""
        nonce = self.state_nonce(sender)
        txs = self._senders.get(sender)
        if txs is not None:
            while nonce in txs.by_nonce:
                nonce += 1
        return nonce

    def split(self) -> tuple[dict[bytes, list[SignedTransactionAPI]], dict[bytes, list[SignedTransactionAPI]]]:
        """(pending, queued) by sender, each in nonce order."""
        pending: dict[bytes, list[SignedTransactionAPI]] = {}
        queued: dict[bytes, list[SignedTransactionAPI]] = {}
        for sender, txs in self._senders.items():
            expected = self.state_nonce(sender)
            for tx in txs.sorted():
                if tx.nonce == expected:
                    pending.setdefault(sender, []).append(tx)
                    expected += 1
                else:
                    queued.setdefault(sender, []).append(tx)
        return pending, queued

    def counts(self) -> tuple[int, int]:
        pending, queued = self.split()
        return sum(map(len, pending.values())), sum(map(len, queued.values()))

    def ordered_pending(self) -> Iterator[SignedTransactionAPI]:
        """Executable transactions by effective tip (highest first), nonce order within a sender."""
        base_fee = self._base_fee_provider()
        pending, _ = self.split()
        heads: list[tuple[int, int, bytes]] = []
        cursor: dict[bytes, int] = {}
        tiebreak = itertools.count()
        for sender, txs in pending.items():
            if txs[0].max_fee_per_gas >= base_fee:
                cursor[sender] = 0
                heapq.heappush(heads, (-effective_tip(txs[0], base_fee), next(tiebreak), sender))
        while heads:
            _, _, sender = heapq.heappop(heads)
            txs = pending[sender]
            tx = txs[cursor[sender]]
            yield tx
            cursor[sender] += 1
            if cursor[sender] < len(txs):
                nxt = txs[cursor[sender]]
                if nxt.max_fee_per_gas >= base_fee:
                    heapq.heappush(heads, (-effective_tip(nxt, base_fee), next(tiebreak), sender))

    # -- admission -------------------------------------------------------------------------------
    def validate(self, tx: SignedTransactionAPI, raw_size: int) -> bytes:
        """Check ``tx`` against consensus and pool rules; return its sender."""
        kind = tx_type(tx)
        if kind not in SUPPORTED_TX_TYPES:
            raise TxPoolError("transaction type not supported")
        if raw_size > MAX_TX_SIZE:
            raise TxPoolError(f"oversized data: transaction size {raw_size}, limit {MAX_TX_SIZE}")
        if kind == TX_TYPE_LEGACY:
            v = tx.v
            if v in (27, 28):
                if not self.allow_unprotected:
                    raise TxPoolError("only replay-protected (EIP-155) transactions allowed over RPC")
            elif (v - 35) // 2 != self.chain_id:
                raise TxPoolError("invalid chain id for signer")
        elif tx.chain_id != self.chain_id:
            raise TxPoolError("invalid chain id for signer")
        if kind == TX_TYPE_SET_CODE and not tx.authorization_list:
            raise TxPoolError("EIP-7702 transaction with empty auth list")
        if kind == TX_TYPE_SET_CODE and tx.to == b"":
            raise TxPoolError("EIP-7702 transaction cannot be used to create contract")
        if tx.value < 0 or tx.max_fee_per_gas < 0:
            raise TxPoolError("negative value")
        if tx.gas > self._block_gas_limit():
            raise TxPoolError("exceeds block gas limit")
        if tx.max_fee_per_gas < tx.max_priority_fee_per_gas:
            raise TxPoolError("max priority fee per gas higher than max fee per gas")
        try:
            sender = tx.sender
        except Exception as exc:  # eth-keys raises several kinds for bad signatures
            raise TxPoolError("invalid sender") from exc
        intrinsic = tx.intrinsic_gas
        if tx.gas < intrinsic:
            raise TxPoolError(f"intrinsic gas too low: gas {tx.gas}, minimum needed {intrinsic}")
        floor = floor_data_gas(tx.data)
        if tx.gas < floor:
            raise TxPoolError(f"insufficient gas for floor data gas cost: gas {tx.gas}, minimum needed {floor}")
        base_fee = self._base_fee_provider()
        if tx.max_fee_per_gas < base_fee:
            raise TxPoolError(
                f"max fee per gas less than block base fee: address 0x{sender.hex()}, "
                f"maxFeePerGas: {tx.max_fee_per_gas}, baseFee: {base_fee}"
            )
        state = self._state_now()
        state_nonce = state.get_nonce(sender)
        if tx.nonce < state_nonce:
            raise TxPoolError(f"nonce too low: address 0x{sender.hex()}, tx: {tx.nonce} state: {state_nonce}")
        if tx.nonce >= 2**64 - 1:
            raise TxPoolError("nonce has max value")
        balance = state.get_balance(sender)
        cost = tx.value + tx.gas * tx.max_fee_per_gas
        if balance < cost:
            raise TxPoolError(
                f"insufficient funds for gas * price + value: address 0x{sender.hex()} have {balance} want {cost}"
            )
        return sender

    def add(self, tx: SignedTransactionAPI, raw_size: int) -> bool:
        """Admit ``tx``; returns True if it is executable now (pending), False if queued."""
        if tx.hash in self._by_hash:
            raise TxPoolError("already known")
        sender = self.validate(tx, raw_size)
        txs = self._senders.setdefault(sender, _SenderTxs(by_nonce={}))
        old = txs.by_nonce.get(tx.nonce)
        self._check_overdraft(sender, tx, txs)
        if old is not None:
            if not is_priced_replacement(old, tx):
                raise TxPoolError("replacement transaction underpriced")
            del self._by_hash[old.hash]
        else:
            self._check_limits(sender, txs)
        txs.by_nonce[tx.nonce] = tx
        self._by_hash[tx.hash] = tx
        # Executable if every nonce between the state nonce and this one is present.
        nonce = self.state_nonce(sender)
        while nonce < tx.nonce and nonce in txs.by_nonce:
            nonce += 1
        return nonce == tx.nonce

    def _check_overdraft(self, sender: bytes, tx: SignedTransactionAPI, txs: _SenderTxs) -> None:
        """The sender must afford this tx on top of its other pooled ones (geth's ExistingExpenditure)."""
        spent = sum(cost(other) for nonce, other in txs.by_nonce.items() if nonce != tx.nonce)
        balance = self._state_now().get_balance(sender)
        if balance < spent + cost(tx):
            raise TxPoolError(
                f"insufficient funds for gas * price + value: address 0x{sender.hex()} "
                f"have {balance} want {spent + cost(tx)}"
            )

    def _check_limits(self, sender: bytes, txs: _SenderTxs) -> None:
        if len(txs.by_nonce) >= self.limits.account_slots:
            raise TxPoolError("account limit exceeded")
        if len(self._by_hash) >= self.limits.global_slots + self.limits.global_queue:
            raise TxPoolError("txpool is full")

    # -- maintenance -----------------------------------------------------------------------------
    def remove(self, tx_hash: bytes) -> None:
        tx = self._by_hash.pop(tx_hash, None)
        if tx is None:
            return
        sender = tx.sender
        txs = self._senders.get(sender)
        if txs is not None:
            txs.by_nonce.pop(tx.nonce, None)
            if not txs.by_nonce:
                del self._senders[sender]

    def reset(self) -> None:
        """After a new head: drop transactions whose nonce is now used, re-read state lazily."""
        self._state = None
        state = self._state_now()
        for sender in list(self._senders):
            nonce = state.get_nonce(sender)
            txs = self._senders[sender]
            for stale in [n for n in txs.by_nonce if n < nonce]:
                self._by_hash.pop(txs.by_nonce.pop(stale).hash, None)
            if not txs.by_nonce:
                del self._senders[sender]

    def clear(self) -> None:
        self._by_hash.clear()
        self._senders.clear()
        self._state = None
