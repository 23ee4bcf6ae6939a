"""py-evm's account database with tries updated in batches and a flat view of the head's accounts.

py-evm applies every storage write and every account change to its ``HexaryTrie`` one key at a time,
re-hashing the path from the root each time, and reads every account of a new block through the trie
again. :class:`BatchedAccountDB` keeps py-evm's journals and caches as they are and changes only where
the tries are read and written:

- storage writes wait in :class:`BatchedStorageLookup` until a root is asked for, account changes are
  applied when the state root is made, and each batch goes through :mod:`trie_update`, which hashes
  every changed node once (same roots, same stored nodes);
- :data:`FLAT_ACCOUNTS` maps address -> encoded account at one state root (the head's, as geth's
  snapshot does): filled as accounts are read, carried to the next root by each block's own account
  diff. A state root fixes every account, so any account DB at that root may read from it;
- decoded accounts are shared by their encoding (rlp ``Serializable`` objects are immutable), and contract
  code by its hash (:data:`CODE_BY_HASH`: every transaction and call reads its callee's code);
- no block witness is gathered: py-evm lists, on every ``persist``, each trie node, account and slot the block
  read (for stateless clients); this node never reads that list.
"""

from __future__ import annotations

from functools import lru_cache

import rlp
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth.db.account import AccountDB
from eth.db.backends.base import BaseDB
from eth.db.cache import CacheDB
from eth.db.journal import JournalDB
from eth.db.storage import AccountStorageDB, StorageLookup
from eth.db.witness import MetaWitness
from eth.rlp.accounts import Account
from eth.validation import validate_canonical_address, validate_uint64, validate_uint256
from eth.vm.interrupt import MissingStorageTrieNode
from eth_typing import Address, Hash32
from eth_utils import ValidationError, int_to_big_endian
from trie import HexaryTrie

from lorachain.hashing import keccak
from lorachain.node.trie_nodes import encode_node, encode_uint, length_prefix, rlp_int, trie_get
from lorachain.node.trie_update import node_loader, updated_root

_Pending = dict[bytes, bytes | None]  # hashed slot -> rlp value, or None: deleted


class BatchedStorageLookup(StorageLookup):
    """One account's storage trie: reads at the starting root, writes held until a root is needed."""

    def _initialize_to_root_hash(self, root_hash: Hash32) -> None:
        self._starting_root_hash = root_hash
        self._pending: _Pending | None = None
        self._computed: tuple[Hash32, dict[bytes, bytes]] | None = None
        self._historical_write_tries: list[tuple[_Pending | None, Hash32]] = []  # type: ignore[assignment]

    def __getitem__(self, key: bytes) -> bytes:
        hashed_slot = self._decode_key(key)
        if self._pending is not None and hashed_slot in self._pending:
            return self._pending[hashed_slot] or b""
        root = self._starting_root_hash

        def read(node_hash: bytes) -> bytes:
            try:
                return self._db[node_hash]  # type: ignore[index]
            except KeyError:  # as py-evm's StorageLookup reports it
                raise MissingStorageTrieNode(Hash32(node_hash), root, hashed_slot, None, self._address) from None

        return trie_get(root, hashed_slot, read)  # HexaryTrie(...)[hashed_slot], on the cached decoded nodes

    def _exists(self, key: bytes) -> bool:
        return self[key] != b""

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._write(self._decode_key(key), value)

    def __delitem__(self, key: bytes) -> None:
        self._write(self._decode_key(key), None)

    def _write(self, hashed_slot: bytes, value: bytes | None) -> None:
        if self._pending is None:
            self._pending = {}
        self._pending[hashed_slot] = value
        self._computed = None

    def _compute(self) -> tuple[Hash32, dict[bytes, bytes]]:
        if self._computed is None:
            assert self._pending is not None
            root, nodes = updated_root(node_loader(self._db), self._starting_root_hash, self._pending.items())
            self._computed = (Hash32(root), nodes)
        return self._computed

    @property
    def has_changed_root(self) -> bool:
        return self._pending is not None

    def get_changed_root(self) -> Hash32:
        if self._pending is None:
            raise ValidationError("Asked for changed root when no writes have been made")
        return self._compute()[0]

    def commit_to(self, db: object) -> None:
        if self._pending is None:
            raise ValidationError("It is invalid to commit an account's storage if it has no pending changes")
        root, nodes = self._compute()
        for node_hash, encoded in nodes.items():
            db[node_hash] = encoded  # type: ignore[index]
        self._initialize_to_root_hash(root)

    def new_trie(self) -> int:
        """Switch to an empty trie (the account's storage was wiped), keeping the old one for a revert."""
        self._historical_write_tries.append((self._pending, self._starting_root_hash))
        self._starting_root_hash = BLANK_ROOT_HASH
        self._pending = None
        self._computed = None
        return len(self._historical_write_tries)

    def rollback_trie(self, trie_index: int) -> None:
        if trie_index >= len(self._historical_write_tries):
            raise ValidationError(
                f"Trying to roll back a delete to index {trie_index}, but there are "
                f"only {len(self._historical_write_tries)} indices available."
            )
        self._pending, self._starting_root_hash = self._historical_write_tries[trie_index]
        self._computed = None
        del self._historical_write_tries[trie_index:]


