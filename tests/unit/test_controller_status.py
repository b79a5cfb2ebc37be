"""Pure status logic of the operator: pod → status, conditions, activity and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kontainers.controller import status as st
from kontainers.controller.config import SpecDiffBaseStorage
from kontainers.controller.main import parse_settings
from kontainers.resources import names

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def pod(phase="Running", ip="127.66.0.9", ready="True", **status):
    return {"metadata": {"name": "p", "uid": "u"},
            "status": {"phase": phase, "podIP": ip,
                       "conditions": [{"type": "Ready", "status": ready}], **status}}


def test_running_needs_ip_and_ready():
    assert st.observe_pod(pod()) == st.PodState("running", pod_ip="127.66.0.9")
    assert st.observe_pod(pod(ready="False")).status == "pending"
    assert st.observe_pod(pod(ip=None)).status == "pending"


def test_a_readiness_gate_holds_running_until_its_condition_is_true():
    gated = pod()
    gated["spec"] = {"readinessGates": [{"conditionType": names.CONDITION_SIDECAR_READY}]}
    state = st.observe_pod(gated)  # kwok says Ready; the gate's condition is not there yet
    assert state.status == "pending" and names.CONDITION_SIDECAR_READY in state.message
    gated["status"]["conditions"].append({"type": names.CONDITION_SIDECAR_READY, "status": "False"})
    assert st.observe_pod(gated).status == "pending"
    gated["status"]["conditions"][-1]["status"] = "True"
    assert st.observe_pod(gated) == st.PodState("running", pod_ip="127.66.0.9")


def test_pending_reasons():
    assert st.observe_pod(None).reason == "PodMissing"
    unschedulable = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"}]}}
    assert st.observe_pod(unschedulable) == st.PodState("pending", "Unschedulable", "0/1 nodes")
    pulling = {"status": {"phase": "Pending", "containerStatuses": [
        {"name": "sandbox", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]}}
    assert st.observe_pod(pulling).reason == "ImagePullBackOff"
    terminating = pod()
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert st.observe_pod(terminating).reason == "PodTerminating"


def test_failed_pods():
    evicted = pod(phase="Failed", reason="Evicted", message="node low on memory")
    assert st.observe_pod(evicted) == st.PodState("failed", "Evicted", "node low on memory")
    assert st.observe_pod(pod(phase="Succeeded")).reason == "PodCompleted"


def test_pod_status_fields_clear_ip_when_not_running():
    assert st.pod_status_fields(st.PodState("pending", "X", "y")) == {
        "status": "pending", "reason": "X", "message": "y", "podIP": None}


def test_condition_transition_time_moves_only_on_flip():
    first = st.with_condition(None, "Ready", False, "A", "a", T0, 1)
    assert first == [{"type": "Ready", "status": "False", "reason": "A", "message": "a",
                      "lastTransitionTime": "2026-01-02T03:04:05Z", "observedGeneration": 1}]
    same = st.with_condition(first, "Ready", False, "B", "b", T0 + timedelta(minutes=1), 2)
    assert same[0]["lastTransitionTime"] == "2026-01-02T03:04:05Z" and same[0]["reason"] == "B"
    flipped = st.with_condition(same, "Ready", True, "C", "c", T0 + timedelta(minutes=2))
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T03:06:05Z"
    both = st.with_condition(flipped, "Expired", True, "IdleTimeout", "", T0)
    assert [c["type"] for c in both] == ["Ready", "Expired"]


def body(created=T0, annotation=None, minutes=20, status=None):
    meta = {"creationTimestamp": st.rfc3339(created), "annotations": {}}
    if annotation:
        meta["annotations"][names.ANNOTATION_LAST_ACTIVE] = annotation
    return {"metadata": meta, "spec": {"expiresAfter": {"minutes": minutes}}, "status": status or {}}


def test_activity_is_the_annotation_else_the_creation():
    assert st.last_active_at(body()) == T0
    later = "2026-01-02T03:10:00.123456Z"
    assert st.last_active_at(body(annotation=later)) == datetime(2026, 1, 2, 3, 10, 0, 123456, tzinfo=UTC)
    older = "2020-01-01T00:00:00Z"  # e.g. restored from a backup: the recorded activity counts
    assert st.last_active_at(body(annotation=older)) == datetime(2020, 1, 1, tzinfo=UTC)
    assert st.last_active_at(body(annotation="not a time")) == T0
    assert st.activity_fields(body(annotation=later, minutes=5)) == {
        "lastActiveAt": "2026-01-02T03:10:00Z", "expiresAt": "2026-01-02T03:15:00Z"}


def test_due_and_retention():
    b = body(minutes=1)
    assert not st.is_due(b, T0 + timedelta(seconds=59))
    assert st.is_due(b, T0 + timedelta(seconds=60))
    assert not st.is_due(body(minutes=1, annotation="2026-01-02T03:05:00Z"), T0 + timedelta(seconds=90))
    expired = {"expiredAt": st.rfc3339(T0)}
    assert not st.retention_over(expired, T0 + timedelta(seconds=59), 60)
    assert st.retention_over(expired, T0 + timedelta(seconds=60), 60)
    assert not st.retention_over({}, T0, 0)


def test_changes_is_a_minimal_merge_patch():
    current = {"status": "running", "podIP": "1.2.3.4"}
    assert st.changes(current, {"status": "running"}) == {}
    assert st.changes(current, {"status": "expired", "podIP": None, "reason": None}) == {
        "status": "expired", "podIP": None}


def test_diffbase_ignores_metadata_so_activity_is_no_update():
    import kopf

    storage = SpecDiffBaseStorage(prefix="operator.kontainers.dev", key="last-handled-configuration")
    a = kopf.Body({"metadata": {"annotations": {names.ANNOTATION_LAST_ACTIVE: "x"}, "labels": {"a": "b"}},
                   "spec": {"name": "n"}, "status": {"status": "running"}})
    assert dict(storage.build(body=a)) == {"spec": {"name": "n"}}


def test_flags_override_settings(monkeypatch):
    monkeypatch.setenv("KONTAINERS_OPERATOR_EXPIRY_CHECK_INTERVAL", "7")
    monkeypatch.setenv("KONTAINERS_OPERATOR_SIDECAR_PORT", "9000")
    settings = parse_settings(["-n", "a", "-n", "b", "--sidecar-port", "9001", "--standalone"])
    assert settings.namespaces == ["a", "b"]
    assert settings.sidecar_port == 9001 and settings.expiry_check_interval == 7
    assert settings.standalone is True
    assert parse_settings([]).standalone is False
