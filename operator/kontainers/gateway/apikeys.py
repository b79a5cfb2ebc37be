"""`kontainers apikey create|revoke`: manage gateway API keys.

A key is shown once, at creation; the Secret `kontainers-api-keys` (in the gateway's namespace)
keeps only its sha256 hex as a data key, whose value is the tenant namespace the key grants.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import sys

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import kube
from ..resources import names
from ..settings import GatewaySettings
from .auth import key_hash
from .kube_cluster import keys_namespace

KEY_PREFIX = "sk-kont-"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def store_key_hash(api: client.ApiClient, digest: str, tenant_namespace: str, *,
                         secret_namespace: str, secret_name: str = "kontainers-api-keys") -> None:
    """Add (or re-point) one key hash in the keys Secret, creating the Secret if needed."""
    core = client.CoreV1Api(api)
    value = base64.b64encode(tenant_namespace.encode()).decode()
    try:
        await core.patch_namespaced_secret(secret_name, secret_namespace, {"data": {digest: value}},
                                           _content_type=kube.MERGE_PATCH)
        return
    except ApiException as exc:
        if exc.status != 404:
            raise
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=secret_name, namespace=secret_namespace,
                                     labels={names.LABEL_MANAGED_BY: names.MANAGED_BY}),
        type="Opaque", data={digest: value})
    try:
        await core.create_namespaced_secret(secret_namespace, body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        await core.patch_namespaced_secret(secret_name, secret_namespace, {"data": {digest: value}},
                                           _content_type=kube.MERGE_PATCH)


async def create_api_key(api: client.ApiClient, tenant_namespace: str, *, secret_namespace: str,
                         secret_name: str = "kontainers-api-keys") -> str:
    """Mint a key for `tenant_namespace`, store its hash, and return the key (the only copy)."""
    key = new_api_key()
    await store_key_hash(api, key_hash(key), tenant_namespace, secret_namespace=secret_namespace,
                         secret_name=secret_name)
    return key


async def revoke_api_key(api: client.ApiClient, api_key: str, *, secret_namespace: str,
                         secret_name: str = "kontainers-api-keys") -> bool:
    """Remove a key; False if it was not there."""
    core = client.CoreV1Api(api)
    digest = key_hash(api_key)
    try:
        secret = await core.read_namespaced_secret(secret_name, secret_namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    if digest not in (secret.data or {}):
        return False
    await core.patch_namespaced_secret(secret_name, secret_namespace, {"data": {digest: None}},
                                       _content_type=kube.MERGE_PATCH)
    return True


async def _run(args: argparse.Namespace) -> int:
    settings = GatewaySettings(**{k: v for k, v in {"kubeconfig": args.kubeconfig,
                                                    "keys_namespace": args.secret_namespace,
                                                    "keys_secret": args.secret_name}.items() if v})
    api = await kube.api_client(settings.kubeconfig)
    try:
        where = {"secret_namespace": keys_namespace(settings), "secret_name": settings.keys_secret}
        if args.action == "create":
            print(await create_api_key(api, args.namespace, **where))
            return 0
        key = sys.stdin.readline().strip() if args.key == "-" else args.key
        if await revoke_api_key(api, key, **where):
            print("revoked", file=sys.stderr)
            return 0
        print("no such key", file=sys.stderr)
        return 1
    finally:
        await api.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kontainers apikey", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    create = sub.add_parser("create", help="mint a key for a tenant namespace and print it once")
    create.add_argument("--namespace", required=True, help="the tenant namespace the key grants")
    revoke = sub.add_parser("revoke", help="remove a key")
    revoke.add_argument("--key", required=True, help="the key to revoke, or - to read it from stdin")
    for command in (create, revoke):
        command.add_argument("--secret-namespace", help="namespace of the keys Secret (default: the gateway's)")
        command.add_argument("--secret-name", help="name of the keys Secret (default kontainers-api-keys)")
        command.add_argument("--kubeconfig", help="kubeconfig file (default $KUBECONFIG, else in-cluster)")
    return asyncio.run(_run(parser.parse_args(argv)))
