"""The one door to the Kubernetes API server, for every process kind.

- `api_client`: an asyncio ApiClient from a kubeconfig or the in-cluster service account;
- `own_namespace`: the namespace this process runs in;
- `or_none`: a read whose 404 is None; `is_conflict`, `MERGE_PATCH`, `JSON_PATCH`;
- `Containers`: the reads and writes of Container resources, as plain dicts;
- `list_watch`: list, then watch from that resourceVersion; relist on 410 Gone; one backoff
  policy (`Backoff`) on every other failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from .resources import names

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WATCH_SECONDS = 240  # server-side timeout of one watch call; it then resumes from the last version


async def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An ApiClient from the given kubeconfig, $KUBECONFIG, or the in-cluster service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        cfg = client.Configuration()
        await config.load_kube_config(config_file=path, client_configuration=cfg)
        return client.ApiClient(cfg)
    cfg = client.Configuration()
    config.load_incluster_config(client_configuration=cfg)
    return client.ApiClient(cfg)


def own_namespace(configured: str | None = None, *, default: str | None = "default") -> str | None:
    """The namespace to use for "my own": `configured` if set, else $POD_NAMESPACE (the downward
    API), else the service account's namespace file (in a cluster), else `default`."""
    if configured:
        return configured
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return default


async def or_none(call: Awaitable[Any]) -> Any:
    """The result of a read, or None when the object does not exist (404)."""
    try:
        return await call
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def is_conflict(error: BaseException) -> bool:
    return isinstance(error, ApiException) and error.status == 409


class Containers:
    """Reads and writes of Container resources (custom objects: plain camelCase dicts)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)

    def list_call(self, namespace: str | None) -> Callable[..., Awaitable[Any]]:
        """The list call of one namespace (None: all namespaces), as `list_watch` takes it."""
        if namespace is None:
            return partial(self.custom.list_cluster_custom_object, names.GROUP, names.VERSION, names.PLURAL)
        return partial(self.custom.list_namespaced_custom_object, names.GROUP, names.VERSION, namespace,
                       names.PLURAL)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        return await self.custom.create_namespaced_custom_object(
            names.GROUP, names.VERSION, obj["metadata"]["namespace"], names.PLURAL, obj)

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await or_none(self.custom.get_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, name))

    async def patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A merge patch of the Container itself (metadata), not of its status."""
        return await self.custom.patch_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, name, patch, _content_type=MERGE_PATCH)

    async def json_patch(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """A JSON patch of the Container itself: its `test` ops make a write conditional on a value."""
        return await self.custom.patch_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, name, ops, _content_type=JSON_PATCH)

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.custom.patch_namespaced_custom_object_status(
            names.GROUP, names.VERSION, namespace, names.PLURAL, name, patch, _content_type=MERGE_PATCH)

    async def delete(self, namespace: str, name: str, *, uid: str | None = None,
                     propagation_policy: str | None = None) -> None:
        """Delete if present (404 is fine); with `uid`, only that very object."""
        kwargs: dict[str, Any] = {}
        if uid is not None:
            kwargs["body"] = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        if propagation_policy is not None:
            kwargs["propagation_policy"] = propagation_policy
        await or_none(self.custom.delete_namespaced_custom_object(
            names.GROUP, names.VERSION, namespace, names.PLURAL, name, **kwargs))


class Backoff:
    """The one retry policy of the API server's watchers: 0.5 s, doubling up to 30 s; reset once a
    list succeeds again."""

    FIRST = 0.5
    MOST = 30.0

    def __init__(self) -> None:
        self.delay = self.FIRST

    def reset(self) -> None:
        self.delay = self.FIRST

    async def sleep(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.MOST)


async def list_watch(
    list_call: Callable[..., Awaitable[Any]],
    *,
    what: str,
    on_list: Callable[[list[Any]], None],
    on_event: Callable[[str, Any], None],
    typed: bool = False,
    **params: Any,
) -> None:
    """Run forever (until cancelled), keeping a mirror in sync through the callbacks.

    The classic informer loop: `on_list(items)` replaces the mirror, `on_event(type, obj)` applies
    one change; bookmarks only advance the resourceVersion. Objects are raw JSON dicts (no model
    round trip), or with `typed` the client's models (`list_call` must then be the API method
    itself, whose docstring names the model). `params` go to both the list and the watch calls.
    """
    backoff = Backoff()
    while True:
        try:
            if typed:
                listing = await list_call(**params)
                items, version = listing.items, listing.metadata.resource_version
            else:
                response = await list_call(_preload_content=False, **params)
                raw = await response.read()
                if not 200 <= response.status <= 299:  # unchecked without preloading
                    raise ApiException(status=response.status, reason=raw.decode(errors="replace")[:200])
                body = json.loads(raw)
                items, version = body.get("items") or [], body["metadata"]["resourceVersion"]
            on_list(items)
            log.debug("listed %s at resourceVersion %s", what, version)
            backoff.reset()
            while True:
                stream = watch.Watch()
                async with stream.stream(list_call if typed else partial(list_call), resource_version=version,
                                         timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True,
                                         **params) as events:
                    async for event in events:
                        if event["type"] != "BOOKMARK":
                            on_event(event["type"], event["object"] if typed else event["raw_object"])
                version = stream.resource_version or version
        except asyncio.CancelledError:
            raise
        except ApiException as exc:
            if exc.status == 410:
                log.info("watch of %s expired (410 Gone); listing again", what)
                continue
            log.warning("watching %s failed: %s %s; retrying in %.1fs", what, exc.status, exc.reason, backoff.delay)
        except Exception as exc:  # connection drops, API server restarts
            log.warning("watching %s failed: %s; retrying in %.1fs", what, exc, backoff.delay)
        await backoff.sleep()
