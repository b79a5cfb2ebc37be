"""Two operator replicas with kopf peering: only the higher priority works; the other takes over
when it dies. (The session operator is stopped meanwhile and restarted afterwards.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fixtures.operator import OperatorProcess, wait_for
from kontainers.resources import names

pytestmark = pytest.mark.cluster

PEERING_CRDS = Path(__file__).resolve().parents[2] / "charts" / "kontainers" / "files" / "crds" / "kopf.dev-peerings.yaml"


def container(namespace: str, name: str, **annotations: str) -> str:
    meta = {"name": name, "namespace": namespace, "annotations": annotations}
    return json.dumps({"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": meta,
                       "spec": {"name": name, "expiresAfter": {"minutes": 1}}})


def status_of(cluster, namespace: str, name: str) -> str | None:
    proc = cluster.kubectl("-n", namespace, "get", names.PLURAL, name, "-o", "jsonpath={.status.status}", check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def test_active_standby_and_takeover(cluster, operator, namespace, tmp_path):
    cluster.kubectl("apply", "-f", str(PEERING_CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev")
    peering = ("--expiry-check-interval", "1", "--peering-name", "test-ha", "--peering-mandatory", "--peering-lifetime", "6")
    low = OperatorProcess(cluster.kubeconfig, tmp_path / "low.log", args=(*peering, "--peering-priority", "10"))
    high = OperatorProcess(cluster.kubeconfig, tmp_path / "high.log", args=(*peering, "--peering-priority", "20"))
    operator.stop()
    try:
        low.start()
        high.start()
        wait_for(lambda: "Pausing operations" in low.tail(400), 30, "the low-priority replica to pause", low.tail)

        # Only the active replica reconciles and expires; each Container gets one pod.
        long_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        cluster.kubectl("apply", "-f", "-", input=container(namespace, "ha-live"))
        cluster.kubectl("apply", "-f", "-", input=container(
            namespace, "ha-idle", **{names.ANNOTATION_LAST_ACTIVE: long_ago}))
        wait_for(lambda: status_of(cluster, namespace, "ha-live") == "running", 30, "ha-live running", high.tail)
        wait_for(lambda: status_of(cluster, namespace, "ha-idle") == "expired", 30, "ha-idle expired", high.tail)
        pods = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
        assert len(pods) == 1
        assert "ha-live" in high.tail(400) and "ha-idle: Expired" in high.tail(400)
        assert "ha-live" not in low.tail(400) and "ha-idle" not in low.tail(400)

        # The active one dies without a goodbye: the standby resumes once its keep-alive lapses.
        high.kill()
        cluster.kubectl("apply", "-f", "-", input=container(namespace, "ha-after"))
        wait_for(lambda: status_of(cluster, namespace, "ha-after") == "running", 60,
                 "the standby to take over", low.tail)
        assert "Resuming operations" in low.tail(400)
    finally:
        high.stop()
        low.stop()
        operator.start()
