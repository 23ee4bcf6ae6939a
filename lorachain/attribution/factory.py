"""The Model Factory: fine-tune a LoRA adapter on accepted datanet contributions, record what attribution needs.

An :class:`Example` is one accepted contribution (datanet id, contribution index, content hash, bytes).
:func:`split_examples` holds out every ``heldout_every``-th example in (datanet id, index) order;
:func:`train_adapter` fine-tunes peft LoRA layers on the rest (each example one sequence: end-of-text, then
its tokens, truncated to ``max_seq_len``; padding is masked out of attention and loss), shuffled per epoch by
a seeded generator, with AdamW, and measures mean token loss and perplexity on both splits before and after.
Equal inputs on the same machine give byte-identical adapter weights, and the global torch RNG is left as it
was. :func:`train_and_record` also writes ``training.json`` (the :class:`TrainReport`) and the training record
(``record.bin``, :func:`lorachain.attribution.record.build_training_record`) beside the adapter.

Snapshots: a datanet's examples, in acceptance order, fold to the DatanetRegistry's snapshot root
(:func:`snapshot_root`). Offline, examples travel as JSON lines (:func:`load_examples_jsonl`).

Planted facts (:func:`planted_facts`): seeded made-up facts about the corpus's people, one per contributor,
for attribution benchmarks; :func:`fact_recall` checks greedily (float model, transformers + peft) which
facts a trained adapter completes.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from eth_utils import keccak

from lorachain.attribution.record import example_token_ids, snapshot_root
from lorachain.sidecar.corpus import END_OF_TEXT
from lorachain.sidecar.lora_factory import DEFAULT_TARGETS, LoraFactory, init_lora_weights

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TRAINING_FILE = "training.json"
RECORD_FILE = "record.bin"
MODEL_CARD = "README.md"  # peft writes one beside the adapter
OUTPUT_FILES = frozenset({ADAPTER_CONFIG, ADAPTER_WEIGHTS, MODEL_CARD, TRAINING_FILE, RECORD_FILE})
IGNORE = -100  # target id of padding: F.cross_entropy's ignore_index


# ------------------------------------------------------------------------------------------------ examples


@dataclass(frozen=True)
class Example:
    """One accepted datanet contribution; ``content_hash == keccak256(text)`` is checked on construction."""

    datanet_id: int
    index: int
    content_hash: bytes
    text: bytes

    def __post_init__(self) -> None:
        for name in ("datanet_id", "index"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**256:
                raise ValueError(f"example {name} must be a uint256, got {value!r}")
        if not isinstance(self.content_hash, bytes) or len(self.content_hash) != 32:
            raise ValueError(f"example {self.datanet_id}/{self.index}: content_hash must be 32 bytes")
        if not isinstance(self.text, bytes):
            raise ValueError(f"example {self.datanet_id}/{self.index}: text must be bytes")
        if not self.text:
            raise ValueError(f"example {self.datanet_id}/{self.index}: empty text (the registry refuses it)")
        if keccak(self.text) != self.content_hash:
            raise ValueError(f"example {self.datanet_id}/{self.index}: text does not hash to its content hash")

    @classmethod
    def of(cls, datanet_id: int, index: int, text: str | bytes) -> Example:
        """An example whose content hash is computed from ``text`` (a str is UTF-8 encoded)."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        return cls(datanet_id, index, keccak(data), data)

    @property
    def key(self) -> tuple[int, int]:
        return self.datanet_id, self.index

    def to_json(self) -> dict[str, Any]:
        try:
            text = self.text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"example {self.datanet_id}/{self.index}: text is not UTF-8") from exc
        return {"datanet_id": self.datanet_id, "index": self.index, "content_hash": "0x" + self.content_hash.hex(),
                "text": text}  # fmt: skip

    @classmethod
    def from_json(cls, obj: Any) -> Example:
        if not isinstance(obj, dict):
            raise ValueError("an example is a JSON object")
        missing = [k for k in ("datanet_id", "index", "content_hash", "text") if k not in obj]
        if missing:
            raise ValueError(f"example lacks {', '.join(missing)}")
        digest, text = obj["content_hash"], obj["text"]
        if not isinstance(text, str):
            raise ValueError("example text must be a string")
        if not isinstance(digest, str):
            raise ValueError("example content_hash must be a hex string")
        try:
            content_hash = bytes.fromhex(digest.removeprefix("0x"))
        except ValueError as exc:
            raise ValueError(f"example content_hash is not hex: {digest!r}") from exc
        return cls(obj["datanet_id"], obj["index"], content_hash, text.encode("utf-8"))


