"""The training record: what attribution needs of one trained adapter version, content-addressed.

A record names the base model and the adapter it belongs to, the datanet snapshots the adapter was
trained on, every contribution of those snapshots (content hash and bytes, so the corpus travels with the
record and each text is checked against its hash), which of them were held out of training, and the
DataInf vectors ``u_k = M g_k`` of every example quantized to int32 (see :mod:`lorachain.attribution.datainf`).
Its id is the keccak256 of its encoding; :func:`decode_record` checks everything that can be checked without
re-training: the hash, each text's content hash, each snapshot root as the DatanetRegistry folds it, and
the vectors' shape.

Encoding (msgpack, one array, fields in this order):
  [version=1, model_hash, adapter_hash, [[datanet_id, snapshot_root]...],
   [[datanet_id, index, content_hash, text, held_out]...], rank, shift, dims, int32 little-endian bytes | nil,
   training (JSON text)]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from eth_utils import keccak

RECORD_VERSION = 1
MAX_RECORD_BYTES = 1 << 30
MAX_EXAMPLES = 1 << 20


class RecordError(ValueError):
    """A training record that is malformed or does not match what it claims."""


@dataclass(frozen=True)
class RecordExample:
    """One contribution of a snapshot: ``content_hash == keccak256(text)``."""

    datanet_id: int
    index: int
    content_hash: bytes
    text: bytes
    held_out: bool = False


@dataclass(frozen=True)
class TrainingRecord:
    model_hash: bytes
    adapter_hash: bytes
    snapshots: tuple[tuple[int, bytes], ...]
    examples: tuple[RecordExample, ...]
    rank: int
    influence: np.ndarray | None  # int32 [len(examples), dims], or None when no gradients were recorded
    shift: int = 0
    training: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        vectors = None if self.influence is None else np.ascontiguousarray(self.influence, dtype="<i4").tobytes()
        dims = 0 if self.influence is None else int(self.influence.shape[1])
        return msgpack.packb(
            [RECORD_VERSION, self.model_hash, self.adapter_hash, [[d, r] for d, r in self.snapshots],
             [[e.datanet_id, e.index, e.content_hash, e.text, e.held_out] for e in self.examples],
             self.rank, self.shift, dims, vectors, json.dumps(self.training, sort_keys=True)],
            use_bin_type=True,
        )  # fmt: skip

    @property
    def hash(self) -> bytes:
        return keccak(self.encode())


def snapshot_root(content_hashes: Iterable[bytes]) -> bytes:
    """The DatanetRegistry's snapshot rule: ``root = keccak256(root ++ hash)`` from bytes32(0)."""
    root = b"\x00" * 32
    for digest in content_hashes:
        root = keccak(root + digest)
    return root


def decode_record(blob: bytes, expected_hash: bytes | None = None) -> TrainingRecord:
    """Parse and check a record; raise :class:`RecordError` naming what is wrong."""
    if len(blob) > MAX_RECORD_BYTES:
        raise RecordError(f"the record exceeds {MAX_RECORD_BYTES} bytes")
    if expected_hash is not None and keccak(blob) != expected_hash:
        raise RecordError("the record's bytes do not hash to its id")
    try:
        fields = msgpack.unpackb(blob, raw=False, strict_map_key=True)
        version, model, adapter, snapshots, examples, rank, shift, dims, vectors, training = fields
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RecordError(f"malformed record: {exc}") from exc
    if version != RECORD_VERSION:
        raise RecordError(f"unsupported record version {version!r}")
    if not (_is_hash(model) and _is_hash(adapter) and isinstance(rank, int) and rank > 0):
        raise RecordError("malformed record header")
    if not isinstance(examples, list) or not 0 < len(examples) <= MAX_EXAMPLES:
        raise RecordError("a record lists 1..2^20 examples")
    parsed = tuple(_example(e) for e in examples)
    snaps = tuple(_snapshot(s) for s in snapshots) if isinstance(snapshots, list) else ()
    if not snaps:
        raise RecordError("a record names at least one datanet snapshot")
    for datanet, root in snaps:
        hashes = [e.content_hash for e in parsed if e.datanet_id == datanet]
        if snapshot_root(hashes) != root:
            raise RecordError(f"the examples of datanet {datanet} do not fold to its snapshot root")
    if any(e.datanet_id not in dict(snaps) for e in parsed):
        raise RecordError("an example belongs to a datanet the record names no snapshot of")
    influence = None
    if vectors is not None:
        if not isinstance(vectors, bytes) or not isinstance(dims, int) or dims <= 0:
            raise RecordError("malformed influence vectors")
        if len(vectors) != 4 * dims * len(parsed):
            raise RecordError("the influence vectors do not match the examples")
        influence = np.frombuffer(vectors, dtype="<i4").reshape(len(parsed), dims)
    try:
        info = json.loads(training)
    except (TypeError, ValueError) as exc:
        raise RecordError("malformed training section") from exc
    return TrainingRecord(model, adapter, snaps, parsed, rank, influence, int(shift), info)


