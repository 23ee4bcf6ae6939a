"""keccak-256 for the hot paths: safe-pysha3's C extension called directly.

``eth_utils.keccak`` converts and validates its argument on every call through two decorators: ~3.8 µs a call
here against ~1.1 µs for the C call alone, and a block hashes trie nodes, storage slots, accounts and logs
hundreds of times; eth-hash's ``keccak`` object, which py-evm and py-trie call, ~1.5 µs. :func:`keccak` takes
the direct path for ``bytes`` and hands anything else (``hexstr=``, ``text=``, integers, bytearrays) to
eth-utils, so it is a drop-in for it; :func:`keccak256` does the same in place of eth-hash's object, and
:func:`install_in` puts it where py-evm and py-trie look ``keccak`` up.
"""

from __future__ import annotations

import sys
from typing import Any

import eth_utils
from eth_hash.auto import keccak as _eth_hash_keccak

try:
    from sha3 import keccak_256 as _keccak_256  # safe-pysha3
except ImportError:  # pragma: no cover - the dependency is declared; eth-utils' path still works without it
    _keccak_256 = None

_eth_utils_keccak = eth_utils.keccak


def keccak(primitive: Any = None, hexstr: str | None = None, text: str | None = None) -> bytes:
    """``eth_utils.keccak``, the C extension directly for a ``bytes`` argument."""
    if type(primitive) is bytes and _keccak_256 is not None and hexstr is None and text is None:
        return _keccak_256(primitive).digest()
    return _eth_utils_keccak(primitive, hexstr=hexstr, text=text)


def keccak256(preimage: Any) -> bytes:
    """eth-hash's ``keccak(preimage)``, the C extension directly for ``bytes``."""
    if type(preimage) is bytes and _keccak_256 is not None:
        return _keccak_256(preimage).digest()
    return _eth_hash_keccak(preimage)


def install_in(prefixes: tuple[str, ...] = ("eth.", "trie.", "eth_bloom.")) -> list[str]:
    """Put the direct path in every loaded module under ``prefixes`` whose global ``keccak`` is eth-utils' or
    eth-hash's; returns what it replaced."""
    replaced = []
    for name, module in list(sys.modules.items()):
        if not name.startswith(prefixes):
            continue
        for attribute in ("keccak", "keccak_256"):  # eth-bloom imports it as keccak_256
            found = getattr(module, attribute, None)
            if found is _eth_utils_keccak or found is _eth_hash_keccak:
                setattr(module, attribute, keccak if found is _eth_utils_keccak else keccak256)
                replaced.append(f"{name}.{attribute}")
    return replaced
