"""ethers v6 (npm) against a real node subprocess: the flow a JavaScript dApp developer runs.

The script is ``tests/js/ethers_flow.mjs``; ethers is pinned in ``tests/js/package.json`` and
``package-lock.json`` and installed with ``npm ci`` on first use (again only when the lock file
changes). Node.js and npm are required: without them this test fails, it does not skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lorachain.toolchain.solc import load_artifact

pytestmark = pytest.mark.e2e

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "ethers_flow.mjs"
STAMP = JS_DIR / "node_modules" / ".lorachain-lock-sha256"  # inside node_modules: npm ci wipes it
NPM_CI_TIMEOUT_S = 600
FLOW_TIMEOUT_S = 90  # the script gives up by itself after 60 s

ACCOUNT0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
TEXT = "hello from ethers"


def pinned_ethers() -> str:
    return json.loads((JS_DIR / "package.json").read_text())["dependencies"]["ethers"]


def _installed_ethers() -> str | None:
    try:
        return json.loads((JS_DIR / "node_modules" / "ethers" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise `npm ci` in tests/js across concurrent test runs."""
    key = hashlib.sha256(str(JS_DIR).encode()).hexdigest()[:16]
    with (Path(tempfile.gettempdir()) / f"lorachain-tests-js-{key}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _up_to_date(lock_hash: str) -> bool:
    return _installed_ethers() == pinned_ethers() and STAMP.is_file() and STAMP.read_text().strip() == lock_hash


def ensure_ethers() -> Path:
    """Make sure node and the pinned ethers are installed (failing the test if they cannot be); return the script."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found on PATH: this test needs Node.js (>= 18) with npm to run "
            f"ethers {pinned_ethers()} (installed with `npm ci` from tests/js/package-lock.json)",
            pytrace=False,
        )
    lock_hash = hashlib.sha256((JS_DIR / "package-lock.json").read_bytes()).hexdigest()
    if not _up_to_date(lock_hash):
        with _locked():
            if not _up_to_date(lock_hash):
                proc = subprocess.run(
                    ["npm", "ci", "--no-audit", "--no-fund"],
                    cwd=JS_DIR,
                    capture_output=True,
                    text=True,
                    timeout=NPM_CI_TIMEOUT_S,
                    check=False,
                )
                if proc.returncode != 0:
                    pytest.fail(f"npm ci failed in {JS_DIR} (exit {proc.returncode}):\n{proc.stderr}", pytrace=False)
                STAMP.write_text(lock_hash + "\n")
    assert _installed_ethers() == pinned_ethers(), f"npm ci did not install ethers {pinned_ethers()}"
    return SCRIPT


def test_ethers_dapp_flow(node, tmp_path: Path) -> None:
    ethers_js = ensure_ethers()
    artifact_path = tmp_path / "MessageBoard.json"
    artifact_path.write_text(json.dumps(load_artifact("MessageBoard")))
    try:
        proc = subprocess.run(
            ["node", str(ethers_js), node.url, node.ws_url, str(artifact_path)],
            capture_output=True,
            text=True,
            timeout=FLOW_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(
            f"ethers flow did not finish in {FLOW_TIMEOUT_S}s\nstderr:\n{stderr}\nnode log:\n{node.log()[-4000:]}"
        )
    assert proc.returncode == 0, (
        f"ethers flow failed (exit {proc.returncode})\nstderr:\n{proc.stderr[-8000:]}\n"
        f"stdout:\n{proc.stdout[-2000:]}\nnode log:\n{node.log()[-4000:]}"
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])

    assert summary["ethersVersion"] == pinned_ethers()
    assert summary["chainId"] == 901
    assert summary["account0"] == ACCOUNT0
    assert int(summary["balance0"]) >= 1000 * 10**18

    transfer = summary["transfer"]
    assert transfer["status"] == 1 and transfer["type"] == 2
    assert transfer["gasUsed"] == "21000"
    assert transfer["recipientDelta"] == str(125 * 10**16)
    receipt = node.rpc("eth_getTransactionReceipt", transfer["hash"])["result"]
    assert receipt["status"] == "0x1" and int(receipt["blockNumber"], 16) == transfer["blockNumber"]

    contract = summary["contract"]
    code = node.rpc("eth_getCode", contract["address"], "latest")["result"]
    assert code == load_artifact("MessageBoard")["deployedBytecode"]

    post = summary["post"]
    assert post["event"] == {"name": "MessagePosted", "author": ACCOUNT0, "id": 0, "text": TEXT}
    assert int(post["gasUsed"]) <= int(post["estimateGas"])
    assert summary["count"] == 1
    assert summary["message"]["author"] == ACCOUNT0 and summary["message"]["text"] == TEXT

    revert = summary["revert"]
    assert revert["code"] == "CALL_EXCEPTION"
    assert revert["reason"] == "empty message"
    assert "empty message" in revert["shortMessage"]
    assert revert["customError"] == "MessageTooLong" and revert["customErrorArgs"] == [281, 280]
    assert revert["viewReason"] == "no such message"

    assert summary["queryFilter"] == {"byAuthor": 1, "byId": 1, "nobody": 0, "tipped": 1}

    ws = summary["ws"]
    assert ws["event"]["id"] == 1 and ws["event"]["author"] == ACCOUNT0
    assert ws["blockEvent"] == ws["event"]["blockNumber"]
    assert summary["endBlock"] == ws["blockEvent"]
    assert int(node.rpc("eth_blockNumber")["result"], 16) == summary["endBlock"]
