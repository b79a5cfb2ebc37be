"""The Container operator against the real control plane (kwok nodes: pods run no processes,
become Running with a 127.x IP; NetworkPolicies are stored, not enforced)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fixtures.operator import wait_for
from kontainers.resources import names

pytestmark = pytest.mark.cluster


def manifest(namespace: str, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> str:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    return json.dumps({"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": meta, "spec": spec})


class Kubectl:
    """Small JSON helpers over `cluster.kubectl`, and waits that show the operator's log."""

    def __init__(self, cluster: Any, operator: Any, namespace: str) -> None:
        self.cluster, self.operator, self.ns = cluster, operator, namespace

    def apply(self, name: str, spec: dict[str, Any], **kwargs: Any) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=manifest(self.ns, name, spec, **kwargs))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        proc = self.cluster.kubectl("-n", self.ns, "get", kind, name, "-o", "json", check=False)
        if proc.returncode != 0:
            assert "NotFound" in proc.stderr, proc.stderr
            return None
        return json.loads(proc.stdout)

    def list(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["-n", self.ns, "get", kind, "-o", "json"] + (["-l", selector] if selector else [])
        return json.loads(self.cluster.kubectl(*args).stdout)["items"]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.list("events")
                if e["involvedObject"].get("name") == name and e["involvedObject"].get("kind") == names.KIND]

    def wait(self, predicate, what: str, timeout: float = 30, interval: float = 0.2):
        return wait_for(predicate, timeout, what, self.operator.tail, interval)

    def wait_status(self, name: str, status: str, timeout: float = 30) -> dict[str, Any]:
        def reached():
            body = self.get(names.PLURAL, name)
            return body if body and (body.get("status") or {}).get("status") == status else None
        return self.wait(reached, f"Container {self.ns}/{name} to be {status}", timeout)

    def pod_of(self, container: dict[str, Any]) -> dict[str, Any] | None:
        meta = container["metadata"]
        return self.get("pod", names.pod_name(meta["name"], meta["uid"]))

    def wait_pod(self, name: str, timeout: float = 30) -> dict[str, Any]:
        """The pod of Container `name`, once it exists."""
        def pod():
            body = self.get(names.PLURAL, name)
            return body and self.pod_of(body)
        return self.wait(pod, f"the pod of {self.ns}/{name}", timeout)


@pytest.fixture
def k(cluster, operator, namespace) -> Kubectl:
    return Kubectl(cluster, operator, namespace)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the GitOps path --------------------------------------------------------------------------


def test_kubectl_apply_makes_a_running_locked_down_sandbox(k: Kubectl, cluster):
    k.apply("gitops", {"name": "From Git"})
    body = k.wait_status("gitops", "running")
    uid = body["metadata"]["uid"]
    status = body["status"]

    # identity: the OpenAI id is derived from the uid, in status and as a label
    assert status["id"] == names.container_id(uid)
    assert body["metadata"]["labels"][names.LABEL_CONTAINER_ID] == status["id"]
    assert status["podName"] == names.pod_name("gitops", uid)
    assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(cluster.pod_cidr)
    assert status["observedGeneration"] == body["metadata"]["generation"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "True"
    assert status["lastActiveAt"] and status["expiresAt"]
    assert datetime.fromisoformat(status["expiresAt"]) - datetime.fromisoformat(status["lastActiveAt"]) == timedelta(minutes=20)

    # the pod: admitted under PodSecurity `restricted`, owned by the Container, hardened
    pod = k.pod_of(body)
    assert pod["status"]["podIP"] == status["podIP"]
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Container", uid, True)
    spec = pod["spec"]
    by_name = {c["name"]: c for c in spec["containers"]}
    assert set(by_name) == {"sandbox", "files"}
    assert by_name["sandbox"]["resources"]["limits"]["memory"] == "1Gi"
    assert spec["automountServiceAccountToken"] is False
    for c in spec["containers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"name": "data", "mountPath": "/mnt/data"} in by_name["files"]["volumeMounts"]

    # the sidecar token Secret, referenced by the sidecar only
    secret = k.get("secret", names.sidecar_secret_name("gitops", uid))
    assert set(secret["data"]) == {"token"} and len(secret["data"]["token"]) > 40
    assert secret["metadata"]["ownerReferences"][0]["uid"] == uid

    # the NetworkPolicy: this pod only, ingress from the gateway to the sidecar port, no egress
    policy = k.get("networkpolicy", names.network_policy_name("gitops", uid))
    assert policy["spec"]["podSelector"] == {"matchLabels": {names.LABEL_CONTAINER_ID: status["id"]}}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8081}]
    assert not policy["spec"].get("egress")

    # events tell the story, and `kubectl get cntr` shows the columns
    reasons = {e["reason"] for e in k.events("gitops")}
    assert {"Created", "Ready"} <= reasons
    table = cluster.kubectl("-n", k.ns, "get", "cntr", "gitops").stdout
    assert status["id"] in table and "running" in table and "From Git" in table


