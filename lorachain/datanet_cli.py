"""``lorachain datanet create|contribute|check|review|penalize|release-stake|snapshot|export|ls|claim``: datanets
from the command line, over JSON-RPC (web3.py) and the DA server.

Keys, node and contracts as for ``lorachain adapter`` (``--rpc``, ``--key``/``--account``, ``--registry``,
``--router``); the DatanetRegistry is the one the AdapterRegistry names. ``contribute`` checks each file
(non-empty, at most 1 MiB, UTF-8 text), stores its bytes content-addressed in the DA server (OP alt-DA keccak
mode: the commitment is ``0x00 || keccak256(bytes)``, which the server checks) and then registers
``keccak256(bytes)`` and the size on chain, staking ``--stake`` wei (default: the datanet's minimum). Bad input
is refused before anything is stored or sent: ``error: ...`` and exit status 1.

``check`` fetches pending contributions' bytes from DA and checks them (hash and size as on chain, well
formed, not a near-duplicate of accepted or earlier pending data: :mod:`lorachain.attribution.curation`);
``check --reject`` rejects the duplicates and malformed ones on chain (never one DA could not serve).
``review --accept`` runs the same check first and refuses to accept a flagged contribution (``--no-check``
accepts it anyway).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from lorachain.adapter_cli import CliError, _common, _Session
from lorachain.attribution.curation import DEFAULT_THRESHOLD_PPM

MAX_CONTRIBUTION_BYTES = 1 << 20  # 1 MiB
DEFAULT_DA = "http://127.0.0.1:3100"
STATUSES = ("pending", "accepted", "rejected", "penalized")  # DatanetRegistry.Status
REASONS = {"low-quality": 1, "duplicate": 2, "malformed": 3, "adversarial": 4}  # DatanetRegistry.REASON_*
REJECT_REASONS = ("low-quality", "duplicate", "malformed")
REASON_NAMES = {code: name for name, code in REASONS.items()}


class _Parser(argparse.ArgumentParser):
    """Bad arguments are bad input like any other: ``error: ...`` and exit status 1 (argparse says 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _integer(text: str, least: int, why: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{why}, got {value}")
    return value


def _id(text: str) -> int:
    return _integer(text, 1, "ids start at 1")


def _count(text: str) -> int:
    return _integer(text, 0, "must not be negative")


def _ppm(text: str) -> int:
    value = _integer(text, 1, "parts per million are 1..1000000")
    if value > 1_000_000:
        raise argparse.ArgumentTypeError(f"parts per million are 1..1000000, got {value}")
    return value


def add_commands(sub: Any) -> None:
    """Register the `datanet` subcommands on the top-level parser's subparsers."""
    p = sub.add_parser("datanet", help="create datanets, contribute and curate training data, claim rewards")
    datanet = p.add_subparsers(dest="datanet_command", required=True, parser_class=_Parser)

    q = datanet.add_parser("create", help="create a datanet (you become its owner)")
    q.add_argument("name")
    q.add_argument("--metadata", default="", help="metadata URI")
    q.add_argument("--min-stake", type=_count, default=0, metavar="WEI", help="stake each contribution must put up")
    q.add_argument("--challenge-window", type=_count, default=0, metavar="SECONDS",
                   help="hold accepted stakes this long, open to a penalty (default: 0, none)")  # fmt: skip
    _common(q)
    q.set_defaults(func=cmd_create)

    q = datanet.add_parser("contribute", help="store files in the DA server and contribute them to a datanet")
    q.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text, 1 byte to 1 MiB each")
    q.add_argument("--datanet", type=_id, required=True, metavar="ID")
    q.add_argument("--stake", type=_count, default=None, metavar="WEI",
                   help="stake per file (default: the datanet's minimum)")  # fmt: skip
    q.add_argument("--da", default=DEFAULT_DA, help="DA server URL, eigenda-proxy API (default: %(default)s)")
    _common(q)
    q.set_defaults(func=cmd_contribute)

    q = datanet.add_parser("check", help="check pending contributions: bytes in DA, hash, format, near-duplicates")
    q.add_argument("--datanet", type=_id, required=True, metavar="ID")
    q.add_argument("--index", type=_count, action="append", default=None, metavar="N",
                   help="check only these (repeat; default: every pending one)")  # fmt: skip
    q.add_argument("--threshold-ppm", type=_ppm, default=DEFAULT_THRESHOLD_PPM, metavar="PPM",
                   help="word-shingle overlap that makes a near-duplicate (default: %(default)s)")  # fmt: skip
    q.add_argument("--reject", action="store_true", help="reject the duplicates and malformed ones (curators)")
    q.add_argument("--da", default=DEFAULT_DA, help="DA server URL, eigenda-proxy API (default: %(default)s)")
    _common(q)
    q.set_defaults(func=cmd_check)

    q = datanet.add_parser("review", help="accept a pending contribution (stake returned) or reject it (slashed)")
    q.add_argument("--datanet", type=_id, required=True, metavar="ID")
    q.add_argument("--index", type=_count, required=True, metavar="N")
    verdict = q.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--accept", action="store_true")
    verdict.add_argument("--reject", action="store_true")
    q.add_argument("--reason", choices=REJECT_REASONS, default=None, help="with --reject (default: low-quality)")
    q.add_argument("--no-check", action="store_true", help="accept without checking the bytes (see `check`)")
    q.add_argument("--threshold-ppm", type=_ppm, default=DEFAULT_THRESHOLD_PPM, metavar="PPM",
                   help="near-duplicate overlap for the check before accepting (default: %(default)s)")  # fmt: skip
    q.add_argument("--da", default=DEFAULT_DA, help="DA server URL, eigenda-proxy API (default: %(default)s)")
    _common(q)
    q.set_defaults(func=cmd_review)

    q = datanet.add_parser("penalize", help="stop an accepted contribution found redundant or adversarial from earning")
    q.add_argument("--datanet", type=_id, required=True, metavar="ID")
    q.add_argument("--index", type=_count, required=True, metavar="N")
    q.add_argument("--reason", choices=tuple(REASONS), required=True)
    _common(q)
    q.set_defaults(func=cmd_penalize)

    q = datanet.add_parser("release-stake", help="return an accepted contribution's stake after its challenge window")
    q.add_argument("--datanet", type=_id, required=True, metavar="ID")
    q.add_argument("--index", type=_count, required=True, metavar="N")
    _common(q)
    q.set_defaults(func=cmd_release_stake)

    q = datanet.add_parser("snapshot", help="fold the accepted contributions into the datanet's snapshot root")
    q.add_argument("--datanet", type=_id, required=True, metavar="ID")
    _common(q)
    q.set_defaults(func=cmd_snapshot)

    q = datanet.add_parser("export", help="write a datanet's snapshot (bytes from DA) as Model Factory examples")
    q.add_argument("--datanet", type=_id, required=True, metavar="ID")
    q.add_argument("--out", required=True, help="JSON-lines file for `lorachain factory train --examples`")
    q.add_argument("--da", default=DEFAULT_DA, help="DA server URL, eigenda-proxy API (default: %(default)s)")
    _common(q)
    q.set_defaults(func=cmd_export)

    q = datanet.add_parser("ls", help="list a datanet's contributions")
    q.add_argument("--datanet", type=_id, required=True, metavar="ID")
    q.add_argument("--json", action="store_true", help="one JSON object per line: the datanet, then each contribution")
    _common(q)
    q.set_defaults(func=cmd_ls)

    q = datanet.add_parser("claim", help="withdraw returned stakes and rewards (datanets and attributed payments)")
    q.add_argument("--datanet", type=_id, action="append", default=None, metavar="ID",
                   help="datanets to settle (repeat; default: those the account has accepted data in)")  # fmt: skip
    _common(q)
    q.set_defaults(func=cmd_claim)


# --- helpers -----------------------------------------------------------------------------------------------


def _registry(session: _Session) -> Any:
    """The DatanetRegistry the session's AdapterRegistry names."""
    return session.contract(session.registry.functions.datanets().call(), "DatanetRegistry")


def _read(fn: Any) -> Any:
    from web3.exceptions import ContractLogicError

    try:
        return fn.call()
    except ContractLogicError as exc:
        raise CliError(exc.message) from exc


def _struct(fn: Any) -> dict[str, Any]:
    """A view returning one struct, as a dict by the ABI's field names."""
    names = [component["name"] for component in fn.abi["outputs"][0]["components"]]
    return dict(zip(names, _read(fn), strict=True))


def _datanet(registry: Any, datanet_id: int) -> dict[str, Any]:
    return _struct(registry.functions.getDatanet(datanet_id))


def _event(event: Any, receipt: Any) -> dict[str, Any]:
    from web3.logs import DISCARD

    return dict(event().process_receipt(receipt, errors=DISCARD)[0]["args"])


def _events(event: Any, receipt: Any) -> list[dict[str, Any]]:
    from web3.logs import DISCARD

    return [dict(e["args"]) for e in event().process_receipt(receipt, errors=DISCARD)]


def _tx(receipt: Any) -> str:
    return "0x" + receipt.transactionHash.hex()


def _print(obj: dict[str, Any]) -> None:
    print(json.dumps(obj))


def read_contribution(path: str) -> bytes:
    """The bytes of one contribution file, checked: non-empty, at most 1 MiB, UTF-8 text."""
    file = Path(path)
    try:
        if file.is_dir():
            raise CliError(f"{path}: is a folder, not a file")
        size = file.stat().st_size
        if size > MAX_CONTRIBUTION_BYTES:
            raise CliError(f"{path}: {size} bytes, more than the 1 MiB ({MAX_CONTRIBUTION_BYTES} bytes) allowed")
        data = file.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    if not data:
        raise CliError(f"{path}: empty file")
    if len(data) > MAX_CONTRIBUTION_BYTES:  # it grew since stat
        raise CliError(f"{path}: more than the 1 MiB ({MAX_CONTRIBUTION_BYTES} bytes) allowed")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from exc
    return data


# --- commands ----------------------------------------------------------------------------------------------


MAX_CHALLENGE_WINDOW_S = 90 * 86_400  # DatanetRegistry.MAX_CHALLENGE_WINDOW


def cmd_create(args: argparse.Namespace) -> int:
    if not args.name:
        raise CliError("a datanet needs a name")
    if args.challenge_window > MAX_CHALLENGE_WINDOW_S:
        raise CliError(f"--challenge-window is at most {MAX_CHALLENGE_WINDOW_S} s (90 days)")
    session = _Session(args)
    registry = _registry(session)
    receipt = session.send(registry.functions.createDatanet(args.name, args.metadata, args.min_stake))
    created = _event(registry.events.DatanetCreated, receipt)
    txs = [_tx(receipt)]
    if args.challenge_window:
        window = registry.functions.setChallengeWindow(created["datanetId"], args.challenge_window)
        txs.append(_tx(session.send(window)))
    _print({"datanet_id": created["datanetId"], "name": args.name, "owner": created["owner"],
            "min_stake_wei": args.min_stake, "challenge_window_s": args.challenge_window, "tx": txs[0],
            "txs": txs})  # fmt: skip
    return 0


def cmd_contribute(args: argparse.Namespace) -> int:
    from eth_utils import keccak

    from lorachain.da_client.client import DAClient, DAError
    from lorachain.da_client.commitment import CommitmentMode

    files = [(path, read_contribution(path)) for path in args.files]  # every file checked before anything else
    seen: dict[bytes, str] = {}
    for path, data in files:
        digest = keccak(data)
        if digest in seen:
            raise CliError(f"{path}: the same bytes as {seen[digest]} (a datanet takes each content once)")
        seen[digest] = path
    session = _Session(args)
    registry = _registry(session)
    info = _datanet(registry, args.datanet)
    stake = info["minStake"] if args.stake is None else args.stake
    if stake < info["minStake"]:
        raise CliError(f"--stake {stake} is below datanet {args.datanet}'s minimum stake of {info['minStake']} wei")
    for path, data in files:
        found, index = _read(registry.functions.contributionIndexOf(args.datanet, keccak(data)))
        if found:
            raise CliError(f"{path}: already contributed to datanet {args.datanet} (contribution {index})")
    da = DAClient(args.da, CommitmentMode.OP_KECCAK, retries=2)
    try:
        commitments = []
        for path, data in files:
            try:
                commitments.append(da.put(data))
            except DAError as exc:
                raise CliError(f"the DA server at {args.da} did not store {path}: {exc}") from exc
    finally:
        da.close()
    for (path, data), commitment in zip(files, commitments, strict=True):
        digest = keccak(data)
        receipt = session.send(registry.functions.contribute(args.datanet, digest, len(data)), value=stake)
        event = _event(registry.events.Contributed, receipt)
        _print({"datanet_id": args.datanet, "index": event["index"], "file": path,
                "content_hash": "0x" + digest.hex(), "size": len(data), "stake_wei": stake,
                "da_commitment": "0x" + commitment.hex(), "tx": _tx(receipt)})  # fmt: skip
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """The snapshot's contributions in acceptance order, their bytes fetched from DA and checked by hash."""
    from eth_utils import keccak

    from lorachain.attribution.factory import Example, snapshot_root, write_examples_jsonl
    from lorachain.da_client.client import DAClient, DAError
    from lorachain.da_client.commitment import CommitmentMode

    session = _Session(args)
    registry = _registry(session)
    info = _datanet(registry, args.datanet)
    count = info["snapshotCount"]
    if count == 0:
        raise CliError(f"datanet {args.datanet} has no snapshot yet (`lorachain datanet snapshot`)")
    accepted = [_read(registry.functions.acceptedAt(args.datanet, position)) for position in range(count)]
    if snapshot_root([bytes(digest) for _, digest in accepted]) != bytes(info["snapshotRoot"]):
        raise CliError(f"datanet {args.datanet}'s accepted contributions do not fold to its snapshot root")
    da = DAClient(args.da, CommitmentMode.OP_KECCAK, retries=2)
    examples = []
    try:
        for index, digest in accepted:
            try:
                data = da.get_by_keccak(bytes(digest))
            except DAError as exc:
                raise CliError(f"contribution {index}: the DA server at {args.da} has no bytes for it: {exc}") from exc
            if keccak(data) != bytes(digest):
                raise CliError(f"contribution {index}: the DA server answered bytes of another hash")
            examples.append(Example(args.datanet, index, bytes(digest), data))
    finally:
        da.close()
    write_examples_jsonl(args.out, examples)
    _print({"datanet_id": args.datanet, "examples": len(examples), "out": str(args.out),
            "snapshot": f"{args.datanet}:0x{bytes(info['snapshotRoot']).hex()}"})  # fmt: skip
    return 0


def _check(registry: Any, datanet: int, da_url: str, threshold_ppm: int, only: set[int] | None) -> list[Any]:
    """The curation findings of the datanet's pending contributions (``only`` those indexes, when given)."""
    from lorachain.attribution.curation import Candidate, FetchError, check_contributions
    from lorachain.da_client.client import DAClient, DAError
    from lorachain.da_client.commitment import CommitmentMode

    _datanet(registry, datanet)
    count = _read(registry.functions.contributionCount(datanet))
    for index in sorted(only or ()):
        if index >= count:
            raise CliError(f"datanet {datanet} has no contribution {index} (it has {count})")
    candidates = []
    for index in range(count):
        c = _struct(registry.functions.getContribution(datanet, index))
        status = STATUSES[c["status"]]
        if status in ("pending", "accepted"):
            candidates.append(Candidate(index, bytes(c["contentHash"]), c["size"], status == "accepted"))
    reviewed = sorted((only or set()) - {c.index for c in candidates if not c.accepted})
    if reviewed:
        raise CliError(f"contribution {reviewed[0]} was already reviewed (it is not pending)")
    da = DAClient(da_url, CommitmentMode.OP_KECCAK, retries=1)

    def fetch(digest: bytes) -> bytes:
        try:
            return da.get_by_keccak(digest)
        except DAError as exc:
            raise FetchError(f"the DA server at {da_url} did not serve its bytes: {exc}") from exc

    try:
        return check_contributions(candidates, fetch, threshold_ppm, only)
    finally:
        da.close()


def cmd_check(args: argparse.Namespace) -> int:
    from lorachain.attribution.curation import DUPLICATE, MALFORMED

    session = _Session(args)
    registry = _registry(session)
    only = set(args.index) if args.index is not None else None
    for finding in _check(registry, args.datanet, args.da, args.threshold_ppm, only):
        out = {"datanet_id": args.datanet, **finding.to_json()}
        if args.reject and finding.verdict in (DUPLICATE, MALFORMED):
            reason = "duplicate" if finding.verdict == DUPLICATE else "malformed"
            receipt = session.send(registry.functions.reject(args.datanet, finding.index, REASONS[reason]))
            slashed = _events(registry.events.Slashed, receipt)
            out |= {"status": "rejected", "reason": reason, "slashed_wei": sum(e["amount"] for e in slashed),
                    "tx": _tx(receipt)}  # fmt: skip
        _print(out)
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    if args.accept and args.reason:
        raise CliError("--reason goes with --reject")
    session = _Session(args)
    registry = _registry(session)
    if args.accept and not args.no_check:
        from lorachain.attribution.curation import DUPLICATE, OK, UNAVAILABLE

        account = session.account.address
        if _datanet(registry, args.datanet)["owner"] != account and not _read(
            registry.functions.isCurator(args.datanet, account)
        ):
            raise CliError(f"{account} is not a curator of datanet {args.datanet}")

        [finding] = _check(registry, args.datanet, args.da, args.threshold_ppm, {args.index})
        if finding.verdict == UNAVAILABLE:
            raise CliError(f"contribution {args.index} was not checked: {finding.detail} (--da URL, or --no-check)")
        if finding.verdict != OK:
            hint = "--reject --reason duplicate" if finding.verdict == DUPLICATE else "--reject --reason malformed"
            raise CliError(f"contribution {args.index} is {finding.verdict}: {finding.detail}; "
                           f"reject it with {hint}, or accept it anyway with --no-check")  # fmt: skip
    if args.accept:
        receipt = session.send(registry.functions.review(args.datanet, args.index, True))
        returned = _events(registry.events.StakeReturned, receipt)
        held = _events(registry.events.StakeHeld, receipt)
        _print({"datanet_id": args.datanet, "index": args.index, "status": "accepted",
                "stake_returned_wei": sum(e["amount"] for e in returned),
                "stake_held_wei": sum(e["amount"] for e in held),
                "stake_held_until": held[0]["until"] if held else None, "tx": _tx(receipt)})  # fmt: skip
        return 0
    reason = args.reason or "low-quality"
    receipt = session.send(registry.functions.reject(args.datanet, args.index, REASONS[reason]))
    slashed = _events(registry.events.Slashed, receipt)
    _print({"datanet_id": args.datanet, "index": args.index, "status": "rejected", "reason": reason,
            "slashed_wei": sum(e["amount"] for e in slashed), "tx": _tx(receipt)})  # fmt: skip
    return 0


def cmd_penalize(args: argparse.Namespace) -> int:
    session = _Session(args)
    registry = _registry(session)
    receipt = session.send(registry.functions.penalize(args.datanet, args.index, REASONS[args.reason]))
    event = _event(registry.events.Penalized, receipt)
    slashed = sum(e["amount"] for e in _events(registry.events.Slashed, receipt))
    returned = sum(e["amount"] for e in _events(registry.events.StakeReturned, receipt))
    _print({"datanet_id": args.datanet, "index": args.index, "status": "penalized", "reason": args.reason,
            "contributor": event["contributor"], "size_removed": event["size"], "slashed_wei": slashed,
            "stake_returned_wei": returned, "tx": _tx(receipt)})  # fmt: skip
    return 0


def cmd_release_stake(args: argparse.Namespace) -> int:
    session = _Session(args)
    registry = _registry(session)
    receipt = session.send(registry.functions.releaseStake(args.datanet, args.index))
    event = _event(registry.events.StakeReturned, receipt)
    _print({"datanet_id": args.datanet, "index": args.index, "contributor": event["contributor"],
            "stake_returned_wei": event["amount"], "tx": _tx(receipt)})  # fmt: skip
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    session = _Session(args)
    registry = _registry(session)
    receipt = session.send(registry.functions.snapshot(args.datanet))
    event = _event(registry.events.Snapshot, receipt)
    _print({"datanet_id": args.datanet, "root": "0x" + event["root"].hex(), "contributions": event["contributions"],
            "tx": _tx(receipt)})  # fmt: skip
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    session = _Session(args)
    registry = _registry(session)
    info = _datanet(registry, args.datanet)
    count = _read(registry.functions.contributionCount(args.datanet))
    rows = []
    for index in range(count):
        c = _struct(registry.functions.getContribution(args.datanet, index))
        held_until = _read(registry.functions.heldStake(args.datanet, index))[1]
        rows.append({"index": index, "status": STATUSES[c["status"]], "reason": REASON_NAMES.get(c["reason"]),
                     "contributor": c["contributor"], "size": c["size"], "stake_wei": c["stake"],
                     "stake_held_until": held_until or None,
                     "content_hash": "0x" + c["contentHash"].hex()})  # fmt: skip
    summary = {"datanet_id": args.datanet, "name": info["name"], "owner": info["owner"],
               "metadata": info["metadataURI"], "min_stake_wei": info["minStake"],
               "challenge_window_s": _read(registry.functions.challengeWindowOf(args.datanet)),
               "accepted_size": info["acceptedSize"], "snapshot_root": "0x" + info["snapshotRoot"].hex(),
               "snapshot_contributions": info["snapshotCount"], "contributions": count}  # fmt: skip
    if args.json:
        for obj in (summary, *rows):
            _print(obj)
        return 0
    print(f"datanet {args.datanet} {info['name']!r}  owner {info['owner']}  min stake {info['minStake']} wei  "
          f"accepted size {info['acceptedSize']}  snapshot {summary['snapshot_root']} "
          f"({info['snapshotCount']} contributions)")  # fmt: skip
    print(f"{'index':>5}  {'status':<9}  {'reason':<11}  {'contributor':<42}  {'size':>8}  {'stake (wei)':>20}  "
          "content")  # fmt: skip
    for r in rows:
        print(f"{r['index']:>5}  {r['status']:<9}  {r['reason'] or '-':<11}  {r['contributor']:<42}  {r['size']:>8}  "
              f"{r['stake_wei']:>20}  {r['content_hash']}")  # fmt: skip
    return 0


def cmd_claim(args: argparse.Namespace) -> int:
    session = _Session(args)
    registry = _registry(session)
    account = session.account.address
    if args.datanet is None:
        count = _read(registry.functions.datanetCount())
        datanet_ids = [d for d in range(1, count + 1) if _read(registry.functions.sizeOf(d, account)) > 0]
    else:
        datanet_ids = args.datanet
        for datanet_id in datanet_ids:
            _datanet(registry, datanet_id)  # refuses an unknown one
    from_datanets = _read(registry.functions.claimable(account, datanet_ids))
    from_router = _read(session.router.functions.balanceOf(account))
    txs = []
    if from_datanets:
        receipt = session.send(registry.functions.claim(datanet_ids))
        from_datanets = _event(registry.events.Claimed, receipt)["amount"]
        txs.append(_tx(receipt))
    if from_router:
        receipt = session.send(session.router.functions.claim())
        from_router = _event(session.router.events.Claimed, receipt)["amount"]
        txs.append(_tx(receipt))
    _print({"account": account, "datanets": datanet_ids, "datanets_wei": from_datanets, "router_wei": from_router,
            "total_wei": from_datanets + from_router, "txs": txs})  # fmt: skip
    return 0
