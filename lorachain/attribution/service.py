"""Attribution as the sidecar serves it: training records on disk, and queries answered by method.

:class:`Attributor` keeps records content-addressed in a folder (``0x<hash>.record``, written atomically,
checked on the way in and on load) and answers "which contributions shaped this output?" for an adapter's
inference with one of three deterministic methods:

- ``INFLUENCE``: DataInf on the integer projected LoRA gradients of the query (one traced forward pass
  plus one exact matrix-vector product against the record's vectors);
- ``SPANS``: the longest spans reaching into the output found in the record's corpus (suffix array);
- ``BM25``: fixed-point BM25 of the prompt and output over the corpus.

``AUTO`` takes the spans when the output reuses the corpus (a span of at least ``SPAN_MIN_LENGTH`` tokens
reaching into it), else influence when the record carries gradients, else BM25. Examples held out of
training are never credited. Results are ``(datanet_id, index, weight, content_hash)`` with positive integer
weights, ordered by weight descending then by (datanet_id, index); the content hash is the example's, so the
chain can check that ``(datanet_id, index)`` really holds that content (a record's labels are only claims).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lorachain.attribution.record import RecordError, TrainingRecord, decode_record, example_token_ids
from lorachain.precompiles.attribution_abi import Method
from lorachain.sidecar.artifact import write_atomic
from lorachain.sidecar.types import RequestError, UnknownRecordError

MAX_PREPARED = 4  # records kept decoded and indexed in memory
SPAN_MIN_LENGTH = 4
SPAN_CONTEXT = 32  # prompt tokens before the output that a span may start in


@dataclass
class _Prepared:
    """A decoded record and the indexes built from it on first use."""

    record: TrainingRecord
    eligible: np.ndarray  # bool per example: trained on (not held out)
    vectors: np.ndarray | None  # the influence vectors as float64 (exact integers)
    lazy: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def index(self, name: str, build: Callable[[], Any]) -> Any:
        with self.lock:
            if name not in self.lazy:
                self.lazy[name] = build()
            return self.lazy[name]


class Attributor:
    """Records of one base model's adapters and the attribution queries over them."""

    def __init__(self, engine, folder: Path, run_exclusive: Callable[[Callable[[], Any]], Any] | None = None) -> None:
        self.engine = engine
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._run = run_exclusive or (lambda fn: fn())  # engine work goes through the caller's serializer
        self._prepared: OrderedDict[bytes, _Prepared] = OrderedDict()
        self._features: dict[str, Any] = {}
        self._lock = threading.Lock()

    # --- the store -----------------------------------------------------------------------------------

    def put(self, blob: bytes, expected_id: str) -> dict[str, Any]:
        """Check and keep a record under its hash; its summary."""
        digest = _parse_id(expected_id)
        try:
            record = decode_record(blob, digest)
        except RecordError as exc:
            raise RequestError(str(exc)) from exc
        if record.model_hash != self.engine.model_hash:
            raise RequestError("the training record is for another base model")
        path = self._path(digest)
        if not path.is_file():
            write_atomic(path, blob)
        return summary(record, digest)

    def has(self, record_id: str) -> bool:
        return self._path(_parse_id(record_id)).is_file()

    def blob(self, record_id: str) -> bytes:
        path = self._path(_parse_id(record_id))
        if not path.is_file():
            raise UnknownRecordError(f"unknown training record {record_id}")
        return path.read_bytes()

    def info(self, record_id: str) -> dict[str, Any]:
        digest = _parse_id(record_id)
        return summary(self._prepare(digest).record, digest)

    # --- queries -------------------------------------------------------------------------------------

    def attribute(
        self,
        record_hash: bytes,
        adapter_id: str,
        prompt_ids: tuple[int, ...],
        output_ids: tuple[int, ...],
        method: int,
        top_k: int,
        snapshots: tuple[tuple[int, bytes], ...],
    ) -> tuple[Method, list[tuple[int, int, int, bytes]]]:
        prepared = self._prepare(record_hash)
        record = prepared.record
        if "0x" + record.adapter_hash.hex() != adapter_id:
            raise RequestError("the training record belongs to another adapter")
        if tuple(sorted(record.snapshots)) != tuple(sorted(snapshots)):
            raise RequestError("the training record does not match the adapter's datanet snapshots")
        if not output_ids:
            raise RequestError("there are no output tokens to attribute")
        chosen = Method(method) if method in Method._value2member_map_ else None
        if chosen is None:
            raise RequestError(f"unknown attribution method {method}")
        run = {
            Method.INFLUENCE: lambda: self._influence(prepared, adapter_id, prompt_ids, output_ids, top_k),
            Method.SPANS: lambda: self._spans(prepared, prompt_ids, output_ids, top_k),
            Method.BM25: lambda: self._bm25(prepared, prompt_ids, output_ids, top_k),
        }
        if chosen is Method.AUTO:  # exact reuse is the strongest evidence; influence where there is none
            rows = run[Method.SPANS]()
            if rows:
                chosen = Method.SPANS
            else:
                chosen = Method.INFLUENCE if prepared.vectors is not None else Method.BM25
                rows = run[chosen]()
        else:
            rows = run[chosen]()
        examples = record.examples
        return chosen, [(examples[i].datanet_id, examples[i].index, w, examples[i].content_hash) for i, w in rows]

    def _influence(self, prepared: _Prepared, adapter_id: str, prompt_ids, output_ids, top_k: int):
        from lorachain.attribution.datainf import scores, top_helpful

        if prepared.vectors is None:
            raise RequestError("the training record carries no gradients for influence attribution")
        tokens = [*prompt_ids, *output_ids]
        query = self._run(lambda: self._gradients(adapter_id).features(tokens, first_target=len(prompt_ids)))
        if query.shape[0] != prepared.vectors.shape[1]:
            raise RequestError("the training record's vectors do not match the adapter's LoRA shape")
        return top_helpful(scores(prepared.vectors, query.numpy()), prepared.eligible, top_k)

    def _spans(self, prepared: _Prepared, prompt_ids, output_ids, top_k: int):
        from lorachain.attribution.spans import build_index, span_attribution

        rows = np.flatnonzero(prepared.eligible)

        def build():
            context = 1 << 30
            docs = [example_token_ids(self.engine.tokenizer, prepared.record.examples[i].text, context) for i in rows]
            return build_index(docs)

        index = prepared.index("spans", build)
        context = list(prompt_ids[-SPAN_CONTEXT:])  # an answer may continue a sentence the prompt began
        found = span_attribution(index, [*context, *output_ids], SPAN_MIN_LENGTH, top_k, counted_from=len(context))
        return [(int(rows[doc]), weight) for doc, weight in found]

    def _bm25(self, prepared: _Prepared, prompt_ids, output_ids, top_k: int):
        from lorachain.attribution.bm25 import Bm25Index

        rows = np.flatnonzero(prepared.eligible)
        index = prepared.index("bm25", lambda: Bm25Index([prepared.record.examples[i].text for i in rows]))
        query = self.engine.tokenizer.decode([*prompt_ids, *output_ids])
        return [(int(rows[doc]), score) for doc, score in index.top_k(query, top_k)]

    def _gradients(self, adapter_id: str):
        from lorachain.attribution.gradients import GradientFeatures

        features = self._features.get(adapter_id)
        if features is None:
            try:
                features = GradientFeatures(self.engine, adapter_id)
            except ValueError as exc:
                raise RequestError(str(exc)) from exc
            self._features = {adapter_id: features, **dict(list(self._features.items())[:3])}
        return features

    def _prepare(self, digest: bytes) -> _Prepared:
        with self._lock:
            prepared = self._prepared.get(digest)
            if prepared is not None:
                self._prepared.move_to_end(digest)
                return prepared
        path = self._path(digest)
        if not path.is_file():
            raise UnknownRecordError(f"unknown training record 0x{digest.hex()}")
        try:
            record = decode_record(path.read_bytes(), digest)
        except RecordError as exc:
            raise RequestError(f"stored record 0x{digest.hex()} is corrupt: {exc}") from exc
        eligible = np.array([not e.held_out for e in record.examples], dtype=bool)
        vectors = None if record.influence is None else record.influence.astype(np.float64)
        prepared = _Prepared(record, eligible, vectors)
        with self._lock:
            self._prepared[digest] = prepared
            while len(self._prepared) > MAX_PREPARED:
                self._prepared.popitem(last=False)
        return prepared

    def _path(self, digest: bytes) -> Path:
        return self.folder / f"0x{digest.hex()}.record"


def summary(record: TrainingRecord, digest: bytes) -> dict[str, Any]:
    return {
        "id": "0x" + digest.hex(),
        "model_hash": "0x" + record.model_hash.hex(),
        "adapter_id": "0x" + record.adapter_hash.hex(),
        "snapshots": [[d, "0x" + r.hex()] for d, r in record.snapshots],
        "examples": len(record.examples),
        "held_out": sum(e.held_out for e in record.examples),
        "influence_dims": 0 if record.influence is None else int(record.influence.shape[1]),
        "rank": record.rank,
    }


def _parse_id(record_id: str) -> bytes:
    if not (isinstance(record_id, str) and record_id.startswith("0x") and len(record_id) == 66):
        raise RequestError("a record id is 0x followed by 64 hex digits")
    try:
        return bytes.fromhex(record_id[2:])
    except ValueError as exc:
        raise RequestError("a record id is 0x followed by 64 hex digits") from exc
