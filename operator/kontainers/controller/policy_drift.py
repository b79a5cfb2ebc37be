"""Containers whose NetworkPolicy is missing or not as built: the backstop of the policy watcher.

A sandbox without its NetworkPolicy has an open network, so a policy deleted or edited behind the
operator's back is restored when its watch event arrives (`handlers`). kopf never retries a
watch-event handler, though, and a re-list reports no vanished objects; so the periodic sweep
also compares, in memory, each live Container with kopf's index of its NetworkPolicies and hands
the ones that drifted to the restore. A false alarm (the index lagging a moment) costs a read
and changes nothing.

Left alone: Containers being deleted (the garbage collector removes the policy once the pod is
gone), expired ones (the expiry removes it once the pod is gone), ones not reconciled yet or
whose latest spec the reconcile has not observed yet (it writes the policy itself), and ones it
gave up on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..resources import names
from ..resources.network_policy import build_network_policy, same_policy_spec
from ..resources.owner import ContainerRef
from ..settings import OperatorSettings
from .kube import Body
from .lost_pods import RECONCILE_FAILED


def guards_policy(body: Mapping[str, Any]) -> bool:
    """Whether the operator keeps this Container's NetworkPolicy as built right now."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    return (status.get("status") not in (None, "expired") and status.get("reason") != RECONCILE_FAILED
            and not meta.get("deletionTimestamp")
            and status.get("observedGeneration") == int(meta.get("generation") or 1))


def policy_drifted(body: Mapping[str, Any], actual_spec: Mapping[str, Any] | None, settings: OperatorSettings) -> bool:
    """Whether a guarded Container's NetworkPolicy (its spec; None: absent) differs from the built one."""
    if not guards_policy(body):
        return False
    try:
        ref = ContainerRef.from_body(body)
    except ValueError:  # a spec the CRD should have refused: nothing to build from
        return False
    return actual_spec is None or not same_policy_spec(actual_spec, build_network_policy(ref, settings)["spec"])


def policy_key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body["metadata"]
    return meta["namespace"], names.network_policy_name(meta["name"], meta["uid"])


def drifted_policies(containers: Iterable[Body], policy_spec: Callable[[tuple[str, str]], Mapping[str, Any] | None],
                     settings: OperatorSettings) -> list[Body]:
    """The Containers whose NetworkPolicy, as `policy_spec` (by namespace, name) knows it, drifted."""
    return [body for body in containers if guards_policy(body) and policy_drifted(body, policy_spec(policy_key(body)), settings)]
