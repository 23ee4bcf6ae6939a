"""The devnet base model: built deterministically from the generated corpus, cached, and loadable."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time

import pytest

from lorachain.sidecar.checkpoint import load_checkpoint, save_checkpoint
from lorachain.sidecar.devnet_model import META_FILE, build_devnet_model
from lorachain.sidecar.types import CheckpointError


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_is_deterministic_trained_and_cached(tmp_path):
    first = build_devnet_model(tmp_path / "a", size="tiny")
    second = build_devnet_model(tmp_path / "b", size="tiny")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert sha(first / name) == sha(second / name)
    meta = json.loads((first / META_FILE).read_text())
    assert meta["eval_loss_final"] < meta["eval_loss_initial"] - 0.5  # it learned something
    started = time.monotonic()
    assert build_devnet_model(first, size="tiny") == first  # cached: no rebuild
    assert time.monotonic() - started < 2
    ckpt = load_checkpoint(first)
    assert ckpt.config.vocab_size == ckpt.tokenizer.get_vocab_size()


def test_cli_builds_and_refuses_a_foreign_folder(tmp_path):
    foreign = tmp_path / "not-a-model"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    cli = [sys.executable, "-m", "lorachain.cli", "model", "init-devnet", "--size", "tiny"]
    proc = subprocess.run([*cli, "--out", str(foreign)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "refusing" in proc.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"
    proc = subprocess.run([*cli, "--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == str(tmp_path / "m")


def test_sharded_checkpoints_load_like_single_files(tmp_path):
    ckpt = load_checkpoint(build_devnet_model(tmp_path / "m", size="tiny"))
    save_checkpoint(tmp_path / "sharded", ckpt.config, ckpt.tensors, ckpt.tokenizer, shard_max_bytes=40_000)
    assert len(list((tmp_path / "sharded").glob("model-*-of-*.safetensors"))) > 2
    again = load_checkpoint(tmp_path / "sharded")
    assert again.config == ckpt.config
    assert all(again.tensors[k].equal(v) for k, v in ckpt.tensors.items())


def test_broken_checkpoints_are_refused_with_the_reason(tmp_path):
    folder = build_devnet_model(tmp_path / "m", size="tiny")
    (folder / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)
    folder = build_devnet_model(tmp_path / "n", size="tiny")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(folder)
