"""Okapi BM25 (k1 = 1.5, b = 0.75) in fixed-point integers, and byte-span citations validators can check.

Words: the UTF-8 text with ASCII ``A-Z`` lowered to ``a-z``; a word is a maximal run of ASCII ``a-z0-9``;
every other byte (punctuation, whitespace, any non-ASCII character) separates words.

Scores are integers in units of ``1 / ONE``. For a query (its distinct words ``t``), document ``d``:

- ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)) = ln((2N + 2) / (2 df + 1))``, computed as
  ``(log2_fixed(2N + 2) - log2_fixed(2 df + 1)) * LN2_Q64 >> 128`` (``log2_fixed``: bit length plus 64
  fraction bits by repeated squaring; ``LN2_Q64 = round(ln 2 * ONE * 2**64)`` from ``decimal``).
- ``sat(t, d) = ONE * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`` with ``avgdl = T / N``, cleared
  of fractions: ``ONE * 20 tf T // (8 tf T + 3 T + 9 dl N)`` (T = words in the corpus, dl = words in d).
- ``score(d) = sum over t of idf(t) * sat(t, d) // ONE``; ranking by (-score, doc id).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal

import numpy as np
from eth_utils import keccak

ONE = 10**9
K1 = (3, 2)  # k1 = 3/2
B = (3, 4)  # b = 3/4
MAX_QUERY_BYTES = 1 << 16
LOG2_FRAC_BITS = 64

_LN2 = Decimal(2).ln(Context(prec=80))
LN2_Q64 = int((_LN2 * ONE * (1 << LOG2_FRAC_BITS)).to_integral_value(rounding=ROUND_HALF_EVEN))

_WORD = re.compile(rb"[a-z0-9]+")
_SENTENCE = re.compile(rb"[^.!?\n]+[.!?]*")
_ASCII_SPACE = b" \t\n\r\x0b\x0c"


def utf8_bytes(text: str | bytes, what: str = "text") -> bytes:
    """``text`` as UTF-8 bytes; ``ValueError`` for bytes that are not valid UTF-8 (or a str that cannot be)."""
    if isinstance(text, str):
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"{what} cannot be encoded as UTF-8: {exc.reason}") from None
    if not isinstance(text, bytes | bytearray | memoryview):
        raise ValueError(f"{what} must be str or bytes, got {type(text).__name__}")
    data = bytes(text)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    return data


def words(text: str | bytes) -> list[str]:
    """The words of ``text`` by the module's rule, in order."""
    return [w.decode("ascii") for w in _WORD.findall(utf8_bytes(text).lower())]


def log2_fixed(x: int) -> int:
    """``log2(x) * 2**64`` for an integer ``x >= 1`` (integer part from the bit length, fraction bits by
    repeated squaring of the mantissa, truncated)."""
    if x < 1:
        raise ValueError(f"log2 of {x} is undefined")
    frac = LOG2_FRAC_BITS
    exponent = x.bit_length() - 1
    mantissa = x >> (exponent - frac) if exponent >= frac else x << (frac - exponent)  # in [2**64, 2**65)
    result = exponent << frac
    two = 2 << frac
    for bit in range(frac - 1, -1, -1):
        mantissa = (mantissa * mantissa) >> frac
        if mantissa >= two:
            mantissa >>= 1
            result |= 1 << bit
    return result


def idf_fixed(num_docs: int, doc_freq: int) -> int:
    """BM25 idf ``ln((2N + 2) / (2 df + 1))`` in units of ``1 / ONE`` (positive for 1 <= df <= N)."""
    if not 1 <= doc_freq <= num_docs:
        raise ValueError(f"document frequency {doc_freq} outside 1..{num_docs}")
    diff = log2_fixed(2 * num_docs + 2) - log2_fixed(2 * doc_freq + 1)
    return (diff * LN2_Q64) >> (2 * LOG2_FRAC_BITS)


def saturation_fixed(tf: int, doc_len: int, num_docs: int, total_len: int) -> int:
    """``tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))`` in units of ``1 / ONE``."""
    (k1n, k1d), (bn, bd) = K1, B
    numerator = tf * (k1n + k1d) * bd * total_len
    denominator = tf * k1d * bd * total_len + k1n * (bd - bn) * total_len + k1n * bn * doc_len * num_docs
    return ONE * numerator // denominator


def sentence_spans(document: bytes) -> list[tuple[int, int]]:
    """Byte spans ``[start, end)`` of the sentences of ``document``: maximal runs of bytes other than
    ``.!?`` and newline, with their trailing ``.!?``, trimmed of ASCII whitespace; empty ones dropped."""
    spans = []
    for match in _SENTENCE.finditer(document):
        start, end = match.span()
        chunk = document[start:end]
        start += len(chunk) - len(chunk.lstrip(_ASCII_SPACE))
        end -= len(chunk) - len(chunk.rstrip(_ASCII_SPACE))
        if start < end:
            spans.append((start, end))
    return spans


