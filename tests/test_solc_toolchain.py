"""Tests for the solcjs toolchain: building, caching, error reporting and Prague execution."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from eth.abc import ComputationAPI
from eth.chains.base import MiningChain
from eth.db.atomic import AtomicDB
from eth.vm.forks import PragueVM
from eth.vm.spoof import SpoofTransaction
from eth_abi import decode, encode
from eth_keys import keys
from eth_utils import function_signature_to_4byte_selector, keccak, to_wei

from lorachain.toolchain import solc
from lorachain.toolchain.solc import SolcError, build_contracts, compile_source, load_artifact

CHAIN_ID = 1337
GAS_PRICE = 10**10
ERROR_STRING_SELECTOR = function_signature_to_4byte_selector("Error(string)")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the project's contracts once per module into a temporary artifact directory."""
    out = tmp_path_factory.mktemp("out")
    build_contracts(solc.SRC_DIR, out)
    return out


@pytest.fixture(scope="module")
def artifacts(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The built artifacts, by contract name."""
    return {path.stem: json.loads(path.read_text()) for path in out_dir.glob("*.json")}


# --- artifacts and caching -------------------------------------------------------------------


def test_artifacts_have_abi_and_bytecode(artifacts: dict[str, dict[str, Any]]) -> None:
    assert {"MessageBoard", "Counter"} <= artifacts.keys()
    for name in ("MessageBoard", "Counter"):
        artifact = artifacts[name]
        assert artifact["contractName"] == name
        assert artifact["sourceName"] == f"examples/{name}.sol"
        assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 2
        assert artifact["deployedBytecode"].startswith("0x") and len(artifact["deployedBytecode"]) > 2
        assert artifact["solcVersion"].startswith(solc.pinned_solc_version() + "+commit.")

    board = artifacts["MessageBoard"]
    entries = {(entry["type"], entry.get("name")) for entry in board["abi"]}
    for function in ("post", "tip", "withdraw", "count", "messages"):
        assert ("function", function) in entries
    assert ("event", "MessagePosted") in entries
    assert ("error", "MessageTooLong") in entries
    assert "post(string)" in board["methodIdentifiers"]
    assert "increment()" in artifacts["Counter"]["methodIdentifiers"]


def test_rebuild_with_unchanged_sources_is_cache_hit(out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mtimes = {path: path.stat().st_mtime_ns for path in out_dir.glob("*.json")}

    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("compiler ran on a cache hit")

    monkeypatch.setattr(solc, "compile_sources", fail)
    paths = build_contracts(solc.SRC_DIR, out_dir)
    assert set(paths.values()) == set(mtimes)
    assert {path: path.stat().st_mtime_ns for path in paths.values()} == mtimes
    assert json.loads((out_dir / solc.HASH_FILE).read_text())["contracts"] == sorted(paths)


def test_load_artifact_rebuilds_when_source_changes(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    source = src / "Tiny.sol"
    source.write_text("// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\ncontract Tiny {}\n")
    assert load_artifact("Tiny", src_dir=src, out_dir=out)["contractName"] == "Tiny"

    source.write_text("// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\ncontract Renamed {}\n")
    assert load_artifact("Renamed", src_dir=src, out_dir=out)["sourceName"] == "Tiny.sol"
    assert not (out / "Tiny.json").exists(), "stale artifact left behind"
    with pytest.raises(FileNotFoundError, match="Tiny"):
        load_artifact("Tiny", src_dir=src, out_dir=out)


def test_syntax_error_raises_solc_error_naming_the_line() -> None:
    broken = "\n".join(
        [
            "// SPDX-License-Identifier: MIT",
            "pragma solidity ^0.8.24;",
            "contract Broken {",
            "    uint256 x = ;",
            "}",
        ]
    )
    with pytest.raises(SolcError) as excinfo:
        compile_source(broken, "Broken.sol")
    assert "Broken.sol:4:" in str(excinfo.value)
    assert excinfo.value.errors and "ParserError" in excinfo.value.errors[0]


def test_missing_node_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"solc": "0.8.30"}}))
    monkeypatch.setattr(solc.shutil, "which", lambda _tool: None)
    with pytest.raises(SolcError, match="node and npm not found"):
        solc.ensure_solc(tmp_path)


def test_cli_reports_artifacts(out_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert solc.main(["--out", str(out_dir)]) == 0
    assert "MessageBoard" in capsys.readouterr().out


# --- execution on a py-evm Prague chain ------------------------------------------------------


class PragueEvm:
    """A tiny in-memory Prague chain with a few funded accounts, for running contracts."""

    def __init__(self, accounts: Sequence[keys.PrivateKey]) -> None:
        chain_class = MiningChain.configure(
            __name__="ToolchainTestChain", vm_configuration=((0, PragueVM),), chain_id=CHAIN_ID
        )
        genesis_state = {
            key.public_key.to_canonical_address(): {
                "balance": to_wei(100, "ether"),
                "nonce": 0,
                "code": b"",
                "storage": {},
            }
            for key in accounts
        }
        genesis_params = {"difficulty": 0, "gas_limit": 30_000_000, "timestamp": 1_700_000_000}
        self.chain = chain_class.from_genesis(AtomicDB(), genesis_params, genesis_state)

    def balance(self, address: bytes) -> int:
        """Balance of ``address`` in the pending state."""
        return self.chain.get_vm().state.get_balance(address)

    def transact(self, key: keys.PrivateKey, to: bytes, data: bytes, value: int = 0) -> ComputationAPI:
        """Sign and apply a legacy transaction; returns its computation."""
        vm = self.chain.get_vm()
        nonce = vm.state.get_nonce(key.public_key.to_canonical_address())
        tx = vm.create_unsigned_transaction(
            nonce=nonce, gas_price=GAS_PRICE, gas=3_000_000, to=to, value=value, data=data
        ).as_signed_transaction(key, chain_id=CHAIN_ID)
        _block, _receipt, computation = self.chain.apply_transaction(tx)
        return computation

    def deploy(self, key: keys.PrivateKey, artifact: dict[str, Any]) -> bytes:
        """Deploy an artifact's creation bytecode; returns the new contract address."""
        computation = self.transact(key, b"", bytes.fromhex(artifact["bytecode"][2:]))
        assert computation.is_success, computation.error
        address = computation.msg.storage_address
        assert self.chain.get_vm().state.get_code(address) == bytes.fromhex(artifact["deployedBytecode"][2:])
        return address

    def call(self, to: bytes, data: bytes) -> bytes:
        """Run a read-only call against the pending state; returns the output."""
        vm = self.chain.get_vm()
        tx = vm.create_unsigned_transaction(nonce=0, gas_price=0, gas=3_000_000, to=to, value=0, data=data)
        return self.chain.get_transaction_result(SpoofTransaction(tx, from_=b"\0" * 20), self.chain.header)


def calldata(signature: str, *args: Any) -> bytes:
    """ABI-encode a call to ``signature`` (e.g. ``"post(string)"``)."""
    types = signature[signature.index("(") + 1 : -1]
    return function_signature_to_4byte_selector(signature) + encode([t for t in types.split(",") if t], list(args))


def revert_reason(computation: ComputationAPI) -> str:
    """Decode the ``Error(string)`` reason of a reverted computation."""
    assert computation.is_error
    assert computation.output[:4] == ERROR_STRING_SELECTOR
    return decode(["string"], computation.output[4:])[0]


def test_message_board_runs_on_prague(artifacts: dict[str, dict[str, Any]]) -> None:
    author, tipper = keys.PrivateKey(b"\x11" * 32), keys.PrivateKey(b"\x22" * 32)
    author_address = author.public_key.to_canonical_address()
    evm = PragueEvm([author, tipper])
    assert isinstance(evm.chain.get_vm(), PragueVM)
    board = evm.deploy(author, artifacts["MessageBoard"])

    posted = evm.transact(author, board, calldata("post(string)", "hello, prague"))
    assert posted.is_success, posted.error
    assert decode(["uint256"], posted.output) == (0,)
    [log] = posted.get_log_entries()
    assert log[1][0] == int.from_bytes(keccak(text="MessagePosted(address,uint256,string)"), "big")
    assert log[1][1] == int.from_bytes(author_address, "big")

    assert decode(["uint256"], evm.call(board, calldata("count()"))) == (1,)
    author_out, _posted_at, tips, text = decode(
        ["address", "uint64", "uint256", "string"], evm.call(board, calldata("messages(uint256)", 0))
    )
    assert (bytes.fromhex(author_out[2:]), tips, text) == (author_address, 0, "hello, prague")

    empty_post = evm.transact(author, board, calldata("post(string)", ""))
    assert revert_reason(empty_post) == "empty message"
    bad_tip = evm.transact(tipper, board, calldata("tip(uint256)", 7), value=1)
    assert revert_reason(bad_tip) == "no such message"
    empty_withdraw = evm.transact(tipper, board, calldata("withdraw()"))
    assert revert_reason(empty_withdraw) == "nothing to withdraw"
    too_long = evm.transact(author, board, calldata("post(string)", "x" * 281))
    assert too_long.is_error
    custom_error = function_signature_to_4byte_selector("MessageTooLong(uint256,uint256)")
    assert too_long.output == custom_error + encode(["uint256", "uint256"], [281, 280])

    one_ether = to_wei(1, "ether")
    assert evm.transact(tipper, board, calldata("tip(uint256)", 0), value=one_ether).is_success
    credited = evm.call(board, calldata("balanceOf(address)", author_address))
    assert decode(["uint256"], credited) == (one_ether,)
    before = evm.balance(author_address)
    assert evm.transact(author, board, calldata("withdraw()")).is_success
    assert evm.balance(board) == 0
    assert before < evm.balance(author_address) < before + one_ether  # the tip, less gas


def test_counter_runs_on_prague(artifacts: dict[str, dict[str, Any]]) -> None:
    owner = keys.PrivateKey(b"\x33" * 32)
    evm = PragueEvm([owner])
    counter = evm.deploy(owner, artifacts["Counter"])
    assert evm.transact(owner, counter, calldata("increment()")).is_success
    assert evm.transact(owner, counter, calldata("add(uint256)", 41)).is_success
    assert decode(["uint256"], evm.call(counter, calldata("number()"))) == (42,)
