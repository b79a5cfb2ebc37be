"""The kopf handlers of the Container operator.

- `reconcile` (create, resume, spec update): the Secret, NetworkPolicy and Pod exist and match.
- `pod_changed` (every event of a sandbox pod): status follows the pod; a vanished or failed pod
  is recreated.
- `network_policy_changed` (every event of a NetworkPolicy we made): a deleted or edited policy
  is restored at once (the sweep is the backstop, `policy_drift.py`).
- `reflect_activity` (every event of a Container): the gateway's activity annotation shows up
  in status.lastActiveAt/expiresAt; its files-delivered annotation lets a pod waiting for its
  file_ids/skills become running (kontainers.resources.delivery_gate).
- the expiry sweep (started at startup, `expiry.py`): idle containers expire; expired ones are
  deleted after the retention; live ones whose pod is missing are reconciled again (`lost_pods.py`).

Handlers are registered on an explicit registry by `register()`, because intervals come from
settings that are only known once the command line is parsed.

Status fields that follow the pod (status, reason, message, podIP, Ready) are written with the
pod's state *before* a pod is created and by the pod watcher afterwards, so a slow writer never
overwrites `running` with a stale `pending`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

import kopf

from ..resources import delivery_gate as gate
from ..observability import CONTAINERS, CREATE_SECONDS, POOL_CLAIM_SECONDS, RECONCILE_SECONDS, timed
from ..resources import names
from ..resources.model import ConditionType, EventReason, Reason
from ..resources.owner import ContainerRef
from ..resources.warm_pool import fits
from ..settings import OperatorSettings
from . import status as st
from .children import (
    delete_children,
    desired_pod,
    ensure_network_policy,
    ensure_pod,
    ensure_secret,
    policy_outlives,
    restore_network_policy,
)
from .events import post_event
from .expiry import run_sweeps
from .kube import Body, Kube, is_namespace_terminating
from .leadership import Peer, is_active
from .lost_pods import RECONCILE, RECONCILE_FAILED, LostPods
from .policy_drift import drifted_policies, guards_policy, policy_drifted
from .warm_pool import WarmPool, pool_pod_snapshot
from .writer import metric_key, update_status

logger = logging.getLogger(__name__)

CONTAINERS_RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)
MAX_BACKOFF = 60.0  # seconds between retries of a failing reconcile, at most
POD_LABELS = {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_COMPONENT: "sandbox"}
POLICY_LABELS = {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_COMPONENT: "network-policy"}
POOL_POD_LABELS = {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_POOL: kopf.PRESENT}
POOL_POLICY_LABELS = {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_COMPONENT: "warm-pool-network-policy"}
NETWORK_POLICIES = ("networking.k8s.io", "v1", "networkpolicies")


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings, me: Peer) -> None:
    """Attach every handler to `registry`, configured from `settings`; `me` is this replica in
    kopf's peering."""

    # A registry of our own starts without kopf's default login handlers. A kubeconfig given by
    # flag or $KUBECONFIG is read now: kubernetes_asyncio fixed its default path at import time,
    # before `--kubeconfig` was exported. Otherwise: the in-cluster service account.
    @kopf.on.login(id="login", registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if os.environ.get("KUBECONFIG"):
            return kopf.login_with_kubeconfig(**kwargs)
        return await kopf.login_via_async_client(**kwargs)

    @kopf.on.startup(id="connect", registry=registry)
    async def connect(memo: kopf.Memo, containers: kopf.Index, pods: kopf.Index, policies: kopf.Index,
                      pool_pods: kopf.Index, owned_pods: kopf.Index, pool_policies: kopf.Index, **_: Any) -> None:
        memo.kube = kube = await Kube.connect(settings.kubeconfig)
        memo.pool = WarmPool(settings, pool_pods, owned_pods, pool_policies)

        def snapshot() -> list[Body]:
            return [body for store in containers.values() for body in store]

        async def repair(body: Body) -> None:
            meta = body["metadata"]
            fresh = await kube.get_container(meta["namespace"], meta["name"])
            if fresh is not None and fresh["metadata"]["uid"] == meta["uid"]:
                with _unless_namespace_terminating():
                    await _reconcile(kube, settings, kopf.Body(fresh), kopf.Patch())

        async def restore(body: Body) -> None:
            meta = body["metadata"]
            with _unless_namespace_terminating():
                await _restore_network_policy(kube, settings, meta["namespace"], meta["name"], meta["uid"])

        def policy_spec(key: tuple[str, str]) -> Body | None:
            return next(iter(policies.get(key) or ()), None)

        memo.sweeper = asyncio.create_task(
            run_sweeps(kube, settings, snapshot, lambda: is_active(kube, settings, me),
                       LostPods(lambda key: key in pods), repair,
                       lambda bodies: drifted_policies(bodies, policy_spec, settings), restore),
            name="expiry sweep")

        def pool_namespaces() -> set[str]:
            """Namespaces holding a live Container, and those configured to have pools anyway."""
            live = {body["metadata"]["namespace"] for body in snapshot()
                    if not _expired(body) and not body["metadata"].get("deletionTimestamp")}
            return live | set(settings.warm_pool_namespaces)

        if settings.warm_pool or settings.warm_pool_namespaces:
            memo.pool_keeper = asyncio.create_task(
                memo.pool.run(kube, pool_namespaces, lambda: is_active(kube, settings, me)), name="warm pool")

    @kopf.on.cleanup(id="disconnect", registry=registry)
    async def disconnect(memo: kopf.Memo, **_: Any) -> None:
        for task in ("sweeper", "pool_keeper"):
            if getattr(memo, task, None) is not None:
                getattr(memo, task).cancel()
        if getattr(memo, "kube", None) is not None:
            await memo.kube.close()

    @kopf.on.resume(*CONTAINERS_RESOURCE, id=RECONCILE, registry=registry, backoff=1)
    @kopf.on.create(*CONTAINERS_RESOURCE, id=RECONCILE, registry=registry, backoff=1)
    @kopf.on.update(*CONTAINERS_RESOURCE, id=RECONCILE, field="spec", registry=registry, backoff=1)
    async def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any) -> None:
        try:
            with (timed(RECONCILE_SECONDS.labels("reconcile")), _backing_off(retry),
                  _unless_namespace_terminating()):
                await _reconcile(memo.kube, settings, body, patch, memo.pool)
        except kopf.PermanentError as error:  # kopf gives up: the status must say so, not "pending"
            await _report_failure(memo.kube, body, str(error))
            raise

    # The latest copy of every Container, by (namespace, name): the pod watcher starts from it
    # instead of reading the Container for each pod event (a stale copy only costs a 409).
    @kopf.index(*CONTAINERS_RESOURCE, id="containers", registry=registry)
    def containers(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str], Body]:
        return {(namespace, name): _snapshot(body)}

    # The sandbox pods that exist, by (namespace, name): the sweep finds Containers without one.
    @kopf.index("", "v1", "pods", id="pods", labels=POD_LABELS, registry=registry)
    def pods(namespace: str, name: str, **_: Any) -> dict[tuple[str, str], bool]:
        return {(namespace, name): True}

    # Unclaimed warm-pool pods by (namespace, size), and every sandbox pod by (namespace, owner
    # uid): a claim that a restart interrupted is found there, not claimed twice.
    @kopf.index("", "v1", "pods", id="pool_pods", labels=POOL_POD_LABELS, registry=registry)
    def pool_pods(namespace: str, labels: Mapping[str, str], body: kopf.Body, **_: Any) -> dict[tuple[str, str], Body]:
        return {(namespace, labels[names.LABEL_POOL]): pool_pod_snapshot(body)}

    @kopf.index("", "v1", "pods", id="owned_pods", labels=POD_LABELS, registry=registry)
    def owned_pods(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str], str] | None:
        owner = _owner(body)
        return {(namespace, owner["uid"]): name} if owner is not None else None

    @kopf.index(*NETWORK_POLICIES, id="pool_policies", labels=POOL_POLICY_LABELS, registry=registry)
    def pool_policies(namespace: str, body: kopf.Body, **_: Any) -> dict[str, Body]:
        return {namespace: dict(body.get("spec") or {})}

    @kopf.on.event("", "v1", "pods", id="pod", labels=POD_LABELS, registry=registry)
    async def pod_changed(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo,
                          containers: kopf.Index, **_: Any) -> None:
        if event.get("type") == "DELETED":
            memo.pool.forget(body["metadata"]["namespace"], body["metadata"]["name"])
        with timed(RECONCILE_SECONDS.labels("pod")), _unless_namespace_terminating():
            await _pod_changed(memo.kube, settings, event.get("type"), body, containers)

    # The specs of our NetworkPolicies, by (namespace, name): the sweep finds deleted or edited ones.
    @kopf.index(*NETWORK_POLICIES, id="policies", labels=POLICY_LABELS, registry=registry)
    def policies(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str], Body]:
        return {(namespace, name): dict(body.get("spec") or {})}

    @kopf.on.event(*NETWORK_POLICIES, id="network-policy", labels=POLICY_LABELS, registry=registry)
    async def network_policy_changed(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo,
                                     containers: kopf.Index, **_: Any) -> None:
        with timed(RECONCILE_SECONDS.labels("network-policy")), _unless_namespace_terminating():
            await _network_policy_changed(memo.kube, settings, event.get("type"), body, containers)

    @kopf.on.event(*CONTAINERS_RESOURCE, id="activity", registry=registry)
    async def reflect_activity(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await _reflect_activity(memo.kube, event.get("type"), body)



@contextlib.contextmanager
def _unless_namespace_terminating() -> Iterator[None]:
    """Creating children in a namespace being deleted is futile, not an error to retry."""
    try:
        yield
    except Exception as error:
        if not is_namespace_terminating(error):
            raise
        logger.debug("namespace is terminating; nothing to reconcile")


@contextlib.contextmanager
def _backing_off(retry: int) -> Iterator[None]:
    """Retry after 1, 2, 4 … MAX_BACKOFF seconds, not every second forever.

    kopf retries a failing handler after a fixed `backoff` and logs (and posts as an Event) each
    failure: a missing permission or an exhausted quota would otherwise cost API calls and an Event
    per second per Container. The first failure keeps its traceback in the log."""
    try:
        yield
    except kopf.PermanentError:
        raise
    except Exception as error:
        delay = min(MAX_BACKOFF, 2 ** retry)
        if isinstance(error, kopf.TemporaryError):
            raise kopf.TemporaryError(str(error), delay=max(delay, error.delay or 0)) from error
        if retry == 0:
            logger.exception("reconcile failed; retrying with backoff")
        raise kopf.TemporaryError(str(error) or repr(error), delay=delay) from error


async def _event(kube: Kube, body: Mapping[str, Any], kind: str, *, reason: str, message: str) -> None:
    """A Kubernetes Event on the Container (kopf.event: kopf.info would obey posting.level).

    kopf's poster exists only inside its handlers; the sweep posts its own."""
    try:
        kopf.event(body, type=kind, reason=reason, message=message)
    except LookupError:
        await post_event(kube, body, kind, reason, message)
        return
    meta = body["metadata"]
    logger.info("%s/%s: %s: %s", meta.get("namespace"), meta.get("name"), reason, message)


# --- create / resume / update ------------------------------------------------------------------


async def _reconcile(kube: Kube, settings: OperatorSettings, body: kopf.Body, patch: kopf.Patch,
                     pool: WarmPool | None = None) -> None:
    if body.meta.get("deletionTimestamp"):
        return
    ref = ContainerRef.from_body(body)
    if body.status.get("status") == "expired":
        await delete_children(kube, ref)  # finishes an expiry that a restart interrupted
        return
    if body.meta.labels.get(names.LABEL_CONTAINER_ID) != ref.id:
        patch.metadata.labels[names.LABEL_CONTAINER_ID] = ref.id  # for `kubectl get -l`
    # No pod recorded yet: a ready one from the warm pool, if one fits (else, or if none is left,
    # the Container gets a pod of its own below).
    if pool is not None and not body.status.get("podName") and pool.size_enabled(ref.spec.memory_limit):
        if await _start_warm(kube, settings, pool, ref, body):
            return

    secret_created, _ = await asyncio.gather(ensure_secret(kube, ref), ensure_network_policy(kube, ref, settings))
    # The pod is created only after the first status write: without a status there is no pod.
    pod = await kube.get("Pod", ref.namespace, ref.pod_name) if body.status.get("status") else None
    if pod is None and ref.warm:
        ref = ref.cold()  # the claimed pod is gone: the next one is made for this Container
    was_running = body.status.get("status") == "running"

    def identity_and_activity(current: Body) -> dict[str, Any] | None:
        if _expired(current):
            return None
        wanted = _identity(ref, current)
        if pod is None:  # the status says so before the pod exists, so pod events come after
            wanted.update(st.pod_status_fields(st.STARTING))
            wanted["conditions"] = st.with_condition(
                (current.get("status") or {}).get("conditions"), ConditionType.READY, False,
                st.STARTING.reason, st.STARTING.message, st.now(), ref.generation)
            if was_running:
                wanted["conditions"] = st.with_condition(
                    wanted["conditions"], ConditionType.POD_RECREATED, True, Reason.POD_DELETED,
                    f"pod {ref.pod_name} disappeared and was recreated", st.now(), ref.generation)
        return wanted

    current = await update_status(kube, ref.namespace, ref.name, ref.uid, identity_and_activity, body=body)
    if current is None:
        return
    if _expired(current):  # the expiry timer got there first
        await delete_children(kube, ref)
        return
    if pod is None:
        await _forget_delivery(kube, ref, current)
    pod, created = await ensure_pod(kube, ref, settings)
    if secret_created and not created and not pod["metadata"].get("deletionTimestamp"):
        # The Secret was deleted behind our back and made anew with a new token, but the running
        # sidecar still holds the old one: replace the pod (its DELETED event brings the new one).
        await kube.delete("Pod", ref.namespace, ref.pod_name, uid=pod["metadata"]["uid"])
        await _event(kube, current, "Warning", reason=EventReason.SECRET_RECREATED,
                     message=f"sidecar Secret {ref.secret_name} was missing; recreated it and replaced pod {ref.pod_name}")
        return
    if created:
        if was_running or _ever_recreated(body.status):  # the latter: a recreation that failed before
            await _event(kube, current, "Warning", reason=EventReason.POD_RECREATED,
                         message=f"pod {ref.pod_name} disappeared; recreated it")
        else:
            await _event(kube, current, "Normal", reason=EventReason.CREATED, message=f"created pod {ref.pod_name}")
    else:
        await _follow_pod(kube, ref, pod)  # adopted: the pod may be further along than the status


def _identity(ref: ContainerRef, current: Body) -> dict[str, Any]:
    """The status fields that say which Container this is and which pod serves it."""
    return {"id": ref.id, "podName": ref.pod_name, "start": "warm" if ref.warm else "cold",
            "observedGeneration": ref.generation, **st.activity_fields(current)}


async def _start_warm(kube: Kube, settings: OperatorSettings, pool: WarmPool, ref: ContainerRef,
                      body: kopf.Body) -> bool:
    """Serve `ref` with a pool pod: True once it has one (claimed now, or before a restart).

    Order matters for the network: the Container's NetworkPolicy exists before the claim write
    gives the pod the labels it selects (and takes away the pool's), so the pod is never under
    a weaker policy than its Container's. The Container's Secret holds that pod's own token before
    the status names the pod, so the gateway can talk to the sidecar the moment it reads running."""
    started = time.monotonic()
    claimed_name = pool.claimed_by(ref)
    if claimed_name is not None:
        pod = await kube.get("Pod", ref.namespace, claimed_name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return False  # lost meanwhile: a pod of its own, then
        token = await pool.token(kube, pod)
    else:
        size = ref.spec.memory_limit
        candidates = pool.candidates(ref.namespace, size)
        if not candidates:
            pool.record_miss(size)
            return False
        if not fits(candidates[0], await desired_pod(kube, ref, settings)):
            return False  # asks for more than a pool pod has (e.g. the egress proxy's wiring)
        # The first candidate's token is read while its policy is written: usually it is the one.
        early: dict[str, asyncio.Future[str]] = {}

        async def policy_first(candidate: Body) -> None:
            early[candidate["metadata"]["name"]] = asyncio.ensure_future(pool.token(kube, candidate))
            await ensure_network_policy(kube, ref, settings)

        pod = await pool.claim(kube, ref, candidates, policy_first)
        read = early.pop(pod["metadata"]["name"], None) if pod is not None else None
        for other in early.values():
            other.cancel()
        if pod is None:
            return False
        token = await read if read is not None else await pool.token(kube, pod)
    ref = ref.with_pod(pod["metadata"]["name"])
    await ensure_secret(kube, ref, token)

    def identity(current: Body) -> dict[str, Any] | None:
        return None if _expired(current) else _identity(ref, current)

    await _event(kube, body, "Normal", reason=EventReason.CREATED, message=f"claimed warm pod {ref.pod_name}")
    await _follow_pod(kube, ref, pod, body, identity=identity)
    POOL_CLAIM_SECONDS.observe(time.monotonic() - started)
    await policy_outlives(kube, ref, pod)
    return True


async def _report_failure(kube: Kube, body: kopf.Body, message: str) -> None:
    ref_uid, generation = body.meta["uid"], body.meta.get("generation")

    def failed(current: Body) -> dict[str, Any] | None:
        if _expired(current):
            return None
        conditions = st.with_condition((current.get("status") or {}).get("conditions"), ConditionType.READY, False,
                                       RECONCILE_FAILED, message, st.now(), generation)
        return {**st.pod_status_fields(st.PodState("failed", RECONCILE_FAILED, message)),
                "id": names.container_id(ref_uid), "conditions": conditions}

    await update_status(kube, body.meta["namespace"], body.meta["name"], ref_uid, failed)


# --- the pod ----------------------------------------------------------------------------------


def _owner(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == names.KIND and ref.get("apiVersion", "").startswith(names.GROUP + "/"):
            return ref
    return None


def _snapshot(body: kopf.Body) -> Body:
    return {key: body[key] for key in ("apiVersion", "kind", "metadata", "spec", "status") if key in body}


async def _pod_changed(kube: Kube, settings: OperatorSettings, kind: str | None, pod: Mapping[str, Any],
                       containers: Mapping[Any, Any]) -> None:
    owner = _owner(pod)
    if owner is None:
        return
    namespace = pod["metadata"]["namespace"]
    cached = next(iter(containers.get((namespace, owner["name"])) or ()), None)
    if cached is not None and cached["metadata"]["uid"] == owner["uid"] and not _expired(cached):
        container = cached  # a stale copy is caught by the resourceVersion of the status write
    else:
        container = await kube.get_container(namespace, owner["name"])
    if (container is None or container["metadata"]["uid"] != owner["uid"]
            or container["metadata"].get("deletionTimestamp")):
        return  # gone, going (the garbage collector removes the pod) or a stale namesake
    ref = ContainerRef.from_body(container)
    name = pod["metadata"]["name"]
    if _expired(container):
        if kind == "DELETED":  # now its NetworkPolicy may go
            await delete_children(kube, ref)
        else:  # still terminating, or created by a reconcile that raced with the expiry
            await kube.delete("Pod", ref.namespace, name, uid=pod["metadata"]["uid"])
        return
    if name != ref.pod_name:
        if not ref.current_pod:
            return  # a warm claim its reconcile has not recorded yet: that reconcile writes the status
        fresh = await kube.get_container(namespace, owner["name"])  # the copy may predate a claim
        if fresh is None or fresh["metadata"]["uid"] != owner["uid"]:
            return
        container, ref = fresh, ContainerRef.from_body(fresh)
        if name != ref.pod_name:
            return  # not the Container's pod (any more): it goes with its owner
    if kind == "DELETED":
        await _recreate_pod(kube, settings, ref.cold(), container)
    else:
        await _follow_pod(kube, ref.with_pod(name), dict(pod), container)


async def _follow_pod(kube: Kube, ref: ContainerRef, pod: Body, container: Body | None = None,
                      identity: Callable[[Body], dict[str, Any] | None] | None = None) -> None:
    """Status follows the pod; a failed pod is reported, then deleted to be recreated.
    `identity`: more fields to write in the same status write (a warm start's)."""
    observed = st.observe_pod(pod)
    state = observed
    before: dict[str, Any] = {}

    def follow(current: Body) -> dict[str, Any] | None:
        nonlocal state
        before.clear()
        before.update(current.get("status") or {})
        if _expired(current):
            return None
        extra = identity(current) if identity is not None else {}
        if extra is None:
            return None
        current = {**current, "status": {**(current.get("status") or {}), **extra}}
        state = observed
        if observed.ready and gate.awaiting_delivery(current, observed.pod_ip):
            # Up, but its file_ids/skills are not in yet: the gateway delivers to this podIP.
            state = st.PodState("pending", gate.DELIVERING_FILES, gate.DELIVERING_MESSAGE, pod_ip=observed.pod_ip)
        conditions = st.with_condition(
            before.get("conditions"), ConditionType.READY, state.ready,
            Reason.POD_READY if state.ready else (state.reason or Reason.POD_NOT_READY),
            "the sandbox pod is ready" if state.ready else (state.message or ""), st.now(), ref.generation)
        return {**extra, **st.pod_status_fields(state), "conditions": conditions}

    written = await update_status(kube, ref.namespace, ref.name, ref.uid, follow, body=container)
    if written is None or _expired(written):
        return
    if state.status == "running" and before.get("status") != "running":
        await _event(kube, written, "Normal", reason=EventReason.READY, message=f"pod {ref.pod_name} is running at {state.pod_ip}")
        created = st.parse_time(written["metadata"].get("creationTimestamp"))
        first_start = not before.get("podIP") or before.get("reason") == gate.DELIVERING_FILES
        if created and first_start and not _ever_recreated(before):
            CREATE_SECONDS.observe(max(0.0, (datetime.now(created.tzinfo) - created).total_seconds()))
    if state.status == "failed":
        if before.get("status") != "failed":
            await _event(kube, written, "Warning", reason=EventReason.FAILED, message=f"pod {ref.pod_name}: {state.reason}: {state.message}")
        # Evicted or otherwise finished for good: a fresh pod replaces it (DELETED → recreate).
        await kube.delete("Pod", ref.namespace, pod["metadata"]["name"], uid=pod["metadata"]["uid"])


def _expired(container: Mapping[str, Any]) -> bool:
    return (container.get("status") or {}).get("status") == "expired"


def _ever_recreated(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == ConditionType.POD_RECREATED for c in status.get("conditions") or [])


async def _recreate_pod(kube: Kube, settings: OperatorSettings, ref: ContainerRef, container: Body) -> None:
    """`ref`: the Container with the pod to make (always one of its own, never a warm one)."""
    if await kube.get("Pod", ref.namespace, ref.pod_name) is not None:
        return  # already replaced (e.g. by reconcile); its own events update the status

    def recreating(current: Body) -> dict[str, Any] | None:
        if _expired(current):
            return None
        conditions = (current.get("status") or {}).get("conditions")
        moment = st.now()
        conditions = st.with_condition(conditions, ConditionType.READY, False, st.STARTING.reason,
                                       st.STARTING.message, moment, ref.generation)
        conditions = st.with_condition(conditions, ConditionType.POD_RECREATED, True, Reason.POD_DELETED,
                                       f"pod {ref.pod_name} was deleted or evicted and recreated", moment, ref.generation)
        return {**st.pod_status_fields(st.STARTING), "podName": ref.pod_name, "start": "cold",
                "conditions": conditions}

    written = await update_status(kube, ref.namespace, ref.name, ref.uid, recreating, body=container)
    if written is None or _expired(written):
        return
    await _forget_delivery(kube, ref, written)
    pod, created = await ensure_pod(kube, ref, settings)
    if created:
        await _event(kube, written, "Warning", reason=EventReason.POD_RECREATED,
                     message=f"pod {ref.pod_name} was deleted; recreated it")
    else:
        await _follow_pod(kube, ref, pod)


# --- the NetworkPolicy ----------------------------------------------------------------------------


async def _network_policy_changed(kube: Kube, settings: OperatorSettings, kind: str | None,
                                  policy: Mapping[str, Any], containers: Mapping[Any, Any]) -> None:
    """A deleted policy is recreated, an edited one reverted: without it the sandbox's network is open."""
    owner = _owner(policy)
    if owner is None or (kind != "DELETED" and policy["metadata"].get("deletionTimestamp")):
        return
    namespace = policy["metadata"]["namespace"]
    if kind != "DELETED":
        cached = next(iter(containers.get((namespace, owner["name"])) or ()), None)
        if cached is not None and cached["metadata"]["uid"] == owner["uid"] and not policy_drifted(
                cached, policy.get("spec"), settings):
            return  # as built (most events: our own creations and ownerReference patches), or not ours to keep
    await _restore_network_policy(kube, settings, namespace, owner["name"], owner["uid"])


async def _restore_network_policy(kube: Kube, settings: OperatorSettings, namespace: str, name: str, uid: str) -> None:
    container = await kube.get_container(namespace, name)  # fresh: a stale spec would be fought for
    if container is None or container["metadata"]["uid"] != uid or not guards_policy(container):
        return  # gone or going (the garbage collector's turn), expired (the expiry's), or mid-reconcile
    ref = ContainerRef.from_body(container)
    done = await restore_network_policy(kube, ref, settings)
    if done is not None:
        what = "deleted" if done == "recreated" else "edited"
        await _event(kube, container, "Warning", reason=EventReason.NETWORK_POLICY_RESTORED,
                     message=f"NetworkPolicy {ref.network_policy_name} was {what}; {done} it")


# --- activity and expiry ------------------------------------------------------------------------


async def _reflect_activity(kube: Kube, kind: str | None, body: kopf.Body) -> None:
    key = metric_key(body.meta["namespace"], body.meta["name"])
    if kind == "DELETED":
        CONTAINERS.forget(key)
        return
    status = body.status
    CONTAINERS.observe(key, status.get("status"))
    if not status.get("status") or status.get("status") == "expired" or body.meta.get("deletionTimestamp"):
        return  # before the first reconcile, or no longer relevant
    if st.changes(status, st.activity_fields(body)):
        await update_status(kube, body.meta["namespace"], body.meta["name"], body.meta["uid"], st.activity_fields,
                            body=body)
    if gate.delivery_done(body):  # the gateway has delivered into the current pod: it may run
        ref = ContainerRef.from_body(body)
        pod = await kube.get("Pod", ref.namespace, ref.pod_name)
        if pod is not None:
            await _follow_pod(kube, ref, pod)


async def _forget_delivery(kube: Kube, ref: ContainerRef, container: Mapping[str, Any]) -> None:
    """A new pod starts with an empty /mnt/data: its file_ids and skills must be delivered again."""
    patch = gate.forget_delivery_patch(container)
    if patch is not None:
        await kube.patch_container(ref.namespace, ref.name, patch)
