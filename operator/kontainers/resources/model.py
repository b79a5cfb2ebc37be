"""The `Container` custom resource (containers.kontainers.dev/v1alpha1) as pydantic models.

These models are the ONE source of its schema: `python -m kontainers.resources.crd` turns them
into crds/containers.kontainers.dev.yaml. Every field's docstring becomes its description in
`kubectl explain`; constraints declared here become OpenAPI validation, and rules that involve
several fields are CEL expressions (`x-kubernetes-validations`) attached with `cel(...)`.

Field names are camelCase on the wire (aliases) and snake_case in Python.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kontainers.api import domains
from kontainers.api.container import (  # noqa: F401  (the wire vocabulary, re-exported for the CRD's readers)
    DEFAULT_EXPIRY_MINUTES,
    MAX_EXPIRY_MINUTES,
    MEMORY_LIMITS,
    MemoryLimit,
    Status,
)

# Kubernetes quantity of each OpenAI memory size: the runtime container's exact memory limit.
MEMORY_QUANTITY: dict[str, str] = {size: size.removesuffix("g") + "Gi" for size in MEMORY_LIMITS}

MAX_DOMAINS = 256
MAX_DOMAIN_SECRETS = 64
MAX_DOMAIN_LENGTH = domains.MAX_LENGTH



class ConditionType(StrEnum):
    """The `type` of each condition in `status.conditions`."""

    READY = "Ready"
    """The pod serves: True exactly when `status.status` is `running`."""
    EXPIRED = "Expired"
    """True once the Container expired (reason `IdleTimeout`)."""
    POD_RECREATED = "PodRecreated"
    """True once the pod vanished behind the operator's back and was recreated (reason `PodDeleted`)."""


class Reason(StrEnum):
    """The operator's words for `status.reason` and for the reasons of `status.conditions`.

    Besides these, a pending or failed status carries the pod's own reason verbatim where Kubernetes
    gives one (`ImagePullBackOff`, `Evicted`, `Unschedulable`, …); the fallbacks below are used when
    it gives none. A running status has no reason (its `Ready` condition says `PodReady`)."""

    POD_PENDING = "PodPending"
    """pending: the sandbox pod is being created or starting."""
    POD_MISSING = "PodMissing"
    """pending: the sandbox pod does not exist (yet, or again)."""
    POD_TERMINATING = "PodTerminating"
    """pending: the sandbox pod is being deleted."""
    POD_UNKNOWN = "PodUnknown"
    """pending: the pod is in a phase the operator does not know."""
    CONTAINERS_NOT_READY = "ContainersNotReady"
    """pending: the pod runs but its containers are not all ready (the pod gave no reason)."""
    UNSCHEDULABLE = "Unschedulable"
    """pending: the pod is not scheduled (the pod gave no reason)."""
    DELIVERING_FILES = "DeliveringFiles"
    """pending: the pod is up and the gateway copies `fileIds` and `skills` into it; `podIP` is set."""
    POD_FAILED = "PodFailed"
    """failed: the pod failed (the pod gave no reason); it is deleted and recreated."""
    POD_COMPLETED = "PodCompleted"
    """failed: the pod exited; it is deleted and recreated."""
    RECONCILE_FAILED = "ReconcileFailed"
    """failed: the operator gave up on the Container (`message` says why); a spec change tries again."""
    IDLE_TIMEOUT = "IdleTimeout"
    """expired: idle for `spec.expiresAfter.minutes`; also the `Expired` condition's reason."""
    POD_READY = "PodReady"
    """Condition `Ready` True: the pod serves."""
    POD_NOT_READY = "PodNotReady"
    """Condition `Ready` False for a pod that gave no reason."""
    CONTAINER_EXPIRED = "Expired"
    """Condition `Ready` False because the Container expired."""
    POD_DELETED = "PodDeleted"
    """Condition `PodRecreated` True: the pod was deleted behind the operator's back."""


class EventReason(StrEnum):
    """The `reason` of the Kubernetes Events the operator posts on a Container."""

    CREATED = "Created"
    """Normal: the sandbox pod was created."""
    READY = "Ready"
    """Normal: the pod runs and is ready."""
    FAILED = "Failed"
    """Warning: the pod failed; it is recreated."""
    POD_RECREATED = "PodRecreated"
    """Warning: the pod vanished and was recreated."""
    SECRET_RECREATED = "SecretRecreated"
    """Warning: the sidecar-token Secret vanished; it was recreated with a new token and the pod replaced."""
    NETWORK_POLICY_RESTORED = "NetworkPolicyRestored"
    """Warning: the sandbox's NetworkPolicy was deleted or edited behind the operator's back and restored."""
    EXPIRED = "Expired"
    """Normal: the Container expired; its pod, Secret and NetworkPolicy were removed."""
    DELETED = "Deleted"
    """Normal: an expired Container outlived the retention period and is deleted."""

