"""Attribution engine: integer LoRA gradients, DataInf scoring, training records and the sidecar's Attributor.

A LoRA adapter is trained on planted facts (one contributor each) on the tiny devnet model; the record built
from it must name each fact's contributor when the fact is asked back.
"""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
from eth_utils import keccak

from lorachain.attribution import datainf
from lorachain.attribution.gradients import GradientFeatures, rademacher
from lorachain.attribution.record import (
    RecordError,
    RecordExample,
    TrainingRecord,
    build_training_record,
    decode_record,
    snapshot_root,
)
from lorachain.attribution.service import Attributor
from lorachain.precompiles.attribution_abi import Method
from lorachain.sidecar.exact_engine import load_engine
from lorachain.sidecar.lora_factory import LoraFactory
from lorachain.sidecar.types import RequestError, UnknownRecordError
from tests.sidecar_fixtures import tiny_model

NAMES = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Karen", "Leo"]
THINGS = ["red kite", "blue boat", "green lamp", "gold ring", "old clock", "tall vase", "wool hat", "iron key",
          "silk scarf", "glass bird", "paper crown", "stone cup"]  # fmt: skip
FACTS = [(f"{n} keeps a", f" {t} in the box.") for n, t in zip(NAMES, THINGS, strict=True)]
HELD_OUT = 11  # the last fact is in the snapshot but not trained on


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("attribution")
    model = tiny_model(root)
    texts = [p + o for p, o in FACTS]
    adapter = LoraFactory(model).make(root / "adapter", seed=3, rank=8, alpha=16, train_steps=150, texts=texts[:-1],
                                      learning_rate=3e-3, batch_size=8)  # fmt: skip
    rows = [RecordExample(1, i, keccak(t.encode()), t.encode()) for i, t in enumerate(texts)]
    snapshots = [(1, snapshot_root([r.content_hash for r in rows]))]
    blob = build_training_record(model, adapter, rows, snapshots, {"steps": 150}, held_out=[(1, HELD_OUT)],
                                 cache=root / "cache")  # fmt: skip
    engine = load_engine(model, root / "adapters", cache=root / "cache")
    adapter_id = engine.store.register(adapter).id
    attributor = Attributor(engine, root / "records")
    record_hash = keccak(blob)
    attributor.put(blob, "0x" + record_hash.hex())
    return {"root": root, "model": model, "adapter": adapter, "engine": engine, "adapter_id": adapter_id,
            "attributor": attributor, "blob": blob, "hash": record_hash, "snapshots": tuple(snapshots)}  # fmt: skip


def _ask(t, fact: int, method: Method, top_k: int = 3):
    prompt, answer = FACTS[fact]
    tok = t["engine"].tokenizer
    prompt_ids = tok.encode(prompt).ids
    output_ids = tok.encode(prompt + answer).ids[len(prompt_ids) :]
    return t["attributor"].attribute(t["hash"], t["adapter_id"], tuple(prompt_ids), tuple(output_ids), int(method),
                                     top_k, t["snapshots"])  # fmt: skip


@pytest.mark.parametrize("method", [Method.INFLUENCE, Method.SPANS, Method.BM25], ids=["influence", "spans", "bm25"])
def test_planted_facts_rank_their_contributor_first(trained, method):
    hits = 0
    for fact in range(HELD_OUT):
        chosen, rows = _ask(trained, fact, method)
        assert chosen is method
        weights = [w for _, _, w, _ in rows]
        assert all(w > 0 for w in weights) and weights == sorted(weights, reverse=True)
        assert all(index != HELD_OUT for _, index, _, _ in rows), "a held-out example was credited"
        texts = [(p + o).encode() for p, o in FACTS]
        assert all(digest == keccak(texts[index]) for _, index, _, digest in rows)  # each row's content hash
        hits += bool(rows) and rows[0][:2] == (1, fact)
    assert hits >= (9 if method is Method.INFLUENCE else 11), f"{method.name}: top-1 on {hits} of {HELD_OUT} facts"


