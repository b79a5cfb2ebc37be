"""The expiry sweep's decisions, the peering rule it shares with kopf, and its Events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kontainers.controller import status as st
from kontainers.controller.events import build_event
from kontainers.controller.expiry import due_for_deletion, due_for_expiry
from kontainers.controller.leadership import Peer, outranked
from kontainers.resources import names

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def container(status=None, minutes=1, annotation=None, deleting=False):
    meta = {"name": "c", "namespace": "n", "uid": "u", "creationTimestamp": st.rfc3339(T0), "annotations": {}}
    if annotation:
        meta["annotations"][names.ANNOTATION_LAST_ACTIVE] = annotation
    if deleting:
        meta["deletionTimestamp"] = st.rfc3339(T0)
    return {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": meta,
            "spec": {"name": "x", "expiresAfter": {"minutes": minutes}}, "status": status or {}}


def test_due_for_expiry():
    later = T0 + timedelta(minutes=2)
    assert due_for_expiry(container({"status": "running"}), later)
    assert due_for_expiry(container({"status": "pending"}), later)
    assert not due_for_expiry(container({"status": "running"}), T0 + timedelta(seconds=30))
    assert not due_for_expiry(container({}), later)  # not reconciled yet
    assert not due_for_expiry(container({"status": "expired"}), later)  # already
    assert not due_for_expiry(container({"status": "running"}, deleting=True), later)
    active = container({"status": "running"}, annotation=st.rfc3339(T0 + timedelta(minutes=90)))
    assert not due_for_expiry(active, later)


def test_due_for_deletion_after_retention():
    expired = container({"status": "expired", "expiredAt": st.rfc3339(T0)})
    assert not due_for_deletion(expired, T0 + timedelta(seconds=59), 60)
    assert due_for_deletion(expired, T0 + timedelta(seconds=60), 60)
    assert not due_for_deletion(container({"status": "running"}), T0 + timedelta(days=9), 60)


def test_outranked_follows_kopf_peering():
    me = Peer("me", 100)
    now = T0
    fresh = st.rfc3339(now - timedelta(seconds=5))
    stale = st.rfc3339(now - timedelta(seconds=120))
    assert not outranked({}, me, now)
    assert not outranked({"me": {"priority": 1, "lifetime": 60, "lastseen": fresh}}, me, now)
    assert not outranked({"other": {"priority": 99, "lifetime": 60, "lastseen": fresh}}, me, now)
    assert outranked({"other": {"priority": 101, "lifetime": 60, "lastseen": fresh}}, me, now)
    assert outranked({"other": {"priority": 100, "lifetime": 60, "lastseen": fresh}}, me, now)  # kopf: same pauses
    assert not outranked({"other": {"priority": 101, "lifetime": 60, "lastseen": stale}}, me, now)  # dead


def test_event_refers_to_the_container():
    event = build_event(container(), "Normal", "Expired", "no activity for 1 minute")
    assert event["involvedObject"] == {"apiVersion": names.API_VERSION, "kind": names.KIND,
                                       "name": "c", "namespace": "n", "uid": "u"}
    assert (event["type"], event["reason"]) == ("Normal", "Expired")
    assert event["metadata"] == {"generateName": "c.", "namespace": "n"}


def test_lost_pods_are_those_missing_in_two_sweeps_in_a_row():
    from kontainers.controller.lost_pods import RECONCILE_FAILED, LostPods, pod_key

    live = container({"status": "running"})
    fresh = {**container({}), "metadata": {**container()["metadata"], "name": "fresh", "uid": "u2"}}
    expired = {**container({"status": "expired"}), "metadata": {**container()["metadata"], "uid": "u3"}}
    broken = {**container({"status": "failed", "reason": RECONCILE_FAILED}),
              "metadata": {**container()["metadata"], "uid": "u4"}}
    pods: set = set()
    lost = LostPods(lambda key: key in pods)
    everyone = [live, fresh, expired, broken]
    assert lost.select(everyone) == []  # first sighting: the pod may be on its way
    assert lost.select(everyone) == [live]  # still missing: reconcile it again
    pods.add(pod_key(live))
    assert lost.select(everyone) == []
    pods.clear()
    assert lost.select(everyone) == []  # a new absence starts counting again
    assert lost.select([container({"status": "pending"}, deleting=True)] * 2) == []


def test_drifted_policies_are_the_missing_or_edited_ones_of_guarded_containers():
    from kontainers.controller.lost_pods import RECONCILE_FAILED
    from kontainers.controller.policy_drift import drifted_policies, policy_key
    from kontainers.resources.network_policy import build_network_policy
    from kontainers.resources.owner import ContainerRef
    from kontainers.settings import OperatorSettings

    settings = OperatorSettings()

    def one(uid, status=None, generation=1, deleting=False):
        body = container(status, deleting=deleting)
        body["metadata"] = {**body["metadata"], "uid": uid, "name": uid, "generation": generation}
        return body

    observed = {"status": "running", "observedGeneration": 1}
    intact, deleted, edited = one("intact", observed), one("deleted", observed), one("edited", observed)
    left_alone = [one("fresh"), one("expired", {**observed, "status": "expired"}),
                  one("deleting", observed, deleting=True), one("spec-changed", observed, generation=2),
                  one("broken", {**observed, "status": "failed", "reason": RECONCILE_FAILED})]
    specs = {policy_key(body): build_network_policy(ContainerRef.from_body(body), settings)["spec"]
             for body in (intact, edited)}
    specs[policy_key(intact)] = {k: v for k, v in specs[policy_key(intact)].items() if k != "egress"}  # as stored
    specs[policy_key(edited)] = {**specs[policy_key(edited)], "egress": [{}]}
    everyone = [intact, deleted, edited, *left_alone]
    assert drifted_policies(everyone, specs.get, settings) == [deleted, edited]
