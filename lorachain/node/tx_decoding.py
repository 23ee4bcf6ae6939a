"""Signed transactions decoded from their wire bytes, the common kind without pyrlp's sedes machinery.

py-evm decodes an EIP-1559 transaction through pyrlp's ``Serializable.deserialize``: a sedes per field, keyword
merging, argument checks and a ``make_immutable`` per value, ~50 µs of the ~150 µs it costs to admit one. For
an EIP-1559 transaction without an access list (what wallets send) :func:`decode_transaction` reads the
twelve fields of the strict, canonical rlp list itself, applies the checks py-evm's sedes apply (integers
minimal and unsigned, a recipient of 20 bytes or none, byte strings where byte strings belong) and builds
py-evm's own objects. Anything else, or anything those checks doubt, is py-evm's to decode, with py-evm's
errors. ``tests/test_tx_decoding.py`` compares the two on random and malformed transactions.
"""

from __future__ import annotations

import rlp
from eth.abc import SignedTransactionAPI, TransactionBuilderAPI
from eth.vm.forks.london.transactions import DynamicFeePayloadDecoder, DynamicFeeTransaction

DYNAMIC_FEE_TYPE = 2
_INT_FIELDS = (0, 1, 2, 3, 4, 6, 9, 10, 11)  # chain id, nonce, tip, fee cap, gas, value, y parity, r, s
_ATTRS = DynamicFeeTransaction._meta.field_attrs


def decode_transaction(builder: type[TransactionBuilderAPI], raw: bytes) -> SignedTransactionAPI:
    """``builder.decode(raw)``: the same object, sooner for an EIP-1559 transaction without an access list."""
    fast = _dynamic_fee_without_access_list(builder, raw)
    return fast if fast is not None else builder.decode(raw)


def _dynamic_fee_without_access_list(builder: type[TransactionBuilderAPI], raw: bytes) -> SignedTransactionAPI | None:
    if not raw or raw[0] != DYNAMIC_FEE_TYPE:
        return None
    typed = getattr(builder, "typed_transaction", None)
    if typed is None or typed.get_payload_codec(DYNAMIC_FEE_TYPE) is not DynamicFeePayloadDecoder:
        return None  # a fork that decodes these its own way keeps it
    payload = raw[1:]
    try:
        items = rlp.decode(payload)  # strict: canonical lengths, nothing after the list
    except rlp.DecodingError:
        return None
    if not isinstance(items, list) or len(items) != len(_ATTRS) or items[8] != []:
        return None
    values: list[object] = list(items)
    for index in _INT_FIELDS:
        serial = items[index]
        if not isinstance(serial, bytes) or serial[:1] == b"\x00":  # pyrlp: "not minimal length"
            return None
        values[index] = int.from_bytes(serial, "big")
    to, data = items[5], items[7]
    if not isinstance(to, bytes) or len(to) not in (0, 20) or not isinstance(data, bytes):
        return None
    values[8] = ()  # the empty access list, immutable as pyrlp makes it
    inner = DynamicFeeTransaction.__new__(DynamicFeeTransaction)
    for attr, value in zip(_ATTRS, values, strict=True):
        setattr(inner, attr, value)
    inner._cached_rlp = payload  # as rlp.decode leaves it: its encoding, already known
    return typed(DYNAMIC_FEE_TYPE, inner)
