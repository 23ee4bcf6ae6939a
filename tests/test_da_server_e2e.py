"""`lorachain da-server` as a subprocess, driven by the DA client over real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from lorachain.da_client.blob_codec import MAX_PAYLOAD_SIZE
from lorachain.da_client.client import (
    DABadRequest,
    DAClient,
    DANotFound,
    DARateLimited,
    DAServerError,
    DAUnavailable,
    DerivationError,
)
from lorachain.da_client.commitment import CommitmentMode, EigenDACert, decode_op_commitment
from lorachain.da_client.local_cert import LocalCert
from lorachain.da_client.store import DAStore
from tests.conftest import LORACHAIN, REPO, free_port

pytestmark = pytest.mark.e2e


class DAServerProcess:
    def __init__(self, datadir: Path, *args: str) -> None:
        self.datadir = datadir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = datadir.parent / f"da-{self.port}.log"
        self.proc = subprocess.Popen(
            [*LORACHAIN, "da-server", "--datadir", str(datadir), "--port", str(self.port), *args],
            stdout=open(self.log, "ab"),  # noqa: SIM115 - owned by the subprocess
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"da-server exited: {self.log.read_text()}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("da-server did not start")

    def faults(self, **faults: object) -> dict:
        return requests.post(f"{self.url}/admin/faults", json=faults, timeout=5).json()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DAServerProcess]:
    process = DAServerProcess(tmp_path / "da")
    yield process
    process.stop()


def client(server: DAServerProcess, mode: CommitmentMode = CommitmentMode.OP_GENERIC, **kwargs: object) -> DAClient:
    return DAClient(server.url, mode, backoff_s=0.01, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", list(CommitmentMode))
def test_put_get_round_trip_in_every_mode(server: DAServerProcess, mode: CommitmentMode) -> None:
    da = client(server, mode)
    payloads = [b"\x00" + os.urandom(1000), os.urandom(1), os.urandom(200_000)]
    commitments = [da.put(p) for p in payloads]
    for payload, commitment in zip(payloads, commitments, strict=True):
        assert da.get(commitment) == payload
    if mode is CommitmentMode.OP_GENERIC:
        assert all(c[:2] == b"\x01\x00" for c in commitments)
        assert isinstance(decode_op_commitment(commitments[0]), EigenDACert)
    if mode is CommitmentMode.OP_KECCAK:
        assert all(c[:1] == b"\x00" and len(c) == 33 for c in commitments)
    assert da.put(payloads[0]) == commitments[0]  # content-addressed: the same payload, the same commitment


def test_refusals(server: DAServerProcess) -> None:
    da = client(server)
    unknown = LocalCert.for_payload(b"never stored")[0].encode().encode(CommitmentMode.OP_GENERIC)
    with pytest.raises(DANotFound):
        da.get(unknown)
    with pytest.raises(DerivationError) as foreign:  # a cert this server could not have issued
        da.get(b"\x01\x00\x02" + b"\x11" * 50)
    assert foreign.value.code == 1
    with pytest.raises(DABadRequest):
        da.get(b"\x07bad")
    reply = requests.get(f"{server.url}/get/0xzz", timeout=5)
    assert reply.status_code == 400 and "hex" in reply.json()["error"]["message"]
    reply = requests.post(f"{server.url}/put/0x00{'11' * 32}", data=b"does not hash to that", timeout=5)
    assert reply.status_code == 400 and "hash" in reply.json()["error"]["message"]
    with pytest.raises(DABadRequest):
        da.put(b"")
    with pytest.raises(DABadRequest) as oversize:
        da.put(bytes(MAX_PAYLOAD_SIZE + 1))
    assert oversize.value.status == 413
    assert requests.get(f"{server.url}/nowhere", timeout=5).json()["error"]["code"] == 404
    assert da.get(da.put(b"still serving")) == b"still serving"


def test_injected_faults(server: DAServerProcess) -> None:
    sleeps: list[float] = []
    da = client(server, sleep=sleeps.append)
    commitment = da.put(b"batch")
    server.faults(put_status=503)
    with pytest.raises(DAUnavailable):  # at once: the batcher fails over to calldata
        da.put(b"batch 2")
    assert sleeps == []
    server.faults(put_status=429, remaining=2)
    assert da.get(da.put(b"batch 2")) == b"batch 2"  # two retries with back-off, then through
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]
    server.faults(get_status=429)
    with pytest.raises(DARateLimited):
        da.get(commitment)
    server.faults(get_status=418)
    with pytest.raises(DerivationError) as dropped:
        da.get(commitment)
    assert dropped.value.code == 4
    server.faults(get_status=500, remaining=1)
    assert da.get(commitment) == b"batch"  # one retry
    server.faults(latency_ms=150)
    started = time.monotonic()
    assert da.get(commitment) == b"batch"
    assert time.monotonic() - started >= 0.15
    assert requests.post(f"{server.url}/admin/faults", json={"bogus": 1}, timeout=5).status_code == 400
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert 'da_requests_total{route="put",status="503"} 1.0' in metrics


def test_kill_9_loses_nothing_acknowledged_and_corruption_is_caught(tmp_path: Path) -> None:
    datadir = tmp_path / "da"
    first = DAServerProcess(datadir)
    da = client(first)
    stored = {da.put(payload): payload for payload in (os.urandom(5000) for _ in range(20))}
    first.stop(signal.SIGKILL)
    second = DAServerProcess(datadir)
    try:
        da = client(second, retries=1)
        assert all(da.get(c) == p for c, p in stored.items())
        with pytest.raises(DAUnavailable):
            DAClient(f"http://127.0.0.1:{free_port()}").put(b"x")  # nobody listening
    finally:
        second.stop()
    victim = next(iter(stored))
    cert = LocalCert.decode(decode_op_commitment(victim))  # type: ignore[arg-type]
    store = DAStore(datadir)
    store.overwrite_blob(cert.key, bytes(len(store.get_blob(cert.key) or b"")))
    store.close()
    third = DAServerProcess(datadir)
    try:
        with pytest.raises(DAServerError) as corrupt:  # a 500, never a derivation error: the data is not invalid
            client(third, retries=1).get(victim)
        assert corrupt.value.status == 500
    finally:
        third.stop()