class BatchedAccountStorageDB(AccountStorageDB):
    """py-evm's journaled account storage over a :class:`BatchedStorageLookup`."""

    def __init__(self, db: object, storage_root: Hash32, address: Address) -> None:
        super().__init__(db, storage_root, address)  # type: ignore[arg-type]
        self._storage_lookup = BatchedStorageLookup(db, storage_root, address)  # type: ignore[arg-type]
        self._storage_cache = CacheDB(self._storage_lookup)
        self._locked_changes = JournalDB(self._storage_cache)
        self._journal_storage = JournalDB(self._locked_changes)

    # py-evm's get/set, with a slot value's rlp (a minimal big-endian integer) read and written directly
    # instead of through pyrlp's sedes inference (SLOAD and SSTORE read and write a value several times each).
    def get(self, slot: int, from_journal: bool = True) -> int:
        self._accessed_slots.add(slot)
        lookup_db = self._journal_storage if from_journal else self._locked_changes
        try:
            encoded = lookup_db[int_to_big_endian(slot)]  # py-evm's key for the slot
        except MissingStorageTrieNode:
            raise
        except KeyError:
            return 0
        return _decode_slot_value(encoded) if encoded else 0

    def set(self, slot: int, value: int) -> None:
        if not value:
            super().set(slot, value)  # a deletion: py-evm's own bookkeeping
            return
        self._journal_storage[int_to_big_endian(slot)] = encode_node(rlp_int(value))


def _decode_slot_value(encoded: bytes) -> int:
    """``rlp.decode(encoded, sedes=big_endian_int)``: canonical encodings directly, anything else through pyrlp
    (which raises for a non-canonical one, as py-evm would)."""
    first = encoded[0]
    if len(encoded) == 1 and first < 0x80:
        return first
    if 0x81 <= first <= 0xA0 and len(encoded) == first - 0x7F and encoded[1] and (first > 0x81 or encoded[1] >= 0x80):
        return int.from_bytes(encoded[1:], "big")
    return rlp.decode(encoded, sedes=rlp.sedes.big_endian_int)


class FlatAccounts:
    """Encoded accounts (``b""``: none) at one state root, filled by reads, advanced by block diffs."""

    def __init__(self, limit: int = 1_000_000) -> None:
        self.limit = limit
        self.root: bytes | None = None
        self.entries: dict[bytes, bytes] = {}

    def get(self, root: bytes, address: bytes) -> bytes | None:
        return self.entries.get(address) if root == self.root else None

    def remember(self, root: bytes, address: bytes, encoded: bytes) -> None:
        if root == self.root and len(self.entries) < self.limit:
            self.entries[address] = encoded

    def advance(self, old_root: bytes, new_root: bytes, changes: dict[bytes, bytes]) -> None:
        """``changes`` (every account that differs) took the state from ``old_root`` to ``new_root``."""
        if old_root == self.root:
            self.entries.update(changes)
            self.root = new_root

    def reset(self, root: bytes) -> None:
        """Follow ``root`` from now on (the head moved elsewhere than by :meth:`advance`)."""
        if root != self.root:
            self.root = root
            self.entries = {}


FLAT_ACCOUNTS = FlatAccounts()


EMPTY_ACCOUNT = Account()  # what a missing account reads as (immutable, so one object serves)


