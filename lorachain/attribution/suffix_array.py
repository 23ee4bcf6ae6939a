"""Suffix arrays over token ids (prefix doubling in numpy) and a multi-document index searched by them.

Order: suffixes compare lexicographically by token id, and a suffix that is a proper prefix of another
sorts first (Python's list order). :class:`SuffixIndex` concatenates documents with a separator token
``-(d + 1)`` after document ``d``; patterns may only hold ids ``>= 0``, so no match ever crosses a document
boundary, and since every separator is distinct no two suffixes agree past the end of a document either
(so the doubling rounds are bounded by the longest document, even when documents repeat).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_INT32_MAX = 2**31 - 1


def _index_dtype(n: int) -> type[np.signedinteger]:
    return np.int32 if n <= _INT32_MAX else np.int64


def _as_token_array(tokens: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(tokens)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must hold integers, got dtype {array.dtype}")
    return array


def _group_first_slots(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For keys in sorted order: each slot's group start slot, and a mask of slots starting a new group."""
    starts = np.empty(sorted_keys.size, dtype=bool)
    starts[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=starts[1:])
    first = np.where(starts, np.arange(sorted_keys.size, dtype=np.int64), 0)
    np.maximum.accumulate(first, out=first)
    return first, starts


def _dense_ranks(array: np.ndarray) -> np.ndarray:
    """Order-preserving map of the token ids onto 1..sigma (sigma = number of distinct ids), as int64."""
    low, high = int(array.min()), int(array.max())
    if high - low <= 4 * array.size + (1 << 16):  # small id range: a lookup table, no sort
        shifted = array.astype(np.int64) - low
        present = np.zeros(high - low + 1, dtype=bool)
        present[shifted] = True
        return np.cumsum(present, dtype=np.int64)[shifted]
    _, inverse = np.unique(array, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64) + 1