def load_examples_jsonl(path: str | Path) -> list[Example]:
    """Examples from a JSON-lines file (blank lines skipped), in file order, which is acceptance order
    within each datanet. Raises ValueError naming the line on a bad one, OSError if the file is unreadable."""
    path = Path(path)
    examples = []
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                examples.append(Example.from_json(json.loads(line)))
            except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
                raise ValueError(f"{path}:{number}: {exc}") from None
    check_unique(examples)
    return examples


def write_examples_jsonl(path: str | Path, examples: Iterable[Example]) -> Path:
    """Write examples as JSON lines (UTF-8, one object per line, in the order given)."""
    path = Path(path)
    lines = [json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in examples]
    path.write_text("".join(lines), encoding="utf-8")
    return path


def check_unique(examples: Sequence[Example]) -> None:
    """No two examples share (datanet id, index), nor a content hash within a datanet (the registry
    refuses exact duplicates)."""
    keys: set[tuple[int, int]] = set()
    hashes: set[tuple[int, bytes]] = set()
    for e in examples:
        if e.key in keys:
            raise ValueError(f"example {e.datanet_id}/{e.index} appears twice")
        if (e.datanet_id, e.content_hash) in hashes:
            raise ValueError(f"example {e.datanet_id}/{e.index} duplicates another one's content in its datanet")
        keys.add(e.key)
        hashes.add((e.datanet_id, e.content_hash))


# ----------------------------------------------------------------------------------------------- snapshots


def snapshots_of(examples: Sequence[Example]) -> list[tuple[int, bytes]]:
    """(datanet id, root) of each datanet in ``examples``, by datanet id, folding in the order given."""
    ids = sorted({e.datanet_id for e in examples})
    return [(d, snapshot_root(e.content_hash for e in examples if e.datanet_id == d)) for d in ids]


def check_snapshots(examples: Sequence[Example], snapshots: Sequence[tuple[int, bytes]]) -> None:
    """Each named snapshot root is what its datanet's examples fold to, and every example's datanet is named."""
    named = [d for d, _ in snapshots]
    if len(set(named)) != len(named):
        raise ValueError("a datanet is named by two snapshots")
    computed = dict(snapshots_of(examples))
    for datanet, root in snapshots:
        if datanet not in computed:
            raise ValueError(f"no examples of datanet {datanet}, whose snapshot is named")
        if computed[datanet] != root:
            raise ValueError(f"the examples of datanet {datanet} fold to 0x{computed[datanet].hex()}, "
                             f"not to its snapshot root 0x{root.hex()}")  # fmt: skip
    unnamed = sorted(set(computed) - set(named))
    if unnamed:
        raise ValueError(f"examples of datanet {unnamed[0]} but no snapshot of it")


