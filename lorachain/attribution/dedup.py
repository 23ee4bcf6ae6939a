"""Duplicate and near-duplicate detection for datanet curation.

Near-duplicates are measured by word shingles: the ``n`` consecutive words (the word rule of
:func:`lorachain.attribution.bm25.words`) at each position, each hashed to 64 bits (first 8 bytes of
blake2b-64 of the words joined by one space, big-endian). A text with fewer than ``n`` words has one
shingle, all its words; a text with no words has none. Overlap is the Jaccard index of two shingle sets in
parts per million, floored: ``|A & B| * 1_000_000 // |A | B|`` (0 when both are empty).
"""

from __future__ import annotations

import hashlib

from eth_utils import keccak

from lorachain.attribution.bm25 import utf8_bytes, words

PPM = 1_000_000
DEFAULT_MAX_BYTES = 1 << 20


def content_hash(data: bytes) -> bytes:
    """keccak256 of the raw bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"data must be bytes, got {type(data).__name__}")
    return keccak(bytes(data))


def validate_contribution(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The text of a contribution, or ``ValueError`` when it is empty, over ``max_bytes``, not UTF-8, or
    only whitespace."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValueError(f"contribution must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("contribution is empty")
    if len(data) > max_bytes:
        raise ValueError(f"contribution is {len(data)} bytes, over the limit of {max_bytes}")
    text = utf8_bytes(data, "contribution").decode("utf-8")
    if not text.strip():
        raise ValueError("contribution is only whitespace")
    return text


def ngrams(text: str | bytes, n: int = 5) -> list[tuple[str, ...]]:
    """The word shingles of ``text`` in order (duplicates kept), per the module's rule."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tokens = words(text)
    if not tokens:
        return []
    if len(tokens) < n:
        return [tuple(tokens)]
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def shingle_hash(gram: tuple[str, ...]) -> int:
    """64-bit hash of a shingle (blake2b, 8-byte digest, big-endian)."""
    return int.from_bytes(hashlib.blake2b(" ".join(gram).encode("ascii"), digest_size=8).digest(), "big")


def shingle_set(text: str | bytes, n: int = 5) -> frozenset[int]:
    """The set of shingle hashes of ``text``."""
    return frozenset(shingle_hash(gram) for gram in ngrams(text, n))


def jaccard_ppm(a: frozenset[int] | set[int], b: frozenset[int] | set[int]) -> int:
    """Jaccard index of two sets in parts per million (floored; 0 when both are empty)."""
    union = len(a | b)
    return len(a & b) * PPM // union if union else 0


def overlap_ppm(a: str | bytes, b: str | bytes, n: int = 5) -> int:
    """Shingle overlap of two texts in parts per million."""
    return jaccard_ppm(shingle_set(a, n), shingle_set(b, n))


class NearDuplicateIndex:
    """Exact (content hash) and near (shingle Jaccard) duplicate lookup over added documents."""

    def __init__(self, n: int = 5) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = n
        self._by_hash: dict[bytes, int] = {}
        self._shingles: dict[int, frozenset[int]] = {}
        self._postings: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self._shingles)

    def add(self, doc_id: int, text: str | bytes) -> None:
        """Index ``text`` as ``doc_id`` (a new non-negative integer)."""
        if not isinstance(doc_id, int) or isinstance(doc_id, bool) or doc_id < 0:
            raise ValueError(f"doc id must be a non-negative integer, got {doc_id!r}")
        if doc_id in self._shingles:
            raise ValueError(f"doc id {doc_id} is already indexed")
        data = utf8_bytes(text, f"document {doc_id}")
        digest = content_hash(data)
        if digest not in self._by_hash or doc_id < self._by_hash[digest]:
            self._by_hash[digest] = doc_id
        shingles = shingle_set(data, self.n)
        self._shingles[doc_id] = shingles
        for shingle in shingles:
            self._postings.setdefault(shingle, []).append(doc_id)

    def exact(self, digest: bytes) -> int | None:
        """The smallest doc id whose bytes hash to ``digest`` (keccak256), or ``None``."""
        return self._by_hash.get(digest)

    def near(self, text: str | bytes, threshold_ppm: int = 500_000) -> list[tuple[int, int]]:
        """``(doc id, overlap ppm)`` of indexed documents with overlap >= ``threshold_ppm``, by
        (-overlap, doc id)."""
        if not 1 <= threshold_ppm <= PPM:
            raise ValueError(f"threshold_ppm must be in 1..{PPM}, got {threshold_ppm}")
        query = shingle_set(text, self.n)
        shared: dict[int, int] = {}
        for shingle in query:
            for doc_id in self._postings.get(shingle, ()):
                shared[doc_id] = shared.get(doc_id, 0) + 1
        hits = []
        for doc_id, common in shared.items():
            overlap = common * PPM // (len(query) + len(self._shingles[doc_id]) - common)
            if overlap >= threshold_ppm:
                hits.append((doc_id, overlap))
        hits.sort(key=lambda hit: (-hit[1], hit[0]))
        return hits