def suffix_array(tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    """The suffix array of ``tokens`` (any integer ids): start positions of all suffixes in sorted order.

    Prefix doubling: the first round sorts packed h-grams of dense ranks (as many tokens as fit in 62
    bits); each later round sorts only the suffixes still tied, by (rank of k-prefix, rank of the next
    k-prefix), so k doubles until all ranks differ. All suffixes differ, so the result does not depend on
    how the sort orders ties. int32 output when the length fits.
    """
    array = _as_token_array(tokens, "tokens")
    n = array.size
    out_dtype = _index_dtype(n)
    if n == 0:
        return np.zeros(0, dtype=out_dtype)
    dense = _dense_ranks(array)  # 1..sigma in token order; 0 means "past the end"
    bits = int(dense.max()).bit_length()
    gram = max(1, min(n, 62 // bits))
    packed = np.zeros(n, dtype=np.int64)
    for offset in range(gram):
        packed[: n - offset] |= dense[offset:] << (bits * (gram - 1 - offset))
    del dense
    sa = np.argsort(packed)
    first, starts = _group_first_slots(packed[sa])
    del packed
    rank = np.empty(n, dtype=np.int64)
    rank[sa] = first + 1  # rank = 1 + slot where the suffix's group starts
    k = gram
    while True:
        sizes_ok = np.empty(n + 1, dtype=bool)
        sizes_ok[:n] = starts
        sizes_ok[n] = True
        singleton = starts & sizes_ok[1:]  # group starts here and the next slot starts another
        if singleton.all():
            break
        slots = np.flatnonzero(~singleton)
        positions = sa[slots]
        following = positions + k
        second = np.zeros(positions.size, dtype=np.int64)
        inside = following < n
        second[inside] = rank[following[inside]]
        key = rank[positions] * (n + 1) + second
        order = np.argsort(key)
        positions = positions[order]
        key = key[order]
        sa[slots] = positions
        # Tied slots are whole groups, so sorting by (old rank, next rank) keeps them in their own slots.
        new_starts = np.empty(key.size, dtype=bool)
        new_starts[0] = True
        np.not_equal(key[1:], key[:-1], out=new_starts[1:])
        group_slot = np.where(new_starts, slots, 0)
        np.maximum.accumulate(group_slot, out=group_slot)
        rank[positions] = group_slot + 1
        starts[slots] = new_starts
        k *= 2
    return sa.astype(out_dtype, copy=False)


class SuffixIndex:
    """Documents concatenated with a separator after each, their suffix array, and each document's start.

    ``tokens[doc_starts[d] : doc_starts[d] + len(doc d)]`` is document ``d``; the separator ``-(d + 1)``
    follows it.
    """

    def __init__(self, tokens: np.ndarray, sa: np.ndarray, doc_starts: np.ndarray) -> None:
        if tokens.ndim != 1 or sa.shape != tokens.shape:
            raise ValueError("tokens and suffix array must be one-dimensional and of equal length")
        if doc_starts.ndim != 1 or doc_starts.size == 0:
            raise ValueError("an index needs at least one document")
        if tokens.size == 0 or tokens[-1] >= 0:
            raise ValueError("the token array must end with a separator")
        self.tokens = tokens
        self.sa = sa
        self.doc_starts = doc_starts

    @classmethod
    def from_documents(cls, documents: Sequence[Sequence[int] | np.ndarray]) -> SuffixIndex:
        """Build the index of ``documents`` (doc id = position); token ids must be ``>= 0``."""
        if len(documents) == 0:
            raise ValueError("no documents to index")
        arrays = [_as_token_array(doc, f"document {i}") for i, doc in enumerate(documents)]
        for i, doc in enumerate(arrays):
            if doc.size and int(doc.min()) < 0:
                raise ValueError(f"document {i} holds a negative token id; ids must be >= 0")
        lengths = np.array([doc.size for doc in arrays], dtype=np.int64)
        n = int(lengths.sum()) + len(arrays)
        top = max((int(doc.max()) for doc in arrays if doc.size), default=0)
        token_dtype = np.int32 if max(top, len(arrays)) <= _INT32_MAX else np.int64
        tokens = np.empty(n, dtype=token_dtype)
        doc_starts = np.zeros(len(arrays), dtype=_index_dtype(n))
        cursor = 0
        for i, doc in enumerate(arrays):
            doc_starts[i] = cursor
            tokens[cursor : cursor + doc.size] = doc
            tokens[cursor + doc.size] = -(i + 1)
            cursor += doc.size + 1
        return cls(tokens, suffix_array(tokens), doc_starts)

    @property
    def num_documents(self) -> int:
        return int(self.doc_starts.size)

    def _narrow(self, lo: int, hi: int, offset: int, token: int) -> tuple[int, int]:
        """Within SA range [lo, hi), whose suffixes share their first ``offset`` tokens (all real tokens,
        so position + offset is in bounds), the sub-range whose token at ``offset`` equals ``token``."""
        tokens, sa = self.tokens, self.sa
        left, right = lo, hi
        while left < right:
            mid = (left + right) // 2
            if tokens[sa[mid] + offset] < token:
                left = mid + 1
            else:
                right = mid
        start = left
        right = hi
        while left < right:
            mid = (left + right) // 2
            if tokens[sa[mid] + offset] <= token:
                left = mid + 1
            else:
                right = mid
        return start, left

    @staticmethod
    def _check_pattern(pattern: Sequence[int]) -> list[int]:
        ids = [int(t) for t in pattern]
        if not ids:
            raise ValueError("pattern is empty")
        if min(ids) < 0:
            raise ValueError("pattern holds a negative token id; ids must be >= 0")
        return ids

    def find(self, pattern: Sequence[int]) -> tuple[int, int]:
        """SA range [lo, hi) of the suffixes starting with ``pattern`` (lo == hi when it does not occur)."""
        lo, hi = 0, int(self.sa.size)
        for offset, token in enumerate(self._check_pattern(pattern)):
            lo, hi = self._narrow(lo, hi, offset, token)
            if lo == hi:
                return lo, lo
        return lo, hi

    def count(self, pattern: Sequence[int]) -> int:
        """Number of occurrences of ``pattern`` in the corpus (none spans two documents)."""
        lo, hi = self.find(pattern)
        return hi - lo

    def documents_in_range(self, lo: int, hi: int) -> list[int]:
        """Sorted distinct ids of the documents holding the suffixes in SA range [lo, hi)."""
        if lo >= hi:
            return []
        docs = np.searchsorted(self.doc_starts, self.sa[lo:hi], side="right") - 1
        return [int(d) for d in np.unique(docs)]

    def documents_containing(self, pattern: Sequence[int]) -> list[int]:
        """Sorted ids of the documents in which ``pattern`` occurs."""
        return self.documents_in_range(*self.find(pattern))

    def longest_match(self, query: Sequence[int], start: int) -> tuple[int, int, int]:
        """Longest prefix of ``query[start:]`` occurring in one document: ``(length, lo, hi)``, [lo, hi) its
        SA range; ``(0, 0, 0)`` when even ``query[start]`` does not occur."""
        if not 0 <= start < len(query):
            raise ValueError(f"start {start} is outside the query of length {len(query)}")
        lo, hi = 0, int(self.sa.size)
        length = 0
        for offset in range(len(query) - start):
            token = int(query[start + offset])
            if token < 0:
                raise ValueError("query holds a negative token id; ids must be >= 0")
            new_lo, new_hi = self._narrow(lo, hi, offset, token)
            if new_lo == new_hi:
                break
            lo, hi, length = new_lo, new_hi, offset + 1
        if length == 0:
            return 0, 0, 0
        return length, lo, hi