class Bm25Index:
    """BM25 over a fixed corpus snapshot; doc id = position in ``documents``."""

    def __init__(self, documents: Sequence[bytes]) -> None:
        if len(documents) == 0:
            raise ValueError("no documents to index")
        self.documents = tuple(utf8_bytes(doc, f"document {i}") for i, doc in enumerate(documents))
        counts = [Counter(words(doc)) for doc in self.documents]
        self.num_docs = len(counts)
        self.doc_lengths = [sum(c.values()) for c in counts]
        self.total_length = sum(self.doc_lengths)
        postings: dict[str, list[tuple[int, int]]] = {}
        for doc_id, counter in enumerate(counts):
            for term, tf in counter.items():
                postings.setdefault(term, []).append((doc_id, tf))
        self.idf: dict[str, int] = {}
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        idf_by_df: dict[int, int] = {}
        sat_cache: dict[tuple[int, int], int] = {}
        for term, entries in postings.items():
            df = len(entries)
            if df not in idf_by_df:
                idf_by_df[df] = idf_fixed(self.num_docs, df)
            idf = self.idf[term] = idf_by_df[df]
            weights = []
            for doc_id, tf in entries:
                key = (tf, self.doc_lengths[doc_id])
                if key not in sat_cache:
                    sat_cache[key] = saturation_fixed(tf, key[1], self.num_docs, self.total_length)
                weights.append(idf * sat_cache[key] // ONE)
            ids = np.fromiter((doc_id for doc_id, _ in entries), dtype=np.int64, count=df)
            self._postings[term] = (ids, np.array(weights, dtype=np.int64))

    def query_terms(self, query: str | bytes) -> list[str]:
        """The distinct words of ``query`` in first-seen order; ``ValueError`` if oversize, bad or wordless."""
        data = utf8_bytes(query, "query")
        if len(data) > MAX_QUERY_BYTES:
            raise ValueError(f"query is {len(data)} bytes, over the limit of {MAX_QUERY_BYTES}")
        terms = list(dict.fromkeys(words(data)))
        if not terms:
            raise ValueError("query has no words")
        return terms

    def _score_array(self, query: str | bytes) -> np.ndarray:
        scores = np.zeros(self.num_docs, dtype=np.int64)
        for term in self.query_terms(query):
            posting = self._postings.get(term)
            if posting is not None:
                scores[posting[0]] += posting[1]
        return scores

    @staticmethod
    def _ranked(scores: np.ndarray, k: int | None) -> list[tuple[int, int]]:
        ids = np.flatnonzero(scores > 0)
        values = scores[ids]
        order = np.lexsort((ids, -values))
        if k is not None:
            order = order[:k]
        return [(int(ids[i]), int(values[i])) for i in order]

    def scores(self, query: str | bytes) -> list[tuple[int, int]]:
        """``(doc id, score)`` for every document with a positive score, by doc id."""
        scores = self._score_array(query)
        return [(int(i), int(scores[i])) for i in np.flatnonzero(scores > 0)]

    def top_k(self, query: str | bytes, k: int) -> list[tuple[int, int]]:
        """The ``k`` best ``(doc id, score)`` with a positive score, by (-score, doc id)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return self._ranked(self._score_array(query), k)

    def best_sentence(self, doc_id: int, query: str | bytes) -> tuple[int, int] | None:
        """The sentence of document ``doc_id`` whose distinct query words have the largest idf sum (the
        earliest on ties), or ``None`` when no sentence holds a query word."""
        terms = set(self.query_terms(query))
        document = self.documents[doc_id]
        best, best_score = None, 0
        for start, end in sentence_spans(document):
            present = terms.intersection(words(document[start:end]))
            score = sum(self.idf.get(term, 0) for term in present)
            if score > best_score:
                best, best_score = (start, end), score
        return best


@dataclass(frozen=True)
class Citation:
    """Bytes ``[start, end)`` of the document whose keccak256 is ``doc_hash`` (doc ``doc_id`` of the index)."""

    doc_id: int
    doc_hash: bytes
    start: int
    end: int


def cite(index: Bm25Index, query: str | bytes, k: int) -> list[Citation]:
    """One citation per top-``k`` document: its best-matching sentence for ``query``, in rank order."""
    citations = []
    for doc_id, _ in index.top_k(query, k):
        span = index.best_sentence(doc_id, query)
        if span is not None:
            citations.append(Citation(doc_id, keccak(index.documents[doc_id]), span[0], span[1]))
    return citations


def verify_citation(document: bytes, citation: Citation) -> bool:
    """Whether ``citation`` points into ``document``: the hash matches, ``0 <= start < end <= len``, and the
    span starts and ends on UTF-8 character boundaries (the cited bytes decode)."""
    if not isinstance(document, bytes) or not isinstance(citation.doc_hash, bytes):
        return False
    start, end = citation.start, citation.end
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        return False
    if not 0 <= start < end <= len(document) or keccak(document) != citation.doc_hash:
        return False
    try:
        document[start:end].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
