"""Build the devnet's model: a small Llama trained from scratch on the generated corpus, on CPU.

``build_devnet_model`` generates the corpus, trains a byte-level BPE tokenizer, initializes a Llama
from a fixed seed, trains it briefly with AdamW in float32 on a fixed data order, and saves a Hugging
Face style checkpoint plus ``lorachain.json`` (build key, corpus hash, loss curve, file hashes). A
folder whose recorded build key matches is returned as is. Backend of ``lorachain model init-devnet``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lorachain.sidecar.checkpoint import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, LlamaConfig, save_checkpoint
from lorachain.sidecar.corpus import corpus_sha256, generate_documents, train_tokenizer
from lorachain.sidecar.float_model import LlamaModel

CODE_VERSION = "devnet-model-v1"  # bump whenever a change here or in corpus.py changes the built model
META_FILE = "lorachain.json"
DEFAULT_OUT = Path("~/.cache/lorachain/devnet-model")


@dataclass(frozen=True)
class DevnetSpec:
    """Everything that determines a devnet model, besides the seed and the code."""

    corpus_bytes: int
    vocab_target: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    context: int
    tie_embeddings: bool
    steps: int
    batch_size: int
    seq_len: int
    learning_rate: float
    warmup_steps: int
    eval_batches: int = 4


SPECS = {
    "devnet": DevnetSpec(
        corpus_bytes=400_000, vocab_target=2048, hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2,
        intermediate_size=688, context=256, tie_embeddings=False, steps=300, batch_size=16, seq_len=128,
        learning_rate=3e-3, warmup_steps=30,
    ),
    "tiny": DevnetSpec(
        corpus_bytes=60_000, vocab_target=512, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
        intermediate_size=176, context=128, tie_embeddings=True, steps=30, batch_size=8, seq_len=64,
        learning_rate=3e-3, warmup_steps=5, eval_batches=2,
    ),
}  # fmt: skip


def build_key(size: str, seed: int, corpus_hash: str) -> str:
    spec = asdict(SPECS[size])
    blob = json.dumps({"code": CODE_VERSION, "size": size, "seed": seed, "corpus": corpus_hash, "spec": spec},
                      sort_keys=True)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()


def build_devnet_model(out_dir: str | Path, *, size: str = "devnet", seed: int = 0) -> Path:
    """Build the model into ``out_dir`` (or find it already built there) and return the folder."""
    if size not in SPECS:
        raise ValueError(f"unknown size {size!r} (choose from {', '.join(SPECS)})")
    out_dir = Path(out_dir).expanduser()
    spec = SPECS[size]
    documents = generate_documents(spec.corpus_bytes, seed=seed)
    corpus_hash = corpus_sha256(documents)
    key = build_key(size, seed, corpus_hash)
    if _is_built(out_dir, key):
        _log(f"devnet model ({size}) already built in {out_dir}")
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / META_FILE).is_file():
        raise FileExistsError(f"{out_dir} is not empty and holds no devnet model; refusing to overwrite it")

    started = time.monotonic()
    tokenizer = train_tokenizer(documents, spec.vocab_target)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.context,
        rms_norm_eps=1e-5,
        tie_word_embeddings=spec.tie_embeddings,
        bos_token_id=0,
        eos_token_ids=(0,),
    )
    eos = tokenizer.token_to_id("<|endoftext|>")
    tokens = torch.tensor([t for doc in documents for t in [eos, *tokenizer.encode(doc).ids]], dtype=torch.long)
    _log(f"building devnet model ({size}): corpus {spec.corpus_bytes // 1000} KB, {len(tokens)} tokens, "
         f"vocab {config.vocab_size}")  # fmt: skip

    with _torch_threads(len(os.sched_getaffinity(0))):
        model, losses, eval_losses = train(config, spec, tokens, seed)

    tmp = out_dir.with_name(f".{out_dir.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, config, model.state_dict(), tokenizer)
    meta = {
        "build_key": key,
        "code_version": CODE_VERSION,
        "size": size,
        "seed": seed,
        "spec": asdict(spec),
        "corpus_sha256": corpus_hash,
        "corpus_documents": len(documents),
        "train_tokens": len(tokens),
        "loss_curve": [round(loss, 4) for loss in losses],
        "eval_loss_initial": round(eval_losses[0], 4),
        "eval_loss_final": round(eval_losses[1], 4),
        "files": {name: _sha256(tmp / name) for name in (CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE)},
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(out_dir)
    _log(f"devnet model ({size}) built in {time.monotonic() - started:.1f}s: eval loss "
         f"{eval_losses[0]:.3f} -> {eval_losses[1]:.3f}, saved to {out_dir}")  # fmt: skip
    return out_dir


def train(
    config: LlamaConfig, spec: DevnetSpec, tokens: torch.Tensor, seed: int
) -> tuple[LlamaModel, list[float], tuple[float, float]]:
    """Train a fresh model; return it, the loss of every step, and held-out loss before and after."""
    generator = torch.Generator().manual_seed(seed)
    model = LlamaModel(config)
    model.init_weights(generator)
    held_out = spec.eval_batches * spec.batch_size * (spec.seq_len + 1)
    train_tokens, eval_tokens = tokens[:-held_out], tokens[-held_out:]
    eval_batch = eval_tokens.view(-1, spec.seq_len + 1)

    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, betas=(0.9, 0.95), weight_decay=0.01)
    initial_eval = evaluate(model, eval_batch)
    losses = []
    started = time.monotonic()
    model.train()
    for step in range(spec.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(spec, step)
        starts = torch.randint(0, len(train_tokens) - spec.seq_len - 1, (spec.batch_size,), generator=generator)
        batch = torch.stack([train_tokens[s : s + spec.seq_len + 1] for s in starts.tolist()])
        loss = lm_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == spec.steps - 1:
            _log(f"step {step + 1}/{spec.steps} loss {losses[-1]:.4f} ({time.monotonic() - started:.1f}s)")
    model.eval()
    return model, losses, (initial_eval, evaluate(model, eval_batch))


def learning_rate(spec: DevnetSpec, step: int) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    if step < spec.warmup_steps:
        return spec.learning_rate * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def lm_loss(model: LlamaModel, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over a batch of [B, T + 1] token windows."""
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


@torch.no_grad()
def evaluate(model: LlamaModel, batch: torch.Tensor) -> float:
    return lm_loss(model, batch).item()


def _is_built(out_dir: Path, key: str) -> bool:
    try:
        meta = json.loads((out_dir / META_FILE).read_text(encoding="utf-8"))
        return meta["build_key"] == key and all(_sha256(out_dir / n) == h for n, h in meta["files"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lorachain model init-devnet", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"model folder (default {DEFAULT_OUT})")
    parser.add_argument("--size", choices=sorted(SPECS), default="devnet", help="devnet, or tiny for tests")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        path = build_devnet_model(args.out, size=args.size, seed=args.seed)
    except (FileExistsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
