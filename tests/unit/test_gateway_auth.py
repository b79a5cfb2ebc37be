"""API keys: the stored form is sha256 hex → namespace; a key maps to exactly its tenant."""

from __future__ import annotations

import base64
import hashlib

from kontainers.gateway.apikeys import KEY_PREFIX, new_api_key
from kontainers.gateway.auth import KeyStore, key_hash


def test_keys_secret_is_mirrored_by_hash() -> None:
    key = new_api_key()
    assert key.startswith(KEY_PREFIX) and len(key) > 40 and new_api_key() != key
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert key_hash(key) == digest
    store = KeyStore()
    assert not store.synced
    store.replace_from_secret({"data": {digest: base64.b64encode(b"tenant-1").decode()}})
    assert store.synced
    tenant = store.tenant(key)
    assert tenant is not None and (tenant.namespace, tenant.key_hash) == ("tenant-1", digest)
    assert store.tenant(key + "x") is None
    assert store.tenant(digest) is None  # the hash itself is not a key
    store.replace_from_secret(None)  # the Secret was deleted: every key is gone
    assert store.tenant(key) is None and store.synced
