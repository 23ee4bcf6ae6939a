"""``lorachain attribution ...``: explain paid inferences; inspect training records."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lorachain.adapter_cli import CliError, _common, _Session


def add_commands(sub: Any) -> None:
    """Register the ``attribution`` subcommands on the top-level parser's subparsers."""
    p = sub.add_parser("attribution", help="which data contributions shaped an answer, and what each was paid")
    attribution = p.add_subparsers(dest="attribution_command", required=True)
    q = attribution.add_parser("explain", help="explain an InferenceRouter.infer transaction from its receipt")
    q.add_argument("tx_hash", help="transaction hash (0x...)")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _common(q)
    q.set_defaults(func=cmd_explain)
    q = attribution.add_parser("verify", help="re-derive an inference's attributed split from the chain and compare")
    q.add_argument("tx_hash", help="transaction hash (0x...)")
    _common(q)
    q.set_defaults(func=cmd_verify)
    q = attribution.add_parser("cite", help="RAG: the snapshot passages (document hash, byte span) that support a text")
    q.add_argument("record", type=Path, help="a training record file (it carries the snapshot's documents)")
    q.add_argument("text", help="the question and/or answer to find support for")
    q.add_argument("-k", type=int, default=3, help="citations to return (default: %(default)s)")
    q.set_defaults(func=cmd_cite)
    q = attribution.add_parser("record", help="summarize a training record file (checks it)")
    q.add_argument("path", type=Path)
    q.set_defaults(func=cmd_record)


def cmd_explain(args: argparse.Namespace) -> int:
    from lorachain.attribution.explain import ExplainError, explain_receipt, format_explanation

    session = _Session(args)
    try:
        receipt = session.w3.eth.get_transaction_receipt(args.tx_hash)
    except Exception as exc:
        raise CliError(f"no receipt for {args.tx_hash}: {exc}") from exc
    try:
        explanation = explain_receipt(receipt, session.router)
    except ExplainError as exc:
        raise CliError(str(exc)) from exc
    print(json.dumps(explanation, indent=2) if args.json else format_explanation(explanation))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 when every payee is what the chain re-derives, 1 (with the differences) otherwise."""
    from lorachain.attribution.explain import ExplainError
    from lorachain.attribution.verify import verify_inference

    session = _Session(args)
    datanets = session.contract(session.registry.functions.datanets().call(), "DatanetRegistry")
    try:
        report = verify_inference(session.w3, session.router, session.registry, datanets, args.tx_hash)
    except ExplainError as exc:
        raise CliError(str(exc)) from exc
    except Exception as exc:  # no receipt, a node without the precompiles or history, ...
        raise CliError(f"cannot verify {args.tx_hash}: {exc}") from exc
    print(json.dumps(report, indent=2))
    return 0 if report["verified"] else 1


def cmd_cite(args: argparse.Namespace) -> int:
    """Fixed-point BM25 over the record's documents; each citation checked with ``verify_citation``."""
    from lorachain.attribution.bm25 import Bm25Index, cite, verify_citation

    record = _load_record(args.record)[1]
    if not 1 <= args.k <= 64:
        raise CliError("-k must be in 1..64")
    documents = [e.text for e in record.examples]
    try:
        citations = cite(Bm25Index(documents), args.text, args.k)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    out = []
    for c in citations:
        example = record.examples[c.doc_id]
        assert verify_citation(documents[c.doc_id], c)
        out.append({"datanet_id": example.datanet_id, "index": example.index, "doc_hash": "0x" + c.doc_hash.hex(),
                    "start": c.start, "end": c.end, "text": documents[c.doc_id][c.start : c.end].decode()})  # fmt: skip
    print(json.dumps({"query": args.text, "citations": out}, indent=2))
    return 0


def _load_record(path: Path):
    from eth_utils import keccak

    from lorachain.attribution.record import RecordError, decode_record

    try:
        blob = path.read_bytes()
        return keccak(blob), decode_record(blob)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc
    except RecordError as exc:
        raise CliError(f"{path}: {exc}") from exc


def cmd_record(args: argparse.Namespace) -> int:
    from lorachain.attribution.service import summary

    digest, record = _load_record(args.path)
    json.dump({**summary(record, digest), "training": record.training}, sys.stdout, indent=2)
    print()
    return 0
