"""py-evm's account database with tries updated in batches (same roots, same stored nodes).

py-evm applies every storage write and every account change to its ``HexaryTrie`` one key at a time,
re-hashing the path from the root each time. :class:`BatchedAccountDB` keeps py-evm's journals and
caches as they are and changes only where the tries are written: storage writes wait in
:class:`BatchedStorageLookup` until a root is asked for, account changes are applied when the state
root is made, and each batch goes through :mod:`trie_update`, which hashes every changed node once.
"""

from __future__ import annotations

from eth.constants import BLANK_ROOT_HASH
from eth.db.account import AccountDB
from eth.db.cache import CacheDB
from eth.db.journal import JournalDB
from eth.db.storage import AccountStorageDB, StorageLookup
from eth_typing import Address, Hash32
from eth_utils import ValidationError, keccak
from trie import HexaryTrie

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
        return HexaryTrie(self._db, root_hash=self._starting_root_hash)[hashed_slot]

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


class BatchedAccountDB(AccountDB):
    """py-evm's ``AccountDB``, its account and storage tries updated in batches."""

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
            items = [(keccak(address), None) for address in deleted]
            items += [(keccak(address), value) for address, value in pending]
            root, nodes = updated_root(node_loader(self._batchtrie), hexary.root_hash, items)
            for node_hash, encoded in nodes.items():
                self._batchtrie[node_hash] = encoded
            hexary.root_hash = root

        self._journaltrie.reset()
        self._trie_cache.reset_cache()
        return self.state_root
