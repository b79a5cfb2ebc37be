"""The warm pool's objects (kontainers.resources.warm_pool) and the pool's choice of candidates."""

from __future__ import annotations

from kontainers.controller.warm_pool import WarmPool
from kontainers.resources import names
from kontainers.resources import warm_pool as pool
from kontainers.resources.model import ContainerSpec
from kontainers.resources.owner import ContainerRef
from kontainers.resources.pod import SandboxExtras, build_pod
from kontainers.settings import OperatorSettings

SETTINGS = OperatorSettings()


def ref(network: str = "disabled", size: str = "1g") -> ContainerRef:
    spec = ContainerSpec.model_validate({"name": "c", "memoryLimit": size, "networkPolicy": {"type": network}})
    return ContainerRef(name="c", namespace="t", uid="u-1", spec=spec)


def ready(pod: dict, name: str, rv: str = "1", created: str = "2026-01-01T00:00:00Z") -> dict:
    pod = {**pod, "metadata": {**pod["metadata"], "name": name, "uid": f"uid-{name}", "resourceVersion": rv,
                               "creationTimestamp": created}}
    gates = [{"type": g["conditionType"], "status": "True"} for g in pod["spec"].get("readinessGates") or []]
    pod["status"] = {"phase": "Running", "podIP": "10.0.0.9", "conditions": [{"type": "Ready", "status": "True"}, *gates]}
    return pod


def test_a_pool_pod_is_a_hardened_sandbox_of_no_container_with_its_own_token_secret():
    pod, secret = pool.build_pool_objects("t", "1g", SETTINGS)
    meta = pod["metadata"]
    assert meta["labels"] == {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_COMPONENT: "sandbox",
                              names.LABEL_POOL: "1g"}
    assert "ownerReferences" not in meta and names.LABEL_CONTAINER_ID not in meta["labels"]
    assert pod["spec"] == {**build_pod(ref(), SETTINGS)["spec"], "containers": pod["spec"]["containers"]}
    assert pool.token_secret_name(pod) == secret["metadata"]["name"]
    other, other_secret = pool.build_pool_objects("t", "1g", SETTINGS)
    assert other["metadata"]["name"] != meta["name"]
    assert other_secret["stringData"]["token"] != secret["stringData"]["token"]  # no token shared by two pods
    assert secret["immutable"] is True
    owned = pool.secret_owner_patch({"metadata": {"name": meta["name"], "uid": "pod-uid"}})
    assert owned["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": "pod-uid"}]


def test_every_pool_pod_of_one_size_has_the_template_hash_and_a_new_image_changes_it():
    first, _ = pool.build_pool_objects("t", "1g", SETTINGS)
    second, _ = pool.build_pool_objects("t", "1g", SETTINGS)
    current = pool.template_hash("t", "1g", SETTINGS)
    assert pool.is_current(first, current) and pool.is_current(second, current)
    upgraded = pool.template_hash("t", "1g", OperatorSettings(sidecar_image="example.test/kontainers:2"))
    assert upgraded != current and not pool.is_current(first, upgraded)
    assert pool.template_hash("t", "4g", SETTINGS) != current


def test_the_pool_policy_admits_only_the_gateway_and_no_egress():
    policy = pool.build_pool_network_policy("t", SETTINGS)
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchExpressions": [{"key": names.LABEL_POOL, "operator": "Exists"}]}
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["egress"] == []
    assert spec["ingress"] == [{"from": [{"podSelector": {"matchLabels": SETTINGS.gateway_pod_labels},
                                          "namespaceSelector": {}}],
                                "ports": [{"protocol": "TCP", "port": SETTINGS.sidecar_port}]}]


def test_a_claim_swaps_the_pool_label_for_the_containers_identity_in_one_conditional_write():
    pod, _ = pool.build_pool_objects("t", "1g", SETTINGS)
    pod = ready(pod, "kontainers-pool-1g-abc", rv="42")
    patch = pool.claim_patch(pod, ref(), "2026-01-01T00:00:01Z")["metadata"]
    assert patch["resourceVersion"] == "42"
    assert patch["labels"][names.LABEL_POOL] is None
    assert patch["labels"][names.LABEL_CONTAINER_ID] == ref().id  # what the Container's policy selects
    assert patch["ownerReferences"] == [ref().owner_reference()]


def test_only_containers_asking_for_nothing_more_fit_a_pool_pod():
    pod, _ = pool.build_pool_objects("t", "1g", SETTINGS)
    assert pool.fits(pod, build_pod(ref(), SETTINGS))
    assert not pool.fits(pod, build_pod(ref(size="4g"), SETTINGS))
    proxied = build_pod(ref("allowlist"), SETTINGS, [SandboxExtras(env=[{"name": "HTTPS_PROXY", "value": "x"}])])
    assert not pool.fits(pod, proxied)


def test_candidates_are_ready_unclaimed_current_and_oldest_first():
    def make(name: str, created: str) -> dict:
        pod, _ = pool.build_pool_objects("t", "1g", SETTINGS)
        return ready(pod, name, created=created)

    young, old = make("young", "2026-01-01T00:00:05Z"), make("old", "2026-01-01T00:00:01Z")
    starting = make("starting", "2026-01-01T00:00:00Z")
    starting["status"]["conditions"][0]["status"] = "False"
    drifted = make("drifted", "2026-01-01T00:00:00Z")
    drifted["metadata"]["annotations"][names.ANNOTATION_POOL_TEMPLATE] = "older"
    going = make("going", "2026-01-01T00:00:00Z")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:09Z"
    warm = WarmPool(SETTINGS, {("t", "1g"): [young, old, starting, drifted, going]}, {}, {})
    assert [p["metadata"]["name"] for p in warm.candidates("t", "1g")] == ["old", "young"]
    assert warm.candidates("other", "1g") == []


def test_a_claim_that_a_restart_interrupted_is_found_by_the_pods_owner():
    container = ref()
    warm = WarmPool(SETTINGS, {}, {("t", "u-1"): ["kontainers-pool-1g-abc"]}, {})
    assert warm.claimed_by(container) == "kontainers-pool-1g-abc"
    own = WarmPool(SETTINGS, {}, {("t", "u-1"): [container.cold_pod_name]}, {})
    assert own.claimed_by(container) is None  # a pod made for it is not a claim
