"""Curation checks for a datanet's pending contributions: are the bytes there, are they what the chain says,
are they well formed, and are they new?

A contribution is checked against its on-chain record (content hash, declared size) with its bytes fetched
from the DA layer, then against the rules of :func:`lorachain.attribution.dedup.validate_contribution`
(non-empty, at most 1 MiB, UTF-8, not only whitespace), then for near-duplicates (word-shingle Jaccard,
:class:`~lorachain.attribution.dedup.NearDuplicateIndex`) among the datanet's accepted contributions and the
pending ones before it that passed: the first of two near-identical contributions is the original.

Verdicts: ``ok``, ``duplicate`` (with the contribution it repeats and the overlap), ``malformed`` (bytes that
are not what the chain records, or break the rules), ``unavailable`` (the DA layer did not answer: nobody's
fault yet, so never a reason to reject).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from eth_utils import keccak

from lorachain.attribution.dedup import PPM, NearDuplicateIndex, validate_contribution

DEFAULT_THRESHOLD_PPM = 500_000  # half the shingles shared
OK, DUPLICATE, MALFORMED, UNAVAILABLE = "ok", "duplicate", "malformed", "unavailable"


class FetchError(Exception):
    """The bytes of a contribution could not be fetched (the DA layer is down or does not have them)."""


@dataclass(frozen=True)
class Candidate:
    """A contribution as the registry records it."""

    index: int
    content_hash: bytes
    size: int
    accepted: bool  # accepted now (a reference for duplicates) or pending (to check)


@dataclass(frozen=True)
class Finding:
    index: int
    verdict: str
    detail: str
    duplicate_of: int | None = None
    overlap_ppm: int | None = None

    def to_json(self) -> dict:
        out: dict = {"index": self.index, "verdict": self.verdict, "detail": self.detail}
        if self.duplicate_of is not None:
            out |= {"duplicate_of": self.duplicate_of, "overlap_ppm": self.overlap_ppm}
        return out


def check_contributions(
    candidates: Iterable[Candidate],
    fetch: Callable[[bytes], bytes],
    threshold_ppm: int = DEFAULT_THRESHOLD_PPM,
    only: set[int] | None = None,
) -> list[Finding]:
    """One finding per pending candidate (those in ``only``, when given), in index order.

    ``fetch(content_hash)`` returns the bytes or raises :class:`FetchError`. Accepted candidates are indexed
    for duplicate search (one whose bytes cannot be fetched is skipped); pending ones are checked in index
    order, and each that passes joins the index, so a later copy of it is the duplicate."""
    if not 1 <= threshold_ppm <= PPM:
        raise ValueError(f"the threshold is 1..{PPM} ppm, got {threshold_ppm}")
    ordered = sorted(candidates, key=lambda c: c.index)
    index = NearDuplicateIndex()
    for c in ordered:
        if c.accepted:
            try:
                data = fetch(c.content_hash)
            except FetchError:
                continue
            if keccak(data) == c.content_hash:
                index.add(c.index, data)
    findings = []
    for c in ordered:
        if c.accepted:
            continue
        finding, data = _check_one(c, fetch, index, threshold_ppm)
        if only is None or c.index in only:
            findings.append(finding)
        if finding.verdict == OK:
            index.add(c.index, data)
    return findings


def _check_one(c: Candidate, fetch, index: NearDuplicateIndex, threshold_ppm: int) -> tuple[Finding, bytes]:
    try:
        data = fetch(c.content_hash)
    except FetchError as exc:
        return Finding(c.index, UNAVAILABLE, str(exc)), b""
    if keccak(data) != c.content_hash:
        return Finding(c.index, MALFORMED, "the bytes fetched do not hash to the content hash on chain"), data
    if len(data) != c.size:
        return Finding(c.index, MALFORMED, f"{len(data)} bytes, but {c.size} declared on chain"), data
    try:
        validate_contribution(data)
    except ValueError as exc:
        return Finding(c.index, MALFORMED, str(exc)), data
    near = [(doc, overlap) for doc, overlap in index.near(data, threshold_ppm) if doc != c.index]
    if near:
        doc, overlap = near[0]
        detail = f"{overlap / 10_000:.1f}% of its word shingles shared with contribution {doc}"
        return Finding(c.index, DUPLICATE, detail, doc, overlap), data
    return Finding(c.index, OK, "new, well-formed content"), data
