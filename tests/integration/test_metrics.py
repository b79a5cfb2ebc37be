"""`/metrics` of the operator and the gateway: the documented series exist, and move when
containers are created and files go in and out (through the openai SDK, against the session's
operator and gateway on the real control plane)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.cluster

CREATED = 3
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def running_in_cluster(cluster) -> int:
    listed = json.loads(cluster.kubectl("get", "containers", "-A", "-o", "json").stdout)["items"]
    return sum(1 for c in listed if (c.get("status") or {}).get("status") == "running")


def wait_for_gauge_to_match_the_cluster(cluster, url: str, timeout: float = 60) -> int:
    """The running-containers gauge equals what the API server says (both move as other tests'
    namespaces go away, so poll until one scrape sits between two equal counts)."""
    deadline = time.monotonic() + timeout
    while True:
        before = running_in_cluster(cluster)
        gauge = value(scrape(url), "kontainers_containers", status="running")
        if gauge == before == running_in_cluster(cluster):
            return before
        assert time.monotonic() < deadline, f"{url}: running gauge {gauge}, the cluster has {before}"
        time.sleep(0.5)


def test_operator_and_gateway_metrics_move_when_containers_are_created(cluster, operator, gateway, tenant):
    operator_url = f"http://127.0.0.1:{operator.ops_port}/metrics"
    gateway_url = gateway.metrics_url
    before_operator, before_gateway = scrape(operator_url), scrape(gateway_url)

    for status in ("pending", "running", "failed", "expired"):
        assert ("kontainers_containers", (("status", status),)) in before_operator
        assert ("kontainers_containers", (("status", status),)) in before_gateway

    client = tenant.client
    containers = [client.containers.create(name=f"metrics-{i}") for i in range(CREATED)]
    assert all(c.status == "running" for c in containers), [c.status for c in containers]
    client.containers.files.create(containers[0].id, file=("metrics.bin", PAYLOAD))
    (listed,) = list(client.containers.files.list(containers[0].id))
    assert client.containers.files.content.retrieve(listed.id, container_id=containers[0].id).read() == PAYLOAD
    after_operator, after_gateway = scrape(operator_url), scrape(gateway_url)

    names = {"operator": {n for n, _ in after_operator}, "gateway": {n for n, _ in after_gateway}}
    for process, series in (("operator", "kontainers_containers"),
                            ("operator", "kontainers_reconcile_duration_seconds_bucket"),
                            ("operator", "kontainers_create_duration_seconds_bucket"),
                            ("gateway", "kontainers_containers"),
                            ("gateway", "kontainers_create_duration_seconds_bucket"),
                            ("gateway", "kontainers_file_bytes_total"),
                            ("gateway", "kontainers_http_requests_total"),
                            ("gateway", "kontainers_http_request_duration_seconds_bucket")):
        assert series in names[process], f"{process} /metrics has no {series}"

    def moved(before: dict, after: dict, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Containers by status: each process's gauge is the exact count of running Containers it
    # sees — ours included (other tests' Containers come and go meanwhile, so no plain delta).
    for url in (operator_url, gateway_url):
        assert wait_for_gauge_to_match_the_cluster(cluster, url) >= CREATED

    # Operator: reconcile and create latency histograms.
    assert moved(before_operator, after_operator, "kontainers_reconcile_duration_seconds_count",
                 handler="reconcile") >= CREATED
    assert moved(before_operator, after_operator, "kontainers_create_duration_seconds_count") >= CREATED
    assert moved(before_operator, after_operator, "kontainers_create_duration_seconds_sum") > 0

    # Gateway: requests by route template and status, create latency, containers, file bytes.
    assert moved(before_gateway, after_gateway, "kontainers_http_requests_total",
                 route="/v1/containers", method="POST", status="200") == CREATED
    assert moved(before_gateway, after_gateway, "kontainers_http_requests_total",
                 route="/v1/containers/{container_id}/files", method="POST", status="200") == 1
    assert moved(before_gateway, after_gateway, "kontainers_create_duration_seconds_count") == CREATED
    assert moved(before_gateway, after_gateway, "kontainers_file_bytes_total", direction="upload") == len(PAYLOAD)
    assert moved(before_gateway, after_gateway, "kontainers_file_bytes_total", direction="download") == len(PAYLOAD)
    # Container ids never become label values (cardinality).
    assert not any(containers[0].id in str(labels) for _, labels in after_gateway)
