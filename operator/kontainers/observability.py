"""Logs and metrics shared by every process kind.

- `setup_logging()` turns the root logger into one JSON object per line (python-json-logger),
  with the request id of the request being served, when there is one (`request_id` context var).
- The Prometheus metrics of kontainers are declared once here, so the operator and the gateway
  export the same names and a dashboard works against either.
- `ops_app()` / `start_ops_server()` serve `/metrics`, `/healthz` and `/readyz` on a port of their
  own, for processes whose main loop is not an aiohttp app (the operator); the gateway mounts
  `metrics_handler` and `http_metrics_middleware` in its own app instead.
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from .api.container import STATUSES

# --- logging -------------------------------------------------------------------------------

request_id: ContextVar[str | None] = ContextVar("kontainers_request_id", default=None)
"""The id of the request being served; set by the gateway's request-id middleware."""


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record logged while a request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        return True


LOG_FIELDS = ["asctime", "levelname", "name", "message"]
LOG_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
# Extras that libraries attach to their records and that say nothing to a reader of the log:
# kopf puts its whole OperatorSettings (queues, locks…) on every record of an object's logger.
LOG_SKIPPED_EXTRAS = ("settings", "k8s_skip")


# --- secrets never reach a log line --------------------------------------------------------
#
# The processes are written never to log a credential, but a library can: aiohttp logs a
# malformed request's raw header line (with its `Authorization: Bearer sk-…`) at ERROR, a
# client library may put a header in an exception's text. This filter is the backstop: every
# line, its exception text and its string extras lose anything shaped like a credential before
# any handler formats them.

_REDACTED = "[redacted]"
_CREDENTIAL_PATTERNS = (
    # Authorization schemes followed by their credentials (Bearer sk-…, Basic dXNlcjpw…).
    re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s'\"\\,;]+"),
    # `token=…`, `password: …` (query strings, key=value dumps).
    re.compile(r"(?i)\b(token|password|passwd)(=|:\s*)[^\s'\"\\,;&]+"),
    # A header or field naming a credential, whatever follows it on that line.
    re.compile(r"(?i)\b(authorization|proxy-authorization|x-api-key|api[_-]?key|cookie|set-cookie)"
               r"(['\"]?\s*[:=]\s*)[^\r\n]*"),
    # OpenAI-style keys anywhere (ours are `sk-kont-…`), also cut off mid-key.
    re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}"),
)


def redact(text: str) -> str:
    """`text` with everything shaped like a credential replaced by `[redacted]`."""
    for pattern in _CREDENTIAL_PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{_REDACTED}", text)
        else:
            text = pattern.sub(_REDACTED, text)
    return text


_PLAIN = logging.Formatter()


class RedactSecretsFilter(logging.Filter):
    """Rewrites each record (message, exception and stack text, string extras) through `redact`.

    The record is changed in place, so every handler after it sees the redacted form only.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be shown without the arguments
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            record.exc_text = redact(_PLAIN.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _json_default(value: object) -> object:
    """How a value that JSON cannot encode is shown: never a copy, never an exception.

    python-json-logger's default encoder runs `dataclasses.asdict` (a deep copy) on dataclasses;
    kopf's records carry dataclasses holding queues and locks, which cannot be copied — the
    formatter raised, and the ERROR line was lost to a "--- Logging error ---" traceback.
    """
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value if isinstance(value.value, (str, int, float, bool)) else value.name
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, type):
        return value.__name__
    return f"<{type(value).__name__}>"


class SafeJsonFormatter(JsonFormatter):
    """JSON lines that never fail: an unencodable extra becomes its type name, and a record that
    still cannot be formatted is written as a line with its level, logger and message only."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            return super().format(record)
        except Exception as exc:  # the line must not be lost, whatever the record carries
            try:
                message = record.getMessage()
            except Exception:
                message = str(record.msg)
            return json.dumps({"time": self.formatTime(record, self.datefmt), "level": record.levelname,
                               "logger": record.name, "message": message,
                               "format_error": f"{type(exc).__name__}: {exc}"})


def json_formatter() -> JsonFormatter:
    return SafeJsonFormatter(LOG_FIELDS, rename_fields=LOG_RENAMES, timestamp=False, datefmt="%Y-%m-%dT%H:%M:%S%z",
                             json_default=_json_default,
                             reserved_attrs=[*RESERVED_ATTRS, *LOG_SKIPPED_EXTRAS])


