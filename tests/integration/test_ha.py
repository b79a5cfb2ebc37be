"""Two operator replicas against one cluster, as the chart runs them (its configuration, its
ServiceAccount, kopf peering): exactly one reconciles, each Container once, no duplicate pods, and
the standby takes over when the active one stops.

The session's own operator (standalone, all namespaces) is stopped for this module, so the two
replicas under test are the only operators.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest

from fixtures.chart import free_port, http_get, install, run_component, wait_until

pytestmark = pytest.mark.cluster

CONTAINERS = 12


@pytest.fixture(scope="module")
def setup(cluster, container_crd, no_session_operator, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ha")
    suffix = uuid.uuid4().hex[:6]
    release_ns, tenant = f"ha-{suffix}", f"ha-{suffix}-tenant"
    for name in (release_ns, tenant):
        cluster.kubectl("create", "namespace", name)
    release = install(cluster, release_ns, release_ns, workdir, f"watchNamespaces={{{tenant}}}", "operator.replicas=2")
    replicas = {}
    try:
        for replica in ("a", "b"):
            port = free_port()
            process = run_component(release, "operator", workdir / "logs", name=f"operator-{replica}", env={
                "KONTAINERS_OPERATOR_OPS_HOST": "127.0.0.1", "KONTAINERS_OPERATOR_OPS_PORT": str(port),
                "POD_ID": f"{release_ns}-operator-{replica}"})
            replicas[replica] = (process, port)
        for replica, (process, port) in replicas.items():
            wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200 or not process.running(), 90,
                       f"operator {replica} to be ready", lambda: process.tail())
            assert process.running(), process.tail()
        yield {"cluster": cluster, "release": release, "tenant": tenant, "replicas": replicas}
    finally:
        for process, _ in replicas.values():
            process.stop()
        release.uninstall()
        for name in (release_ns, tenant):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def peers(setup) -> dict:
    peering = setup["release"].env("operator")["KONTAINERS_OPERATOR_PEERING_NAME"]
    found = setup["cluster"].kubectl("-n", setup["tenant"], "get", "kopfpeering", peering, "-o", "json", check=False)
    return (json.loads(found.stdout).get("status") or {}) if found.returncode == 0 else {}


def created_lines(process) -> list[str]:
    """The operator's Created lines: one per pod it created or claimed from the warm pool."""
    text = Path(process.log).read_text(errors="replace")
    return [json.loads(line)["message"] for line in text.splitlines()
            if line.startswith("{") and (": Created: created pod " in line or ": Created: claimed warm pod " in line)]


def is_active(process) -> bool:
    """Whether kopf in this process is serving: its last peering verdict was to resume. (With
    mandatory peering kopf starts paused and says nothing until a verdict.)"""
    verdicts = [line for line in Path(process.log).read_text(errors="replace").splitlines()
                if "Resuming operations" in line or "Pausing operations" in line]
    return bool(verdicts) and "Resuming operations" in verdicts[-1]


def apply_containers(cluster, namespace: str, names: list[str]) -> None:
    docs = [{"apiVersion": "kontainers.dev/v1alpha1", "kind": "Container",
             "metadata": {"name": name, "namespace": namespace}, "spec": {"name": name}} for name in names]
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))


def running(cluster, namespace: str) -> set[str]:
    listed = json.loads(cluster.kubectl("-n", namespace, "get", "containers", "-o", "json").stdout)["items"]
    return {c["metadata"]["name"] for c in listed if (c.get("status") or {}).get("status") == "running"}


def sandbox_pods(cluster, namespace: str) -> list[dict]:
    """The pods of Containers (the chart's default warm pool keeps unclaimed ones beside them)."""
    return json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l",
                                      "app.kubernetes.io/managed-by=kontainers,!kontainers.dev/pool",
                                      "-o", "json").stdout)["items"]


def test_two_replicas_reconcile_each_container_once_and_fail_over(setup):
    cluster, tenant, replicas = setup["cluster"], setup["tenant"], setup["replicas"]
    tails = lambda: "\n".join(f"--- operator {r} log tail\n{p.tail(25)}" for r, (p, _) in replicas.items())  # noqa: E731

    # Both replicas keep themselves alive in the one peering object: they see each other.
    identities = {f"{setup['release'].namespace}-operator-{r}" for r in replicas}
    wait_until(lambda: identities <= set(peers(setup)), 60, "both keep-alives in the KopfPeering", tails)
    priorities = {identity.rsplit("-", 1)[1]: peer["priority"] for identity, peer in peers(setup).items()}
    assert len(set(priorities.values())) == 2, "distinct priorities: one active, one standby (equal would pause both)"
    expected_active = max(priorities, key=priorities.get)
    expected_standby = min(priorities, key=priorities.get)
    wait_until(lambda: {r: is_active(p) for r, (p, _) in replicas.items()} == {expected_active: True,
                                                                            expected_standby: False},
               60, f"replica {expected_active} (higher priority) alone to be active", tails)

    names = [f"ha-{i:02d}" for i in range(CONTAINERS)]
    apply_containers(cluster, tenant, names)
    wait_until(lambda: running(cluster, tenant) >= set(names), 120, "every Container to run", tails)

    # No duplicates: one pod per Container, owned by it.
    pods = sandbox_pods(cluster, tenant)
    owners = [p["metadata"]["ownerReferences"][0]["name"] for p in pods]
    assert sorted(owners) == sorted(names), owners

    # One replica did all the work, each Container exactly once; the other stood by.
    lines = {r: created_lines(p) for r, (p, _) in replicas.items()}
    active = max(lines, key=lambda r: len(lines[r]))
    standby = next(r for r in replicas if r != active)
    assert standby == expected_standby and lines[standby] == [], f"the standby reconciled too:\n{tails()}"
    created = [re.match(rf"{tenant}/([^:]+): Created", line).group(1) for line in lines[active]]
    assert sorted(created) == sorted(names), created

    # Failover: the active replica stops (as in a rolling update); the standby takes over.
    replicas[active][0].stop()
    later = [f"ha-late-{i}" for i in range(3)]
    started = time.monotonic()
    apply_containers(cluster, tenant, later)
    wait_until(lambda: running(cluster, tenant) >= set(later), 120, "the standby to take over", tails)
    print(f"failover: the standby ran {len(later)} new Containers {time.monotonic() - started:.1f}s after the "
          f"active replica stopped")
    taken_over = [re.match(rf"{tenant}/([^:]+): Created", line).group(1) for line in created_lines(replicas[standby][0])]
    assert sorted(taken_over) == sorted(later), taken_over
    assert len(sandbox_pods(cluster, tenant)) == CONTAINERS + len(later)
