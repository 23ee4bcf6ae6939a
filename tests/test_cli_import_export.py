"""The real `lorachain` CLI as subprocesses: init, export a node's chain, import it elsewhere, bad streams."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest
import rlp
from eth_account import Account
from eth_utils import to_canonical_address

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import devnet_genesis
from lorachain.node.chain import Blockchain
from lorachain.node.rlp_stream import iter_rlp_blocks
from tests.conftest import LORACHAIN, REPO, start_node

RECIPIENT = "0x" + "42" * 20
INITCODE = bytes.fromhex("602a600055" + "60016000f3")  # sstore(0, 42); return one zero byte as code


def cli(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*LORACHAIN, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=120,
    )
    if check:
        assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def assert_clean_failure(proc: subprocess.CompletedProcess, *words: str) -> None:
    """A non-zero exit with an `error: ...` line naming the problem, and no Python traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "error:" in proc.stderr, proc.stderr
    for word in words:
        assert word.lower() in proc.stderr.lower(), proc.stderr


def head_of(datadir: Path) -> tuple[int, bytes, bytes]:
    chain = Blockchain.open(datadir)
    try:
        return chain.head.block_number, chain.head.hash, chain.head.state_root
    finally:
        chain.close()


def _sign(key: bytes, nonce: int, **fields) -> str:
    tx = {"to": RECIPIENT, "value": 10**15 + nonce, "gas": 21000, "maxFeePerGas": 10**10,
          "maxPriorityFeePerGas": 10**9, "nonce": nonce, "chainId": 901, "type": 2}  # fmt: skip
    tx.update(fields)
    if tx.get("to") is None:
        tx.pop("to")
    return "0x" + bytes(Account.sign_transaction(tx, key).raw_transaction).hex()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict:
    """A datadir made by `init`, then a node that mined some blocks, stopped; and its export."""
    root = tmp_path_factory.mktemp("cli")
    datadir = root / "src"
    proc = cli("init", "--datadir", datadir, check=True)
    assert "chain id 901" in proc.stdout
    genesis_hash = proc.stdout.strip().rsplit(" ", 1)[-1]

    node = start_node(datadir)
    try:
        assert node.rpc("eth_getBlockByNumber", "0x0", False)["result"]["hash"] == genesis_hash
        keys = [acct.private_key for acct in dev_accounts()[:2]]
        tx_hashes = []
        for nonce in range(3):
            for key in keys:
                tx_hashes.append(node.rpc("eth_sendRawTransaction", _sign(key, nonce))["result"])
        deploy = _sign(keys[0], 3, to=None, value=0, gas=100_000, data=INITCODE)
        tx_hashes.append(node.rpc("eth_sendRawTransaction", deploy)["result"])
        receipts = [node.rpc("eth_getTransactionReceipt", h)["result"] for h in tx_hashes]
        assert all(r is not None and r["status"] == "0x1" for r in receipts)
        contract = receipts[-1]["contractAddress"]
        head_number = int(node.rpc("eth_blockNumber")["result"], 16)
        assert head_number >= 2
    finally:
        node.stop()
    assert node.proc.returncode == 0

    stream = root / "chain.rlp"
    proc = cli("export", stream, "--datadir", datadir, check=True)
    assert f"exported {head_number + 1} blocks (0..{head_number})" in proc.stdout
    raw_blocks = list(iter_rlp_blocks(io.BytesIO(stream.read_bytes())))
    # The block of each transfer, to tamper with later.
    tx_blocks = sorted({int(r["blockNumber"], 16) for r in receipts})
    return {
        "root": root,
        "datadir": datadir,
        "stream": stream,
        "raw_blocks": raw_blocks,
        "head": head_of(datadir),
        "genesis_hash": genesis_hash,
        "contract": contract,
        "tx_blocks": tx_blocks,
    }


def test_init_devnet_and_idempotent(tmp_path) -> None:
    first = cli("init", "--datadir", tmp_path / "d", check=True)
    second = cli("init", "--datadir", tmp_path / "d", check=True)
    assert first.stdout.split("genesis ")[1] == second.stdout.split("genesis ")[1]
    assert "chain id 901" in first.stdout
    number, block_hash, _ = head_of(tmp_path / "d")
    assert number == 0 and "0x" + block_hash.hex() == first.stdout.strip().rsplit(" ", 1)[-1]


