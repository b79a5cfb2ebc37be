"""Placeholders for domain secrets: what the sandbox holds instead of the real value.

Scheme: for a Container with metadata.uid U and a domain secret named N (its environment variable),
the placeholder is

    KONTAINERS_SECRET_PLACEHOLDER_<40 lowercase hex of sha256("kontainers.dev/domain-secret\\0" U "\\0" N)>

It is derived, not stored, so the operator (which writes it into the pod's environment) and the
egress proxy (which swaps it for the value) compute the same string from the Container alone.
It needs no secrecy: the proxy substitutes only for requests that come from that Container (pod IP
or proxy credentials) and go to the secret's domain over HTTPS, so knowing a placeholder — even
another Container's — gains nothing. The fixed prefix makes it recognisable in a header and in logs
of the remote API, and contains only characters that survive any header or shell quoting.
"""

from __future__ import annotations

import base64
import hashlib
import re

PREFIX = "KONTAINERS_SECRET_PLACEHOLDER_"
PATTERN = re.compile(PREFIX + "[0-9a-f]{40}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def placeholder(uid: str, name: str) -> str:
    digest = hashlib.sha256(f"kontainers.dev/domain-secret\0{uid}\0{name}".encode()).hexdigest()
    return PREFIX + digest[:40]


def is_env_name(name: str) -> bool:
    return bool(_ENV_NAME.match(name))


def usable_value(value: str) -> bool:
    """A value may go into a header only without control characters (no CR/LF header injection)."""
    return not any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in value)


def substitute(text: str, replacements: dict[str, str]) -> str:
    """Every known placeholder in text replaced by its value; unknown placeholders stay as they are.

    Also looks inside `Basic <base64>` credentials, where clients put a secret as user or password.
    """
    if PREFIX not in text:
        if text[:6].lower() == "basic ":
            return _substitute_basic(text, replacements)
        return text
    return PATTERN.sub(lambda m: replacements.get(m.group(0), m.group(0)), text)


def _substitute_basic(text: str, replacements: dict[str, str]) -> str:
    try:
        decoded = base64.b64decode(text[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return text
    if PREFIX not in decoded:
        return text
    swapped = PATTERN.sub(lambda m: replacements.get(m.group(0), m.group(0)), decoded)
    if swapped == decoded:
        return text
    return text[:6] + base64.b64encode(swapped.encode("utf-8")).decode("ascii")


def scrub(data: str, values: dict[str, str]) -> str:
    """Reverse substitution (value → placeholder), for what comes back to the sandbox."""
    for value, marker in values.items():
        if value and value in data:
            data = data.replace(value, marker)
    return data
