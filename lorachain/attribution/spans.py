"""Span-matching attribution (Infini-gram style): credit the documents whose exact token spans an output reuses.

Rule, all integers:

1. Walk the output left to right from position ``i = 0``. At ``i`` take the longest prefix of
   ``output[i:]`` that occurs inside one corpus document (length ``L``, found in the document set ``D``).
2. ``L < min_length``: too short to be evidence (chance n-grams); move on to ``i + 1``.
3. Otherwise it is a span: every document in ``D`` is credited ``L * L * SCALE // len(D)`` and the walk
   continues at ``i + L`` (the span's tokens are not counted twice).
   With ``counted_from = c`` the first ``c`` tokens are context (the prompt before the output): the walk
   starts there too, but only spans that reach past them (``start + L > c``) are credited, so an answer
   that continues a corpus sentence begun in the prompt is found even when the answer alone is short.
4. Documents are ranked by total credit descending, ties by doc id ascending; the first ``top_k`` with
   positive credit are returned.

Why ``L * L``: the chance that a span of length L is reused by accident falls steeply with L, so one long
span is stronger evidence than several short ones of the same total length (a 32-token span outweighs
eight 4-token spans, 1024 vs 128). Why ``// len(D)``: a span found in many documents (boilerplate, common
phrases) says little about any one of them; each span's total credit is fixed at ``L * L * SCALE`` and is
shared evenly, so spreading text across many copies gains nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lorachain.attribution.suffix_array import SuffixIndex

SCALE = 1_000_000


@dataclass(frozen=True)
class SpanMatch:
    """A span of the output, ``output[start : start + length]``, found verbatim in ``documents``."""

    start: int
    length: int
    documents: tuple[int, ...]


def build_index(documents: Sequence[Sequence[int] | np.ndarray]) -> SuffixIndex:
    """A :class:`SuffixIndex` of token-id documents (doc id = position in ``documents``)."""
    return SuffixIndex.from_documents(documents)


def find_spans(
    index: SuffixIndex, output_ids: Sequence[int], min_length: int = 4, counted_from: int = 0
) -> list[SpanMatch]:
    """The spans the greedy walk of the module docstring takes, in output order."""
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1, got {min_length}")
    output = [int(t) for t in output_ids]
    spans: list[SpanMatch] = []
    position = 0
    while position < len(output):
        length, lo, hi = index.longest_match(output, position)
        if length < min_length:
            position += 1
            continue
        if position + length > counted_from:
            spans.append(SpanMatch(position, length, tuple(index.documents_in_range(lo, hi))))
        position += length
    return spans


def span_attribution(
    index: SuffixIndex, output_ids: Sequence[int], min_length: int = 4, top_k: int = 8, counted_from: int = 0
) -> list[tuple[int, int]]:
    """``(doc id, weight)`` for the ``top_k`` documents with the most span credit, by (-weight, doc id)."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    credit: dict[int, int] = {}
    for span in find_spans(index, output_ids, min_length, counted_from):
        share = span.length * span.length * SCALE // len(span.documents)
        for doc in span.documents:
            credit[doc] = credit.get(doc, 0) + share
    ranked = sorted(((doc, weight) for doc, weight in credit.items() if weight > 0), key=lambda dw: (-dw[1], dw[0]))
    return ranked[:top_k]