def test_init_custom_genesis_and_conflicts(tmp_path) -> None:
    raw = devnet_genesis(chain_id=4242)
    raw["alloc"] = {"0x" + "ab" * 20: {"balance": "0x1234", "nonce": "0x3", "code": "0x00"}}
    genesis = tmp_path / "custom.json"
    genesis.write_text(json.dumps(raw))
    datadir = tmp_path / "d"
    proc = cli("init", "--genesis", genesis, "--datadir", datadir, check=True)
    assert "chain id 4242" in proc.stdout
    chain = Blockchain.open(datadir)
    try:
        assert chain.chain_id == 4242
        state = chain.state_at(chain.head)
        assert state.get_balance(b"\xab" * 20) == 0x1234
        assert state.get_nonce(b"\xab" * 20) == 3
    finally:
        chain.close()
    cli("init", "--genesis", genesis, "--datadir", datadir, check=True)  # same genesis again: fine
    # The devnet genesis into a datadir that holds another one.
    assert_clean_failure(cli("init", "--datadir", datadir), "different genesis")
    # Broken genesis files.
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert_clean_failure(cli("init", "--genesis", bad, "--datadir", tmp_path / "e"), "not valid JSON")
    bad.write_text(json.dumps({"alloc": {}}))
    assert_clean_failure(cli("init", "--genesis", bad, "--datadir", tmp_path / "f"), "chainId")
    assert_clean_failure(cli("init", "--genesis", tmp_path / "missing.json", "--datadir", tmp_path / "g"), "not found")


def test_export_writes_an_rlp_stream_of_every_block(source) -> None:
    raw_blocks = source["raw_blocks"]
    number, head_hash, _ = source["head"]
    assert len(raw_blocks) == number + 1
    first_header = rlp.decode(raw_blocks[0], strict=False)[0]
    assert int.from_bytes(first_header[8], "big") == 0
    chain = Blockchain.open(source["datadir"])
    try:
        vm_class = chain.chain_class.get_vm_class_for_block_number(number)
        last = rlp.decode(raw_blocks[-1], sedes=vm_class.get_block_class())
        assert last.hash == head_hash
        assert "0x" + chain.header_by_number(0).hash.hex() == source["genesis_hash"]
    finally:
        chain.close()
    assert b"".join(raw_blocks) == source["stream"].read_bytes()


def test_export_range(source) -> None:
    out = source["root"] / "range.rlp"
    proc = cli("export", out, "--datadir", source["datadir"], "--first", "1", "--last", "2", check=True)
    assert "exported 2 blocks (1..2)" in proc.stdout
    assert list(iter_rlp_blocks(io.BytesIO(out.read_bytes()))) == source["raw_blocks"][1:3]


def test_import_into_a_fresh_datadir_reproduces_the_chain(source, tmp_path) -> None:
    fresh = tmp_path / "imported"
    proc = cli("import", source["stream"], "--datadir", fresh, check=True)
    number, head_hash, state_root = source["head"]
    assert f"imported {number} blocks" in proc.stdout
    assert head_of(fresh) == (number, head_hash, state_root)
    chain = Blockchain.open(fresh)
    try:
        state = chain.state_at(chain.head)
        recipient = to_canonical_address(RECIPIENT)
        assert state.get_balance(recipient) == sum(10**15 + n for n in range(3)) * 2
        contract = to_canonical_address(source["contract"])
        assert state.get_storage(contract, 0) == 42
        assert state.get_code(contract) == b"\x00"
        # Receipts were re-created by execution, and the tx index answers.
        for n in range(1, number + 1):
            block = chain.block_by_header(chain.header_by_number(n))
            for i, tx in enumerate(block.transactions):
                location = chain.tx_location(tx.hash)
                assert location is not None and (location.block_number, location.index) == (n, i)
            assert all(r.gas_used > 0 for r in chain.receipts(block)) or not block.transactions
    finally:
        chain.close()
    # Importing the same stream again skips every known block.
    again = cli("import", source["stream"], "--datadir", fresh, check=True)
    assert "imported 0 blocks" in again.stdout
    assert head_of(fresh)[1] == head_hash


def _write_stream(path: Path, blocks: list[bytes]) -> Path:
    path.write_bytes(b"".join(blocks))
    return path


