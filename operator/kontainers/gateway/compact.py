"""Make a watched Container cheap to keep: the cache holds every Container of the cluster.

A Container decoded from JSON costs ~11 KiB of Python objects; two thirds of it are
`metadata.managedFields` (read by nothing in the gateway) and copies of the same short strings
(every dict key, "pending", "1g", …), decoded anew for each object and each watch event.
"""

from __future__ import annotations

import sys

_SHARED_VALUE_CHARS = 16  # longer values (names, uids, times) are mostly unique: interning them saves nothing


def compact(obj: dict) -> dict:
    """Drop managedFields and share repeated strings, in place (identity and equality kept)."""
    obj.get("metadata", {}).pop("managedFields", None)
    _share(obj)
    return obj


def _share(value: object) -> object:
    if isinstance(value, dict):
        items = list(value.items())
        value.clear()
        for key, item in items:
            value[sys.intern(key) if type(key) is str else key] = _share(item)
    elif isinstance(value, list):
        value[:] = [_share(item) for item in value]
    elif type(value) is str and len(value) <= _SHARED_VALUE_CHARS:  # not subclasses (str enums): they cannot be interned
        return sys.intern(value)
    return value
