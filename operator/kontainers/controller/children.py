"""Create-or-adopt of a Container's children, and their removal on expiry.

Names are deterministic (resources.names), so after a restart — even a SIGKILL between two
calls — the operator finds what it made instead of making it twice: a 409 on create means
"already there", and the existing object is checked to belong to this very Container.

A deleted pod runs on until it has terminated, so its NetworkPolicy must not go first: the policy
is also owned by the pod (the garbage collector keeps it while any owner exists), and an expiry
removes it only once the pod is gone.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import kopf

from ..resources.network_policy import build_network_policy, same_policy_spec
from ..resources.owner import ContainerRef, owned_by, owner_reference
from ..resources.pod import build_pod, needs_replacement
from ..resources.secret import TOKEN_KEY, build_sidecar_secret, new_token
from ..settings import OperatorSettings
from .hooks import sandbox_extras
from .kube import Body, Kube

logger = logging.getLogger(__name__)


async def _create_or_adopt(kube: Kube, ref: ContainerRef, desired: Body) -> tuple[Body, bool]:
    """(the object, whether it was created now)."""
    created = await kube.create(desired)
    if created is not None:
        return created, True
    meta = desired["metadata"]
    existing = await kube.get(desired["kind"], meta["namespace"], meta["name"])
    if existing is None:  # deleted between our create and get: try again on the next run
        raise kopf.TemporaryError(f"{desired['kind']} {meta['name']} vanished while adopting it", delay=1)
    if not owned_by(existing, ref.uid):
        raise kopf.PermanentError(
            f"{desired['kind']} {meta['name']} exists and does not belong to this Container")
    return existing, False


async def ensure_secret(kube: Kube, ref: ContainerRef, token: str | None = None) -> bool:
    """The Container's sidecar-token Secret: a new token, or `token` (a warm pod's own, which its
    sidecar already holds). Whether it was created now."""
    if token is None:
        _, created = await _create_or_adopt(kube, ref, build_sidecar_secret(ref, new_token()))
        return created
    desired = build_sidecar_secret(ref, token)
    existing, created = await _create_or_adopt(kube, ref, desired)
    if created or secret_token(existing) == token:
        return created
    # Made by a cold start that stopped before its pod existed (nobody holds that token): the
    # Secret is immutable, so it is replaced.
    await kube.delete("Secret", ref.namespace, ref.secret_name, uid=existing["metadata"]["uid"])
    _, created = await _create_or_adopt(kube, ref, desired)
    return created


def secret_token(secret: Body) -> str | None:
    value = (secret.get("data") or {}).get(TOKEN_KEY)
    return base64.b64decode(value).decode() if value else None


async def ensure_network_policy(kube: Kube, ref: ContainerRef, settings: OperatorSettings) -> bool:
    created, _ = await _ensure_network_policy(kube, ref, settings)
    return created


async def _ensure_network_policy(kube: Kube, ref: ContainerRef, settings: OperatorSettings) -> tuple[bool, bool]:
    """(created now, corrected now)."""
    desired = build_network_policy(ref, settings)
    existing, created = await _create_or_adopt(kube, ref, desired)
    if created or same_policy_spec(existing.get("spec"), desired["spec"]):
        return created, False
    # The policy follows spec.networkPolicy (and the operator's settings), and edits are undone.
    await kube.replace_network_policy_spec(ref.namespace, ref.network_policy_name, desired["spec"])
    return False, True


async def restore_network_policy(kube: Kube, ref: ContainerRef, settings: OperatorSettings) -> str | None:
    """Recreate a deleted NetworkPolicy or revert an edited one: "recreated", "reverted" or None
    (it was as built). A recreated policy is owned by the pod again, so it outlives the pod."""
    created, corrected = await _ensure_network_policy(kube, ref, settings)
    if created:
        pod = await kube.get("Pod", ref.namespace, ref.pod_name)
        if pod is not None:
            await policy_outlives(kube, ref, pod)
        return "recreated"
    return "reverted" if corrected else None


async def desired_pod(kube: Kube, ref: ContainerRef, settings: OperatorSettings) -> Body:
    return build_pod(ref, settings, await sandbox_extras(kube, ref, settings))


async def ensure_pod(kube: Kube, ref: ContainerRef, settings: OperatorSettings) -> tuple[Body, bool]:
    """(the pod, whether it was created now). A pod that no longer matches what its Container asks
    for is deleted (its DELETED event brings the replacement); one built from an older template
    of the operator's is kept with its files (resources.pod.needs_replacement)."""
    desired = await desired_pod(kube, ref, settings)
    pod, created = await _create_or_adopt(kube, ref, desired)
    await policy_outlives(kube, ref, pod)
    if not created and not pod["metadata"].get("deletionTimestamp"):
        if needs_replacement(pod, desired):
            logger.info("replacing pod %s/%s: its Container asks for another pod", ref.namespace, ref.pod_name)
            await kube.delete("Pod", ref.namespace, ref.pod_name, uid=pod["metadata"]["uid"])
    return pod, created


async def policy_outlives(kube: Kube, ref: ContainerRef, pod: Body) -> None:
    """Make `pod` an owner of the NetworkPolicy too, so that deleting the Container (the garbage
    collector deletes all its children at once) leaves the policy until the pod is gone."""
    policy = await kube.get("NetworkPolicy", ref.namespace, ref.network_policy_name)
    if policy is None:
        raise kopf.TemporaryError(f"NetworkPolicy {ref.network_policy_name} vanished", delay=1)
    pod_owner = owner_reference(ref.pod_name, pod["metadata"]["uid"], api_version="v1", kind="Pod")
    if pod_owner not in policy["metadata"].get("ownerReferences") or []:
        # A replaced pod's reference goes too (the garbage collector drops it anyway).
        await kube.patch_network_policy(ref.namespace, ref.network_policy_name, {
            "metadata": {"ownerReferences": [ref.owner_reference(), pod_owner]}})


async def delete_children(kube: Kube, ref: ContainerRef) -> None:
    """Remove pod, Secret and — once the pod is gone — NetworkPolicy (expiry); absent ones are fine.

    Pods are found by the Container's id label, not by name: an expired status no longer names
    its pod, which may have been a warm one. Called again when the pod's DELETED event arrives,
    and on resume."""
    pods = await kube.list_pods(ref.namespace, ref.pod_selector)
    for pod in pods:
        if not pod["metadata"].get("deletionTimestamp"):
            await kube.delete("Pod", ref.namespace, pod["metadata"]["name"], uid=pod["metadata"]["uid"])
    await kube.delete("Secret", ref.namespace, ref.secret_name)
    if not pods or not await kube.list_pods(ref.namespace, ref.pod_selector):
        await kube.delete("NetworkPolicy", ref.namespace, ref.network_policy_name)


def ownerless(obj: Any) -> bool:
    return not (obj.get("metadata") or {}).get("ownerReferences")