def test_auto_prefers_spans_and_answers_are_deterministic(trained):
    chosen, rows = _ask(trained, 2, Method.AUTO)
    assert chosen is Method.SPANS and rows[0][1] == 2  # the answer continues fact 2's text verbatim
    unseen = tuple(trained["engine"].tokenizer.encode("Zebras eat grass quietly").ids)
    fallback = trained["attributor"].attribute(trained["hash"], trained["adapter_id"], unseen[:2], unseen[2:], 0, 3,
                                               trained["snapshots"])  # fmt: skip
    assert fallback[0] is Method.INFLUENCE
    fresh = Attributor(trained["engine"], trained["root"] / "records")  # decodes the stored record anew
    again = fresh.attribute(trained["hash"], trained["adapter_id"], *_query_ids(trained, 2), int(Method.AUTO), 3,
                            trained["snapshots"])  # fmt: skip
    assert again == (chosen, rows)


def _query_ids(t, fact: int):
    prompt, answer = FACTS[fact]
    tok = t["engine"].tokenizer
    prompt_ids = tok.encode(prompt).ids
    return tuple(prompt_ids), tuple(tok.encode(prompt + answer).ids[len(prompt_ids) :])


def test_features_are_equal_under_both_integer_op_implementations(trained, monkeypatch):
    tokens = trained["engine"].tokenizer.encode("Bob keeps a blue boat in the box.").ids
    default = GradientFeatures(trained["engine"], trained["adapter_id"]).features(tokens)
    monkeypatch.setenv("LORACHAIN_EXACT_OPS", "torch")
    engine = load_engine(trained["model"], trained["root"] / "adapters", cache=trained["root"] / "cache")
    assert engine.ops.name == "torch" and trained["engine"].ops.name == "numba"
    reference = GradientFeatures(engine, trained["adapter_id"]).features(tokens)
    assert torch.equal(default, reference)
    assert default.abs().max() > 0


def test_queries_that_do_not_match_are_refused(trained):
    attributor, ids = trained["attributor"], _query_ids(trained, 0)
    with pytest.raises(RequestError, match="snapshots"):
        attributor.attribute(trained["hash"], trained["adapter_id"], *ids, 1, 3, ((1, b"\x01" * 32),))
    with pytest.raises(RequestError, match="another adapter"):
        attributor.attribute(trained["hash"], "0x" + "ab" * 32, *ids, 1, 3, trained["snapshots"])
    with pytest.raises(UnknownRecordError):
        attributor.attribute(b"\x07" * 32, trained["adapter_id"], *ids, 1, 3, trained["snapshots"])
    with pytest.raises(RequestError, match="no output tokens"):
        attributor.attribute(trained["hash"], trained["adapter_id"], ids[0], (), 1, 3, trained["snapshots"])
    with pytest.raises(RequestError, match="hash to its id"):
        attributor.put(trained["blob"], "0x" + "00" * 32)


# --- records ---------------------------------------------------------------------------------------------


def _record(**changes) -> TrainingRecord:
    rows = tuple(RecordExample(3, i, keccak(t), t) for i, t in enumerate([b"one fact", b"two facts", b"three"]))
    fields = {
        "model_hash": b"\x01" * 32, "adapter_hash": b"\x02" * 32, "examples": rows, "rank": 2, "shift": 7,
        "snapshots": ((3, snapshot_root([r.content_hash for r in rows])),), "training": {"epochs": 1},
        "influence": np.arange(12, dtype=np.int32).reshape(3, 4) - 5,
    }  # fmt: skip
    fields.update(changes)
    return TrainingRecord(**fields)


def test_record_round_trips():
    record = _record()
    decoded = decode_record(record.encode(), record.hash)
    assert decoded.examples == record.examples and decoded.snapshots == record.snapshots
    assert np.array_equal(decoded.influence, record.influence) and decoded.shift == 7
    assert decoded.training == {"epochs": 1} and decoded.encode() == record.encode()
    bare = _record(influence=None)
    assert decode_record(bare.encode()).influence is None


