"""Extension point of the sandbox pod: features add env vars, volumes and mounts to the runtime
container without touching the pod builder.

A hook is `async def hook(kube, ref, settings) -> SandboxExtras | None`. It may create objects it
needs next to the pod (e.g. a ConfigMap holding the egress proxy's CA bundle, owned by the
Container via `ref.owner_reference()`). Register it by appending it to `SANDBOX_HOOKS`.
Whatever a hook returns is part of the pod spec hash: changing it replaces the pod.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..egress.operator_hook import egress_sandbox_hook
from ..resources.owner import ContainerRef
from ..resources.pod import SandboxExtras
from ..settings import OperatorSettings
from .kube import Kube

SandboxHook = Callable[[Kube, ContainerRef, OperatorSettings], Awaitable[SandboxExtras | None]]

SANDBOX_HOOKS: list[SandboxHook] = [
    egress_sandbox_hook,  # allowlist sandboxes: proxy env, the proxy's CA, domain-secret placeholders
]


async def sandbox_extras(kube: Kube, ref: ContainerRef, settings: OperatorSettings) -> list[SandboxExtras]:
    extras = []
    for hook in SANDBOX_HOOKS:
        extra = await hook(kube, ref, settings)
        if extra is not None:
            extras.append(extra)
    return extras