def test_each_memory_size_is_the_exact_limit(k: Kubectl):
    sizes = {"1g": "1Gi", "4g": "4Gi", "16g": "16Gi", "64g": "64Gi"}
    for size in sizes:
        k.apply(f"mem-{size}", {"name": size, "memoryLimit": size})
    for size, quantity in sizes.items():
        pod = k.wait_pod(f"mem-{size}")
        sandbox = next(c for c in pod["spec"]["containers"] if c["name"] == "sandbox")
        assert sandbox["resources"]["limits"]["memory"] == quantity


def test_disabled_and_allowlist_policies(k: Kubectl):
    k.apply("closed", {"name": "closed", "networkPolicy": {"type": "disabled"}})
    k.apply("open", {"name": "open", "networkPolicy": {
        "type": "allowlist", "allowedDomains": ["api.example.com", "*.example.org"]}})

    def policy(name):
        body = k.get(names.PLURAL, name)
        return k.get("networkpolicy", names.network_policy_name(name, body["metadata"]["uid"]))

    closed = k.wait(lambda: policy("closed"), "the NetworkPolicy of closed")
    opened = k.wait(lambda: policy("open"), "the NetworkPolicy of open")
    assert closed["spec"]["policyTypes"] == opened["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert not closed["spec"].get("egress")
    [rule] = opened["spec"]["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 3128}]
    assert rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "egress"
    assert closed["spec"]["ingress"] == opened["spec"]["ingress"]


@pytest.mark.parametrize("spec, message", [
    ({"name": "x", "memoryLimit": "2g"}, 'Unsupported value: "2g"'),
    ({"name": "x", "networkPolicy": {"type": "allowlist"}},
     "allowedDomains is required and must not be empty when type is allowlist"),
    ({"name": "x", "networkPolicy": {"type": "allowlist", "allowedDomains": []}},
     "allowedDomains is required and must not be empty when type is allowlist"),
    ({"name": "x", "networkPolicy": {"type": "allowlist", "allowedDomains": ["https://api.example.com"]}},
     "must be a DNS name such as api.example.com"),
    ({"name": "x", "networkPolicy": {"type": "allowlist", "allowedDomains": ["api.example.com:443"]}},
     "without scheme, path, port or IP address"),
    ({"name": "x", "expiresAfter": {"anchor": "last_active_at", "minutes": 0}}, "should be greater than or equal to 1"),
    ({"name": "x", "expiresAfter": {"minutes": 100000}}, "should be less than or equal to 1440"),
    ({"memoryLimit": "1g"}, "spec.name: Required value"),
])
def test_invalid_resources_are_rejected_and_nothing_is_created(k: Kubectl, cluster, spec, message):
    proc = cluster.kubectl("apply", "-f", "-", input=manifest(k.ns, "bad", spec), check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert k.get(names.PLURAL, "bad") is None
    time.sleep(0.5)
    assert k.list("pods") == [] and k.list("networkpolicies") == []


# --- expiry -----------------------------------------------------------------------------------


def test_idle_container_expires_and_a_fresh_one_does_not(k: Kubectl):
    long_ago = rfc3339(datetime.now(UTC) - timedelta(minutes=5))
    k.apply("fresh", {"name": "fresh", "expiresAfter": {"minutes": 1}})
    k.wait_status("fresh", "running")
    k.apply("stale", {"name": "stale", "expiresAfter": {"minutes": 1}},
            annotations={names.ANNOTATION_LAST_ACTIVE: long_ago})
    started = time.monotonic()
    body = k.wait_status("stale", "expired", timeout=20)
    assert time.monotonic() - started < 10  # check interval is 1 s in tests
    uid = body["metadata"]["uid"]
    status = body["status"]
    assert status["reason"] == "IdleTimeout" and status["expiredAt"]
    assert "podIP" not in status and status["lastActiveAt"] == long_ago
    assert {c["type"]: c["status"] for c in status["conditions"]}.items() >= {"Expired": "True", "Ready": "False"}.items()
    k.wait(lambda: k.get("pod", names.pod_name("stale", uid)) is None, "the expired pod to be gone")
    assert k.get("secret", names.sidecar_secret_name("stale", uid)) is None
    assert k.get("networkpolicy", names.network_policy_name("stale", uid)) is None
    k.wait(lambda: "Expired" in {e["reason"] for e in k.events("stale")}, "an Expired event")
    # the pod stays gone (expiry is not a "pod deleted behind our back")
    time.sleep(2)
    assert k.get("pod", names.pod_name("stale", uid)) is None
    assert k.get(names.PLURAL, "fresh")["status"]["status"] == "running"


def test_activity_annotation_is_reflected(k: Kubectl, cluster):
    k.apply("busy", {"name": "busy", "expiresAfter": {"minutes": 1}})
    k.wait_status("busy", "running")
    recent = rfc3339(datetime.now(UTC) + timedelta(seconds=30))
    cluster.kubectl("-n", k.ns, "annotate", "--overwrite", f"{names.PLURAL}/busy", f"{names.ANNOTATION_LAST_ACTIVE}={recent}")

    def reflected():
        body = k.get(names.PLURAL, "busy")
        return body if body["status"].get("lastActiveAt") == recent else None

    body = k.wait(reflected, "status.lastActiveAt to follow the annotation", timeout=10)
    assert body["status"]["expiresAt"] == rfc3339(datetime.fromisoformat(recent) + timedelta(minutes=1))
    assert body["status"]["status"] == "running"


def test_expired_container_is_deleted_after_retention(k: Kubectl, operator):
    operator.restart("--expired-retention", "2")
    try:
        k.apply("old", {"name": "old", "expiresAfter": {"minutes": 1}},
                annotations={names.ANNOTATION_LAST_ACTIVE: rfc3339(datetime.now(UTC) - timedelta(hours=1))})
        k.wait(lambda: k.get(names.PLURAL, "old") is None, "the expired Container to be deleted", timeout=30)
    finally:
        operator.restart()


# --- self-healing and cleanup -------------------------------------------------------------------


def test_deleted_pod_is_recreated(k: Kubectl, cluster):
    k.apply("phoenix", {"name": "phoenix"})
    body = k.wait_status("phoenix", "running")
    old = k.pod_of(body)
    cluster.kubectl("-n", k.ns, "delete", "pod", old["metadata"]["name"], "--wait=false")
    new = k.wait(lambda: (p := k.pod_of(body)) and p["metadata"]["uid"] != old["metadata"]["uid"] and p,
                 "a new pod", timeout=30)
    assert new["metadata"]["name"] == old["metadata"]["name"]
    body = k.wait(lambda: (b := k.get(names.PLURAL, "phoenix"))["status"].get("podIP") and
                  b["status"]["status"] == "running" and b, "running again")
    conditions = {c["type"]: c for c in body["status"]["conditions"]}
    assert conditions["PodRecreated"]["status"] == "True"
    k.wait(lambda: "PodRecreated" in {e["reason"] for e in k.events("phoenix")}, "a PodRecreated event")
    assert len(k.list("pods", f"{names.LABEL_CONTAINER_ID}={body['status']['id']}")) == 1


def test_a_deleted_sidecar_secret_brings_a_new_token_and_a_new_pod(k: Kubectl, cluster, operator):
    """The sidecar reads its token from the Secret when it starts: a Secret recreated with a new
    token must come with a new pod, or the gateway could no longer reach the old sidecar."""
    k.apply("keyless", {"name": "keyless"})
    body = k.wait_status("keyless", "running")
    old_pod = k.pod_of(body)
    secret_name = next(e["valueFrom"]["secretKeyRef"]["name"] for c in old_pod["spec"]["containers"]
                       for e in c.get("env") or [] if "secretKeyRef" in e.get("valueFrom", {}))
    old_token = k.get("secret", secret_name)["data"]["token"]
    cluster.kubectl("-n", k.ns, "delete", "secret", secret_name)
    operator.restart()  # Secrets are not watched: a resume (or a spec change) repairs them
    new_pod = k.wait(lambda: (p := k.pod_of(body)) and p["metadata"]["uid"] != old_pod["metadata"]["uid"] and p,
                     "a new pod", timeout=60)
    assert new_pod["metadata"]["name"] == old_pod["metadata"]["name"]
    assert k.get("secret", secret_name)["data"]["token"] != old_token
    k.wait_status("keyless", "running")
    k.wait(lambda: "SecretRecreated" in {e["reason"] for e in k.events("keyless")}, "a SecretRecreated event")


def test_a_pod_the_api_server_refused_to_recreate_comes_back(k: Kubectl, cluster):
    """kopf never retries a watch-event handler: when recreating a deleted pod fails (here a
    ResourceQuota refuses it), the periodic sweep must notice the missing pod and try again."""
    k.apply("stubborn", {"name": "stubborn"})
    body = k.wait_status("stubborn", "running")
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods", "namespace": k.ns},
             "spec": {"hard": {"pods": "0"}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(quota))
    k.wait(lambda: "pods" in ((k.get("resourcequota", "no-pods") or {}).get("status") or {}).get("used", {}),
           "the quota's usage")
    old = k.pod_of(body)
    cluster.kubectl("-n", k.ns, "delete", "pod", old["metadata"]["name"], "--wait=false")
    k.wait(lambda: "exceeded quota" in k.operator.tail(400), "the recreation to be refused")
    time.sleep(2)  # a few sweeps with the quota still in place
    assert k.pod_of(body) is None
    cluster.kubectl("-n", k.ns, "delete", "resourcequota", "no-pods")
    new = k.wait(lambda: k.pod_of(body), "the pod to be recreated once the quota is gone", timeout=30)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    k.wait_status("stubborn", "running")


def test_a_persistent_error_is_retried_with_backoff(k: Kubectl, cluster):
    """An error that persists (a quota, a missing permission) is not retried every second, each
    time with an error in the log and an Event, and the Container comes up once the cause is gone."""
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods", "namespace": k.ns},
             "spec": {"hard": {"pods": "0"}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(quota))
    k.wait(lambda: "pods" in ((k.get("resourcequota", "no-pods") or {}).get("status") or {}).get("used", {}),
           "the quota's usage")
    failures = "Handler 'reconcile' failed"  # kopf's log line (and Event) for each failed attempt
    before = k.operator.tail(100000).count(failures)
    k.apply("patient", {"name": "patient"})
    k.wait(lambda: k.get(names.PLURAL, "patient").get("status"), "a first status")
    time.sleep(10)
    attempts = k.operator.tail(100000).count(failures) - before
    assert 1 <= attempts <= 5, attempts  # 1, 2, 4, 8 s apart; not every second
    cluster.kubectl("-n", k.ns, "delete", "resourcequota", "no-pods")
    k.wait_status("patient", "running", timeout=30)


def test_a_permanent_failure_shows_in_the_status(k: Kubectl, cluster, operator):
    """When the operator gives up (here: a foreign Secret holds the sidecar Secret's name), the
    status says `failed` with the reason, instead of nothing or `pending` for ever."""
    operator.stop()
    try:
        k.apply("squatted", {"name": "squatted"})
        uid = k.get(names.PLURAL, "squatted")["metadata"]["uid"]
        cluster.kubectl("-n", k.ns, "create", "secret", "generic", names.sidecar_secret_name("squatted", uid),
                        "--from-literal=token=not-ours")
    finally:
        operator.start()
    body = k.wait_status("squatted", "failed")
    assert body["status"]["reason"] == "ReconcileFailed"
    assert "does not belong to this Container" in body["status"]["message"]
    assert {c["type"]: c["status"] for c in body["status"]["conditions"]}["Ready"] == "False"
    assert k.pod_of(body) is None


def test_deleting_the_container_garbage_collects_children(k: Kubectl, cluster):
    k.apply("doomed", {"name": "doomed"})
    body = k.wait_status("doomed", "running")
    uid = body["metadata"]["uid"]
    cluster.kubectl("-n", k.ns, "delete", names.PLURAL, "doomed", "--timeout=30s")
    for kind, name in [("pod", names.pod_name("doomed", uid)), ("secret", names.sidecar_secret_name("doomed", uid)),
                       ("networkpolicy", names.network_policy_name("doomed", uid))]:
        k.wait(lambda: k.get(kind, name) is None, f"{kind} {name} to be garbage-collected", timeout=60)


def test_the_network_policy_outlives_a_terminating_pod(k: Kubectl, cluster):
    """A deleted pod runs on until it has terminated: were its NetworkPolicy removed first (by the
    garbage collector when the Container is deleted, or at expiry), the sandbox would have an
    unrestricted network meanwhile. Here a finalizer stands in for a slow termination."""
    hold = '{"metadata": {"finalizers": ["kontainers.dev/test-hold"]}}'
    pods, policies = {}, {}
    for name in ("gone", "idle"):
        k.apply(name, {"name": name, "expiresAfter": {"minutes": 1}})
    for name in ("gone", "idle"):
        body = k.wait_status(name, "running")
        pods[name] = names.pod_name(name, body["metadata"]["uid"])
        policies[name] = names.network_policy_name(name, body["metadata"]["uid"])
        cluster.kubectl("-n", k.ns, "patch", "pod", pods[name], "--type=merge", "-p", hold)
    cluster.kubectl("-n", k.ns, "delete", names.PLURAL, "gone", "--wait=false")
    long_ago = rfc3339(datetime.now(UTC) - timedelta(minutes=5))
    cluster.kubectl("-n", k.ns, "annotate", "--overwrite", f"{names.PLURAL}/idle", f"{names.ANNOTATION_LAST_ACTIVE}={long_ago}")
    k.wait_status("idle", "expired")
    k.wait(lambda: all((p := k.get("pod", pod)) and p["metadata"].get("deletionTimestamp") for pod in pods.values()),
           "both pods to be terminating")
    time.sleep(3)  # the garbage collector and the operator had their chance
    for name, policy in policies.items():
        assert k.get("networkpolicy", policy) is not None, f"the policy of {name} went before its pod"
    for pod in pods.values():
        cluster.kubectl("-n", k.ns, "patch", "pod", pod, "--type=json", "-p", '[{"op": "remove", "path": "/metadata/finalizers"}]')
    for name, policy in policies.items():
        k.wait(lambda: k.get("networkpolicy", policy) is None, f"the policy of {name} to go after its pod", timeout=30)


def _policy_of(k: Kubectl, name: str) -> dict[str, Any]:
    """The NetworkPolicy of Container `name`, once it runs."""
    body = k.wait_status(name, "running")
    return k.get("networkpolicy", names.network_policy_name(name, body["metadata"]["uid"]))


def test_a_deleted_network_policy_comes_back(k: Kubectl, cluster):
    """A sandbox without its NetworkPolicy has an open network: the operator restores it at once,
    not only on the next spec change or restart."""
    k.apply("fenced", {"name": "fenced"})
    old = _policy_of(k, "fenced")
    name = old["metadata"]["name"]
    cluster.kubectl("-n", k.ns, "delete", "networkpolicy", name)
    new = k.wait(lambda: (p := k.get("networkpolicy", name)) and p["metadata"]["uid"] != old["metadata"]["uid"] and p,
                 "the NetworkPolicy to come back", timeout=5)
    assert new["spec"] == old["spec"]
    # it outlives the pod again: owned by the Container (controller) and by the pod
    owners = {(o["kind"], o["uid"]) for o in new["metadata"]["ownerReferences"]}
    assert owners == {(o["kind"], o["uid"]) for o in old["metadata"]["ownerReferences"]}
    k.wait(lambda: "NetworkPolicyRestored" in {e["reason"] for e in k.events("fenced")},
           "a NetworkPolicyRestored event", timeout=5)
    assert k.get(names.PLURAL, "fenced")["status"]["status"] == "running"


def test_an_edited_network_policy_is_reverted(k: Kubectl, cluster):
    """Egress opened to everything, and the selector pointed at no pod (a merge patch adds the
    label to the existing ones): both undone, the whole spec as the operator built it."""
    k.apply("tampered", {"name": "tampered", "networkPolicy": {
        "type": "allowlist", "allowedDomains": ["api.example.com"]}})
    old = _policy_of(k, "tampered")
    name = old["metadata"]["name"]
    opened = {"spec": {"egress": [{}], "podSelector": {"matchLabels": {"kontainers.dev/unselected": "yes"}}}}
    cluster.kubectl("-n", k.ns, "patch", "networkpolicy", name, "--type=merge", "-p", json.dumps(opened))
    k.wait(lambda: k.get("networkpolicy", name)["spec"] == old["spec"], "the NetworkPolicy to be reverted", timeout=5)
    k.wait(lambda: "NetworkPolicyRestored" in {e["reason"] for e in k.events("tampered")},
           "a NetworkPolicyRestored event", timeout=5)


def test_spec_changes_are_followed(k: Kubectl):
    k.apply("change", {"name": "change", "memoryLimit": "1g",
                       "networkPolicy": {"type": "allowlist", "allowedDomains": ["api.example.com"]}})
    body = k.wait(lambda: (b := k.get(names.PLURAL, "change")) and b.get("status", {}).get("podName") and b, "a pod")
    uid = body["metadata"]["uid"]
    k.apply("change", {"name": "change", "memoryLimit": "4g", "networkPolicy": {"type": "disabled"}})
    k.wait(lambda: not k.get("networkpolicy", names.network_policy_name("change", uid))["spec"].get("egress"),
           "the NetworkPolicy to drop egress")

    def four_gig_pod():
        pod = k.get("pod", names.pod_name("change", uid))
        return pod and next(c for c in pod["spec"]["containers"] if c["name"] == "sandbox")["resources"]["limits"]["memory"] == "4Gi"

    k.wait(four_gig_pod, "the pod to be replaced with a 4Gi limit")
    body = k.wait_status("change", "running")
    assert body["status"]["observedGeneration"] == 2


def test_sigkill_midway_through_20_creations(k: Kubectl, cluster, operator):
    count = 20
    managed = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
    batch = {"apiVersion": "v1", "kind": "List", "items": [
        json.loads(manifest(k.ns, f"burst-{i:02d}", {"name": f"burst {i}"})) for i in range(count)]}
    operator.stop()
    # A watch, opened before the operator starts, sees the first child within milliseconds;
    # polling with kubectl could miss the moment on a busy machine.
    watcher = subprocess.Popen(
        [cluster.tool("kubectl"), "--kubeconfig", cluster.kubeconfig, "-n", k.ns, "get", "secrets",
         "-l", managed, "--watch", "-o", "name"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    first_child = threading.Event()
    threading.Thread(target=lambda: watcher.stdout.readline() and first_child.set(), daemon=True).start()
    try:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(batch))
        time.sleep(0.5)  # the watch is established before anything can happen
        operator.start(wait=False)
        # Killed as soon as the first child exists: the others are somewhere between untouched
        # and half-made (a Secret but no pod, a status but no pod, …).
        assert first_child.wait(60), f"no child object within 60 s:\n{operator.tail()}"
    finally:
        operator.kill()
        watcher.kill()
        watcher.wait()
    pods_at_kill, secrets_at_kill = len(k.list("pods", managed)), len(k.list("secrets", managed))
    operator.start()

    def all_running():
        items = k.list(names.PLURAL)
        return len(items) == count and all((i.get("status") or {}).get("status") == "running" for i in items)

    k.wait(all_running, f"all {count} Containers running after the restart", timeout=120)
    final = k.list("pods", managed)
    assert len(final) == count, [p["metadata"]["name"] for p in final]
    owners = [p["metadata"]["ownerReferences"][0]["uid"] for p in final]
    assert len(set(owners)) == count  # one pod per Container, none twice
    assert len(k.list("secrets", managed)) == count
    assert len(k.list("networkpolicies")) == count
    print(f"killed with {pods_at_kill} pods and {secrets_at_kill} secrets of {count}")
    assert pods_at_kill < count, "the kill came too late to interrupt anything"


def test_no_finalizer_deletion_needs_no_operator(k: Kubectl, cluster, operator):
    """Containers carry no finalizer: deleting one (or its namespace) never waits for the operator."""
    k.apply("later", {"name": "later"})
    body = k.wait_status("later", "running")
    assert not body["metadata"].get("finalizers")
    operator.stop()
    try:
        cluster.kubectl("-n", k.ns, "delete", names.PLURAL, "later", "--timeout=20s")
        assert k.get(names.PLURAL, "later") is None
    finally:
        operator.start()


def test_unique_names_per_namespace(make_namespace, cluster, operator):
    """The same Container name in two namespaces: two independent sandboxes."""
    first, second = make_namespace(), make_namespace()
    for ns in (first, second):
        Kubectl(cluster, operator, ns).apply("same", {"name": uuid.uuid4().hex})
    ids = {Kubectl(cluster, operator, ns).wait_status("same", "running")["status"]["id"] for ns in (first, second)}
    assert len(ids) == 2
