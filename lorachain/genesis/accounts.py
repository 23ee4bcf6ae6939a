"""The devnet's well-known accounts: the ten keys of the Hardhat/Anvil test mnemonic."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from eth_account import Account

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ACCOUNT_COUNT = 10
DEV_BALANCE_WEI = 10_000 * 10**18


@dataclass(frozen=True)
class DevAccount:
    address: str  # checksummed
    private_key: bytes


@cache
def dev_accounts(mnemonic: str = DEV_MNEMONIC, count: int = DEV_ACCOUNT_COUNT) -> tuple[DevAccount, ...]:
    """Derive ``count`` accounts on the BIP-44 path m/44'/60'/0'/0/i, as Hardhat and Anvil do."""
    Account.enable_unaudited_hdwallet_features()
    accounts = []
    for index in range(count):
        acct = Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
        accounts.append(DevAccount(address=acct.address, private_key=bytes(acct.key)))
    return tuple(accounts)
