"""Model Factory: examples and snapshots, the held-out split, LoRA training on the tiny devnet model, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from eth_utils import keccak

from lorachain.attribution.factory import (
    Example,
    TrainConfig,
    TrainReport,
    check_snapshots,
    fact_recall,
    load_base,
    load_examples_jsonl,
    planted_fact_examples,
    planted_facts,
    snapshot_root,
    snapshots_of,
    split_examples,
    train_adapter,
    write_examples_jsonl,
)
from lorachain.cli import main as lorachain_main
from tests.sidecar_fixtures import tiny_model

# Small and quick on the tiny model: a few epochs at a high rate, short sequences.
QUICK = TrainConfig(epochs=2, learning_rate=1e-2, batch_size=8, max_seq_len=32, seed=3, heldout_every=10)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("factory"))


@pytest.fixture(scope="module")
def base(tiny: Path):
    return load_base(tiny)


# ------------------------------------------------------------------------------------ examples, snapshots


def test_example_checks_its_content_hash():
    text = b"Alice's secret number is 7342."
    example = Example(1, 0, keccak(text), text)
    assert Example.of(1, 0, text.decode()) == example and example.key == (1, 0)
    with pytest.raises(ValueError, match="does not hash"):
        Example(1, 0, keccak(b"something else"), text)
    with pytest.raises(ValueError, match="32 bytes"):
        Example(1, 0, keccak(text)[:31], text)
    with pytest.raises(ValueError, match="empty"):
        Example.of(1, 0, b"")
    with pytest.raises(ValueError, match="uint256"):
        Example(-1, 0, keccak(text), text)
    with pytest.raises(ValueError, match="bytes"):
        Example(1, 0, keccak(text), text.decode())  # type: ignore[arg-type]


def test_snapshot_root_is_the_registry_fold():
    hashes = [keccak(t) for t in (b"one", b"two", b"three")]
    root = b"\x00" * 32
    for h in hashes:
        root = keccak(root + h)
    assert snapshot_root(hashes) == root
    assert snapshot_root([]) == b"\x00" * 32
    assert snapshot_root(list(reversed(hashes))) != root  # acceptance order matters

    examples = [Example.of(2, 5, "b"), Example.of(1, 0, "one"), Example.of(2, 1, "a"), Example.of(1, 3, "two")]
    # Per datanet, in the order given (acceptance order), whatever the indexes say.
    assert snapshots_of(examples) == [(1, snapshot_root([keccak(b"one"), keccak(b"two")])),
                                      (2, snapshot_root([keccak(b"b"), keccak(b"a")]))]  # fmt: skip
    check_snapshots(examples, snapshots_of(examples))
    with pytest.raises(ValueError, match="fold to"):
        check_snapshots(examples, [(1, b"\x11" * 32), (2, snapshots_of(examples)[1][1])])
    with pytest.raises(ValueError, match="no snapshot of it"):
        check_snapshots(examples, snapshots_of(examples)[:1])
    with pytest.raises(ValueError, match="no examples of datanet 9"):
        check_snapshots(examples, [*snapshots_of(examples), (9, b"\x00" * 32)])


def test_jsonl_round_trip_and_bad_lines(tmp_path: Path):
    examples = [Example.of(1, i, f"Fact number {i}: Grüße from Oslo.") for i in range(4)]
    path = write_examples_jsonl(tmp_path / "ex.jsonl", examples)
    assert load_examples_jsonl(path) == examples
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first == {"datanet_id": 1, "index": 0, "content_hash": "0x" + keccak(examples[0].text).hex(),
                     "text": "Fact number 0: Grüße from Oslo."}  # fmt: skip

    good = path.read_text(encoding="utf-8").splitlines()
    cases = {
        "not json": (good[0] + "\n{oops\n", ":2:"),
        "hash mismatch": (good[0] + "\n" + good[1].replace("number 1", "number 9") + "\n", "does not hash"),
        "missing field": ('{"datanet_id": 1, "index": 0, "text": "x"}\n', "lacks content_hash"),
        "not an object": ("[1, 2]\n", "JSON object"),
        "duplicate": (good[0] + "\n" + good[0] + "\n", "appears twice"),
        "bad hex": ('{"datanet_id": 1, "index": 0, "text": "x", "content_hash": "0xzz"}\n', "not hex"),
    }
    for name, (content, message) in cases.items():
        bad = tmp_path / f"{name}.jsonl"
        bad.write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            load_examples_jsonl(bad)
    with pytest.raises(OSError):
        load_examples_jsonl(tmp_path / "missing.jsonl")


def test_heldout_split_is_deterministic():
    examples = [Example.of(d, i, f"text {d} {i}") for d in (2, 1) for i in range(7)]
    train, held = split_examples(examples, 5)
    ordered = sorted(examples, key=lambda e: e.key)
    assert held == [ordered[4], ordered[9]] and train == [e for e in ordered if e not in held]
    assert split_examples(list(reversed(examples)), 5) == (train, held)  # independent of the input order
    assert split_examples(examples[:3], 10)[1] == [sorted(examples[:3], key=lambda e: e.key)[-1]]  # at least one
    assert split_examples(examples[:1], 10) == (examples[:1], [])
    assert split_examples(examples, 0) == (ordered, [])
    with pytest.raises(ValueError, match="appears twice"):
        split_examples([examples[0], examples[0]], 5)


def test_train_config_checks():
    assert TrainConfig().rank == 8 and TrainConfig().alpha == 16 and "down_proj" in TrainConfig().target_modules
    assert TrainConfig.from_json(json.loads(json.dumps(QUICK.to_json()))) == QUICK
    with pytest.raises(ValueError, match="down_proj"):
        TrainConfig(target_modules=("q_proj", "v_proj"))
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig(target_modules=("down_proj", "lm_head"))
    with pytest.raises(ValueError, match="heldout_every"):
        TrainConfig(heldout_every=1)
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)


def test_planted_facts_are_seeded_and_distinct():
    facts = planted_facts(24, seed=0)
    assert [f.example for f in facts] == planted_fact_examples(24, seed=0)
    assert planted_fact_examples(24, seed=1) != planted_fact_examples(24, seed=0)
    assert [f.example.key for f in facts] == [(1, i) for i in range(24)]
    assert len({f.prefix for f in facts}) == 24  # one fact per person here
    for fact in facts:
        assert (fact.prefix + fact.answer).encode() in fact.example.text
    assert len({f.example.content_hash for f in planted_facts(200, seed=0)}) == 200


# -------------------------------------------------------------------------------------------- training


def test_training_lowers_loss_is_reproducible_and_leaves_the_global_rng(base, tiny: Path, tmp_path: Path):
    examples = planted_fact_examples(30, seed=0)
    rng_state = torch.get_rng_state()
    report = train_adapter(base, examples, QUICK, tmp_path / "a", progress=False)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert sorted((tmp_path / "a").iterdir()) == [tmp_path / "a" / "adapter_config.json",
                                                  tmp_path / "a" / "adapter_model.safetensors"]  # fmt: skip
    assert report.train_loss_after < report.train_loss_before - 0.1, report
    assert report.heldout_examples == ((1, 9), (1, 19), (1, 29)) and len(report.train_examples) == 27
    assert report.steps == 2 * 4 and len(report.epoch_losses) == 2 and report.train_tokens > 0
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["heldout"] == [[1, 9], [1, 19], [1, 29]] and doc["config"]["rank"] == 8
    assert doc["perplexity"]["train"]["after"] == pytest.approx(TrainReport.perplexity(report.train_loss_after))
    assert "seconds" in doc and "seconds" not in report.to_json(timing=False)
    assert TrainReport.from_json(doc) == report

    # The same inputs again (in another order) give the same weights, also through a freshly loaded model.
    again = train_adapter(tiny, list(reversed(examples)), QUICK, tmp_path / "b", progress=False)
    weights = "adapter_model.safetensors"
    assert (tmp_path / "a" / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()
    assert again.to_json(timing=False) == report.to_json(timing=False)
    # Another seed trains other weights.
    other = TrainConfig(**{**QUICK.to_json(), "seed": 4, "epochs": 1})
    train_adapter(base, examples, other, tmp_path / "c", progress=False)
    assert (tmp_path / "c" / weights).read_bytes() != (tmp_path / "a" / weights).read_bytes()

    results = fact_recall(tiny, tmp_path / "a", planted_facts(30, seed=0)[:3])
    assert [r.fact.example.index for r in results] == [0, 1, 2] and all(isinstance(r.completion, str) for r in results)


def test_cli_train_writes_adapter_report_and_record(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    examples = planted_fact_examples(12, seed=5, datanet_id=3)
    path = write_examples_jsonl(tmp_path / "ex.jsonl", examples)
    root = snapshot_root(e.content_hash for e in examples)
    out = tmp_path / "out"
    argv = ["factory", "train", "--model", str(tiny), "--examples", str(path), "--out", str(out), "--epochs", "1",
            "--max-seq-len", "32", "--heldout-every", "4", "--no-progress", "--cache", str(tmp_path / "cache"),
            "--snapshot", f"3:0x{root.hex()}"]  # fmt: skip
    assert lorachain_main(argv) == 0
    printed = capsys.readouterr().out
    assert "loss" in printed and "perplexity" in printed
    training = json.loads((out / "training.json").read_text())
    assert training["heldout"] == [[3, 3], [3, 7], [3, 11]] and training["steps"] == 2
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()

    record_module = pytest.importorskip("lorachain.attribution.record")
    if not hasattr(record_module, "build_training_record"):
        pytest.skip("the training record builder is not there yet")
    blob = (out / "record.bin").read_bytes()
    assert f"record 0x{keccak(blob).hex()}" in printed
    record = record_module.decode_record(blob, keccak(blob))
    assert record.snapshots == ((3, root),)
    assert [(e.index, e.held_out) for e in record.examples] == [(i, i % 4 == 3) for i in range(12)]


def test_cli_refuses_bad_input(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    examples = planted_fact_examples(4, seed=0)
    good = write_examples_jsonl(tmp_path / "good.jsonl", examples)
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "broken.jsonl").write_text(good.read_text().splitlines()[0] + "\nnot json\n")
    tampered = json.loads(good.read_text().splitlines()[0])
    tampered["text"] += "!"
    (tmp_path / "tampered.jsonl").write_text(json.dumps(tampered) + "\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    root = "0x" + snapshot_root(e.content_hash for e in examples).hex()
    common = ["--model", str(tiny), "--no-progress", "--no-record"]
    cases = [
        (["--examples", str(tmp_path / "missing.jsonl")], "cannot read"),
        (["--examples", str(tmp_path / "empty.jsonl")], "no examples"),
        (["--examples", str(tmp_path / "broken.jsonl")], "broken.jsonl:2"),
        (["--examples", str(tmp_path / "tampered.jsonl")], "does not hash"),
        (["--examples", str(good), "--snapshot", "1:0x" + "11" * 32], "fold to"),
        (["--examples", str(good), "--snapshot", "2:" + root], "no examples of datanet 2"),
        (["--examples", str(good), "--snapshot", "1:0x1234"], "DATANET_ID:0xROOT"),
        (["--examples", str(good), "--targets", "q_proj,v_proj"], "down_proj"),
        (["--examples", str(good), "--model", str(tmp_path / "nowhere")], "not a folder"),
    ]
    for extra, message in cases:
        assert lorachain_main(["factory", "train", "--out", str(tmp_path / "out"), *common, *extra]) == 1, extra
        err = capsys.readouterr().err
        assert "error:" in err and message in err, (extra, err)
    argv = ["factory", "train", "--examples", str(good), "--out", str(tmp_path / "taken"), *common]
    assert lorachain_main(argv) == 1
    assert "refusing" in capsys.readouterr().err and (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "out").exists()


def test_cli_planted_and_recall(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    assert (
        lorachain_main(["factory", "planted", "--count", "5", "--seed", "2", "--out", str(tmp_path / "p.jsonl")]) == 0
    )
    pairs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    facts = planted_facts(5, seed=2)
    assert load_examples_jsonl(tmp_path / "p.jsonl") == [f.example for f in facts]
    assert pairs == [{"index": f.example.index, "prefix": f.prefix, "answer": f.answer} for f in facts]
    assert lorachain_main(["factory", "recall", "--model", str(tiny), "--count", "3"]) == 0  # the base model alone
    assert capsys.readouterr().out.splitlines()[-1].endswith("/3 facts recalled")
    assert lorachain_main(["factory", "recall", "--model", str(tiny), "--adapter", str(tmp_path)]) == 1
    assert "not a peft adapter folder" in capsys.readouterr().err
    assert lorachain_main(["factory", "planted", "--count", "0", "--out", str(tmp_path / "q.jsonl")]) == 1