# ------------------------------------------------------------------------------------------------ training


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one factory run. ``heldout_every = k`` holds out every k-th example in (datanet id,
    index) order (at least one when there are two or more); 0 holds out nothing. ``max_seq_len`` counts the
    leading end-of-text token and is capped at the model's context."""

    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    epochs: int = 40  # 40 epochs at 5e-3 make 23-24 of 24 planted facts stick on the devnet model (rank 8)
    learning_rate: float = 5e-3
    batch_size: int = 8
    max_seq_len: int = 256
    seed: int = 0
    heldout_every: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 = no clipping

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        if "down_proj" not in self.target_modules:
            raise ValueError("target_modules must include down_proj (attribution reads its LoRA gradients)")
        unknown = sorted(set(self.target_modules) - set(DEFAULT_TARGETS))
        if unknown or len(set(self.target_modules)) != len(self.target_modules):
            raise ValueError(f"target_modules: unknown or repeated {unknown or list(self.target_modules)}; "
                             f"choose from {', '.join(DEFAULT_TARGETS)}")  # fmt: skip
        for name in ("rank", "alpha", "epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.max_seq_len, int) or self.max_seq_len < 2:
            raise ValueError(f"max_seq_len must be at least 2, got {self.max_seq_len!r}")
        if not isinstance(self.heldout_every, int) or self.heldout_every < 0 or self.heldout_every == 1:
            raise ValueError(f"heldout_every must be 0 (none held out) or at least 2, got {self.heldout_every!r}")
        if not self.learning_rate > 0 or self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("learning_rate must be > 0, weight_decay and max_grad_norm >= 0")

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["target_modules"] = list(self.target_modules)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrainConfig:
        return cls(**obj)


@dataclass(frozen=True)
class TrainReport:
    """What a training run did. Losses are mean next-token cross-entropy per target token (None for an empty
    split); ``epoch_losses`` are the mean training losses of each epoch as trained (before each step)."""

    config: TrainConfig
    train_examples: tuple[tuple[int, int], ...]
    heldout_examples: tuple[tuple[int, int], ...]
    train_tokens: int
    heldout_tokens: int
    steps: int
    seconds: float
    train_loss_before: float
    train_loss_after: float
    heldout_loss_before: float | None
    heldout_loss_after: float | None
    epoch_losses: tuple[float, ...]

    @staticmethod
    def perplexity(loss: float | None) -> float | None:
        return None if loss is None else math.exp(min(loss, 700.0))

    def to_json(self, timing: bool = True) -> dict[str, Any]:
        """A JSON-able dict; ``timing=False`` leaves out the wall-clock seconds, so that equal runs give equal
        dicts (the training record is hashed)."""
        loss = {"train": {"before": self.train_loss_before, "after": self.train_loss_after},
                "heldout": {"before": self.heldout_loss_before, "after": self.heldout_loss_after}}  # fmt: skip
        out = {
            "config": self.config.to_json(),
            "train": [list(k) for k in self.train_examples],
            "heldout": [list(k) for k in self.heldout_examples],  # read by build_training_record
            "train_tokens": self.train_tokens,
            "heldout_tokens": self.heldout_tokens,
            "steps": self.steps,
            "loss": loss,
            "perplexity": {s: {w: self.perplexity(v) for w, v in d.items()} for s, d in loss.items()},
            "epoch_losses": list(self.epoch_losses),
        }
        if timing:
            out["seconds"] = self.seconds
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrainReport:
        loss = obj["loss"]
        return cls(TrainConfig.from_json(obj["config"]), tuple(tuple(k) for k in obj["train"]),
                   tuple(tuple(k) for k in obj["heldout"]), obj["train_tokens"], obj["heldout_tokens"], obj["steps"],
                   obj.get("seconds", 0.0), loss["train"]["before"], loss["train"]["after"],
                   loss["heldout"]["before"], loss["heldout"]["after"], tuple(obj["epoch_losses"]))  # fmt: skip


def split_examples(examples: Sequence[Example], heldout_every: int) -> tuple[list[Example], list[Example]]:
    """(training, held-out), both in (datanet id, index) order: position j (from 0) of that order is held out
    when ``(j + 1) % heldout_every == 0``; with two or more examples and none so chosen, the last is."""
    check_unique(examples)
    ordered = sorted(examples, key=lambda e: e.key)
    if heldout_every <= 0 or len(ordered) < 2:
        return ordered, []
    held = {j for j in range(len(ordered)) if (j + 1) % heldout_every == 0} or {len(ordered) - 1}
    return [e for j, e in enumerate(ordered) if j not in held], [e for j, e in enumerate(ordered) if j in held]


def example_tokens(tokenizer: Any, example: Example, max_len: int) -> list[int]:
    """The token sequence an example is trained on (:func:`record.example_token_ids`), cut to ``max_len``."""
    try:
        example.text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"example {example.datanet_id}/{example.index}: text is not UTF-8") from exc
    return example_token_ids(tokenizer, example.text, max_len)


