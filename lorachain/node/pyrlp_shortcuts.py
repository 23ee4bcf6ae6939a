"""Shortcuts through pyrlp's ``Serializable`` for the shapes py-evm uses most; the same results and errors.

- a field (``tx.gas``, ``account.balance``, ``header.number``: some 170 reads a transaction) is read by an
  ``operator.attrgetter`` property, not pyrlp's Python getter around the same ``getattr``;
- a constructor sets each field's attribute directly (``make_immutable`` is called for lists only: it turns
  lists into tuples and returns anything else as it is);
- keyword arguments are merged with the field names (every ``Header(**fields)``, every deserialized object)
  directly when they are exactly the fields: pyrlp checks each call's field names for duplicates with a
  ``collections.Counter`` and compares four sets before it zips. Any other shape, and every error, is pyrlp's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from operator import attrgetter
from typing import Any

import rlp
import rlp.sedes.serializable as serializable

_pyrlp_field_property = serializable._mk_field_property
_pyrlp_merge_kwargs_to_args = serializable.merge_kwargs_to_args
_pyrlp_merge_args_to_kwargs = serializable.merge_args_to_kwargs
_pyrlp_init = serializable.BaseSerializable.__init__
_PYRLP_GETTER = _pyrlp_field_property("field", "_field").fget.__qualname__  # type: ignore[union-attr]


def _field_property(field: str, attr: str) -> property:
    """pyrlp's property for a field (its setter kept), the getter an ``attrgetter`` of the same attribute."""
    return property(attrgetter(attr), _pyrlp_field_property(field, attr).fset)


@lru_cache(maxsize=1024)
def _distinct(names: tuple[str, ...]) -> frozenset[str] | None:
    """The set of a class's field names, or None if some name repeats (pyrlp's error then)."""
    distinct = frozenset(names)
    return distinct if len(distinct) == len(names) else None


def merge_kwargs_to_args(
    args: Sequence[Any], kwargs: Mapping[str, Any], arg_names: tuple[str, ...], allow_missing: bool = False
) -> tuple[Any, ...]:
    """pyrlp's ``merge_kwargs_to_args``: the values in field order."""
    if not args and len(kwargs) == len(arg_names) and _distinct(arg_names) is not None:
        try:
            return tuple([kwargs[name] for name in arg_names])
        except KeyError:
            pass  # some other name among the keywords: pyrlp's error
    return _pyrlp_merge_kwargs_to_args(args, kwargs, arg_names, allow_missing)  # type: ignore[no-any-return]


def merge_args_to_kwargs(
    args: Sequence[Any], kwargs: Mapping[str, Any], arg_names: tuple[str, ...], allow_missing: bool = False
) -> dict[str, Any]:
    """pyrlp's ``merge_args_to_kwargs``: the values by field name."""
    names = _distinct(arg_names)
    if names is not None:
        if not kwargs and len(args) == len(arg_names):
            return dict(zip(arg_names, args, strict=True))
        if not args and names.issuperset(kwargs) and (allow_missing or len(kwargs) == len(arg_names)):
            return dict(kwargs)
    return _pyrlp_merge_args_to_kwargs(args, kwargs, arg_names, allow_missing)  # type: ignore[no-any-return]


def _serializable_init(self: Any, *args: Any, **kwargs: Any) -> None:
    """pyrlp's ``BaseSerializable.__init__``, the same checks and message."""
    meta = self._meta
    field_values = serializable.merge_kwargs_to_args(args, kwargs, meta.field_names) if kwargs else args
    if len(field_values) != len(meta.field_names):
        raise TypeError(
            f"Argument count mismatch. expected {len(meta.field_names)} - "
            f"got {len(field_values)} - "
            f"missing {','.join(meta.field_names[len(field_values) :])}"
        )
    for value, attr in zip(field_values, meta.field_attrs, strict=True):
        setattr(self, attr, serializable.make_immutable(value) if isinstance(value, list) else value)


def install() -> None:
    """Put the shortcuts where pyrlp looks them up, and give every ``Serializable`` class defined so far
    :func:`_field_property` getters (pyrlp's metaclass makes later classes' with ``_mk_field_property``)."""
    serializable.merge_kwargs_to_args = merge_kwargs_to_args
    serializable.merge_args_to_kwargs = merge_args_to_kwargs
    if serializable.BaseSerializable.__init__ is _pyrlp_init:
        serializable.BaseSerializable.__init__ = _serializable_init  # type: ignore[method-assign]
    classes, pending = set(), [rlp.Serializable]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in classes:
                classes.add(sub)
                pending.append(sub)
    for cls in classes:
        meta = cls.__dict__.get("_meta")
        if meta is None:
            continue
        for name, attr in zip(meta.field_names, meta.field_attrs, strict=True):
            prop = cls.__dict__.get(name)
            if isinstance(prop, property) and getattr(prop.fget, "__qualname__", None) == _PYRLP_GETTER:
                setattr(cls, name, property(attrgetter(attr), prop.fset))
    serializable._mk_field_property = _field_property
