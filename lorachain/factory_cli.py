"""`lorachain factory ...`: the Model Factory (LoRA fine-tuning on datanet snapshots, with training records).

lorachain factory train --examples FILE.jsonl --out DIR [--model DIR] [--snapshot ID:0xROOT ...] [options]
lorachain factory planted --count 24 --out facts.jsonl          (planted-fact examples for benchmarks)
lorachain factory recall --adapter DIR --count 24 [--model DIR]  (how many planted facts an adapter completes)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lorachain.adapter_cli import CliError


def add_commands(sub: Any) -> None:
    """Register the `factory` subcommands on the top-level parser's subparsers."""
    p = sub.add_parser("factory", help="Model Factory: fine-tune LoRA adapters on datanet snapshots")
    factory = p.add_subparsers(dest="factory_command", required=True)

    q = factory.add_parser("train", help="fine-tune a LoRA adapter on examples; write it, training.json, record.bin")
    q.add_argument("--examples", required=True, type=Path, help="JSON lines: datanet_id, index, content_hash, text")
    q.add_argument("--out", required=True, type=Path, help="output folder (peft adapter + training.json + record.bin)")
    _model_arg(q)
    q.add_argument("--snapshot", action="append", default=[], metavar="DATANET_ID:0xROOT",
                   help="the snapshot root a datanet's examples must fold to (repeat per datanet)")  # fmt: skip
    q.add_argument("--rank", type=int, default=8)
    q.add_argument("--alpha", type=int, default=16)
    q.add_argument("--targets", default=None, help="comma-separated LoRA modules (default: all seven projections; "
                   "down_proj is required)")  # fmt: skip
    q.add_argument("--epochs", type=int, default=None, help="passes over the training split (default: TrainConfig)")
    q.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default: TrainConfig)")
    q.add_argument("--batch-size", type=int, default=None)
    q.add_argument("--max-seq-len", type=int, default=None, help="tokens per example, end-of-text included")
    q.add_argument("--heldout-every", type=int, default=None, help="hold out every k-th example (0: none)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.add_argument("--no-record", action="store_true", help="train only: no training record")
    q.add_argument("--cache", default=None, help="artifact cache for the record's exact engine "
                   "(default ~/.cache/lorachain or $LORACHAIN_CACHE)")  # fmt: skip
    q.set_defaults(func=cmd_train)

    q = factory.add_parser("planted", help="write seeded planted-fact examples (one per contributor) as JSON lines")
    q.add_argument("--count", type=int, default=24)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--datanet", type=int, default=1, help="datanet id of the examples")
    q.add_argument("--out", required=True, type=Path)
    q.set_defaults(func=cmd_planted)

    q = factory.add_parser("recall", help="greedy check of which planted facts an adapter completes (float model)")
    q.add_argument("--adapter", type=Path, default=None, help="peft folder (default: the base model alone)")
    q.add_argument("--count", type=int, default=24)
    q.add_argument("--seed", type=int, default=0)
    _model_arg(q)
    q.set_defaults(func=cmd_recall)


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=None, help="checkpoint folder (default: the devnet model)")


def _model(args: argparse.Namespace) -> Path:
    if args.model is not None:
        if not args.model.is_dir():
            raise CliError(f"--model {args.model} is not a folder")
        return args.model
    from lorachain.sidecar.devnet_model import DEFAULT_OUT, build_devnet_model

    return build_devnet_model(DEFAULT_OUT)


def _quiet_libraries(progress: bool) -> None:
    """No transformers "Loading weights" bar without progress, and no warning about peft's use of a
    transformers API that transformers deprecates (nothing for a user to change)."""
    import warnings

    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    if not progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def parse_snapshot(spec: str) -> tuple[int, bytes]:
    try:
        datanet, root = spec.split(":", 1)
        value = bytes.fromhex(root.removeprefix("0x"))
        if len(value) != 32 or int(datanet) < 0:
            raise ValueError
        return int(datanet), value
    except ValueError:
        raise CliError(f"--snapshot takes DATANET_ID:0xROOT (a 32-byte hex root), got {spec!r}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from lorachain.attribution.factory import TrainConfig, load_examples_jsonl, snapshots_of, train_and_record

    snapshots = [parse_snapshot(s) for s in args.snapshot] or None
    try:
        examples = load_examples_jsonl(args.examples)
    except OSError as exc:
        raise CliError(f"cannot read --examples {args.examples}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if not examples:
        raise CliError(f"{args.examples} holds no examples")
    targets = None if args.targets is None else tuple(t.strip() for t in args.targets.split(",") if t.strip())
    options = {"target_modules": targets, "epochs": args.epochs, "learning_rate": args.lr,
               "batch_size": args.batch_size, "max_seq_len": args.max_seq_len,
               "heldout_every": args.heldout_every}  # fmt: skip
    try:
        config = TrainConfig(rank=args.rank, alpha=args.alpha, seed=args.seed,
                             **{k: v for k, v in options.items() if v is not None})  # fmt: skip
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if snapshots is None:
        for datanet, root in snapshots_of(examples):
            print(f"snapshot of datanet {datanet} (computed from the examples): 0x{root.hex()}", file=sys.stderr)
    model = _model(args)
    _quiet_libraries(progress=not args.no_progress)
    try:
        result = train_and_record(model, examples, config, args.out, snapshots, progress=not args.no_progress,
                                  record=not args.no_record,
                                  cache=Path(args.cache).expanduser() if args.cache else None)  # fmt: skip
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    report = result.report
    print(f"trained on {len(report.train_examples)} examples ({len(report.heldout_examples)} held out), "
          f"{report.steps} steps in {report.seconds:.1f}s -> {result.out_dir}")  # fmt: skip
    for split, before, after in (("train", report.train_loss_before, report.train_loss_after),
                                 ("held-out", report.heldout_loss_before, report.heldout_loss_after)):  # fmt: skip
        if before is None:
            print(f"  {split:<8} (empty)")
            continue
        ppl = report.perplexity
        print(f"  {split:<8} loss {before:.4f} -> {after:.4f}   perplexity {ppl(before):.3f} -> {ppl(after):.3f}")
    if result.record_hash is not None:
        print(f"record 0x{result.record_hash.hex()} ({result.out_dir / 'record.bin'})")
    elif result.record_error:
        print(f"record: not written ({result.record_error})", file=sys.stderr)
    return 0


def cmd_planted(args: argparse.Namespace) -> int:
    from lorachain.attribution.factory import planted_facts, write_examples_jsonl

    try:
        facts = planted_facts(args.count, args.seed, args.datanet)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    write_examples_jsonl(args.out, [f.example for f in facts])
    for fact in facts:
        print(json.dumps({"index": fact.example.index, "prefix": fact.prefix, "answer": fact.answer}))
    return 0


def cmd_recall(args: argparse.Namespace) -> int:
    from lorachain.attribution.factory import fact_recall, planted_facts

    if args.adapter is not None and not (args.adapter / "adapter_config.json").is_file():
        raise CliError(f"--adapter {args.adapter} is not a peft adapter folder")
    try:
        facts = planted_facts(args.count, args.seed)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    model = _model(args)
    _quiet_libraries(progress=False)
    results = fact_recall(model, args.adapter, facts)
    for r in results:
        mark = "ok  " if r.correct else "MISS"
        print(f"{mark} {r.fact.prefix!r} -> {r.completion!r} (want {r.fact.answer!r})")
    print(f"{sum(r.correct for r in results)}/{len(results)} facts recalled")
    return 0
