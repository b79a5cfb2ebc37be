"""List once, then watch from that resourceVersion; relist on 410 Gone; back off on errors.

The classic informer loop, for raw JSON objects: `on_list(items)` replaces the mirror,
`on_event(type, obj)` applies one change. Bookmarks only advance the resourceVersion.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from functools import partial

from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException

log = logging.getLogger(__name__)

WATCH_SECONDS = 240  # server-side timeout of one watch call; it then resumes from the last version
MAX_BACKOFF = 30.0


async def list_watch(
    list_call: Callable,
    *,
    what: str,
    on_list: Callable[[list[dict]], None],
    on_event: Callable[[str, dict], None],
) -> None:
    """Run forever (until cancelled), keeping a mirror in sync through the callbacks."""
    backoff = 0.5
    while True:
        try:
            response = await list_call(_preload_content=False)  # raw JSON: no model round trip
            raw = await response.read()
            if not 200 <= response.status <= 299:  # unchecked without preloading
                raise ApiException(status=response.status, reason=raw.decode(errors="replace")[:200])
            body = json.loads(raw)
            on_list(body.get("items") or [])
            version = body["metadata"]["resourceVersion"]
            log.debug("listed %s at resourceVersion %s", what, version)
            backoff = 0.5
            while True:
                stream = watch.Watch()
                async with stream.stream(partial(list_call), resource_version=version,
                                         timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True) as events:
                    async for event in events:
                        if event["type"] != "BOOKMARK":
                            on_event(event["type"], event["raw_object"])
                version = stream.resource_version or version
        except asyncio.CancelledError:
            raise
        except ApiException as exc:
            if exc.status == 410:
                log.info("watch of %s expired (410 Gone); listing again", what)
                continue
            log.warning("watching %s failed: %s %s; retrying in %.1fs", what, exc.status, exc.reason, backoff)
        except Exception as exc:  # connection drops, API server restarts
            log.warning("watching %s failed: %s; retrying in %.1fs", what, exc, backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)
