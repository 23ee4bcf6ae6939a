"""The local DA server's persistent store: blobs by hash, keccak-mode payloads by digest, on LMDB.

Every put is one durable LMDB transaction (fsync on commit), so a payload whose commitment was returned
survives ``kill -9``. Values are stored as given; the server checks them against their keys on every read.
"""

from __future__ import annotations

import os
from pathlib import Path

import lmdb

_BLOB = b"blob:"
_KECCAK = b"keccak:"


class DAStore:
    def __init__(self, path: str | os.PathLike[str], map_size: int = 1 << 40) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(self.path), map_size=map_size, max_dbs=2, sync=True, metasync=True)
        self._db = self.env.open_db(b"da")

    def _put(self, key: bytes, value: bytes) -> bool:
        """Store ``value`` under ``key`` unless present; True if it was new."""
        with self.env.begin(db=self._db, write=True) as txn:
            return bool(txn.put(key, value, overwrite=False))

    def _get(self, key: bytes) -> bytes | None:
        with self.env.begin(db=self._db, buffers=False) as txn:
            return txn.get(key)

    def put_blob(self, blob_hash: bytes, blob: bytes) -> bool:
        return self._put(_BLOB + blob_hash, blob)

    def get_blob(self, blob_hash: bytes) -> bytes | None:
        return self._get(_BLOB + blob_hash)

    def put_keccak(self, digest: bytes, payload: bytes) -> bool:
        return self._put(_KECCAK + digest, payload)

    def get_keccak(self, digest: bytes) -> bytes | None:
        return self._get(_KECCAK + digest)

    def overwrite_blob(self, blob_hash: bytes, blob: bytes) -> None:
        """Replace a stored blob (tests use it to corrupt the store and watch reads refuse it)."""
        with self.env.begin(db=self._db, write=True) as txn:
            txn.put(_BLOB + blob_hash, blob)

    def counts(self) -> dict[str, int]:
        counts = {"blobs": 0, "keccak": 0}
        with self.env.begin(db=self._db) as txn:
            for key in txn.cursor().iternext(keys=True, values=False):
                counts["blobs" if key.startswith(_BLOB) else "keccak"] += 1
        return counts

    def close(self) -> None:
        self.env.close()
