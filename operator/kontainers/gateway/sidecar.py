"""Talking to a container's files sidecar (protocol in docs/architecture.md).

The base URL is the pod IP from the Container's status and the sidecar port; the bearer token is
key `token` of the Container's sidecar Secret, read once per Container and cached. Sidecar
errors keep their OpenAI shape and status; an unreachable sidecar is a 503 with Retry-After.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping

import aiohttp
from pydantic import BaseModel, ValidationError

from ..api.container_file import FileRecord, FileRecordList
from ..resources import names
from . import relay
from .cluster import Cluster
from ..api.errors import APIError, not_ready

log = logging.getLogger(__name__)

# The largest JSON reply read from a sidecar: a page of 100 records is ~150 KB. The sandbox shares
# the pod's network, so whatever answers on the sidecar port is not trusted to be small or well-formed.
MAX_REPLY_BYTES = 1024 * 1024


class SidecarClient:
    def __init__(self, cluster: Cluster, *, port: int, connect_timeout: float, retry_after: int) -> None:
        self.cluster = cluster
        self.port = port
        self.retry_after = retry_after
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[str, str] = {}  # Container uid → sidecar token

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def forget(self, obj: Mapping) -> None:
        self._tokens.pop(obj["metadata"]["uid"], None)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No connection pooling limits beyond aiohttp's defaults; each call streams.
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=False)
        return self._session

    # --- the protocol ----------------------------------------------------------------------

    async def upload(self, obj: Mapping, filename: str, chunks: AsyncIterator[bytes]) -> FileRecord:
        async with self._call(obj, "PUT", "/files", params={"name": filename}, data=chunks,
                              headers={"Content-Type": "application/octet-stream"}) as response:
            return await _parsed(response, FileRecord)

    async def list(self, obj: Mapping, *, after: str | None, limit: int, order: str) -> FileRecordList:
        params = {"limit": str(limit), "order": order}
        if after:
            params["after"] = after
        async with self._call(obj, "GET", "/files", params=params) as response:
            return await _parsed(response, FileRecordList)

    async def get(self, obj: Mapping, file_id: str) -> FileRecord:
        async with self._call(obj, "GET", f"/files/{file_id}") as response:
            return await _parsed(response, FileRecord)

    async def delete(self, obj: Mapping, file_id: str) -> None:
        async with self._call(obj, "DELETE", f"/files/{file_id}"):
            pass

    async def put_skill(self, obj: Mapping, chunks: AsyncIterator[bytes]) -> dict:
        """`PUT /skills`: a skill bundle zip, unpacked by the sidecar into /mnt/skills."""
        async with self._call(obj, "PUT", "/skills", data=chunks,
                              headers={"Content-Type": "application/zip"}) as response:
            try:
                return await _json(response)
            except ValueError:
                raise _invalid_reply() from None

    def content(self, obj: Mapping, file_id: str) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """The raw response of `GET /files/{id}/content`, to be streamed by the caller."""
        return self._call(obj, "GET", f"/files/{file_id}/content", read_bufsize=relay.READ_BUFSIZE)

    # --- plumbing --------------------------------------------------------------------------

    async def _token(self, obj: Mapping) -> str:
        uid = obj["metadata"]["uid"]
        token = self._tokens.get(uid)
        if token is None:
            secret = names.sidecar_secret_name(obj["metadata"]["name"], uid)
            token = await self.cluster.secret_value(obj["metadata"]["namespace"], secret, "token")
            if not token:
                raise not_ready(self.retry_after)
            self._tokens[uid] = token
        return token

    def _base_url(self, obj: Mapping) -> str:
        pod_ip = (obj.get("status") or {}).get("podIP")
        if not pod_ip:
            raise not_ready(self.retry_after)
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        return f"http://{host}:{self.port}"

    @contextlib.asynccontextmanager
    async def _call(self, obj: Mapping, method: str, path: str, **kwargs) -> AsyncIterator[aiohttp.ClientResponse]:
        url = self._base_url(obj) + path
        headers = {"Authorization": f"Bearer {await self._token(obj)}", **kwargs.pop("headers", {})}
        try:
            response = await self.session.request(method, url, headers=headers, **kwargs)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # Refused, or no answer within the connect timeout (a pod IP whose pod just went away).
            log.info("sidecar of %s/%s not reachable: %s", obj["metadata"]["namespace"], obj["metadata"]["name"],
                     getattr(exc, "os_error", None) or "connect timeout")
            raise not_ready(self.retry_after) from None
        except aiohttp.ClientError as exc:  # connected, then the sidecar closed or reset the connection
            raise _connection_lost(obj, exc) from None
        async with response:
            try:
                if response.status >= 400:
                    raise await self._error(obj, response)
                yield response
            except aiohttp.ClientError as exc:  # the reply broke off (a download in flight: the caller's
                raise _connection_lost(obj, exc) from None  # reply is cut, as it started already)

    async def _error(self, obj: Mapping, response: aiohttp.ClientResponse) -> APIError:
        if response.status == 401:
            # Tokens are per container, so this is not our sidecar: the address still belongs to a
            # deleted pod's (its IP handed to this one before it went), or the Secret was re-created.
            # Both pass: answer "not ready, retry" (the SDK retries a 503 after Retry-After), and
            # read the token again next time.
            self.forget(obj)
            log.warning("the sidecar answering for %s/%s at %s does not know its token (a previous pod's, or a "
                        "re-created Secret); answering not ready", obj["metadata"]["namespace"],
                        obj["metadata"]["name"], (obj.get("status") or {}).get("podIP"))
            return not_ready(self.retry_after)
        try:
            error = (await _json(response))["error"]
            return APIError(response.status, str(error.get("message") or response.reason), type=error.get("type")
                            or "invalid_request_error", param=error.get("param"), code=error.get("code"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return APIError(response.status if response.status < 500 else 502,
                            f"The container's file service answered {response.status}.",
                            type="server_error" if response.status >= 500 else "invalid_request_error")


def _connection_lost(obj: Mapping, exc: BaseException) -> APIError:
    log.warning("connection to the sidecar of %s/%s lost: %s", obj["metadata"]["namespace"], obj["metadata"]["name"],
                type(exc).__name__)
    return APIError(502, "The connection to the container's file service was lost; retry the request.",
                    type="server_error", code="container_connection_lost")


def _invalid_reply() -> APIError:
    return APIError(502, "The container's file service sent an invalid reply.", type="server_error")


async def _json(response: aiohttp.ClientResponse) -> object:
    """The reply's JSON, read up to MAX_REPLY_BYTES; ValueError when it is not JSON or too long."""
    raw = bytearray()
    async for chunk in response.content.iter_any():
        raw += chunk
        if len(raw) > MAX_REPLY_BYTES:
            raise ValueError(f"the reply is longer than {MAX_REPLY_BYTES} bytes")
    return json.loads(raw)


async def _parsed(response: aiohttp.ClientResponse, model: type[BaseModel]):
    try:
        return model.model_validate(await _json(response))
    except (ValueError, ValidationError):
        raise _invalid_reply() from None