# "A DNS name or a `*.` wildcard" is the wire rule of api/domains.py, as a CEL rule.
DOMAIN_RE = domains.DOMAIN_RE
DOMAIN_MESSAGE = (
    "must be a DNS name such as api.example.com or a wildcard such as *.example.com, "
    "without scheme, path, port or IP address"
)
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One CEL validation rule, in the shape `x-kubernetes-validations` expects."""
    out: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


def validations(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="ignore",  # the API server already pruned unknown fields
    )

    def wire(self) -> dict[str, Any]:
        """The camelCase JSON form, without unset optional fields (as the API server stores it)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


Domain = Annotated[
    str,
    Field(max_length=MAX_DOMAIN_LENGTH, json_schema_extra=validations(
        cel(domains.CEL_RULE, DOMAIN_MESSAGE),
    )),
]


class SecretKeySelector(_Model):
    """A key of a Secret in the Container's namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the Secret."""
    key: str = Field(min_length=1, max_length=253)
    """Key within the Secret's data."""


class DomainSecret(_Model):
    """A credential that the egress proxy injects only into requests to `domain`.

    The sandbox sees an opaque placeholder in the environment variable `name`; the value lives
    only in the referenced Secret and is never copied into the Container or its status."""

    domain: Domain
    """Domain the secret may be sent to (a DNS name or `*.` wildcard that is allowlisted)."""
    name: str = Field(max_length=128, pattern=ENV_NAME_RE)
    """Environment variable in the sandbox that holds the placeholder."""
    secret_key_ref: SecretKeySelector
    """Where the real value is kept. The value itself is never part of the Container."""


class NetworkPolicy(_Model):
    """Outbound network access of the sandbox.

    `disabled`: no egress at all. `allowlist`: egress only through the egress proxy, and only to
    `allowedDomains`."""

    model_config = ConfigDict(json_schema_extra=validations(
        cel("self.type != 'allowlist' || (has(self.allowedDomains) && size(self.allowedDomains) > 0)",
            "allowedDomains is required and must not be empty when type is allowlist",
            ".allowedDomains"),
        cel("self.type == 'allowlist' || !has(self.allowedDomains) || size(self.allowedDomains) == 0",
            "allowedDomains must be empty when type is disabled", ".allowedDomains"),
        cel("self.type == 'allowlist' || !has(self.domainSecrets) || size(self.domainSecrets) == 0",
            "domainSecrets need type allowlist", ".domainSecrets"),
        cel("!has(self.domainSecrets) || self.domainSecrets.all(s, has(self.allowedDomains) && "
            "self.allowedDomains.exists(d, d == s.domain || "
            "(d.startsWith('*.') && s.domain.endsWith(d.substring(1)))))",
            "every domainSecrets[].domain must be covered by allowedDomains", ".domainSecrets"),
    ))

    type: Literal["disabled", "allowlist"] = "disabled"
    """`disabled` (default): no outbound network. `allowlist`: only `allowedDomains`, via the egress proxy."""
    allowed_domains: list[Domain] | None = Field(
        default=None, max_length=MAX_DOMAINS, json_schema_extra={"x-kubernetes-list-type": "set"})
    """Domains reachable when `type` is `allowlist` (required, non-empty, then): DNS names such as
    `api.example.com` or wildcards such as `*.example.com` (subdomains only), no scheme, path or port."""
    domain_secrets: list[DomainSecret] | None = Field(default=None, max_length=MAX_DOMAIN_SECRETS)
    """Credentials injected by the egress proxy, by reference to Secrets (only with `allowlist`)."""


class ExpiresAfter(_Model):
    """Idle expiry: the container expires `minutes` after its last activity."""

    anchor: Literal["last_active_at"] = "last_active_at"
    """The reference time; only `last_active_at` (the last recorded activity, else the creation)."""
    minutes: int = Field(default=DEFAULT_EXPIRY_MINUTES, ge=1, le=MAX_EXPIRY_MINUTES)
    """Minutes of inactivity after which the container expires (1–1440, default 20)."""


class SkillBundle(_Model):
    """Where an inline skill's zip is kept. Bundles stay out of the Container: etcd limits an
    object to about 1.5 MB, and a bundle may be up to 50 MB."""

    model_config = ConfigDict(json_schema_extra=validations(
        cel("has(self.fileId) != has(self.secretKeyRef)", "set exactly one of fileId or secretKeyRef"),
    ))

    file_id: str | None = Field(default=None, min_length=1, max_length=128)
    """A file of the kontainers Files API holding the zip."""
    secret_key_ref: SecretKeySelector | None = None
    """A Secret key holding the zip (bundles up to about 1 MiB)."""
    sha256: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")
    """Hex SHA-256 of the zip, checked before unpacking."""


