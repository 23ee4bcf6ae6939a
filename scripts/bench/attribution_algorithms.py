"""Benchmark of the attribution algorithms (suffix arrays, span attribution, BM25); prints JSON.

Synthetic, seeded data: tokens drawn Zipf-like (p(rank r) ~ 1/r) from a 2048-token vocabulary, cut into
2048-token documents; BM25 documents of ~60 words drawn Zipf-like from a 20k-word vocabulary.

    .venv/bin/python scripts/bench/attribution_algorithms.py [--tokens 1000000,10000000] [--docs 1000,10000]
        [--queries 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from lorachain.attribution.bm25 import Bm25Index
from lorachain.attribution.spans import build_index, span_attribution
from lorachain.attribution.suffix_array import suffix_array

VOCAB = 2048
DOC_TOKENS = 2048
OUTPUT_TOKENS = 64
WORD_VOCAB = 20_000
WORDS_PER_DOC = 60
SEED = 20240601


def zipf_probabilities(size: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1)
    return weights / weights.sum()


def latency_ms(fn: Callable[[object], object], items: Sequence[object]) -> dict[str, float]:
    seconds = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        seconds.append(time.perf_counter() - started)
    p50, p99 = np.percentile(np.array(seconds) * 1000, [50, 99])
    return {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3), "queries": len(items)}


def span_outputs(docs: list[np.ndarray], count: int, rng: np.random.Generator) -> list[list[int]]:
    """Half copied from a document with 2 tokens substituted (long spans), half fresh Zipf samples."""
    probabilities = zipf_probabilities(VOCAB)
    outputs = []
    for i in range(count):
        if i % 2 == 0:
            doc = docs[int(rng.integers(len(docs)))]
            start = int(rng.integers(0, doc.size - OUTPUT_TOKENS))
            output = doc[start : start + OUTPUT_TOKENS].copy()
            output[rng.integers(0, OUTPUT_TOKENS, 2)] = rng.integers(0, VOCAB, 2)
        else:
            output = rng.choice(VOCAB, size=OUTPUT_TOKENS, p=probabilities)
        outputs.append(output.tolist())
    return outputs


def bench_tokens(size: int, queries: int, rng: np.random.Generator) -> dict:
    tokens = rng.choice(VOCAB, size=size, p=zipf_probabilities(VOCAB)).astype(np.int32)
    started = time.perf_counter()
    suffix_array(tokens)
    sa_seconds = time.perf_counter() - started
    docs = [tokens[i : i + DOC_TOKENS] for i in range(0, size, DOC_TOKENS)]
    started = time.perf_counter()
    index = build_index(docs)
    index_seconds = time.perf_counter() - started
    outputs = span_outputs(docs, queries, rng)
    return {
        "tokens": size,
        "suffix_array_build_s": round(sa_seconds, 3),
        "suffix_array_tokens_per_s": round(size / sa_seconds),
        "index_documents": len(docs),
        "index_build_s": round(index_seconds, 3),
        "index_bytes_per_token": round((index.tokens.nbytes + index.sa.nbytes) / index.tokens.size, 2),
        "span_query_64_tokens": latency_ms(lambda out: span_attribution(index, out), outputs),
    }


def bench_docs(count: int, queries: int, rng: np.random.Generator) -> dict:
    probabilities = zipf_probabilities(WORD_VOCAB)
    lengths = rng.integers(WORDS_PER_DOC - 20, WORDS_PER_DOC + 21, count)
    documents = [
        " ".join(f"w{w}" for w in rng.choice(WORD_VOCAB, size=int(length), p=probabilities)).encode() + b"."
        for length in lengths
    ]
    started = time.perf_counter()
    index = Bm25Index(documents)
    build_seconds = time.perf_counter() - started
    query_texts = [
        " ".join(f"w{w}" for w in rng.choice(WORD_VOCAB, size=int(rng.integers(2, 7)), p=probabilities))
        for _ in range(queries)
    ]
    return {
        "documents": count,
        "words": index.total_length,
        "build_s": round(build_seconds, 3),
        "top10_query": latency_ms(lambda q: index.top_k(q, 10), query_texts),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="1000000,10000000", help="comma-separated corpus sizes in tokens")
    parser.add_argument("--docs", default="1000,10000", help="comma-separated BM25 corpus sizes in documents")
    parser.add_argument("--queries", type=int, default=200, help="queries per latency measurement")
    parser.add_argument("--json", type=Path, help="also write the JSON result to this path")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(SEED)
    result = {
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "cpu": platform.processor()},
        "suffix_array": [bench_tokens(int(n), args.queries, rng) for n in args.tokens.split(",") if n],
        "bm25": [bench_docs(int(n), args.queries, rng) for n in args.docs.split(",") if n],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
