"""The warm pool: N ready sandbox pods per memory size, kept in each namespace that has Containers,
and claimed by creates whose pod a pool pod fits (kontainers.resources.warm_pool has the objects).

Which namespaces: every one holding a live Container (known from the operator's index; a tenant's
first create there is cold, the next ones warm), plus `warm_pool_namespaces`, and never outside the
operator's `namespaces`. Pool pods need no RBAC beyond what Containers' pods need already.

The upkeep is level-triggered and runs on the active replica only: every `warm_pool_interval` (and
at once after a claim) it compares what kopf's index of pool pods shows with what is wanted, then
creates the missing pods (the namespace's pool NetworkPolicy first), deletes surplus and drifted
unclaimed ones, and restores a deleted or edited pool NetworkPolicy. Pods it created that the index
does not show yet count as present, so a slow watch never doubles the pool; a restart may leave a
surplus, which the next round removes.

Claims are guarded twice: in this process by a reservation (two reconciles never try the same pod,
and the upkeep never deletes one being claimed), and in the API server by the pod's resourceVersion
(see `claim_patch`), so a pod serves one Container at most, even across replicas.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from ..observability import POOL_CLAIMS, POOL_PODS, POOL_SIZES
from ..resources import names
from ..resources import warm_pool as pool
from ..resources.network_policy import same_policy_spec
from ..resources.owner import ContainerRef
from ..settings import OperatorSettings
from . import status as st
from .children import secret_token
from .kube import Body, Kube, is_namespace_terminating

logger = logging.getLogger(__name__)

# An unclaimed pod not ready this long after its creation is replaced (e.g. a restart came between
# its creation and its Secret's, or its node is broken): a pool must not fill up with duds.
STUCK_SECONDS = 300.0
ACTIVE_CHECK_INTERVAL = 5.0  # seconds a "this replica is the active one" answer is trusted

PodsIndex = Mapping[tuple[str, str], Iterable[Body]]  # (namespace, size) → pool pods
OwnedIndex = Mapping[tuple[str, str], Iterable[str]]  # (namespace, owner uid) → pod names
PoliciesIndex = Mapping[str, Iterable[Body]]  # namespace → spec of its pool NetworkPolicy


def pool_pod_snapshot(body: Mapping[str, Any]) -> Body:
    """What the index keeps of a pool pod: all a claim and the upkeep look at."""
    return {key: body[key] for key in ("metadata", "spec", "status") if key in body}


class WarmPool:
    def __init__(self, settings: OperatorSettings, pods: PodsIndex, owned: OwnedIndex,
                 policies: PoliciesIndex) -> None:
        self.settings = settings
        self._pods = pods
        self._owned = owned
        self._policies = policies
        self._reserved: set[tuple[str, str]] = set()  # (namespace, pod): claimed, or being claimed
        self._creating: dict[tuple[str, str], dict[str, float]] = {}  # (ns, size) → {pod: when}
        self._templates: dict[tuple[str, str], str] = {}
        self.wake = asyncio.Event()

    def size_enabled(self, size: str) -> bool:
        return self.settings.warm_pool.get(size, 0) > 0  # type: ignore[call-overload]

    def template(self, namespace: str, size: str) -> str:
        key = (namespace, size)
        if key not in self._templates:
            self._templates[key] = pool.template_hash(namespace, size, self.settings)
        return self._templates[key]

    # --- claims ------------------------------------------------------------------------------

    def claimed_by(self, ref: ContainerRef) -> str | None:
        """The pool pod a claim gave `ref` before its status said so (a restart in between)."""
        for name in self._owned.get((ref.namespace, ref.uid)) or ():
            if name != ref.cold_pod_name:
                return name
        return None

    def candidates(self, namespace: str, size: str) -> list[Body]:
        """Ready, unclaimed pool pods of the current template, oldest first."""
        template = self.template(namespace, size)
        found = [p for p in self._pods.get((namespace, size)) or ()
                 if (namespace, p["metadata"]["name"]) not in self._reserved
                 and pool.is_unclaimed(p) and pool.is_current(p, template) and st.observe_pod(p).ready]
        return sorted(found, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))

    async def claim(self, kube: Kube, ref: ContainerRef, candidates: list[Body],
                    before_claim: Callable[[Body], Awaitable[None]]) -> Body | None:
        """Claim the first candidate that is still free; None if every one was taken meanwhile.
        `before_claim(pod)` runs once, before the first claim write (the Container's NetworkPolicy)."""
        prepared = False
        for candidate in candidates:
            key = (ref.namespace, candidate["metadata"]["name"])
            if key in self._reserved:
                continue
            self._reserved.add(key)
            if not prepared:
                await before_claim(candidate)
                prepared = True
            claimed = await kube.patch_pod_if_unchanged(
                ref.namespace, key[1], pool.claim_patch(candidate, ref, st.rfc3339(st.now())))
            if claimed is not None and not claimed["metadata"].get("deletionTimestamp"):
                self.wake.set()  # refill
                POOL_CLAIMS.labels(ref.spec.memory_limit, "hit").inc()
                logger.info("%s/%s claimed warm pod %s", ref.namespace, ref.name, key[1])
                return claimed
            # Changed since the index saw it (claimed by another replica, being deleted): next one.
            # A claimed-but-deleting pod stays reserved: it goes with its new owner.
        self.record_miss(ref.spec.memory_limit)
        return None

    def record_miss(self, size: str) -> None:
        POOL_CLAIMS.labels(size, "miss").inc()
        self.wake.set()

    @staticmethod
    async def token(kube: Kube, pod: Body) -> str:
        """The sidecar token of a (claimed) pool pod, from the Secret it was started with."""
        secret_name = pool.token_secret_name(pod)
        secret = await kube.get("Secret", pod["metadata"]["namespace"], secret_name) if secret_name else None
        token = secret_token(secret) if secret is not None else None
        if not token:
            raise RuntimeError(f"the sidecar Secret of pool pod {pod['metadata']['name']} is missing")
        return token

    # --- upkeep --------------------------------------------------------------------------------

    async def run(self, kube: Kube, namespaces: Callable[[], set[str]], active: Callable[[], Awaitable[bool]]) -> None:
        """Forever: keep the pools, every interval or when woken by a claim."""
        active_until = 0.0
        while True:
            try:  # asyncio.timeout: wait_for (3.11) can swallow a cancellation
                async with asyncio.timeout(self.settings.warm_pool_interval):
                    await self.wake.wait()
            except TimeoutError:
                pass
            self.wake.clear()
            try:
                if time.monotonic() >= active_until:
                    if not await active():
                        continue
                    active_until = time.monotonic() + ACTIVE_CHECK_INTERVAL
                await self.upkeep(kube, namespaces())
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("warm pool upkeep failed; retrying next round")

    def _known_namespaces(self) -> set[str]:
        return {namespace for namespace, _ in self._pods} | set(self._policies)

    async def upkeep(self, kube: Kube, namespaces: set[str]) -> None:
        if self.settings.namespaces:
            namespaces = namespaces & set(self.settings.namespaces)
        counts = {(size, state): 0 for size in POOL_SIZES for state in ("ready", "starting")}
        for namespace in sorted(namespaces | self._known_namespaces()):
            try:
                await self._keep_namespace(kube, namespace, namespace in namespaces, counts)
            except Exception as error:
                if not is_namespace_terminating(error):
                    raise
        for (size, state), count in counts.items():
            POOL_PODS.labels(size, state).set(count)

    async def _keep_namespace(self, kube: Kube, namespace: str, wanted_here: bool,
                              counts: dict[tuple[str, str], int]) -> None:
        any_pods = False
        for size in POOL_SIZES:
            want = self.settings.warm_pool.get(size, 0) if wanted_here else 0  # type: ignore[call-overload]
            pods = [p for p in self._pods.get((namespace, size)) or ()
                    if pool.is_unclaimed(p) and (namespace, p["metadata"]["name"]) not in self._reserved]
            template = self.template(namespace, size)
            current = []
            for pod in pods:
                if not pool.is_current(pod, template):
                    logger.info("replacing warm pod %s/%s: built from an older template", namespace, pod["metadata"]["name"])
                    await self._delete_pod(kube, pod)
                elif _stuck(pod):
                    logger.warning("replacing warm pod %s/%s: not ready %gs after its creation (%s)", namespace,
                                   pod["metadata"]["name"], STUCK_SECONDS, st.observe_pod(pod).reason)
                    await self._delete_pod(kube, pod)
                else:
                    current.append(pod)
            for pod in current:
                counts[(size, "ready" if st.observe_pod(pod).ready else "starting")] += 1
            creating = self._creating.setdefault((namespace, size), {})
            seen = {p["metadata"]["name"] for p in self._pods.get((namespace, size)) or ()}
            for name in [n for n, when in creating.items() if n in seen or time.monotonic() - when > 60]:
                del creating[name]
            have = len(current) + len(creating)
            if have < want:
                await self._ensure_policy(kube, namespace)
                await asyncio.gather(*(self._create_pod(kube, namespace, size) for _ in range(want - have)))
            elif len(current) > want:
                # Starting ones go first, then the youngest: the oldest ready ones stay claimable.
                surplus = sorted(current, key=lambda p: (st.observe_pod(p).ready,
                                                         p["metadata"].get("creationTimestamp") or ""))
                for pod in surplus[: len(current) - want]:
                    await self._delete_pod(kube, pod)
            any_pods = any_pods or want > 0 or bool(pods)
        if any_pods:
            await self._ensure_policy(kube, namespace)
        elif namespace in self._policies and not wanted_here:
            await kube.delete("NetworkPolicy", namespace, names.POOL_NETWORK_POLICY)

    async def _ensure_policy(self, kube: Kube, namespace: str) -> None:
        """Before any pool pod exists, and whenever it was deleted or edited: without it an
        unclaimed pod would be open to every peer."""
        desired = pool.build_pool_network_policy(namespace, self.settings)
        known = next(iter(self._policies.get(namespace) or ()), None)
        if known is not None and same_policy_spec(known, desired["spec"]):
            return
        if await kube.create(desired) is None:  # exists: the index is behind, or it was edited
            existing = await kube.get("NetworkPolicy", namespace, names.POOL_NETWORK_POLICY)
            if existing is not None and not same_policy_spec(existing.get("spec"), desired["spec"]):
                logger.warning("warm pool NetworkPolicy %s/%s was edited; reverting it", namespace,
                               names.POOL_NETWORK_POLICY)
                await kube.replace_network_policy_spec(namespace, names.POOL_NETWORK_POLICY, desired["spec"])

    async def _create_pod(self, kube: Kube, namespace: str, size: str) -> None:
        """The pod, then its Secret owned by it: the Secret can never outlive the pod (the kubelet
        starts the sidecar once the Secret is there, a few milliseconds later)."""
        pod, secret = pool.build_pool_objects(namespace, size, self.settings)
        name = pod["metadata"]["name"]
        self._creating.setdefault((namespace, size), {})[name] = time.monotonic()
        try:
            created = await kube.create(pod)
            if created is not None:
                secret["metadata"].update(pool.secret_owner_patch(created)["metadata"])
                await kube.create(secret)
                logger.info("created warm pod %s/%s (%s)", namespace, name, size)
        except Exception:
            self._creating[(namespace, size)].pop(name, None)
            raise

    async def _delete_pod(self, kube: Kube, pod: Body) -> None:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp") or (meta["namespace"], meta["name"]) in self._reserved:
            return
        # Only the very pod seen unclaimed: a claim changes its resourceVersion.
        await kube.delete("Pod", meta["namespace"], meta["name"], uid=meta["uid"],
                          resource_version=meta.get("resourceVersion"))

    def forget(self, namespace: str, name: str) -> None:
        """A pod is gone for good: its reservation can go too."""
        self._reserved.discard((namespace, name))


def _stuck(pod: Body) -> bool:
    created = st.parse_time(pod["metadata"].get("creationTimestamp"))
    return (created is not None and not st.observe_pod(pod).ready
            and (st.now() - created).total_seconds() > STUCK_SECONDS)
