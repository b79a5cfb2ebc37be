"""JSON logs with request ids, the containers-by-status gauge and the ops endpoints."""

from __future__ import annotations

import io
import json
import logging

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest

from kontainers import observability


def _log_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_logs_are_json_lines_carrying_the_request_id_only_inside_a_request():
    stream = io.StringIO()
    observability.setup_logging("INFO", stream=stream)
    observability.setup_logging("INFO", stream=stream)  # idempotent: no second handler
    log = logging.getLogger("kontainers.test")
    log.info("outside", extra={"container": "c1"})
    token = observability.request_id.set("req_123")
    try:
        log.warning("inside")
    finally:
        observability.request_id.reset(token)
    outside, inside = _log_lines(stream)
    assert outside["message"] == "outside" and outside["level"] == "INFO" and outside["container"] == "c1"
    assert "request_id" not in outside
    assert inside["request_id"] == "req_123" and inside["logger"] == "kontainers.test"


def test_container_gauge_counts_current_statuses_with_zeroes():
    collector = observability.ContainerStatusCollector()
    collector.observe("a", "running")
    collector.observe("b", "running")
    collector.observe("c", "pending")
    collector.observe("c", "running")  # a status change moves the count, never double-counts
    collector.forget("a")
    assert collector.counts() == {"pending": 0, "running": 2, "failed": 0, "expired": 0}
    samples = {s.labels["status"]: s.value for family in collector.collect() for s in family.samples}
    assert samples == {"pending": 0, "running": 2, "failed": 0, "expired": 0}


async def test_ops_app_serves_health_readiness_and_metrics():
    ready = {"value": False}
    app = observability.ops_app(lambda: ready["value"])
    from aiohttp.test_utils import TestClient, TestServer

    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 503
        ready["value"] = True
        assert (await client.get("/readyz")).status == 200
        metrics = await client.get("/metrics")
        text = await metrics.text()
        assert metrics.status == 200 and metrics.content_type == "text/plain"
        for series in ("kontainers_containers{", 'kontainers_file_bytes_total{direction="upload"}',
                       "kontainers_reconcile_duration_seconds", "kontainers_create_duration_seconds"):
            assert series in text


async def test_http_middleware_counts_by_route_template_and_status():
    async def get_container(request: web.Request) -> web.Response:
        if request.match_info["container_id"] == "missing":
            raise web.HTTPNotFound()
        return web.json_response({})

    app = web.Application(middlewares=[observability.http_metrics_middleware])
    app.router.add_get("/v1/containers/{container_id}", get_container)
    from aiohttp.test_utils import TestClient, TestServer

    def count(status: str) -> float:
        value = REGISTRY.get_sample_value(
            "kontainers_http_requests_total",
            {"route": "/v1/containers/{container_id}", "method": "GET", "status": status},
        )
        return value or 0.0

    before_ok, before_missing = count("200"), count("404")
    async with TestClient(TestServer(app)) as client:
        await client.get("/v1/containers/cntr_1")
        await client.get("/v1/containers/cntr_2")
        await client.get("/v1/containers/missing")
    assert count("200") - before_ok == 2
    assert count("404") - before_missing == 1
    assert b"cntr_1" not in generate_latest(REGISTRY)  # ids never become label values


def test_json_formatter_survives_kopf_records_with_uncopyable_extras():
    """kopf's object loggers attach their OperatorSettings (a dataclass holding queues) to every
    record; python-json-logger deep-copied it (`dataclasses.asdict`) and the ERROR line was lost
    to a "--- Logging error ---" traceback ("cannot pickle '_queue.SimpleQueue'")."""
    import dataclasses
    import queue
    import threading

    @dataclasses.dataclass
    class Batching:
        events: queue.SimpleQueue = dataclasses.field(default_factory=queue.SimpleQueue)
        lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @dataclasses.dataclass
    class OperatorSettings:
        batching: Batching = dataclasses.field(default_factory=Batching)

    class Opaque:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        __repr__ = __str__

    stream = io.StringIO()
    observability.setup_logging("INFO", stream=stream)
    log = logging.getLogger("kopf_like.objects")  # not under kopf.objects: kopf hangs its event poster there
    errors: list[str] = []
    original = logging.Handler.handleError
    logging.Handler.handleError = lambda self, record: errors.append(record.getMessage())  # type: ignore[method-assign]
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("Handler 'reconcile' failed with an exception. Will retry.", extra={
                "settings": OperatorSettings(), "k8s_skip": False, "batching": Batching(), "opaque": Opaque(),
                "k8s_ref": {"apiVersion": "kontainers.dev/v1alpha1", "kind": "Container", "name": "c1"},
            })
    finally:
        logging.Handler.handleError = original  # type: ignore[method-assign]
    assert errors == []
    (line,) = _log_lines(stream)
    assert line["level"] == "ERROR" and line["message"].startswith("Handler 'reconcile' failed")
    assert "ValueError: boom" in line["exc_info"]
    assert line["k8s_ref"]["name"] == "c1"  # plain extras are kept
    assert "settings" not in line and line["batching"] == "<Batching>" and line["opaque"] == "<Opaque>"


def test_no_credential_reaches_a_log_line_whatever_logs_it():
    """The backstop behind every process's own care: a library logging a raw header or an
    exception carrying one still writes no key."""
    key = "sk-kont-" + "Zx9" * 12
    stream = io.StringIO()
    observability.setup_logging("DEBUG", stream=stream)
    log = logging.getLogger("aiohttp.server")
    log.error("Invalid header value char: b'Authorization: Bearer %s\\x01'", key)
    log.info("got %s", f"Bearer {key[:20]}")  # cut off mid-key, as aiohttp truncates long lines
    try:
        raise RuntimeError(f"upstream said: Authorization: Basic {key}")
    except RuntimeError:
        log.exception("request failed", extra={"header": f"Bearer {key}"})
    log.warning("proxy url %s", f"http://proxy/?token={key[8:]}&x=1")
    text = stream.getvalue()
    assert len(text.splitlines()) == 4
    assert key not in text and key[:20] not in text and key[8:] not in text and "Zx9Zx9" not in text
    assert text.count("[redacted]") >= 5
