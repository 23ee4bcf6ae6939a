"""Shared by the rollup tests: an OP Stack devnet genesis, and an L1 with a rollup initialised on it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import requests

from lorachain.genesis.genesis import devnet_genesis
from lorachain.rollup_cli import op_stack_genesis
from tests.conftest import LORACHAIN, REPO, start_node


def op_genesis(extra_alloc: dict[bytes, str] | None = None) -> dict[str, Any]:
    """The devnet genesis as an OP Stack chain with the L1Block predeploy; ``extra_alloc`` maps addresses to
    runtime code (hex)."""
    raw = op_stack_genesis(with_predeploys=False)
    for address, code in (extra_alloc or {}).items():
        raw["alloc"]["0x" + address.hex()] = {"balance": "0x0", "code": code}
    return raw


def start_l1_and_rollup(tmp_path: Path, *l1_args: str, init_args: tuple[str, ...] = ()) -> tuple[Any, Path, tuple]:
    """An L1 node (chain 900) and `lorachain rollup init` against it: (l1 node, rollup dir, the node arguments
    every L2 node of this rollup takes)."""
    genesis = tmp_path / "l1.json"
    genesis.write_text(json.dumps(devnet_genesis(chain_id=900, with_predeploys=False)))
    l1 = start_node(tmp_path / "l1", "--genesis", str(genesis), *l1_args)
    rollup = tmp_path / "rollup"
    init = [*LORACHAIN, "rollup", "init", "--l1", l1.url, "--out", str(rollup), *init_args]
    done = subprocess.run(init, cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        l1.stop()
        raise RuntimeError(f"rollup init failed: {done.stderr}")
    common = ("--genesis", str(rollup / "genesis.json"), "--rollup-config", str(rollup / "rollup.json"), "--l1", l1.url)
    return l1, rollup, common


def stop_all(*things: Any) -> None:
    """Stop what a rollup test started, in the order given: subprocesses (killed), nodes and servers
    (``stop()``); ``None`` (never started) is skipped."""
    for thing in things:
        if thing is None:
            continue
        if isinstance(thing, subprocess.Popen):
            thing.kill()
            thing.wait(timeout=20)
        else:
            thing.stop()


def metric(url: str, name: str, **labels: str) -> float:
    """One sample of ``url``'s Prometheus ``/metrics`` (``labels`` as given, in the exposition's order); 0 when
    absent."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    sample = name + ("{" + wanted + "}" if wanted else "")
    for line in requests.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