class CodeByHash:
    """Contract code by its keccak hash, up to ``limit_bytes`` of it (then emptied: hot contracts are few).
    A hash fixes its code, so an entry is never stale, whichever state or block put it here."""

    def __init__(self, limit_bytes: int = 32 << 20) -> None:
        self.limit_bytes = limit_bytes
        self.entries: dict[bytes, bytes] = {}
        self.size = 0

    def get(self, code_hash: bytes) -> bytes | None:
        return self.entries.get(code_hash)

    def remember(self, code_hash: bytes, code: bytes) -> None:
        if self.size + len(code) > self.limit_bytes:
            self.entries.clear()
            self.size = 0
        self.entries[code_hash] = code
        self.size += len(code)


CODE_BY_HASH = CodeByHash()


@lru_cache(maxsize=65_536)
def _decode_account(encoded: bytes) -> Account:
    """``rlp.decode(encoded, sedes=Account)``: a canonical encoding read directly, anything else by pyrlp (which
    raises for what is not an account)."""
    fields = _account_fields(encoded)
    return _account(*fields) if fields is not None else rlp.decode(encoded, sedes=Account)


def _account_fields(encoded: bytes) -> tuple[int, int, bytes, bytes] | None:
    """(nonce, balance, storage root, code hash) of a canonical account encoding, else None."""
    size = len(encoded)  # an account's payload (two hashes and two integers) is 66-132 bytes: a one-byte long list
    if size < 2 or encoded[0] != 0xF8 or encoded[1] != size - 2:
        return None
    at = 2
    integers = []
    for _ in range(2):
        if at >= size:
            return None
        prefix = encoded[at]
        if prefix < 0x80:
            integers.append(prefix)
            at += 1
        elif prefix <= 0xA0:  # at most 32 bytes, minimal: no leading zero, no single byte below 0x80
            length = prefix - 0x80
            raw = encoded[at + 1 : at + 1 + length]
            if len(raw) != length or (length and raw[0] == 0) or (length == 1 and raw[0] < 0x80):
                return None
            integers.append(int.from_bytes(raw, "big"))
            at += 1 + length
        else:
            return None
    if size - at != 66 or encoded[at] != 0xA0 or encoded[at + 33] != 0xA0:
        return None
    return integers[0], integers[1], encoded[at + 1 : at + 33], encoded[at + 34 :]


def _account(nonce: int, balance: int, storage_root: bytes, code_hash: bytes) -> Account:
    """``Account(nonce, balance, storage_root, code_hash)`` without pyrlp's constructor (argument merging and a
    ``setattr`` per field through ``make_immutable``, a no-op for ints and bytes): the same four attributes."""
    account = object.__new__(Account)
    account._nonce, account._balance, account._storage_root, account._code_hash = (  # type: ignore[attr-defined]
        nonce, balance, storage_root, code_hash)  # fmt: skip
    return account


def _encode_account(account: Account) -> bytes:
    """``rlp.encode(account, sedes=Account)``, written out: two integers, then two 32-byte hashes."""
    payload = (
        encode_uint(account.nonce)
        + encode_uint(account.balance)
        + b"\xa0" + account.storage_root
        + b"\xa0" + account.code_hash
    )  # fmt: skip
    return length_prefix(len(payload), 0xC0) + payload



class _FlatFirst(BaseDB):
    """Account reads of one account DB: the flat view at its current root first, then the trie."""

    def __init__(self, accounts: BatchedAccountDB) -> None:
        self._accounts = accounts

    def __getitem__(self, address: bytes) -> bytes:
        root = self._accounts.state_root
        encoded = FLAT_ACCOUNTS.get(root, address)
        if encoded is None:
            encoded = trie_get(root, keccak(address), self._accounts._batchtrie.__getitem__)
            FLAT_ACCOUNTS.remember(root, address, encoded)
        if not encoded:
            raise KeyError(address)
        return encoded

    def __setitem__(self, address: bytes, value: bytes) -> None:
        self._accounts._trie_logger[address] = value

    def __delitem__(self, address: bytes) -> None:
        del self._accounts._trie_logger[address]


