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
    datanets = session.contract(session.registry.functions.datanets().call(), "DatanetRegistry")
    try:
        explanation = explain_receipt(receipt, session.router, datanets)
    except ExplainError as exc:
        raise CliError(str(exc)) from exc
    print(json.dumps(explanation, indent=2) if args.json else format_explanation(explanation))
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from eth_utils import keccak

    from lorachain.attribution.record import RecordError, decode_record
    from lorachain.attribution.service import summary

    try:
        blob = args.path.read_bytes()
        record = decode_record(blob)
    except OSError as exc:
        raise CliError(f"cannot read {args.path}: {exc}") from exc
    except RecordError as exc:
        raise CliError(f"{args.path}: {exc}") from exc
    json.dump({**summary(record, keccak(blob)), "training": record.training}, sys.stdout, indent=2)
    print()
    return 0
