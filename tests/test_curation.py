"""Curation checks (lorachain.attribution.curation) on in-memory bytes: verdicts, order, the threshold."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from lorachain.attribution.curation import Candidate, FetchError, check_contributions

TEXTS = {
    0: b"Alice keeps a red kite in the wooden box by the door.",
    1: b"Bob keeps a blue boat in the shed behind the old mill.",
    2: b"Bob keeps a blue boat in the shed behind the old mill!",  # pending copy of pending 1
    3: b"Alice keeps a red kite in the wooden box by the window.",  # near-copy of accepted 0: 7 of 9 shingles
    4: b"   \n\t ",
}


def _store(missing: set[int] = frozenset()):
    by_hash = {keccak(t): t for i, t in TEXTS.items() if i not in missing}

    def fetch(digest: bytes) -> bytes:
        if digest not in by_hash:
            raise FetchError("not in DA")
        return by_hash[digest]

    return fetch


def _candidates(accepted=(0,)):
    return [Candidate(i, keccak(t), len(t), i in accepted) for i, t in TEXTS.items()]


def test_verdicts_in_index_order_the_first_copy_is_the_original():
    findings = check_contributions(reversed(_candidates()), _store())
    assert [(f.index, f.verdict, f.duplicate_of) for f in findings] == [
        (1, "ok", None), (2, "duplicate", 1), (3, "duplicate", 0), (4, "malformed", None)]  # fmt: skip
    assert "whitespace" in findings[-1].detail
    assert findings[0].overlap_ppm is None and findings[1].to_json()["overlap_ppm"] == 1_000_000  # same words
    assert findings[2].overlap_ppm == 7 * 1_000_000 // 9
    looser = check_contributions(_candidates(), _store(), threshold_ppm=800_000)
    assert [(f.index, f.verdict) for f in looser][:3] == [(1, "ok"), (2, "duplicate"), (3, "ok")]


def test_a_missing_original_or_contribution_is_unavailable_never_a_duplicate():
    findings = check_contributions(_candidates(), _store(missing={0, 1}))
    assert [(f.index, f.verdict) for f in findings] == [(1, "unavailable"), (2, "ok"), (3, "ok"), (4, "malformed")]


def test_only_some_indexes_are_reported_but_all_earlier_ones_count():
    findings = check_contributions(_candidates(), _store(), only={2})
    assert [(f.index, f.verdict, f.duplicate_of) for f in findings] == [(2, "duplicate", 1)]


def test_bytes_other_than_the_chain_records_are_malformed():
    lying = [Candidate(1, keccak(b"other"), len(TEXTS[1]), False), Candidate(2, keccak(TEXTS[2]), 3, False)]
    findings = check_contributions(lying, lambda digest: TEXTS[1] if digest == keccak(b"other") else TEXTS[2])
    assert [f.verdict for f in findings] == ["malformed", "malformed"]
    assert "hash" in findings[0].detail and "declared" in findings[1].detail
    with pytest.raises(ValueError, match="threshold"):
        check_contributions([], _store(), threshold_ppm=0)
