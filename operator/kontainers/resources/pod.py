"""The sandbox Pod of one Container: the runtime container and the files sidecar.

Both containers share an emptyDir at /mnt/data, and one at /mnt/skills where the sidecar
unpacks skill bundles and the sandbox may only read. Everything is hardened for PodSecurity
`restricted`: non-root uid, no privilege escalation, no capabilities, RuntimeDefault seccomp,
read-only root filesystems (writable /tmp emptyDirs instead), no service-account token.

Other features add to the runtime container through `SandboxExtras` (e.g. the egress proxy's
environment and CA bundle for allowlist containers) rather than by editing this builder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..settings import OperatorSettings
from . import names
from .model import MEMORY_QUANTITY
from .owner import ContainerRef
from .secret import TOKEN_KEY

RUNTIME_CONTAINER = "sandbox"
SIDECAR_CONTAINER = "files"
SIDECAR_PORT_NAME = "files"
DATA_VOLUME = "data"
DATA_PATH = "/mnt/data"
SKILLS_VOLUME = "skills"
SKILLS_PATH = "/mnt/skills"  # the sidecar's default skills root (SidecarSettings.skills_root)
SKILLS_SIZE_LIMIT = "1Gi"  # room for several bundles of up to 250 MiB inflated each
# The whole template a pod was built from (which operator settings and version made it), and the
# part of it its Container asks for. Only the second replaces a running pod: /mnt/data is an
# emptyDir, so a replacement loses the container's files, and an upgrade (new images, probes,
# requests) must not. New settings apply to new pods.
ANNOTATION_SPEC_HASH = f"{names.GROUP}/pod-spec-hash"
ANNOTATION_INPUTS_HASH = f"{names.GROUP}/pod-inputs-hash"


@dataclass
class SandboxExtras:
    """Additions to the runtime container contributed by one feature."""

    env: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)


def _hardened(read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _runtime_container(ref: ContainerRef, settings: OperatorSettings, extras: list[SandboxExtras]) -> dict[str, Any]:
    size = ref.spec.memory_limit
    limits = {"memory": MEMORY_QUANTITY[size]}
    if size in settings.cpu_limits:
        limits["cpu"] = settings.cpu_limits[size]
    requests = {"memory": settings.memory_requests.get(size, MEMORY_QUANTITY[size])}
    if size in settings.cpu_requests:
        requests["cpu"] = settings.cpu_requests[size]
    return {
        "name": RUNTIME_CONTAINER,
        "image": settings.sandbox_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(settings.sandbox_command),
        "workingDir": DATA_PATH,
        # HOME must be writable for pip, matplotlib caches and the like.
        "env": [{"name": "HOME", "value": "/tmp"}] + [e for x in extras for e in x.env],
        "resources": {"limits": limits, "requests": requests},
        "securityContext": _hardened(settings.sandbox_read_only_root),
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": DATA_PATH},
            {"name": SKILLS_VOLUME, "mountPath": SKILLS_PATH, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ] + [m for x in extras for m in x.volume_mounts],
    }


def _sidecar_container(ref: ContainerRef, settings: OperatorSettings) -> dict[str, Any]:
    port = settings.sidecar_port
    return {
        "name": SIDECAR_CONTAINER,
        "image": settings.sidecar_image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": ["sidecar"],
        "env": [  # read by SidecarSettings (KONTAINERS_SIDECAR_*)
            {"name": "KONTAINERS_SIDECAR_HOST", "value": "0.0.0.0"},
            {"name": "KONTAINERS_SIDECAR_PORT", "value": str(port)},
            {"name": "KONTAINERS_SIDECAR_ROOT", "value": DATA_PATH},
            {"name": "KONTAINERS_SIDECAR_TOKEN",
             "valueFrom": {"secretKeyRef": {"name": ref.secret_name, "key": TOKEN_KEY}}},
        ],
        "ports": [{"name": SIDECAR_PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": SIDECAR_PORT_NAME},
            # Every second: `running` waits for the first success, and a 5 s period made a real
            # node's create take ~6 s (the sidecar is up ~1 s after start, the next probe 5 s later).
            "periodSeconds": 1,
            "failureThreshold": 5,
        },
        "resources": {"requests": dict(settings.sidecar_requests), "limits": dict(settings.sidecar_limits)},
        "securityContext": _hardened(True),
        "volumeMounts": [
            {"name": DATA_VOLUME, "mountPath": DATA_PATH},
            {"name": SKILLS_VOLUME, "mountPath": SKILLS_PATH},
            {"name": "files-tmp", "mountPath": "/tmp"},
        ],
    }


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def pod_spec_hash(spec: dict[str, Any]) -> str:
    """A digest of the whole pod spec: tells which template a pod was built from."""
    return _digest(spec)


def pod_inputs_hash(ref: ContainerRef, extras: Iterable[SandboxExtras]) -> str:
    """A digest of what the Container asks of its pod: its size, and what its features add to
    the sandbox (e.g. the egress proxy's address for `allowlist`). A pod whose digest differs
    cannot serve the Container as it is now and is replaced; anything else is kept."""
    return _digest({"memory_limit": ref.spec.memory_limit,
                    "extras": [[x.env, x.volumes, x.volume_mounts] for x in extras]})


def needs_replacement(pod: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether a running `pod` must give way to `desired`. A pod built before the inputs digest
    existed is compared by its memory limit, the one input those pods can be asked to change."""
    have = (pod["metadata"].get("annotations") or {}).get(ANNOTATION_INPUTS_HASH)
    if have is None:
        return _memory_limit(pod) != _memory_limit(desired)
    return have != desired["metadata"]["annotations"][ANNOTATION_INPUTS_HASH]


def _memory_limit(pod: dict[str, Any]) -> str | None:
    runtime = next((c for c in pod["spec"]["containers"] if c["name"] == RUNTIME_CONTAINER), {})
    return ((runtime.get("resources") or {}).get("limits") or {}).get("memory")


def build_pod(ref: ContainerRef, settings: OperatorSettings, extras: Iterable[SandboxExtras] = ()) -> dict[str, Any]:
    extras = list(extras)
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,  # no other services' addresses leak into the sandbox env
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 5,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_group,
            "fsGroup": settings.run_as_group,  # both containers may write /mnt/data
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_runtime_container(ref, settings, extras), _sidecar_container(ref, settings)],
        "volumes": [
            {"name": DATA_VOLUME, "emptyDir": {"sizeLimit": settings.data_size_limit}},
            {"name": SKILLS_VOLUME, "emptyDir": {"sizeLimit": SKILLS_SIZE_LIMIT}},
            {"name": "tmp", "emptyDir": {"sizeLimit": settings.tmp_size_limit}},
            {"name": "files-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ] + [v for x in extras for v in x.volumes],
    }
    if settings.sidecar_readiness_gate:
        spec["readinessGates"] = [{"conditionType": names.CONDITION_SIDECAR_READY}]
    if settings.runtime_class_name:
        spec["runtimeClassName"] = settings.runtime_class_name
    if settings.sandbox_node_selector:
        spec["nodeSelector"] = dict(settings.sandbox_node_selector)
    if settings.sandbox_tolerations:
        spec["tolerations"] = [dict(toleration) for toleration in settings.sandbox_tolerations]
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": ref.metadata(
            ref.pod_name, component="sandbox",
            annotations={ANNOTATION_SPEC_HASH: pod_spec_hash(spec), ANNOTATION_INPUTS_HASH: pod_inputs_hash(ref, extras)}),
        "spec": spec,
    }
