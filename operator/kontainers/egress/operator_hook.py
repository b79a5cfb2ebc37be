"""The operator's sandbox hook for allowlist Containers (see kontainers.controller.hooks).

For a Container with `networkPolicy.type: allowlist` it
1. reads what the egress proxy publishes in its namespace — the ConfigMap `kontainers-egress-ca`
   with the CA certificate (`ca.crt`) and the proxy's address (`proxy-url`);
2. creates (or updates) the Container's own copy of the certificate, a ConfigMap owned by the
   Container, since a pod can mount ConfigMaps of its own namespace only;
3. returns the runtime container's additions (kontainers.egress.sandbox).
Until the proxy has published its CA the hook raises kopf.TemporaryError: an allowlist sandbox
without the proxy's CA could not use its allowlist, and its NetworkPolicy blocks everything else.

In Cilium mode (`egress_mode: cilium`) it instead creates the Container's CiliumNetworkPolicy
(kontainers.egress.cilium) and adds nothing to the pod; domain secrets are refused there.

The proxy's host name is resolved here, by the operator, unless the operator's setting
`allowlist_dns` is on: the sandbox then needs no DNS at all (its NetworkPolicy allows none), which
also closes DNS as a way out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from kontainers.egress import cilium, sandbox
from kontainers.egress.ca import CA_CERT_KEY, PROXY_URL_KEY, PUBLISHED_NAME
from kontainers.kube import own_namespace
from kontainers.resources import names

logger = logging.getLogger(__name__)

def egress_namespace(settings: Any) -> str:
    return own_namespace(settings.egress_namespace)


def ca_configmap_name(name: str, uid: str) -> str:
    return names.child_name(name, uid, "egress-ca")


async def pinned_url(url: str) -> str:
    """The URL with its host replaced by its address (so the sandbox needs no DNS).

    Resolved through the event loop (never blocking it). A name that does not resolve here (an
    operator running outside the cluster, without its DNS) is handed over as it is: the sandbox
    then needs DNS (`allowlist_dns`) to reach the proxy.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return url  # already an address
    except OSError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 80, type=socket.SOCK_STREAM)
    except OSError:
        logger.warning("cannot resolve the egress proxy address; sandboxes get its name",
                       extra={"proxy_host": host})
        return url
    address = infos[0][4][0]
    netloc = f"[{address}]" if ":" in address else address
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def _ensure_ca_copy(core, ref, desired: dict[str, Any]) -> None:
    name, namespace = desired["metadata"]["name"], desired["metadata"]["namespace"]
    try:
        await core.create_namespaced_config_map(namespace, desired)
        return
    except ApiException as error:
        if error.status != 409:
            raise
    existing = await core.read_namespaced_config_map(name, namespace)
    owners = existing.metadata.owner_references or []
    if not any(o.uid == ref.uid and o.controller for o in owners):
        raise kopf.PermanentError(f"ConfigMap {name} exists and does not belong to this Container")
    if (existing.data or {}) != desired["data"]:  # the CA was rotated
        await core.patch_namespaced_config_map(name, namespace, {"data": desired["data"]})


def egress_mode(settings: Any) -> str:
    """`proxy` (default) or `cilium` (OperatorSettings.egress_mode, chart value)."""
    return settings.egress_mode


async def _ensure_cilium_policy(kube, ref) -> None:
    """Cilium mode: the Container's CiliumNetworkPolicy (toFQDNs), owned by it, kept in line."""
    desired = cilium.cilium_network_policy(
        names.child_name(ref.name, ref.uid, "fqdn"), ref.namespace,
        {names.LABEL_CONTAINER_ID: ref.id}, list(ref.spec.network_policy.allowed_domains or []),
    )
    desired["metadata"] = ref.metadata(desired["metadata"]["name"], component="egress")
    group, version = cilium.API_VERSION.split("/")
    try:
        await kube.custom.create_namespaced_custom_object(group, version, ref.namespace, cilium.PLURAL, desired)
    except ApiException as error:
        if error.status != 409:
            raise
        await kube.custom.patch_namespaced_custom_object(
            group, version, ref.namespace, cilium.PLURAL, desired["metadata"]["name"], {"spec": desired["spec"]},
            _content_type="application/merge-patch+json",
        )


async def egress_sandbox_hook(kube, ref, settings):
    """`SandboxHook` of kontainers.controller.hooks: egress wiring of allowlist sandboxes."""
    from kontainers.resources.pod import SandboxExtras

    policy = ref.spec.network_policy
    if policy.type != "allowlist":
        return None
    if egress_mode(settings) == "cilium":
        if policy.domain_secrets:
            raise kopf.PermanentError("domain_secrets need the egress proxy; this installation uses Cilium mode")
        await _ensure_cilium_policy(kube, ref)
        return None  # no proxy, no CA: the CNI enforces the allowlist
    namespace = egress_namespace(settings)
    try:
        published = await kube.core.read_namespaced_config_map(PUBLISHED_NAME, namespace)
    except ApiException as error:
        if error.status == 404:
            raise kopf.TemporaryError(
                f"the egress proxy has not published its CA yet (ConfigMap {namespace}/{PUBLISHED_NAME})",
                delay=10,
            ) from None
        raise
    data = published.data or {}
    if CA_CERT_KEY not in data:
        raise kopf.TemporaryError(f"ConfigMap {namespace}/{PUBLISHED_NAME} has no {CA_CERT_KEY}", delay=10)
    proxy_url = data.get(PROXY_URL_KEY) or f"http://{PUBLISHED_NAME.removesuffix('-ca')}.{namespace}.svc:{settings.egress_port}"
    if not settings.allowlist_dns:
        proxy_url = await pinned_url(proxy_url)

    configmap_name = ca_configmap_name(ref.name, ref.uid)
    desired = sandbox.ca_configmap(configmap_name, ref.namespace, data[CA_CERT_KEY])
    desired["metadata"] = ref.metadata(configmap_name, component="egress-ca")
    await _ensure_ca_copy(kube.core, ref, desired)

    secret_names = [{"name": s.name} for s in policy.domain_secrets or []]
    wiring = sandbox.sandbox_egress(
        {"networkPolicy": {"type": "allowlist", "domainSecrets": secret_names}}, ref.uid, proxy_url, configmap_name,
    )
    return SandboxExtras(env=wiring.env, volumes=wiring.volumes, volume_mounts=wiring.volume_mounts)