def test_import_with_a_tampered_state_root_stops_at_the_last_good_block(source, tmp_path) -> None:
    blocks = list(source["raw_blocks"])
    target = source["tx_blocks"][1]
    header = rlp.decode(blocks[target], strict=False)[0]
    state_root = header[3]
    assert blocks[target].count(state_root) == 1
    flipped = bytes([state_root[0] ^ 0x01]) + state_root[1:]
    blocks[target] = blocks[target].replace(state_root, flipped)
    stream = _write_stream(tmp_path / "tampered.rlp", blocks)
    fresh = tmp_path / "d"
    proc = cli("import", stream, "--datadir", fresh)
    assert_clean_failure(proc, f"invalid block #{target}")
    good = Blockchain.open(source["datadir"])
    try:
        expected = good.header_by_number(target - 1)
    finally:
        good.close()
    assert head_of(fresh) == (target - 1, expected.hash, expected.state_root)


def test_import_with_a_tampered_transaction_stops_at_the_last_good_block(source, tmp_path) -> None:
    blocks = list(source["raw_blocks"])
    target = source["tx_blocks"][-2]  # a block with a transfer to RECIPIENT
    recipient = bytes.fromhex(RECIPIENT[2:])
    assert recipient in blocks[target]
    blocks[target] = blocks[target].replace(recipient, b"\x43" + recipient[1:], 1)  # one byte of `to`
    stream = _write_stream(tmp_path / "tampered.rlp", blocks)
    fresh = tmp_path / "d"
    proc = cli("import", stream, "--datadir", fresh)
    assert_clean_failure(proc, f"#{target}")
    good = Blockchain.open(source["datadir"])
    try:
        expected = good.header_by_number(target - 1).hash
    finally:
        good.close()
    number, head_hash, _ = head_of(fresh)
    assert (number, head_hash) == (target - 1, expected)


def test_import_of_a_truncated_stream_errors_clearly(source, tmp_path) -> None:
    data = source["stream"].read_bytes()
    stream = tmp_path / "truncated.rlp"
    stream.write_bytes(data[:-10])
    fresh = tmp_path / "d"
    proc = cli("import", stream, "--datadir", fresh)
    assert proc.returncode != 0
    # Every complete block before the cut was imported.
    number, head_hash, _ = head_of(fresh)
    good = Blockchain.open(source["datadir"])
    try:
        assert number == good.head.block_number - 1
        assert head_hash == good.header_by_number(number).hash
    finally:
        good.close()
    assert_clean_failure(proc, "truncated")


def test_import_of_a_stream_from_another_genesis_fails(source, tmp_path) -> None:
    raw = devnet_genesis()
    raw["alloc"]["0x" + "ee" * 20] = {"balance": "0x1"}
    genesis = tmp_path / "other.json"
    genesis.write_text(json.dumps(raw))
    fresh = tmp_path / "d"
    proc = cli("import", source["stream"], "--datadir", fresh, "--genesis", genesis)
    assert_clean_failure(proc, "genesis")
    assert head_of(fresh)[0] == 0


def test_import_rejects_transactions_signed_for_another_chain_id(source, tmp_path) -> None:
    """Same genesis block, other chain id: the stream's txs (chain id 901) are invalid here (replay)."""
    genesis = tmp_path / "other.json"
    genesis.write_text(json.dumps(devnet_genesis(chain_id=4242)))  # chain id is not in the genesis header
    fresh = tmp_path / "d"
    proc = cli("import", source["stream"], "--datadir", fresh, "--genesis", genesis)
    chain = Blockchain.open(fresh)
    try:
        assert chain.chain_id == 4242
        first_tx_block = source["tx_blocks"][0]
        assert chain.head.block_number == first_tx_block - 1, "a block with chain-901 transactions was imported"
    finally:
        chain.close()
    assert_clean_failure(proc, f"#{first_tx_block}")


def test_import_of_a_chain_with_dev_state_edits_fails_clearly(tmp_path) -> None:
    """`anvil_setBalance` is persisted in a block of its own, but an edit is not a transaction: another
    node cannot re-execute that block, and import says so instead of a bare state-root mismatch."""
    datadir = tmp_path / "src"
    node = start_node(datadir)
    try:
        result = node.rpc("anvil_setBalance", "0x" + "77" * 20, hex(5 * 10**18))
        assert "error" not in result, result
        assert node.rpc("eth_getBalance", "0x" + "77" * 20, "latest")["result"] == hex(5 * 10**18)
    finally:
        node.stop()
    stream = tmp_path / "chain.rlp"
    cli("export", stream, "--datadir", datadir, check=True)
    proc = cli("import", stream, "--datadir", tmp_path / "copy")
    assert proc.returncode == 1
    assert "carries a devnet state edit" in proc.stderr
    assert "Traceback" not in proc.stderr
