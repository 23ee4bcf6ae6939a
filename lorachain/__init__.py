"""lorachain: a payable-AI OP-Stack-style rollup node on py-evm, with exact LoRA inference."""

import importlib.util
import os

__version__ = "0.1.0"

# keccak256 is hashed thousands of times per block. eth-hash prefers pycryptodome, whose per-call cost is
# ~8x that of the C extension of safe-pysha3; use the latter where it is installed (same digests).
if importlib.util.find_spec("sha3") is not None:
    os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