def setup_logging(level: str | int = "INFO", *, json: bool = True, stream=None) -> None:
    """Configure the root logger once per process: JSON lines (or plain text) with request ids.

    Idempotent: calling it again replaces the handler instead of stacking a second one.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecretsFilter())
    if json:
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_kontainers", False)]:
        root.removeHandler(old)
    handler._kontainers = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # aiohttp's access log repeats what the metrics and our own lines already say.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# --- metrics -------------------------------------------------------------------------------

CONTAINER_STATUSES = STATUSES

RECONCILE_SECONDS = Histogram(
    "kontainers_reconcile_duration_seconds",
    "Time one operator handler run took, by handler.",
    ["handler"],
)
CREATE_SECONDS = Histogram(
    "kontainers_create_duration_seconds",
    "Time from a Container's creation to its status running (operator), or of a create "
    "request until it answered (gateway).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
FILE_BYTES = Counter(
    "kontainers_file_bytes",
    "Bytes of container files transferred, by direction (upload, download).",
    ["direction"],
)
for _direction in ("upload", "download"):
    FILE_BYTES.labels(_direction)  # export both series from the start, at zero
STORE_SWEPT = Counter(
    "kontainers_store_swept",
    "Files the gateway's store sweep removed, by kind: expired (past expires_at), bundle (a skill "
    "bundle no Container and no skill version names).",
    ["kind"],
)
for _kind in ("expired", "bundle"):
    STORE_SWEPT.labels(_kind)
EXEC_OUTCOMES = ("success", "failure", "timeout", "error")
EXEC_COMMANDS = Counter(
    "kontainers_exec_commands",
    "Commands run by POST /v1/containers/{id}/exec, by outcome: success (exit 0), failure "
    "(another exit code), timeout, error (the exec could not run or was interrupted).",
    ["outcome"],
)
EXEC_SECONDS = Histogram(
    "kontainers_exec_command_duration_seconds",
    "Time one exec'd command took, by outcome.",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
for _outcome in EXEC_OUTCOMES:
    EXEC_COMMANDS.labels(_outcome)
    EXEC_SECONDS.labels(_outcome)
POOL_SIZES = ("1g", "4g", "16g", "64g")
POOL_PODS = Gauge(
    "kontainers_warm_pool_pods",
    "Unclaimed warm-pool pods, by memory size and state: ready (claimable) or starting.",
    ["size", "state"],
)
POOL_CLAIMS = Counter(
    "kontainers_warm_pool_claims",
    "Creates that looked for a warm pod, by memory size and result: hit (claimed one), miss (none "
    "ready). Containers whose pod no pool pod fits are not counted.",
    ["size", "result"],
)
POOL_CLAIM_SECONDS = Histogram(
    "kontainers_warm_pool_claim_duration_seconds",
    "Time from the start of a warm claim to the Container's first status write with the claimed pod.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5),
)
for _size in POOL_SIZES:
    for _state in ("ready", "starting"):
        POOL_PODS.labels(_size, _state)
    for _result in ("hit", "miss"):
        POOL_CLAIMS.labels(_size, _result)
HTTP_REQUESTS = Counter(
    "kontainers_http_requests",
    "HTTP requests served, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "kontainers_http_request_duration_seconds",
    "Time to the response headers of HTTP requests, by route template and method.",
    ["route", "method"],
)


class ContainerStatusCollector(Collector):
    """`kontainers_containers{status}`: how many Containers are in each status, right now.

    Fed with the current status of every known Container (`observe`/`forget`), so the gauge is
    always the exact count of what this process sees, never a drifting inc/dec.
    Every status is exported, zero included, so a dashboard sees the series before the first one.
    """

    def __init__(self) -> None:
        self._statuses: dict[str, str] = {}

    def observe(self, key: str, status: str | None) -> None:
        if status:
            self._statuses[key] = status
        else:
            self._statuses.pop(key, None)

    def forget(self, key: str) -> None:
        self._statuses.pop(key, None)

    def replace(self, statuses: dict[str, str]) -> None:
        self._statuses = dict(statuses)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(CONTAINER_STATUSES, 0)
        for status in self._statuses.values():
            counts[status] = counts.get(status, 0) + 1
        return counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("kontainers_containers", "Containers by status.", labels=["status"])
        for status, count in sorted(self.counts().items()):
            family.add_metric([status], count)
        yield family


CONTAINERS = ContainerStatusCollector()
REGISTRY.register(CONTAINERS)


class timed:
    """`with timed(RECONCILE_SECONDS.labels("create")): …` — observe the block's duration."""

    def __init__(self, histogram) -> None:
        self.histogram = histogram

    def __enter__(self) -> "timed":
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.histogram.observe(time.perf_counter() - self.started)


# --- HTTP endpoints ------------------------------------------------------------------------


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def route_template(request: web.Request) -> str:
    """The matched route's template (`/v1/containers/{container_id}`): low-cardinality labels."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def http_metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Counts every request by route template, method and status (errors included)."""
    route = route_template(request)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        HTTP_SECONDS.labels(route, request.method).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(route, request.method, str(status)).inc()


def ops_app(ready: Callable[[], bool] = lambda: True) -> web.Application:
    """`/healthz` (the process answers), `/readyz` (`ready()` is true) and `/metrics`."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready"}, status=503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app


async def start_ops_server(host: str, port: int, ready: Callable[[], bool] = lambda: True) -> web.AppRunner:
    """Start `ops_app` on host:port in the running loop; `await runner.cleanup()` stops it."""
    runner = web.AppRunner(ops_app(ready), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
