"""Pure functions from observed objects to the Container's status: no I/O, unit-tested.

The operator writes status with JSON merge patches computed here (`changes`), so a value that
did not change is never written and the API server sees no pointless updates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..resources import names
from ..resources.model import DEFAULT_EXPIRY_MINUTES, Reason


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime; None for missing or unparsable values."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- the pod ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodState:
    """What the Container's status says about its pod."""

    status: str  # pending | running | failed
    reason: str | None = None
    message: str | None = None
    pod_ip: str | None = None

    @property
    def ready(self) -> bool:
        return self.status == "running"


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


def _waiting(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return waiting["reason"], f"{container.get('name')}: {waiting.get('message') or waiting['reason']}"
    return None


# A pod that exists (or is about to) but has not started: also written just before the pod is
# created, so the pod's first events change nothing and cost no write.
STARTING = PodState("pending", Reason.POD_PENDING, "the sandbox pod is starting")


def observe_pod(pod: Mapping[str, Any] | None) -> PodState:
    """The Container status implied by its pod (None = no pod)."""
    if pod is None:
        return PodState("pending", Reason.POD_MISSING, "the sandbox pod does not exist yet")
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    if meta.get("deletionTimestamp"):
        return PodState("pending", Reason.POD_TERMINATING, "the sandbox pod is being deleted")
    if phase == "Failed":
        return PodState("failed", status.get("reason") or Reason.POD_FAILED,
                        status.get("message") or "the sandbox pod failed")
    if phase == "Succeeded":
        return PodState("failed", Reason.POD_COMPLETED, "the sandbox pod exited")
    if phase == "Running":
        ready = _condition(pod, "Ready")
        # Readiness gates count as a kubelet counts them (kwok marks pods Ready without them).
        gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []]
        gated = next((g for g in gates if _condition(pod, g).get("status") != "True"), None)
        if status.get("podIP") and ready.get("status") == "True" and gated is None:
            return PodState("running", pod_ip=status["podIP"])
        waiting = _waiting(pod)
        if waiting:
            return PodState("pending", *waiting)
        if gated is not None and ready.get("status") == "True":
            return PodState("pending", Reason.CONTAINERS_NOT_READY, f"waiting for the pod condition {gated}")
        return PodState("pending", ready.get("reason") or Reason.CONTAINERS_NOT_READY,
                        ready.get("message") or "the sandbox pod is not ready yet")
    scheduled = _condition(pod, "PodScheduled")
    if scheduled.get("status") == "False":
        return PodState("pending", scheduled.get("reason") or Reason.UNSCHEDULABLE, scheduled.get("message") or "")
    waiting = _waiting(pod)
    if waiting:
        return PodState("pending", *waiting)
    if phase == "Pending":
        return STARTING
    return PodState("pending", Reason.POD_UNKNOWN, f"the sandbox pod is in phase {phase}")


def pod_status_fields(state: PodState) -> dict[str, Any]:
    """The status fields that follow the pod (None clears a field)."""
    return {
        "status": state.status,
        "reason": state.reason,
        "message": state.message,
        "podIP": state.pod_ip,
    }


# --- activity and expiry ------------------------------------------------------------------------


def last_active_at(body: Mapping[str, Any]) -> datetime:
    """The recorded activity (the gateway's annotation), else the creation time.

    The annotation wins even when older than the creation: a Container restored from a GitOps
    repository or a backup keeps the activity it had, and expires when that says so.
    """
    meta = body.get("metadata") or {}
    annotated = parse_time((meta.get("annotations") or {}).get(names.ANNOTATION_LAST_ACTIVE))
    return annotated or parse_time(meta.get("creationTimestamp")) or now()


def expiry_minutes(body: Mapping[str, Any]) -> int:
    expires_after = (body.get("spec") or {}).get("expiresAfter") or {}
    return int(expires_after.get("minutes") or DEFAULT_EXPIRY_MINUTES)


def expires_at(body: Mapping[str, Any]) -> datetime:
    return last_active_at(body) + timedelta(minutes=expiry_minutes(body))


def activity_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    last = last_active_at(body).replace(microsecond=0)
    return {"lastActiveAt": rfc3339(last), "expiresAt": rfc3339(last + timedelta(minutes=expiry_minutes(body)))}


def is_due(body: Mapping[str, Any], moment: datetime) -> bool:
    return moment >= expires_at(body)


def retention_over(status: Mapping[str, Any], moment: datetime, retention_seconds: float) -> bool:
    expired = parse_time(status.get("expiredAt"))
    return expired is not None and moment >= expired + timedelta(seconds=retention_seconds)


# --- conditions and patches ---------------------------------------------------------------------


def with_condition(
    conditions: list[Mapping[str, Any]] | None,
    kind: str,
    holds: bool,
    reason: str,
    message: str,
    moment: datetime,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """`conditions` with `kind` set; lastTransitionTime moves only when the status flips."""
    status = "True" if holds else "False"
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions or []:
        cond = dict(cond)
        if cond.get("type") == kind:
            found = True
            if cond.get("status") != status:
                cond["lastTransitionTime"] = rfc3339(moment)
            cond.update(status=status, reason=reason, message=message)
            if generation is not None:
                cond["observedGeneration"] = generation
        out.append(cond)
    if not found:
        cond = {"type": kind, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": rfc3339(moment)}
        if generation is not None:
            cond["observedGeneration"] = generation
        out.append(cond)
    return out


def changes(current: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch turning `current` into `current | wanted` (None deletes); {} if nothing to do."""
    current = current or {}
    return {key: value for key, value in wanted.items() if current.get(key) != value}