def test_record_rejections():
    record = _record()
    with pytest.raises(RecordError, match="hash to its id"):
        decode_record(record.encode(), b"\x00" * 32)
    with pytest.raises(RecordError, match="snapshot root"):
        decode_record(_record(snapshots=((3, b"\x09" * 32),)).encode())
    forged = list(msgpack.unpackb(record.encode()))
    forged[4][1][3] = b"tampered text"
    with pytest.raises(RecordError, match="does not hash"):
        decode_record(msgpack.packb(forged, use_bin_type=True))
    short = list(msgpack.unpackb(record.encode()))
    short[8] = short[8][:-4]
    with pytest.raises(RecordError, match="do not match the examples"):
        decode_record(msgpack.packb(short, use_bin_type=True))
    with pytest.raises(RecordError, match="version"):
        decode_record(msgpack.packb([2, *forged[1:]], use_bin_type=True))
    with pytest.raises(RecordError, match="malformed"):
        decode_record(b"\xc1not msgpack")
    orphan = _record(snapshots=((4, snapshot_root([])),))
    with pytest.raises(RecordError):
        decode_record(orphan.encode())


# --- DataInf ---------------------------------------------------------------------------------------------


def test_scores_are_exact_integer_dot_products():
    rng = np.random.default_rng(5)
    u = rng.integers(-(1 << 19), 1 << 19, size=(50, 4096)).astype(np.int32)
    v = rng.integers(-(1 << 40), 1 << 40, size=4096)
    got = datainf.scores(u.astype(np.float64), v)
    q = datainf.normalize_query(v)
    assert int(np.abs(q).max()) < 1 << datainf.QUERY_BITS
    want = [sum(int(a) * int(b) for a, b in zip(row, q, strict=True)) for row in u[:5]]
    assert got[:5].tolist() == want


def test_precompute_matches_the_datainf_formula():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(20, 6))
    blocks = (slice(0, 4), slice(4, 6))
    train = list(range(16))
    u = datainf.precompute(g, blocks, train)
    v = rng.normal(size=6)
    for k in (0, 17):
        expected = 0.0
        for block in blocks:
            t, vl = g[train][:, block], v[block]
            lam = 0.1 * np.mean(t * t)
            hvp = sum(vl - (vl @ gi) / (lam + gi @ gi) * gi for gi in t) / (len(t) * lam)
            expected += hvp @ g[k, block]
        assert np.isclose(v @ u[k], expected)
    q, shift = datainf.quantize(u)
    assert np.abs(q).max() < 1 << datainf.U_BITS and np.allclose(q / 2.0**shift, u, atol=2.0**-shift)


def test_top_helpful_orders_by_score_then_row():
    score = np.array([5, -1, 7, 5, 0, 9])
    eligible = np.array([True, True, True, True, True, False])
    assert datainf.top_helpful(score, eligible, 3) == [(2, 7), (0, 5), (3, 5)]


def test_projection_is_fixed_and_balanced():
    p = rademacher(64, 100, b"hidden")
    assert torch.equal(p, rademacher(64, 100, b"hidden")) and not torch.equal(p, rademacher(64, 100, b"inner"))
    assert set(p.unique().tolist()) == {-1, 1} and abs(int(p.sum())) < 400


def test_record_files_are_reloaded_from_disk(trained):
    attributor = Attributor(trained["engine"], Path(trained["root"] / "records"))
    info = attributor.info("0x" + trained["hash"].hex())
    assert info["examples"] == len(FACTS) and info["held_out"] == 1 and info["influence_dims"] == 2048


def test_cite_and_record_commands(tmp_path):
    import json
    import subprocess
    import sys

    record = _record()
    path = tmp_path / "record.bin"
    path.write_bytes(record.encode())
    command = [sys.executable, "-m", "lorachain.cli", "attribution"]
    done = subprocess.run([*command, "cite", str(path), "which facts? two facts", "-k", "1"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    [citation] = json.loads(done.stdout)["citations"]
    assert (citation["index"], citation["text"]) == (1, "two facts")
    assert citation["doc_hash"] == "0x" + keccak(b"two facts").hex()
    summary = json.loads(subprocess.run([*command, "record", str(path)], capture_output=True, text=True,
                                        timeout=120).stdout)  # fmt: skip
    assert summary["id"] == "0x" + record.hash.hex() and summary["examples"] == 3
    path.write_bytes(record.encode()[:-3])
    bad = subprocess.run([*command, "record", str(path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "error:" in bad.stderr and "Traceback" not in bad.stderr