class BatchedAccountDB(AccountDB):
    """py-evm's ``AccountDB``, its tries updated in batches, its account reads through the flat view."""

    def __init__(self, db: object, state_root: Hash32 = BLANK_ROOT_HASH) -> None:
        super().__init__(db, state_root)  # type: ignore[arg-type]
        self._trie_cache = CacheDB(_FlatFirst(self))
        self._journaltrie = JournalDB(self._trie_cache)

    # The root is the HexaryTrie's under py-evm's HashTrie wrapper, read without the wrapper's __getattr__;
    # setting it stays py-evm's (which drops the trie cache when the root changes).
    state_root = property(lambda self: self._trie._db.root_hash, AccountDB.state_root.fset)  # type: ignore[assignment]

    def _get_meta_witness(self) -> MetaWitness:
        return MetaWitness(frozenset(), {})  # see the module's docstring

    def _get_account(self, address: Address, from_journal: bool = True) -> Account:
        if from_journal and address in self._account_cache:
            return self._account_cache[address]
        encoded = self._get_encoded_account(address, from_journal)
        account = _decode_account(encoded) if encoded else EMPTY_ACCOUNT
        if from_journal:
            self._account_cache[address] = account
        return account

    def _set_account(self, address: Address, account: Account) -> None:
        self._account_cache[address] = account
        self._journaltrie[address] = _encode_account(account)

    # A new account object from all four fields is several times cheaper than pyrlp's ``account.copy(...)``.
    def set_balance(self, address: Address, balance: int) -> None:
        validate_canonical_address(address, title="Storage Address")
        validate_uint256(balance, title="Account Balance")
        account = self._get_account(address)
        self._set_account(address, _account(account.nonce, balance, account.storage_root, account.code_hash))

    def delta_balance(self, address: Address, delta: int) -> None:
        """py-evm's ``get_balance`` then ``set_balance`` (the same checks), reading the account once."""
        validate_canonical_address(address, title="Storage Address")
        account = self._get_account(address)
        balance = account.balance + delta
        validate_uint256(balance, title="Account Balance")
        self._set_account(address, _account(account.nonce, balance, account.storage_root, account.code_hash))

    def set_nonce(self, address: Address, nonce: int) -> None:
        validate_canonical_address(address, title="Storage Address")
        validate_uint64(nonce, title="Nonce")
        account = self._get_account(address)
        self._set_account(address, _account(nonce, account.balance, account.storage_root, account.code_hash))

    def increment_nonce(self, address: Address) -> None:
        """py-evm's ``get_nonce`` then ``set_nonce`` (the same checks), reading the account once."""
        validate_canonical_address(address, title="Storage Address")
        account = self._get_account(address)
        nonce = account.nonce + 1
        validate_uint64(nonce, title="Nonce")
        self._set_account(address, _account(nonce, account.balance, account.storage_root, account.code_hash))

    def get_code(self, address: Address) -> bytes:
        """py-evm's ``get_code`` (the same checks and errors), the code read by hash from :data:`CODE_BY_HASH`
        when it is there; the block witness's list of read bytecodes is not kept (see the module's docstring)."""
        validate_canonical_address(address, title="Storage Address")
        code_hash = self._get_account(address).code_hash
        if code_hash == EMPTY_SHA3:
            return b""
        code = CODE_BY_HASH.get(code_hash)
        if code is None:
            code = super().get_code(address)
            CODE_BY_HASH.remember(code_hash, code)
        return code

    def _get_address_store(self, address: Address) -> AccountStorageDB:
        store = self._account_stores.get(address)
        if store is None:
            store = BatchedAccountStorageDB(self._raw_store_db, self._get_storage_root(address), address)
            self._account_stores[address] = store
        return store  # type: ignore[return-value]

    def make_state_root(self) -> Hash32:
        for _address, store in self._dirty_account_stores():
            store.make_storage_root()
        for address, storage_root in self._get_changed_roots():
            if self.account_exists(address) or storage_root != BLANK_ROOT_HASH:
                self._set_storage_root(address, storage_root)
        self._journaldb.persist()

        diff = self._journaltrie.diff()
        deleted, pending = diff.deleted_keys(), diff.pending_items()
        if deleted or pending:
            hexary: HexaryTrie = self._trie._db  # HashTrie (keccak of the address) over the HexaryTrie
            items_by_address = [(address, None) for address in deleted] + list(pending)
            items = [(keccak(address), value) for address, value in items_by_address]
            old_root = hexary.root_hash
            root, nodes = updated_root(node_loader(self._batchtrie), old_root, items)
            for node_hash, encoded in nodes.items():
                self._batchtrie[node_hash] = encoded
            hexary.root_hash = root
            FLAT_ACCOUNTS.advance(old_root, root, {address: value or b"" for address, value in items_by_address})

        self._journaltrie.reset()
        self._trie_cache.reset_cache()
        return self.state_root
