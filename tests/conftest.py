"""Shared fixtures: a real `lorachain node` subprocess on a free port, and web3 clients for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
LORACHAIN = [sys.executable, "-m", "lorachain.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class NodeProcess:
    """A node subprocess; ``url`` speaks HTTP JSON-RPC, ``ws_url`` WebSocket."""

    proc: subprocess.Popen
    port: int
    datadir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def rpc(self, method: str, *params: object) -> dict:
        """Raw JSON-RPC call; returns the whole response object (result or error)."""
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        return requests.post(self.url, json=body, timeout=30).json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_node(datadir: Path, *extra: str, port: int | None = None, timeout: float = 60.0) -> NodeProcess:
    """Start `lorachain node --dev` and wait until it answers eth_chainId."""
    port = port or free_port()
    datadir.mkdir(parents=True, exist_ok=True)
    log_path = datadir.parent / f"{datadir.name}-node-{port}.log"
    log_file = open(log_path, "ab")  # noqa: SIM115 - owned by the subprocess
    proc = subprocess.Popen(
        [*LORACHAIN, "node", "--dev", "--datadir", str(datadir), "--http.port", str(port), *extra],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    node = NodeProcess(proc, port, datadir, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited with {proc.returncode}:\n{node.log()}")
        try:
            if "result" in node.rpc("eth_chainId"):
                return node
        except requests.RequestException:
            pass
        time.sleep(0.1)
    node.stop()
    raise RuntimeError(f"node did not start within {timeout}s:\n{node.log()}")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One automining devnet node per test module."""
    proc = start_node(tmp_path_factory.mktemp("node") / "data")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def w3(node: NodeProcess):
    from web3 import Web3

    return Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 60}))
