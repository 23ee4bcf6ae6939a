"""Solidity toolchain: the pinned solcjs compiler and contract build artifacts.

The public helpers live in :mod:`lorachain.toolchain.solc` and are re-exported here lazily,
so that ``python -m lorachain.toolchain.solc`` does not import the module twice.
"""

from typing import Any

__all__ = [
    "SolcError",
    "build_contracts",
    "compile_source",
    "compile_sources",
    "ensure_solc",
    "load_artifact",
    "solc_version",
]


def __getattr__(name: str) -> Any:
    """Resolve the re-exported names from :mod:`lorachain.toolchain.solc` on first use."""
    if name in __all__:
        from lorachain.toolchain import solc

        return getattr(solc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