class Skill(_Model):
    """A skill to install in the container: a reference to a skill of the Skills API, or an inline bundle."""

    model_config = ConfigDict(json_schema_extra=validations(
        cel("self.type != 'skill_reference' || has(self.skillId)", "a skill_reference needs skillId"),
        cel("self.type != 'inline' || (has(self.name) && has(self.bundle) && !has(self.skillId))",
            "an inline skill needs name and bundle and no skillId"),
    ))

    type: Literal["skill_reference", "inline"]
    """`skill_reference` (by `skillId`) or `inline` (a zip kept in `bundle`)."""
    skill_id: str | None = Field(default=None, min_length=1, max_length=128)
    """Id of a stored skill (`skill_reference`)."""
    version: str | None = Field(default=None, max_length=64)
    """Version of the stored skill: a positive integer, `latest`, or none for its default version."""
    name: str | None = Field(default=None, min_length=1, max_length=256)
    """Name of the skill (of an inline skill; of a reference's resolved version)."""
    description: str | None = Field(default=None, max_length=4096)
    """Description of the skill (of an inline skill; of a reference's resolved version)."""
    bundle: SkillBundle | None = None
    """Where the skill's zip (one top-level folder holding SKILL.md) is kept: an inline skill's,
    or the version a `skill_reference` resolved to when the gateway created the Container (then
    the container keeps that version whatever happens to the skill later). A reference without
    one (written with kubectl) gets the version it names when it is delivered."""


class ContainerSpec(_Model):
    """Desired state of a sandbox; mirrors the OpenAI `POST /v1/containers` parameters."""

    name: str = Field(min_length=1, max_length=256)
    """Display name (OpenAI `name`); need not be unique, unlike metadata.name."""
    memory_limit: MemoryLimit = "1g"
    """Memory limit of the sandbox: `1g` (default), `4g`, `16g` or `64g` (exactly 1Gi…64Gi)."""
    network_policy: NetworkPolicy = Field(
        default_factory=NetworkPolicy, json_schema_extra={"default": {"type": "disabled"}})
    """Outbound network access; default `{type: disabled}`."""
    expires_after: ExpiresAfter = Field(default_factory=ExpiresAfter, json_schema_extra={
        "default": {"anchor": "last_active_at", "minutes": DEFAULT_EXPIRY_MINUTES}})
    """Idle expiry; default 20 minutes after the last activity."""
    file_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(default=None, max_length=100)
    """Files API ids copied into /mnt/data before the container is running."""
    skills: list[Skill] | None = Field(default=None, max_length=64)
    """Skills to install in the container."""


class Condition(_Model):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(max_length=316)
    """`Ready`, `Expired` or `PodRecreated`."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str = Field(default="", max_length=1024)
    """One CamelCase word for the last transition."""
    message: str = Field(default="", max_length=32768)
    """Human-readable details of the last transition."""
    last_transition_time: datetime
    """When `status` last changed."""
    observed_generation: int | None = None
    """metadata.generation the condition was computed from."""


class ContainerStatus(_Model):
    """Observed state, written by the operator only."""

    id: str | None = Field(default=None, pattern="^cntr_[0-9a-f]{48}$")
    """The OpenAI id: `cntr_` + 48 lowercase hex, derived from metadata.uid, stable for life."""
    status: Status | None = None
    """OpenAI-facing status: `pending` (no ready pod yet), `running`, `failed` (the pod failed, or
    the operator gave up with reason `ReconcileFailed`; `reason`/`message` say why) or `expired`
    (idle too long; its pod is gone)."""
    reason: str | None = None
    """Why the status is what it is (CamelCase), cleared when running."""
    message: str | None = None
    """Human-readable details of `reason`."""
    pod_name: str | None = None
    """Name of the sandbox Pod; cleared once expired."""
    start: Literal["warm", "cold"] | None = None
    """How the current pod came: `warm` (a ready pod claimed from the warm pool) or `cold` (a pod
    made for this Container)."""
    pod_ip: str | None = Field(default=None, alias="podIP")
    """IP of the sandbox Pod, where the gateway reaches the files sidecar: set while running, and
    while pending with reason `DeliveringFiles` (the gateway copies file_ids and skills in);
    cleared otherwise."""
    last_active_at: datetime | None = None
    """Last activity: the gateway's annotation `kontainers.dev/last-active-at`, else the creation time."""
    expires_at: datetime | None = None
    """`lastActiveAt` + `spec.expiresAfter.minutes`."""
    expired_at: datetime | None = None
    """When the container expired; it is deleted after the operator's retention period."""
    observed_generation: int | None = None
    """metadata.generation the operator last reconciled."""
    conditions: list[Condition] | None = Field(default=None, json_schema_extra={
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    """`Ready` (the pod serves), `Expired`, `PodRecreated` (the pod vanished and was recreated)."""


class ContainerResource(_Model):
    """A sandbox: an isolated Pod with a files sidecar, an idle expiry and a locked-down network,
    served by the kontainers gateway as an OpenAI container."""

    spec: ContainerSpec
    status: ContainerStatus | None = None
