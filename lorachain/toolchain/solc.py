"""Compile Solidity with the pinned solcjs compiler and manage build artifacts.

The compiler is the npm ``solc`` package pinned in ``contracts/package.json``. It runs under
node in ``--standard-json`` mode with the optimizer on (200 runs) and ``evmVersion`` "prague".
``build_contracts`` writes one JSON artifact per contract into ``contracts/out`` and skips the
work when neither the sources nor the compiler pin changed since the last build.

Command line: ``python -m lorachain.toolchain.solc [--src DIR] [--out DIR] [--force]``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"
SRC_DIR = CONTRACTS_DIR / "src"
OUT_DIR = CONTRACTS_DIR / "out"

EVM_VERSION = "prague"
OPTIMIZER_RUNS = 200
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
    "evmVersion": EVM_VERSION,
    "outputSelection": {
        "*": {
            "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "evm.methodIdentifiers"],
        },
    },
}
HASH_FILE = ".build-hash"
COMPILE_TIMEOUT_S = 300
INSTALL_TIMEOUT_S = 600

Artifact = dict[str, Any]


class SolcError(RuntimeError):
    """The compiler could not be installed or run, or it rejected the sources.

    ``errors`` holds the compiler's formatted error messages (empty for setup failures).
    """

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors: list[str] = errors or []


# --- compiler installation -------------------------------------------------------------------


def pinned_solc_version(contracts_dir: Path = CONTRACTS_DIR) -> str:
    """Return the exact solc version pinned in ``contracts/package.json``."""
    package = json.loads((contracts_dir / "package.json").read_text())
    return package["dependencies"]["solc"]


def _installed_solc_version(contracts_dir: Path) -> str | None:
    """Return the version of solc in ``node_modules``, or None when it is not installed."""
    package_json = contracts_dir / "node_modules" / "solc" / "package.json"
    try:
        return json.loads(package_json.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock keyed by ``path`` (the lock file lives in /tmp)."""
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"lorachain-solc-{key}.lock"
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_solc(contracts_dir: Path = CONTRACTS_DIR) -> Path:
    """Install the pinned solcjs with ``npm ci`` unless it is already present.

    Idempotent and safe to call from several processes at once. Returns the path of the
    solcjs command-line script to run with node.
    """
    solcjs = contracts_dir / "node_modules" / "solc" / "solc.js"
    pinned = pinned_solc_version(contracts_dir)
    if _installed_solc_version(contracts_dir) == pinned and solcjs.is_file():
        return solcjs
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise SolcError(
            f"{' and '.join(missing)} not found on PATH; install Node.js (>= 18) with npm "
            f"to compile Solidity (solcjs {pinned} is installed from contracts/package-lock.json)"
        )
    with _locked(contracts_dir):
        if _installed_solc_version(contracts_dir) != pinned or not solcjs.is_file():
            log.info("installing solcjs %s with npm ci in %s", pinned, contracts_dir)
            proc = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"],
                cwd=contracts_dir,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
            if proc.returncode != 0:
                raise SolcError(f"npm ci failed in {contracts_dir} (exit {proc.returncode}):\n{proc.stderr}")
    installed = _installed_solc_version(contracts_dir)
    if installed != pinned or not solcjs.is_file():
        raise SolcError(f"npm ci did not install solc {pinned} (found {installed}) in {contracts_dir}")
    return solcjs


@cache
def _long_version(solcjs: Path) -> str:
    """Ask solcjs for its full version string, e.g. ``0.8.30+commit.73712a01.Emscripten.clang``."""
    proc = subprocess.run(["node", str(solcjs), "--version"], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise SolcError(f"solcjs --version failed (exit {proc.returncode}):\n{proc.stderr}")
    return proc.stdout.strip()


def solc_version() -> str:
    """Return the full version string of the pinned compiler, installing it if needed."""
    return _long_version(ensure_solc())


# --- compiling -------------------------------------------------------------------------------


def _run_standard_json(compiler_input: Mapping[str, Any], base_path: Path | None) -> dict[str, Any]:
    """Feed a standard-JSON input to solcjs and return the parsed standard-JSON output."""
    command = ["node", str(ensure_solc()), "--standard-json"]
    if base_path is not None:
        command += ["--base-path", str(base_path)]
    # stdout goes to a file, not a pipe: solcjs ends with console.log + process.exit, and node cuts output
    # written to a pipe at 64 KiB when the process exits (its pipe writes are asynchronous, file writes not).
    # stdin is a file too: solcjs's synchronous read of a pipe fails with EAGAIN when the writer is slow.
    with tempfile.TemporaryFile("w+") as source, tempfile.TemporaryFile("w+") as out:
        source.write(json.dumps(compiler_input))
        source.seek(0)
        proc = subprocess.run(
            command,
            stdin=source,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=COMPILE_TIMEOUT_S,
            check=False,
        )
        out.seek(0)
        stdout = out.read()
    if proc.returncode != 0:
        raise SolcError(f"solcjs exited with status {proc.returncode}:\n{proc.stderr or stdout}")
    # solcjs may print ">>> ..." notes before the single-line JSON result.
    json_lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not json_lines:
        raise SolcError(f"solcjs produced no JSON output:\n{stdout}\n{proc.stderr}")
    return json.loads(json_lines[-1])


def _hex(code: str) -> str:
    """Return bytecode as 0x-prefixed hex."""
    return code if code.startswith("0x") else "0x" + code


def compile_sources(sources: Mapping[str, str], base_path: Path | None = None) -> dict[str, Artifact]:
    """Compile Solidity sources (source unit name -> text) and return artifacts by contract name.

    ``base_path`` lets solcjs resolve imports of files not included in ``sources``. Raises
    ``SolcError`` with the compiler's messages (which name file, line and column) on failure.
    """
    compiler_input = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": SETTINGS,
    }
    output = _run_standard_json(compiler_input, base_path)
    diagnostics = output.get("errors", [])
    errors = [d.get("formattedMessage", d["message"]) for d in diagnostics if d.get("severity") == "error"]
    if errors:
        raise SolcError("Solidity compilation failed:\n" + "\n".join(errors), errors)
    for diagnostic in diagnostics:
        log.warning("solc: %s", diagnostic.get("formattedMessage", diagnostic.get("message")))

    version = solc_version()
    artifacts: dict[str, Artifact] = {}
    for source_name, contracts in sorted(output.get("contracts", {}).items()):
        for contract_name, contract in sorted(contracts.items()):
            if contract_name in artifacts:
                raise SolcError(
                    f"contract name {contract_name} is defined in both "
                    f"{artifacts[contract_name]['sourceName']} and {source_name}"
                )
            evm = contract.get("evm", {})
            artifacts[contract_name] = {
                "contractName": contract_name,
                "sourceName": source_name,
                "abi": contract.get("abi", []),
                "bytecode": _hex(evm.get("bytecode", {}).get("object", "")),
                "deployedBytecode": _hex(evm.get("deployedBytecode", {}).get("object", "")),
                "methodIdentifiers": evm.get("methodIdentifiers", {}),
                "solcVersion": version,
            }
    return artifacts


