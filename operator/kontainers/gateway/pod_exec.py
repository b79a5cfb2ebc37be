"""The `pods/exec` subresource over websocket: what `kubectl exec` does, from the gateway.

`GET /api/v1/namespaces/{ns}/pods/{pod}/exec?container=…&command=…&stdout=true&stderr=true`
upgraded to a websocket with subprotocol `v5.channel.k8s.io` (or `v4.channel.k8s.io` on API
servers before 1.30). Every binary message starts with its channel byte: 1 stdout, 2 stderr,
3 the final `metav1.Status` (Success, or Failure with reason `NonZeroExitCode` and the code in
`details.causes[reason=ExitCode]`). No stdin, no TTY: the command's stdin is /dev/null.

Credentials and TLS are those of the gateway's kubernetes_asyncio client (kubeconfig or the
in-cluster ServiceAccount, token refreshed through its hook); the gateway needs `create` (API
servers ≥ 1.35 authorize the websocket upgrade as create) and `get` (older ones) on `pods/exec`.
Exec websockets use a session of their own, so long commands never take connections from the
watches and API calls.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable, Sequence
from urllib.parse import quote, urlencode

import aiohttp
from kubernetes_asyncio import client
from yarl import URL

from .exec_runner import STDERR, STDOUT, ExecFailed, ExecUnavailable, Sink

log = logging.getLogger(__name__)

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STATUS_CHANNEL = 3
MAX_STATUS_BYTES = 64 * 1024
# The API server sends frames of at most 32 KiB; anything much larger is not its stream.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def exec_url(host: str, namespace: str, pod: str, container: str, argv: Sequence[str]) -> URL:
    """The websocket URL; the query is encoded here (`+` as %2B: Go reads a bare `+` as a space)."""
    base = host.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    query = urlencode([("container", container), ("stdout", "true"), ("stderr", "true"),
                       *(("command", arg) for arg in argv)], quote_via=quote)
    path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/exec"
    return URL(f"{base}{path}?{query}", encoded=True)


def exit_code_of(raw: bytes) -> int:
    """The exit code from the status channel's `metav1.Status`; ExecFailed for other failures."""
    if not raw:
        raise ExecFailed("the exec ended without reporting a status")
    try:
        status = json.loads(raw)
    except ValueError:
        raise ExecFailed("the exec reported an unreadable status") from None
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message"))
                except (TypeError, ValueError):
                    break
    raise ExecFailed(str(status.get("message") or "the container runtime could not run the command"))


def ssl_context(cfg: client.Configuration) -> ssl.SSLContext:
    """The same TLS settings as kubernetes_asyncio's own REST client."""
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    if cfg.cert_file:
        context.load_cert_chain(cfg.cert_file, keyfile=cfg.key_file)
    if not cfg.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if getattr(cfg, "disable_strict_ssl_verification", False):
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


class PodExec:
    """`ExecTransport` over the API server; `api()` returns the gateway's started ApiClient."""

    def __init__(self, api: Callable[[], client.ApiClient], *, connect_timeout: float = 10.0) -> None:
        self._api = api
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    def _client_session(self, cfg: client.Configuration) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=ssl_context(cfg), limit=0)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(self, namespace: str, pod: str, container: str, argv: Sequence[str], sink: Sink) -> int:
        api = self._api()
        cfg = api.configuration
        headers: dict[str, str] = {}
        await api.update_params_for_auth(headers, [], ["BearerToken"])
        url = exec_url(cfg.host, namespace, pod, container, argv)
        session = self._client_session(cfg)
        extra = {"server_hostname": cfg.tls_server_name} if getattr(cfg, "tls_server_name", None) else {}
        try:
            ws = await session.ws_connect(
                url, protocols=PROTOCOLS, headers=headers, heartbeat=30.0, max_msg_size=MAX_MESSAGE_BYTES,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0), autoping=True,
                **extra, **({"proxy": cfg.proxy} if cfg.proxy else {}),
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise _handshake_error(exc, namespace, pod) from None
        except (aiohttp.ClientConnectorError, aiohttp.ServerTimeoutError, aiohttp.ConnectionTimeoutError) as exc:
            log.warning("the API server is not reachable for pods/exec: %s", type(exc).__name__)
            raise ExecUnavailable("the API server is not reachable") from None
        status = bytearray()
        async with ws:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY:
                    continue  # text frames belong to the base64 protocols, which are not offered
                data = message.data
                if not data:
                    continue
                channel = data[0]
                if channel in (STDOUT, STDERR):
                    if len(data) > 1:
                        await sink(channel, data[1:])
                elif channel == STATUS_CHANNEL:
                    status += data[1:]
                    if len(status) > MAX_STATUS_BYTES:
                        raise ExecFailed("the exec reported an oversized status")
        return exit_code_of(bytes(status))


def _handshake_error(exc: aiohttp.WSServerHandshakeError, namespace: str, pod: str) -> Exception:
    if exc.status in (401, 403):
        log.error("the API server refused pods/exec in %s (HTTP %s): the gateway needs create and get on "
                  "pods/exec", namespace, exc.status)
        return ExecFailed("the gateway is not allowed to run commands in containers (pods/exec)")
    if exc.status in (400, 404, 409, 500, 502, 503):
        # 404: the pod is gone (being recreated); 400/500: its container is not running (yet).
        log.info("pods/exec of %s/%s not possible now (HTTP %s)", namespace, pod, exc.status)
        return ExecUnavailable(f"HTTP {exc.status}")
    return ExecFailed(f"the API server answered HTTP {exc.status} to pods/exec")
