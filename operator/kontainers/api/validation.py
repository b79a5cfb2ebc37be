"""Turn a pydantic ValidationError into the OpenAI-style 400: message, `param` and `code`."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

# Discriminated unions add the tag to an error's location; the wire parameter has no such level.
_UNION_TAGS = frozenset({"disabled", "allowlist", "skill_reference", "inline"})
_JSON_TYPES = {
    "string": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
    "list": "an array", "dict": "an object", "model": "an object", "model_attributes": "an object",
}


def param_of(loc: Sequence[str | int]) -> str | None:
    """`("network_policy", "allowlist", "allowed_domains", 0)` → `network_policy.allowed_domains[0]`."""
    param = ""
    for item in loc:
        if isinstance(item, int):
            param += f"[{item}]"
        elif item in _UNION_TAGS or item.startswith(("function-", "tagged-union")):
            continue
        else:
            param += f".{item}" if param else item
    return param or None


def _type_name(value: object) -> str:
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
                       (list, "an array"), (dict, "an object"), (type(None), "null")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def describe(error: ValidationError) -> tuple[str, str | None, str]:
    """(message, param, code) of the first problem, worded like OpenAI's own 400s."""
    first = error.errors(include_url=False)[0]
    param = param_of(first["loc"])
    kind = first["type"]
    shown = param or "body"
    if kind == "missing":
        return f"Missing required parameter: '{shown}'.", param, "missing_required_parameter"
    if kind == "extra_forbidden":
        return f"Unknown parameter: '{shown}'.", param, "unknown_parameter"
    base = kind.removesuffix("_type")
    if kind.endswith("_type") and base in _JSON_TYPES:
        got = _type_name(first.get("input"))
        return (f"Invalid type for '{shown}': expected {_JSON_TYPES[base]}, but got {got} instead.",
                param, "invalid_type")
    if kind == "union_tag_not_found":
        return f"Missing required parameter: '{shown}.type'.", f"{shown}.type", "missing_required_parameter"
    if kind == "union_tag_invalid":
        return f"Invalid value for '{shown}.type': {first['msg']}.", f"{shown}.type", "invalid_value"
    reason = first["msg"].removeprefix("Value error, ")
    return f"Invalid value for '{shown}': {reason}.", param, "invalid_value"
