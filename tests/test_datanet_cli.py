"""`lorachain datanet ...` end to end: the CLI as a subprocess against a dev node and a DA server subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_utils import keccak

from lorachain.da_client.client import DAClient
from lorachain.da_client.commitment import CommitmentMode, KeccakCommitment
from lorachain.genesis.predeploys import DATANET_REGISTRY, contract_abi
from tests.conftest import REPO
from tests.test_da_server_e2e import DAServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def da(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DAServerProcess]:
    server = DAServerProcess(tmp_path_factory.mktemp("da") / "data")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("files")
    contents = {
        "a.txt": b"Q: Where does Alice live? A: Paris.\n",
        "b.txt": "Q: Who is Bob? A: a baker in Lyon, né à Nantes.\n".encode(),
        "c.txt": b"Q: Where does Alice live? A: Paris!\n",  # a near-duplicate of a.txt
        "empty.txt": b"",
        "big.txt": b"x" * ((1 << 20) + 1),
        "latin1.txt": "caf\xe9".encode("latin-1"),
    }
    for name, data in contents.items():
        (root / name).write_bytes(data)
    (root / "max.txt").write_bytes(b"y" * (1 << 20))  # exactly 1 MiB is allowed
    return {name: root / name for name in (*contents, "max.txt")}


def cli(node, *args: str, account: int = 0) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lorachain.cli", "datanet", *args, "--rpc", node.url, "--account", str(account)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, stdin=subprocess.DEVNULL)


def ok(node, *args: str, account: int = 0) -> list[dict]:
    done = cli(node, *args, account=account)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def fails(node, *args: str, account: int = 0, match: str) -> None:
    done = cli(node, *args, account=account)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "error: " in done.stderr and match in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_datanet_from_creation_through_curation_to_claims(node, w3, da, files):
    registry = w3.eth.contract(address=DATANET_REGISTRY, abi=contract_abi("DatanetRegistry"))
    [created] = ok(node, "create", "qa-pairs", "--min-stake", "1000", "--metadata", "ipfs://qa", account=2)
    datanet = str(created["datanet_id"])
    assert created["min_stake_wei"] == 1000 and created["owner"] == w3.eth.accounts[2]

    # contribute: the bytes go to the DA server under their keccak commitment, the hash and size on chain
    contributed = ok(node, "contribute", "--datanet", datanet, str(files["a.txt"]), str(files["b.txt"]),
                     "--da", da.url, account=3)  # fmt: skip
    assert [c["index"] for c in contributed] == [0, 1] and {c["stake_wei"] for c in contributed} == {1000}
    client = DAClient(da.url, CommitmentMode.OP_KECCAK)
    for c, name in zip(contributed, ("a.txt", "b.txt"), strict=True):
        data = files[name].read_bytes()
        assert c["content_hash"] == "0x" + keccak(data).hex() and c["size"] == len(data)
        assert c["da_commitment"] == "0x" + KeccakCommitment.of(data).encode().hex()
        assert client.get(bytes.fromhex(c["da_commitment"][2:])) == data
    [third] = ok(node, "contribute", "--datanet", datanet, str(files["c.txt"]), "--stake", "5000", "--da", da.url,
                 account=4)  # fmt: skip
    assert (third["index"], third["stake_wei"]) == (2, 5000)
    assert w3.eth.get_balance(DATANET_REGISTRY) >= 7000

    # bad input: refused before anything is stored or sent
    contribute = ("contribute", "--datanet", datanet, "--da", da.url)
    fails(node, *contribute, str(files["empty.txt"]), match="empty file")
    fails(node, *contribute, str(files["big.txt"]), match="more than the 1 MiB")
    fails(node, *contribute, str(files["latin1.txt"]), match="not UTF-8 text")
    fails(node, *contribute, str(files["a.txt"]) + ".missing", match="cannot read it")
    fails(node, *contribute, str(files["max.txt"]), "--stake", "999", match="below datanet")
    fails(node, *contribute, str(files["max.txt"]), str(files["a.txt"]), match="already contributed")
    fails(node, *contribute, str(files["max.txt"]), str(files["max.txt"]), match="the same bytes as")
    fails(node, "contribute", "--datanet", "99", str(files["max.txt"]), "--da", da.url, match="unknown datanet")
    fails(node, "contribute", "--datanet", datanet, str(files["max.txt"]), "--da", "http://127.0.0.1:9",
          match="did not store")  # fmt: skip
    fails(node, "contribute", "--datanet", "0", str(files["max.txt"]), match="ids start at 1")
    assert registry.functions.contributionCount(int(datanet)).call() == 3

    # curation
    [accepted] = ok(node, "review", "--datanet", datanet, "--index", "0", "--accept", "--da", da.url, account=2)
    assert (accepted["status"], accepted["stake_returned_wei"]) == ("accepted", 1000)
    review = ("review", "--datanet", datanet, "--index")
    [rejected] = ok(node, *review, "2", "--reject", "--reason", "duplicate", account=2)
    assert (rejected["status"], rejected["reason"], rejected["slashed_wei"]) == ("rejected", "duplicate", 5000)
    fails(node, "review", "--datanet", datanet, "--index", "1", "--accept", account=5, match="not a curator")
    fails(node, "review", "--datanet", datanet, "--index", "2", "--accept", account=2, match="already reviewed")
    fails(node, "review", "--datanet", datanet, "--index", "1", "--accept", "--reason", "duplicate", account=2,
          match="--reason goes with --reject")  # fmt: skip
    fails(node, "review", "--datanet", datanet, "--index", "1", account=2, match="one of the arguments")
    ok(node, "review", "--datanet", datanet, "--index", "1", "--accept", "--da", da.url, account=2)
    [penalized] = ok(node, "penalize", "--datanet", datanet, "--index", "1", "--reason", "adversarial", account=2)
    assert (penalized["status"], penalized["size_removed"]) == ("penalized", files["b.txt"].stat().st_size)
    fails(node, "penalize", "--datanet", datanet, "--index", "2", "--reason", "duplicate", account=2,
          match="not an accepted contribution")  # fmt: skip
    fails(node, "penalize", "--datanet", datanet, "--index", "0", "--reason", "boring", match="invalid choice")

    [snapshot] = ok(node, "snapshot", "--datanet", datanet, account=2)
    root = b"\x00" * 32
    for c in contributed:  # accepted in this order: a.txt (0), b.txt (1, penalized since)
        root = keccak(root + bytes.fromhex(c["content_hash"][2:]))
    assert (snapshot["root"], snapshot["contributions"]) == ("0x" + root.hex(), 2)

    summary, *rows = ok(node, "ls", "--datanet", datanet, "--json")
    assert (summary["name"], summary["min_stake_wei"], summary["snapshot_root"]) == ("qa-pairs", 1000, snapshot["root"])
    assert summary["accepted_size"] == files["a.txt"].stat().st_size
    assert [(r["status"], r["reason"], r["stake_wei"]) for r in rows] == [
        ("accepted", None, 1000), ("penalized", "adversarial", 1000), ("rejected", "duplicate", 5000)]  # fmt: skip
    assert [r["contributor"] for r in rows] == [w3.eth.accounts[i] for i in (3, 3, 4)]
    table = cli(node, "ls", "--datanet", datanet)
    assert table.returncode == 0 and "penalized" in table.stdout and "adversarial" in table.stdout
    assert rows[0]["content_hash"] in table.stdout

    # claims: both stakes back, and the slashed 5000 (a.txt was the only accepted size then)
    before = w3.eth.get_balance(w3.eth.accounts[3])
    [claimed] = ok(node, "claim", account=3)
    assert claimed["datanets"] == [int(datanet)]
    assert 2000 + 5000 - 1 <= claimed["datanets_wei"] <= 7000 and claimed["router_wei"] == 0
    spent = sum((r := w3.eth.get_transaction_receipt(tx)).gasUsed * r.effectiveGasPrice for tx in claimed["txs"])
    assert w3.eth.get_balance(w3.eth.accounts[3]) == before + claimed["total_wei"] - spent
    [again] = ok(node, "claim", account=3)
    assert (again["total_wei"], again["txs"]) == (0, [])
    [nothing] = ok(node, "claim", account=4)  # rejected: its stake is gone, it earns nothing
    assert nothing["total_wei"] == 0
    fails(node, "claim", "--datanet", "77", account=3, match="unknown datanet")


def test_a_challenge_window_holds_accepted_stakes_open_to_a_penalty(node, w3, da, files):
    fails(node, "create", "held", "--challenge-window", str(91 * 86_400), account=2, match="at most")
    [created] = ok(node, "create", "held", "--min-stake", "100", "--challenge-window", "600", account=2)
    datanet = str(created["datanet_id"])
    assert created["challenge_window_s"] == 600 and len(created["txs"]) == 2
    ok(node, "contribute", "--datanet", datanet, str(files["a.txt"]), str(files["b.txt"]), "--da", da.url, account=5)
    [first] = ok(node, "review", "--datanet", datanet, "--index", "0", "--accept", "--da", da.url, account=2)
    [second] = ok(node, "review", "--datanet", datanet, "--index", "1", "--accept", "--da", da.url, account=2)
    assert (first["stake_returned_wei"], first["stake_held_wei"], second["stake_held_wei"]) == (0, 100, 100)
    assert first["stake_held_until"] > 0
    fails(node, "release-stake", "--datanet", datanet, "--index", "0", match="challenge window still open")
    [penalized] = ok(node, "penalize", "--datanet", datanet, "--index", "1", "--reason", "duplicate", account=2)
    assert (penalized["slashed_wei"], penalized["stake_returned_wei"]) == (100, 0)
    summary, *rows = ok(node, "ls", "--datanet", datanet, "--json")
    assert summary["challenge_window_s"] == 600
    assert [r["stake_held_until"] for r in rows] == [first["stake_held_until"], None]
    w3.provider.make_request("evm_setNextBlockTimestamp", [first["stake_held_until"]])
    w3.provider.make_request("evm_mine", [])
    [released] = ok(node, "release-stake", "--datanet", datanet, "--index", "0", account=6)  # anyone may
    assert (released["contributor"], released["stake_returned_wei"]) == (w3.eth.accounts[5], 100)
    fails(node, "release-stake", "--datanet", datanet, "--index", "1", match="no stake held")


def test_check_flags_duplicates_malformed_and_unavailable_data_and_rejects_on_request(node, w3, da, files):
    registry = w3.eth.contract(address=DATANET_REGISTRY, abi=contract_abi("DatanetRegistry"))
    [created] = ok(node, "create", "checked", account=2)
    datanet = str(created["datanet_id"])
    client = DAClient(da.url, CommitmentMode.OP_KECCAK)

    def on_chain(data: bytes, size: int, sender: int, store: bool = True) -> None:
        if store:
            client.put(data)
        tx = registry.functions.contribute(int(datanet), keccak(data), size).transact({"from": w3.eth.accounts[sender]})
        assert w3.eth.wait_for_transaction_receipt(tx).status == 1

    ok(node, "contribute", "--datanet", datanet, str(files["a.txt"]), "--da", da.url, account=3)  # 0
    ok(node, "review", "--datanet", datanet, "--index", "0", "--accept", "--da", da.url, account=2)
    ok(node, "contribute", "--datanet", datanet, str(files["c.txt"]), "--da", da.url, account=4)  # 1: near a.txt
    wrong_size = b"Q: What colour is the sky? A: blue.\n"
    on_chain(wrong_size, len(wrong_size) + 5, 5)  # 2: its declared size is not its bytes'
    on_chain(b"never stored in DA", 18, 6, store=False)  # 3: DA cannot serve it
    on_chain("caf\xe9".encode("latin-1"), 4, 7)  # 4: not UTF-8
    ok(node, "contribute", "--datanet", datanet, str(files["b.txt"]), "--da", da.url, account=8)  # 5: new

    findings = ok(node, "check", "--datanet", datanet, "--da", da.url)
    assert [(f["index"], f["verdict"]) for f in findings] == [
        (1, "duplicate"), (2, "malformed"), (3, "unavailable"), (4, "malformed"), (5, "ok")]  # fmt: skip
    assert (findings[0]["duplicate_of"], findings[0]["overlap_ppm"]) == (0, 1_000_000)  # the same words
    assert "declared" in findings[1]["detail"] and "UTF-8" in findings[3]["detail"]
    assert [f["verdict"] for f in ok(node, "check", "--datanet", datanet, "--index", "5", "--da", da.url)] == ["ok"]
    fails(node, "check", "--datanet", datanet, "--threshold-ppm", "1000001", "--da", da.url, match="1..1000000")
    fails(node, "check", "--datanet", datanet, "--index", "0", "--da", da.url, match="not pending")
    fails(node, "check", "--datanet", datanet, "--index", "9", "--da", da.url, match="no contribution 9")

    # accepting runs the check: flagged or unchecked data is refused, --no-check overrides
    review = ("review", "--datanet", datanet, "--accept", "--da", da.url, "--index")
    fails(node, *review, "1", account=2, match="is duplicate")
    fails(node, *review, "4", account=2, match="is malformed")
    fails(node, *review, "3", account=2, match="was not checked")

    rejected = ok(node, "check", "--datanet", datanet, "--reject", "--da", da.url, account=2)
    assert [(r["index"], r.get("status"), r.get("reason")) for r in rejected] == [
        (1, "rejected", "duplicate"), (2, "rejected", "malformed"), (3, None, None), (4, "rejected", "malformed"),
        (5, None, None)]  # fmt: skip
    statuses = [registry.functions.contributionStatus(int(datanet), i).call() for i in range(6)]
    assert statuses == [1, 2, 2, 0, 2, 0]  # accepted, rejected x2, pending (DA outage), rejected, pending
    ok(node, *review, "3", "--no-check", account=2)
    ok(node, *review, "5", account=2)