def compile_source(text: str, name: str = "Source.sol") -> dict[str, Artifact]:
    """Compile one ad-hoc Solidity source and return its artifacts by contract name."""
    return compile_sources({name: text})


# --- building the project's contracts --------------------------------------------------------


def _read_sources(src_dir: Path) -> dict[str, str]:
    """Return every ``.sol`` file under ``src_dir``, keyed by its POSIX path relative to it."""
    return {path.relative_to(src_dir).as_posix(): path.read_text() for path in sorted(src_dir.rglob("*.sol"))}


def _build_hash(sources: Mapping[str, str]) -> str:
    """Hash the sources together with the compiler pin and settings."""
    material = {"solc": pinned_solc_version(), "settings": SETTINGS, "sources": dict(sources)}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, so readers never see a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _cached_build(out_dir: Path, digest: str) -> dict[str, Path] | None:
    """Return the artifacts of the previous build if it had this digest and they all exist."""
    try:
        previous = json.loads((out_dir / HASH_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(previous, dict) or previous.get("hash") != digest:
        return None
    paths = {name: out_dir / f"{name}.json" for name in previous.get("contracts", [])}
    return paths if all(path.is_file() for path in paths.values()) else None


def build_contracts(src_dir: Path = SRC_DIR, out_dir: Path = OUT_DIR, *, force: bool = False) -> dict[str, Path]:
    """Compile every ``.sol`` file under ``src_dir`` into ``out_dir/<ContractName>.json``.

    Skips compiling when the sources and compiler pin hash to the value stored in
    ``out_dir/.build-hash`` (unless ``force``). ``out_dir`` belongs to the build: stale
    ``*.json`` artifacts in it are removed. Returns artifact paths by contract name.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    sources = _read_sources(src_dir)
    if not sources:
        raise SolcError(f"no .sol files under {src_dir}")
    digest = _build_hash(sources)
    with _locked(out_dir):
        cached = None if force else _cached_build(out_dir, digest)
        if cached is not None:
            log.info("contracts up to date in %s (%d artifacts)", out_dir, len(cached))
            return cached

        artifacts = compile_sources(sources, base_path=src_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob("*.json"):
            if stale.stem not in artifacts:
                stale.unlink()
        paths = {name: out_dir / f"{name}.json" for name in artifacts}
        for name, artifact in artifacts.items():
            _write_json(paths[name], artifact)
        _write_json(out_dir / HASH_FILE, {"hash": digest, "contracts": sorted(artifacts)})
        log.info("compiled %d contracts from %s into %s", len(artifacts), src_dir, out_dir)
        return paths


def load_artifact(name: str, *, src_dir: Path = SRC_DIR, out_dir: Path = OUT_DIR) -> Artifact:
    """Return the artifact of contract ``name``, building first if it is missing or stale.

    An artifact is stale when any source under ``src_dir`` is newer than it (sources may
    import each other); the rebuild itself is skipped if the source contents are unchanged.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    path = out_dir / f"{name}.json"
    newest_source = max((p.stat().st_mtime for p in src_dir.rglob("*.sol")), default=0.0)
    if not path.is_file() or path.stat().st_mtime < newest_source:
        build_contracts(src_dir, out_dir)
    if not path.is_file():
        available = sorted(p.stem for p in out_dir.glob("*.json"))
        raise FileNotFoundError(f"no contract named {name!r} under {src_dir}; available: {available}")
    return json.loads(path.read_text())


# --- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Build the contracts from the command line; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m lorachain.toolchain.solc",
        description=f"Compile Solidity sources with the pinned solcjs (evmVersion {EVM_VERSION}).",
    )
    parser.add_argument("--src", type=Path, default=SRC_DIR, help="source directory (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="artifact directory (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="recompile even if sources are unchanged")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = build_contracts(args.src, args.out, force=args.force)
    except (SolcError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in sorted(paths.items()):
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