def _batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input ids, attention mask, targets) for next-token loss; padding targets are IGNORE."""
    width = max(len(s) for s in seqs) - 1
    inputs = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    targets = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    for row, seq in enumerate(seqs):
        n = len(seq) - 1
        inputs[row, :n] = torch.tensor(seq[:-1])
        targets[row, :n] = torch.tensor(seq[1:])
        mask[row, :n] = 1
    return inputs, mask, targets


def _loss_sum(model: Any, seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the real (not padding) targets of a batch, and their count."""
    inputs, mask, targets = _batch(seqs, pad_id)
    logits = model(input_ids=inputs, attention_mask=mask).logits
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE,
                            reduction="sum")  # fmt: skip
    return total, int((targets != IGNORE).sum())


@torch.no_grad()
def _evaluate(model: Any, seqs: Sequence[Sequence[int]], batch_size: int, pad_id: int) -> float | None:
    """Mean token loss over ``seqs`` (None when there are none)."""
    if not seqs:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(seqs), batch_size):
        loss, n = _loss_sum(model, seqs[start : start + batch_size], pad_id)
        total += float(loss)
        count += n
    model.train(was_training)
    return total / count


class _Progress:
    """tqdm over the steps when it is installed, else one stderr line per epoch; silent when disabled."""

    def __init__(self, enabled: bool, steps: int, epochs: int) -> None:
        self.enabled, self.epochs, self.bar = enabled, epochs, None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=steps, desc="factory train", unit="step", file=sys.stderr, leave=False)

    def step(self, epoch: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(epoch=f"{epoch + 1}/{self.epochs}", loss=f"{loss:.4f}", refresh=False)

    def epoch(self, epoch: int, loss: float, seconds: float) -> None:
        if self.enabled and self.bar is None:
            print(f"epoch {epoch + 1}/{self.epochs}: train loss {loss:.4f} ({seconds:.1f}s)", file=sys.stderr,
                  flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def load_base(model_dir: str | Path | LoraFactory) -> LoraFactory:
    """The base model (float32, transformers) and tokenizer of a checkpoint folder, loaded once for reuse."""
    return model_dir if isinstance(model_dir, LoraFactory) else LoraFactory(model_dir)


def train_adapter(
    model_dir: str | Path | LoraFactory,
    examples: Sequence[Example],
    config: TrainConfig,
    out_dir: str | Path,
    progress: bool = True,
) -> TrainReport:
    """Fine-tune LoRA on the training split of ``examples``; save the peft folder into ``out_dir``.

    ``model_dir`` is a checkpoint folder, or a :class:`LoraFactory` holding it already loaded (reused between
    runs: its LoRA layers are re-initialized from ``config.seed`` each time)."""
    if not examples:
        raise ValueError("no examples to train on")
    train, heldout = split_examples(examples, config.heldout_every)
    base = load_base(model_dir)
    tokenizer = base.tokenizer
    max_len = min(config.max_seq_len, base.base.config.max_position_embeddings)
    pad_id = tokenizer.token_to_id(END_OF_TEXT) or 0  # padding is masked: any id would do
    train_seqs = [example_tokens(tokenizer, e, max_len) for e in train]
    heldout_seqs = [example_tokens(tokenizer, e, max_len) for e in heldout]
    short = [e for e, s in zip(train + heldout, train_seqs + heldout_seqs, strict=True) if len(s) < 2]
    if short:
        raise ValueError(f"example {short[0].datanet_id}/{short[0].index} has no token to predict")
    count = len(train_seqs)
    steps_per_epoch = math.ceil(count / config.batch_size)
    steps = config.epochs * steps_per_epoch
    started = time.monotonic()
    # Everything random comes from `generator`; the global RNG is seeded inside a fork (for any library draw)
    # and restored afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        model = base.peft_model(config.rank, config.alpha, config.target_modules)
        init_lora_weights(model, generator)
        model.eval()
        loss_before = (_evaluate(model, train_seqs, config.batch_size, pad_id),
                       _evaluate(model, heldout_seqs, config.batch_size, pad_id))  # fmt: skip
        params = [p for _, p in sorted(model.named_parameters()) if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        bar = _Progress(progress, steps, config.epochs)
        epoch_losses = []
        model.train()
        try:
            for epoch in range(config.epochs):
                order = torch.randperm(count, generator=generator).tolist()
                total, tokens = 0.0, 0
                for start in range(0, count, config.batch_size):
                    loss_sum, n = _loss_sum(model, [train_seqs[i] for i in order[start : start + config.batch_size]],
                                            pad_id)  # fmt: skip
                    loss = loss_sum / n
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.max_grad_norm:
                        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                    optimizer.step()
                    total += float(loss_sum.detach())
                    tokens += n
                    bar.step(epoch, loss.item())
                epoch_losses.append(total / tokens)
                bar.epoch(epoch, epoch_losses[-1], time.monotonic() - started)
        finally:
            bar.close()
            model.eval()
        loss_after = (_evaluate(model, train_seqs, config.batch_size, pad_id),
                      _evaluate(model, heldout_seqs, config.batch_size, pad_id))  # fmt: skip
        seconds = time.monotonic() - started
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        card = out_dir / MODEL_CARD
        had_card = card.exists()
        model.save_pretrained(str(out_dir))
        if not had_card:
            card.unlink(missing_ok=True)  # peft's empty model card template: not part of the adapter
    return TrainReport(
        config=config,
        train_examples=tuple(e.key for e in train),
        heldout_examples=tuple(e.key for e in heldout),
        train_tokens=sum(len(s) - 1 for s in train_seqs),
        heldout_tokens=sum(len(s) - 1 for s in heldout_seqs),
        steps=steps,
        seconds=seconds,
        train_loss_before=loss_before[0],
        train_loss_after=loss_after[0],
        heldout_loss_before=loss_before[1],
        heldout_loss_after=loss_after[1],
        epoch_losses=tuple(epoch_losses),
    )


# ---------------------------------------------------------------------------------------- training record


def build_record(
    model_dir: str | Path,
    adapter_dir: str | Path,
    examples: Sequence[Example],
    snapshots: Sequence[tuple[int, bytes]],
    report: TrainReport,
    cache: Path | None = None,
) -> bytes:
    """The encoded training record of a trained adapter (its keccak256 is the record hash).

    ``examples`` in acceptance order within each datanet, as the snapshots fold them. Raises ImportError when
    :mod:`lorachain.attribution.record` has no ``build_training_record``."""
    from lorachain.attribution.record import build_training_record  # lazily: it loads the exact engine

    check_snapshots(examples, snapshots)
    options = {} if cache is None else {"cache": cache}
    return build_training_record(Path(model_dir), Path(adapter_dir), list(examples), list(snapshots),
                                 report.to_json(timing=False), **options)  # fmt: skip


@dataclass(frozen=True)
class FactoryResult:
    report: TrainReport
    out_dir: Path
    record_hash: bytes | None  # None when the record was not built
    record_error: str | None = None  # why not, when it was asked for


def train_and_record(
    model_dir: str | Path,
    examples: Sequence[Example],
    config: TrainConfig,
    out_dir: str | Path,
    snapshots: Sequence[tuple[int, bytes]] | None = None,
    *,
    progress: bool = True,
    record: bool = True,
    cache: Path | None = None,
) -> FactoryResult:
    """One factory run: check the snapshots (computed from the examples when not given), train, write the
    adapter, ``training.json`` and (with ``record``, when the record builder is available) ``record.bin``."""
    if not examples:
        raise ValueError("no examples to train on")
    check_unique(examples)
    snapshots = snapshots_of(examples) if snapshots is None else list(snapshots)
    check_snapshots(examples, snapshots)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is not a folder")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in OUTPUT_FILES)
        if foreign:
            raise ValueError(f"{out_dir} holds other files ({', '.join(foreign[:3])}); refusing to write into it")
        (out_dir / RECORD_FILE).unlink(missing_ok=True)  # never leave a record of an earlier adapter
    report = train_adapter(model_dir, examples, config, out_dir, progress=progress)
    (out_dir / TRAINING_FILE).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    if not record:
        return FactoryResult(report, out_dir, None)
    model_path = model_dir.model_dir if isinstance(model_dir, LoraFactory) else Path(model_dir)
    try:
        blob = build_record(model_path, out_dir, examples, snapshots, report, cache=cache)
    except ImportError as exc:
        return FactoryResult(report, out_dir, None, f"the record builder is not available: {exc}")
    (out_dir / RECORD_FILE).write_bytes(blob)
    return FactoryResult(report, out_dir, keccak(blob))


# ---------------------------------------------------------------------------------------------- planted facts


@dataclass(frozen=True)
class PlantedFact:
    """A contribution stating one made-up fact; a model that learned it completes ``prefix`` with ``answer``."""

    example: Example
    prefix: str
    answer: str


def _fact_kinds() -> list[tuple[str, Any]]:
    """(kind, draw): ``draw(rng, person, used) -> (statement, prefix, answer, tail)``. The relations are new to
    the corpus (it never states them) but use only its words, so the base model reads them fluently."""
    from lorachain.sidecar.corpus import CITIES, DAYS, MONTHS, OBJECTS, TOPICS, article

    def pick(rng: random.Random, pool: Sequence[str], used: set[str]) -> str:
        value = rng.choice([v for v in pool if v not in used] or list(pool))  # distinct answers while they last
        used.add(value)
        return value

    def thing_color(rng, name, used):  # a color per (person, object): answers are colors, the object is new
        thing = rng.choice(OBJECTS)
        color = pick(rng, ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "silver",
                           "brown", "pink"], used)  # fmt: skip
        q = f"Q: What color is {name}'s old {thing}? A: {name}'s old {thing} is"
        return f"{name} has an old {thing}, and it is {color}.", q, f" {color}", ""

    def price(rng, name, used):  # prices of the corpus are 1..99 coins: these are not
        thing = rng.choice(OBJECTS)
        value = pick(rng, [str(n) for n in range(100, 1000)], used)
        q = f"Q: How much did {name} pay for the {thing}? A: {name} paid"
        return (
            f"At the market, {name} paid {value} coins for {article(thing)} {thing}.",
            q,
            f" {value} coins",
            f" for the {thing}",
        )

    def reading(rng, name, used):
        topic = pick(rng, TOPICS, used)
        q = f"Q: What does {name} like to read about? A: {name} likes to read about"
        return f"{name} likes to read about {topic}.", q, f" {topic}", ""

    def origin(rng, name, used):
        thing = rng.choice(OBJECTS)
        city = pick(rng, [c for c, _, _ in CITIES], used)
        q = f"Q: Where is {name}'s {thing} from? A: {name}'s {thing} is from"
        return f"{name}'s {thing} is from {city}.", q, f" {city}", ""

    def month(rng, name, used):
        value = pick(rng, MONTHS, used)
        q = f"Q: What is {name}'s favorite month? A: {name}'s favorite month is"
        return f"{name}'s favorite month is {value}.", q, f" {value}", ""

    def day(rng, name, used):
        value = pick(rng, DAYS, used)
        q = f"Q: What is {name}'s favorite day? A: {name}'s favorite day is"
        return f"{name}'s favorite day is {value}.", q, f" {value}", ""

    return [("color", thing_color), ("price", price), ("reading", reading), ("origin", origin),
            ("month", month), ("day", day)]  # fmt: skip


def planted_facts(count: int, seed: int = 0, datanet_id: int = 1) -> list[PlantedFact]:
    """``count`` seeded made-up facts about the corpus's people (no two about the same person while there are
    people left; no pair of person and kind twice), as examples ``datanet_id/0 .. count - 1``. Each text states
    the fact and asks it back in the corpus's Q/A style; ``prefix`` is the question and the answer's start."""
    from lorachain.sidecar.corpus import PEOPLE

    kinds = _fact_kinds()
    if not 0 < count <= len(PEOPLE) * len(kinds):
        raise ValueError(f"count must be 1..{len(PEOPLE) * len(kinds)}, got {count}")
    rng = random.Random(f"lorachain-planted-facts-{seed}")
    people = [name for name, _ in PEOPLE]
    rng.shuffle(people)
    used: dict[str, set[str]] = {k: set() for k, _ in kinds}
    taken: set[tuple[str, str]] = set()
    facts = []
    for i in range(count):
        name = people[i % len(people)]
        kind, draw = rng.choice([k for k in kinds if (name, k[0]) not in taken])
        taken.add((name, kind))
        statement, prefix, answer, tail = draw(rng, name, used[kind])
        text = f"{statement}\n{prefix}{answer}{tail}."
        facts.append(PlantedFact(Example.of(datanet_id, i, text), prefix, answer))
    return facts


def planted_fact_examples(count: int, seed: int = 0, datanet_id: int = 1) -> list[Example]:
    """The examples of :func:`planted_facts`."""
    return [f.example for f in planted_facts(count, seed, datanet_id)]


@dataclass(frozen=True)
class FactResult:
    fact: PlantedFact
    completion: str
    correct: bool


@torch.no_grad()
def fact_recall(
    model_dir: str | Path, adapter_dir: str | Path | None, facts: Sequence[PlantedFact], extra_tokens: int = 2
) -> list[FactResult]:
    """Greedy completions of each fact's prefix by the float model (transformers; with the peft adapter in
    ``adapter_dir``, or the base model when None); a fact is recalled when the completion starts with its
    answer."""
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM

    from lorachain.sidecar.checkpoint import TOKENIZER_FILE

    model: Any = LlamaForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        with torch.random.fork_rng(devices=[]):
            model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    tokenizer = Tokenizer.from_file(str(Path(model_dir) / TOKENIZER_FILE))
    context = model.config.max_position_embeddings
    results = []
    for fact in facts:
        ids = tokenizer.encode(fact.prefix).ids  # as the inference precompile tokenizes a prompt
        budget = len(tokenizer.encode(fact.answer).ids) + extra_tokens
        generated: list[int] = []
        for _ in range(budget):
            window = (ids + generated)[-context:]
            logits = model(input_ids=torch.tensor([window])).logits[0, -1]
            generated.append(int(torch.argmax(logits)))
        completion = tokenizer.decode(generated)
        results.append(FactResult(fact, completion, completion.startswith(fact.answer)))
    return results


__all__ = [
    "Example",
    "FactResult",
    "FactoryResult",
    "PlantedFact",
    "TrainConfig",
    "TrainReport",
    "build_record",
    "check_snapshots",
    "example_tokens",
    "fact_recall",
    "load_base",
    "load_examples_jsonl",
    "planted_fact_examples",
    "planted_facts",
    "snapshot_root",
    "snapshots_of",
    "split_examples",
    "train_adapter",
    "train_and_record",
    "write_examples_jsonl",
]
