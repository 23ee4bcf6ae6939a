"""Impersonated senders (anvil_impersonateAccount): transactions from accounts whose key we lack.

Such a transaction is signed with a throw-away key derived from the impersonated address, and wrapped
so that py-evm executes it as coming from that address. The node records the real sender per
transaction hash in the same commit as the block, and re-wraps the transaction when it loads the block.
Blocks holding such transactions only make sense on the devnet that produced them.
"""

from __future__ import annotations

from typing import Any

from eth.abc import SignedTransactionAPI
from eth_account import Account

from lorachain.hashing import keccak

RECORD_PREFIX = b"lorachain:impersonated:"


def record_key(tx_hash: bytes) -> bytes:
    return RECORD_PREFIX + tx_hash


class ImpersonatedTransaction:
    """A signed transaction that executes as ``sender`` (everything else is the signed one's)."""

    def __init__(self, signed: SignedTransactionAPI, sender: bytes) -> None:
        self._signed = signed
        self._sender = sender

    @property
    def sender(self) -> bytes:
        return self._sender

    def get_sender(self) -> bytes:
        return self._sender

    @property
    def signed(self) -> SignedTransactionAPI:
        return self._signed

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_signed", "_sender"):  # copy/pickle probe before __init__
            raise AttributeError(name)
        return getattr(self._signed, name)


def sign_as(vm_class: Any, sender: bytes, fields: dict[str, Any]) -> ImpersonatedTransaction:
    """Sign ``fields`` with the stand-in key of ``sender`` and wrap the result as ``sender``'s."""
    stand_in_key = keccak(b"lorachain-impersonation" + sender)
    raw = bytes(Account.sign_transaction(fields, stand_in_key).raw_transaction)
    signed = vm_class.get_transaction_builder().decode(raw)
    return ImpersonatedTransaction(signed, sender)
