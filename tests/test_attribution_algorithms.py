"""Proof of Attribution algorithms: fee splits, suffix arrays, span attribution, BM25 + citations, dedup."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest
from eth_utils import keccak

from lorachain.attribution.bm25 import (
    ONE,
    Bm25Index,
    Citation,
    cite,
    idf_fixed,
    log2_fixed,
    saturation_fixed,
    sentence_spans,
    verify_citation,
    words,
)
from lorachain.attribution.dedup import (
    NearDuplicateIndex,
    content_hash,
    ngrams,
    overlap_ppm,
    validate_contribution,
)
from lorachain.attribution.spans import SCALE, build_index, find_spans, span_attribution
from lorachain.attribution.splits import split_exact
from lorachain.attribution.suffix_array import SuffixIndex, suffix_array

# ---------------------------------------------------------------------------------------------- splits


def test_split_hand_worked_largest_remainder_and_tie_break():
    # total 10 over weights 1,1,1 (W = 3): base 3 each, remainders 1,1,1, one leftover -> lowest id.
    assert split_exact(10, [(7, 1), (3, 1), (5, 1)]) == [(3, 4), (5, 3), (7, 3)]
    # total 100 over 3,3,1 (W = 7): 300/7 = 42 r6, 42 r6, 100/7 = 14 r2 -> 98, 2 leftover to ids 1, 2.
    assert split_exact(100, [(2, 3), (1, 3), (9, 1)]) == [(1, 43), (2, 43), (9, 14)]
    # Largest remainder beats a lower id: 10 over 1,2 (W = 3): 3 r1, 6 r2 -> the leftover goes to id 2.
    assert split_exact(10, [(1, 1), (2, 2)]) == [(1, 3), (2, 7)]
    # Zero-weight payees are listed with 0 and never take a leftover unit.
    assert split_exact(5, [(4, 0), (1, 2), (2, 2)]) == [(1, 3), (2, 2), (4, 0)]


def test_split_sums_exactly_on_random_cases():
    rng = random.Random(1234)
    for _ in range(2000):
        count = rng.randint(1, 30)
        ids = rng.sample(range(10_000), count)
        weights = [(i, rng.choice([0, 1, rng.randint(0, 10**6), rng.randint(0, 10**30)])) for i in ids]
        if sum(w for _, w in weights) == 0:
            weights[0] = (weights[0][0], 1)
        total = rng.choice([0, 1, rng.randint(0, 10**6), rng.randint(0, 10**36)])
        result = split_exact(total, weights)
        assert [p for p, _ in result] == sorted(ids)
        assert sum(a for _, a in result) == total
        total_weight = sum(w for _, w in weights)
        for payee, amount in result:
            exact = total * dict(weights)[payee]
            assert exact // total_weight <= amount <= exact // total_weight + 1


@pytest.mark.parametrize(
    "total, weights",
    [(10, []), (10, [(1, 0), (2, 0)]), (10, [(1, 1), (1, 2)]), (10, [(1, -1), (2, 3)]), (-1, [(1, 1)])],
)
def test_split_rejects_bad_input(total, weights):
    with pytest.raises(ValueError):
        split_exact(total, weights)


# ---------------------------------------------------------------------------------------------- suffix arrays


def brute_suffix_array(tokens: list[int]) -> list[int]:
    return sorted(range(len(tokens)), key=lambda i: tokens[i:])


@pytest.mark.parametrize("alphabet", [1, 2, 3, 7, 300, 100_000])
def test_suffix_array_matches_brute_force(alphabet):
    rng = np.random.default_rng(alphabet)
    for n in [1, 2, 3, 8, 31, 100, 257]:
        for _ in range(4):
            tokens = rng.integers(0, alphabet, n)
            assert suffix_array(tokens).tolist() == brute_suffix_array(tokens.tolist())


def test_suffix_array_structured_inputs():
    cases = [
        [5] * 300,
        [1, 2] * 150,
        [3, 1, 3, 1, 3] * 40 + [0],
        [int(c) for c in "1011010110110101101101011010110110"],  # Fibonacci word
        [-5, 2**40, 0, -5, 2**40, 7],  # negative and huge ids (no lookup table)
    ]
    for tokens in cases:
        assert suffix_array(np.array(tokens, dtype=np.int64)).tolist() == brute_suffix_array(tokens)
    assert suffix_array(np.array([], dtype=np.int64)).tolist() == []
    assert suffix_array(np.zeros(10, dtype=np.int32)).dtype == np.int32


def brute_occurrences(docs: list[list[int]], pattern: list[int]) -> list[tuple[int, int]]:
    m = len(pattern)
    return [(d, i) for d, doc in enumerate(docs) for i in range(len(doc) - m + 1) if doc[i : i + m] == pattern]


def test_find_count_and_documents_against_brute_force():
    rng = random.Random(7)
    for alphabet in [1, 2, 4, 50]:
        docs = [[rng.randrange(alphabet) for _ in range(rng.randint(0, 40))] for _ in range(12)]
        docs[3] = []
        index = SuffixIndex.from_documents(docs)
        for _ in range(150):
            if rng.random() < 0.5 and any(docs):
                doc = rng.choice([d for d in docs if d])
                start = rng.randrange(len(doc))
                pattern = doc[start : start + rng.randint(1, 12)]
            else:
                pattern = [rng.randrange(alphabet + 1) for _ in range(rng.randint(1, 6))]
            occurrences = brute_occurrences(docs, pattern)
            lo, hi = index.find(pattern)
            assert index.count(pattern) == hi - lo == len(occurrences)
            found = []
            for position in index.sa[lo:hi].tolist():
                doc = int(np.searchsorted(index.doc_starts, position, side="right")) - 1
                found.append((doc, position - int(index.doc_starts[doc])))
            assert sorted(found) == occurrences
            assert index.documents_containing(pattern) == sorted({d for d, _ in occurrences})


def test_matches_never_cross_document_boundaries():
    index = SuffixIndex.from_documents([[1, 2, 3], [4, 5, 6], [3, 4]])
    assert index.count([3, 4]) == 1 and index.documents_containing([3, 4]) == [2]
    assert index.count([2, 3, 4]) == 0
    assert index.count([6, 3]) == 0
    length, lo, hi = index.longest_match([1, 2, 3, 4, 5, 6], 0)
    assert (length, index.documents_in_range(lo, hi)) == (3, [0])
    length, lo, hi = index.longest_match([1, 2, 3, 4, 5, 6], 2)
    assert (length, index.documents_in_range(lo, hi)) == (2, [2])
    assert index.longest_match([9, 1], 0) == (0, 0, 0)


def test_longest_match_against_brute_force():
    rng = random.Random(11)
    docs = [[rng.randrange(3) for _ in range(30)] for _ in range(6)]
    index = SuffixIndex.from_documents(docs)
    for _ in range(100):
        query = [rng.randrange(4) for _ in range(15)]
        start = rng.randrange(len(query))
        expected = 0
        for length in range(1, len(query) - start + 1):
            if brute_occurrences(docs, query[start : start + length]):
                expected = length
        length, lo, hi = index.longest_match(query, start)
        assert length == expected
        if expected:
            assert hi - lo == len(brute_occurrences(docs, query[start : start + expected]))


def test_suffix_index_bad_input():
    with pytest.raises(ValueError):
        SuffixIndex.from_documents([])
    with pytest.raises(ValueError):
        SuffixIndex.from_documents([[1, -2, 3]])
    with pytest.raises(ValueError):
        SuffixIndex.from_documents([[1.5, 2.0]])
    index = SuffixIndex.from_documents([[1, 2, 3]])
    with pytest.raises(ValueError):
        index.find([])
    with pytest.raises(ValueError):
        index.count([1, -1])
    with pytest.raises(ValueError):
        index.longest_match([1, 2], 2)


# ---------------------------------------------------------------------------------------------- span attribution


def test_span_attribution_ranks_planted_document_first():
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 500, 400) for _ in range(40)]
    planted = docs[17][100:140].tolist()
    noise = rng.integers(500, 1000, 12).tolist()  # ids no document holds
    output = noise[:6] + planted + noise[6:]
    ranked = span_attribution(build_index(docs), output)
    assert ranked[0][0] == 17
    assert ranked[0][1] >= 40 * 40 * SCALE
    assert all(ranked[0][1] > weight for _, weight in ranked[1:])


def test_span_attribution_ignores_short_spans_and_splits_shared_ones():
    docs = [[1, 2, 3, 90, 91], [1, 2, 3, 92], [10, 11, 12, 13, 14, 15], [10, 11, 12, 13, 14, 15, 16]]
    index = build_index(docs)
    # [1, 2, 3] is below min_length 4: no credit at all.
    assert span_attribution(index, [1, 2, 3, 99], min_length=4) == []
    # [10..15] (L = 6) is in docs 2 and 3: each gets 36 * SCALE // 2; then [16] alone is too short.
    assert span_attribution(index, [10, 11, 12, 13, 14, 15, 16], min_length=4) == [(3, 49 * SCALE)]
    assert span_attribution(index, [10, 11, 12, 13, 14, 15], min_length=4) == [(2, 18 * SCALE), (3, 18 * SCALE)]
    spans = find_spans(index, [0, 1, 2, 3, 90, 91, 10, 11, 12, 13], min_length=3)
    assert [(s.start, s.length, s.documents) for s in spans] == [(1, 5, (0,)), (6, 4, (2, 3))]
    assert span_attribution(index, [10, 11, 12, 13, 14, 15], min_length=4, top_k=1) == [(2, 18 * SCALE)]
    with pytest.raises(ValueError):
        span_attribution(index, [1, 2], top_k=0)
    with pytest.raises(ValueError):
        span_attribution(index, [1, 2], min_length=0)


# ---------------------------------------------------------------------------------------------- BM25


def float_bm25(docs: list[bytes], query: str) -> dict[int, float]:
    tokenized = [words(d) for d in docs]
    n = len(docs)
    avgdl = sum(map(len, tokenized)) / n
    scores = {}
    for d, toks in enumerate(tokenized):
        total = 0.0
        for term in dict.fromkeys(words(query)):
            df = sum(term in t for t in tokenized)
            tf = toks.count(term)
            if tf:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                total += idf * tf * 2.5 / (tf + 1.5 * (1 - 0.75 + 0.75 * len(toks) / avgdl))
        if total > 0:
            scores[d] = total
    return scores


CORPUS = [
    b"The quick brown fox jumps over the lazy dog.",
    b"A lazy afternoon. The dog sleeps in the sun!",
    b"Quantum chromodynamics describes the strong interaction. Gluons bind quarks.",
    b"The dog and the fox are friends. They play in the park.",
    "Caf\u00e9 society: the fox, the dog, and na\u00efve critics.\nNothing about gluons here.".encode(),
]


def test_words_rule():
    assert words("Hello, WORLD! x2 caf\u00e9-au-lait 3.14") == ["hello", "world", "x2", "caf", "au", "lait", "3", "14"]
    assert words(b"") == []
    with pytest.raises(ValueError):
        words(b"\xff\xfe")


def test_fixed_point_log_and_idf():
    assert log2_fixed(1) == 0
    assert log2_fixed(1024) == 10 << 64
    for x in [3, 5, 7, 1000, 12345678901234567890]:
        assert abs(log2_fixed(x) / 2**64 - math.log2(x)) < 1e-12
    for n, df in [(1, 1), (5, 1), (5, 5), (1000, 3), (10**6, 10**6)]:
        assert abs(idf_fixed(n, df) - math.log(1 + (n - df + 0.5) / (df + 0.5)) * ONE) <= 2
    # tf = 1 in an average-length document: 2.5 / (1 + 1.5) = 1 exactly.
    assert saturation_fixed(1, 10, 4, 40) == ONE


def test_bm25_hand_checked_small_example():
    index = Bm25Index(CORPUS)
    for query in ["lazy dog", "gluons", "the fox", "quick quarks sun"]:
        expected = float_bm25(list(CORPUS), query)
        got = dict(index.scores(query))
        assert got.keys() == expected.keys()
        for doc_id, score in got.items():
            assert abs(score / ONE - expected[doc_id]) < 1e-8
    # One document, "a b": N = 1, df = 1, idf = ln(4/3); tf = 1 at dl = avgdl: score = ln(4/3).
    assert abs(Bm25Index([b"a b"]).scores("a")[0][1] - math.log(4 / 3) * ONE) <= 2


def test_bm25_rare_term_first_ties_by_id_and_reproducible():
    docs = [b"apple banana cherry", b"apple banana zebra", b"apple banana cherry", b"banana apple cherry"]
    index = Bm25Index(docs)
    assert index.top_k("zebra apple", 4)[0][0] == 1
    ranked = index.top_k("cherry", 3)
    assert [d for d, _ in ranked] == [0, 2, 3] and len({s for _, s in ranked}) == 1
    assert index.top_k("cherry", 1) == ranked[:1]
    assert index.top_k("nothing here", 3) == []
    again = Bm25Index([bytes(d) for d in docs])
    for query in ["apple", "zebra cherry", "banana banana apple"]:
        assert index.scores(query) == again.scores(query)
        assert index.top_k(query, 4) == again.top_k(query, 4)


def test_bm25_bad_input():
    with pytest.raises(ValueError):
        Bm25Index([])
    with pytest.raises(ValueError):
        Bm25Index([b"fine", b"\xc3\x28"])
    index = Bm25Index(CORPUS)
    for query in ["", "  ,.; ", b"\xff", "word " * 20_000]:
        with pytest.raises(ValueError):
            index.scores(query)
    with pytest.raises(ValueError):
        index.top_k("dog", 0)


def test_citations_verify_and_tampering_fails():
    index = Bm25Index(CORPUS)
    citations = cite(index, "gluons quarks", 2)
    assert [c.doc_id for c in citations] == [2, 4]
    assert CORPUS[2][citations[0].start : citations[0].end] == b"Gluons bind quarks."
    assert CORPUS[4][citations[1].start : citations[1].end] == b"Nothing about gluons here."
    for citation in citations:
        assert citation.doc_hash == keccak(CORPUS[citation.doc_id])
        assert verify_citation(CORPUS[citation.doc_id], citation)
    good = citations[1]
    document = CORPUS[4]
    assert not verify_citation(document.replace(b"fox", b"cat"), good)
    assert not verify_citation(document, replace(good, end=len(document) + 1))
    assert not verify_citation(document, replace(good, start=good.end))
    assert not verify_citation(document, replace(good, start=-1))
    assert not verify_citation(document, replace(good, doc_hash=b"\x00" * 32))
    # "Caf\u00e9": bytes 3..5 are the two bytes of the e-acute; a span ending between them is not on a boundary.
    assert verify_citation(document, Citation(4, keccak(document), 0, 5))
    assert not verify_citation(document, Citation(4, keccak(document), 0, 4))
    assert not verify_citation(document, Citation(4, keccak(document), 4, 10))


def test_sentence_spans():
    text = b"  One. Two!? Three\n\nfour  "
    assert [text[s:e] for s, e in sentence_spans(text)] == [b"One.", b"Two!?", b"Three", b"four"]


# ---------------------------------------------------------------------------------------------- dedup

BASE_TEXT = (
    "Low rank adaptation freezes the pretrained weights and trains two small matrices per layer, "
    "which cuts the number of trainable parameters by orders of magnitude while keeping quality close "
    "to full fine tuning on most downstream tasks that practitioners care about in production systems."
)


def test_validate_contribution():
    assert validate_contribution(b"hello") == "hello"
    for bad in [b"", b" \n\t ", "\u3000".encode(), b"\xff\xfe", b"x" * 11]:
        with pytest.raises(ValueError):
            validate_contribution(bad, max_bytes=10)
    with pytest.raises(ValueError):
        validate_contribution("not bytes")  # type: ignore[arg-type]


def test_ngrams_and_overlap():
    assert ngrams("a b c", n=2) == [("a", "b"), ("b", "c")]
    assert ngrams("a b", n=5) == [("a", "b")]
    assert ngrams("...", n=5) == []
    assert overlap_ppm(BASE_TEXT, BASE_TEXT) == 1_000_000
    assert overlap_ppm("...", "!!!") == 0
    # Shingles {ab, bc} vs {ab, bd}: Jaccard 1/3.
    assert overlap_ppm("a b c", "a b d", n=2) == 333_333


def test_near_duplicate_index():
    index = NearDuplicateIndex()
    unrelated = [
        "Suffix arrays index every suffix of a text in sorted order so that any substring can be located "
        "by binary search in logarithmic time, which makes exact span matching over huge corpora practical.",
        "The rollup posts compressed batches to a data availability layer, and validators re-derive every "
        "block from those batches to check the sequencer's state roots before the challenge window closes.",
    ]
    index.add(0, unrelated[0])
    index.add(1, BASE_TEXT)
    index.add(2, unrelated[1])
    index.add(3, BASE_TEXT.encode())  # same bytes again: exact lookup keeps the smallest id
    assert index.exact(content_hash(BASE_TEXT.encode())) == 1
    assert index.exact(content_hash(b"never added")) is None
    edited = BASE_TEXT.replace("orders of magnitude", "a large factor").replace("production", "deployed")
    near = index.near(edited)
    assert [doc for doc, _ in near] == [1, 3]
    assert near[0][1] == near[1][1] == overlap_ppm(edited, BASE_TEXT) > 500_000
    fresh = "Okapi scoring weighs term frequency against document length with two tuning constants."
    assert index.near(fresh) == []
    assert index.near(BASE_TEXT, threshold_ppm=1_000_000) == [(1, 1_000_000), (3, 1_000_000)]
    with pytest.raises(ValueError):
        index.add(1, "duplicate id")
    with pytest.raises(ValueError):
        index.add(9, b"\xc3")
    with pytest.raises(ValueError):
        index.near(BASE_TEXT, threshold_ppm=0)


def test_near_duplicate_index_scales_to_many_docs():
    rng = random.Random(5)
    vocabulary = [f"w{i}" for i in range(3000)]
    index = NearDuplicateIndex()
    texts = [" ".join(rng.choices(vocabulary, k=60)) for _ in range(3000)]
    for doc_id, text in enumerate(texts):
        index.add(doc_id, text)
    probe = texts[1234].split()
    probe[30] = "changed"
    assert index.near(" ".join(probe))[0][0] == 1234


def test_spans_may_start_in_the_context_but_must_reach_the_output():
    docs = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], [20, 21, 22, 23, 24, 25]]
    index = build_index(docs)
    query = [7, 8, 9, 10, 11, 12, 1, 2, 3]  # context [7..12] matches doc 1; output [1, 2, 3] continues doc 0
    assert span_attribution(index, query, min_length=4, counted_from=6) == []  # doc 1 lies wholly in the context
    assert [d for d, _ in span_attribution(index, [9, 10, 11, 12], min_length=4, counted_from=2)] == [1]
    assert span_attribution(index, [9, 10, 11, 12], min_length=4, counted_from=4) == []