def _is_hash(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == 32


def _snapshot(entry: Any) -> tuple[int, bytes]:
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int) and _is_hash(entry[1])):
        raise RecordError("malformed snapshot entry")
    return entry[0], entry[1]


def _example(entry: Any) -> RecordExample:
    if not (isinstance(entry, list) and len(entry) == 5):
        raise RecordError("malformed example entry")
    datanet, index, digest, text, held_out = entry
    if not (isinstance(datanet, int) and isinstance(index, int) and _is_hash(digest) and isinstance(text, bytes)):
        raise RecordError("malformed example entry")
    if keccak(text) != digest:
        raise RecordError(f"example {datanet}/{index}: its text does not hash to its content hash")
    return RecordExample(datanet, index, digest, text, bool(held_out))


def example_token_ids(tokenizer, text: bytes, context: int) -> list[int]:
    """How an example is fed to the model in training and attribution: its tokens alone, cut to ``context``.

    Prompts reach the inference precompile without an end-of-text marker before them, so examples are trained
    without one too: a fact is learned in the position it is later asked in."""
    return tokenizer.encode(text.decode("utf-8")).ids[:context]


def build_training_record(
    model_dir: Path,
    adapter_dir: Path,
    examples: Sequence[Any],
    snapshots: Sequence[tuple[int, bytes]],
    training: dict[str, Any],
    held_out: Sequence[tuple[int, int]] = (),
    cache: Path | None = None,
) -> bytes:
    """The encoded record of the adapter in ``adapter_dir`` trained on ``examples`` (objects with
    ``datanet_id``, ``index``, ``content_hash``, ``text``); ``held_out`` lists ``(datanet_id, index)`` of
    examples not trained on (also read from the factory report's ``training["heldout"]``)."""
    import tempfile

    from lorachain.attribution.datainf import precompute, quantize
    from lorachain.attribution.gradients import GradientFeatures
    from lorachain.sidecar.exact_engine import DEFAULT_CACHE, load_engine

    listed = training.get("heldout", [])
    held = {tuple(x) for x in held_out} | {tuple(x) for x in listed if isinstance(x, list | tuple)}
    rows = [RecordExample(e.datanet_id, e.index, bytes(e.content_hash), bytes(e.text),
                          (e.datanet_id, e.index) in held) for e in examples]  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        engine = load_engine(model_dir, Path(scratch), cache=cache or DEFAULT_CACHE)
        info = engine.store.register(Path(adapter_dir))
        grads = GradientFeatures(engine, info.id)
        context = engine.context_length
        feats = np.stack([grads.features(example_token_ids(engine.tokenizer, r.text, context)).numpy() for r in rows])
        train_rows = [i for i, r in enumerate(rows) if not r.held_out]
        vectors, shift = quantize(precompute(feats, grads.layout.blocks, train_rows))
        record = TrainingRecord(engine.model_hash, bytes.fromhex(info.id[2:]), tuple(snapshots), tuple(rows),
                                grads.layout.rank, vectors, shift, training)  # fmt: skip
    blob = record.encode()
    decode_record(blob)  # the record must satisfy its own checks
    return blob
