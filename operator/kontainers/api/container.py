"""Wire objects of the containers endpoints: what the gateway returns."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, Field

# The wire vocabulary of a container, defined here once; the Container resource
# (resources/model.py) and everything else import it.
MemoryLimit = Literal["1g", "4g", "16g", "64g"]
"""The OpenAI memory sizes of a container."""
MEMORY_LIMITS: tuple[MemoryLimit, ...] = get_args(MemoryLimit)
DEFAULT_MEMORY_LIMIT: MemoryLimit = "1g"
DEFAULT_EXPIRY_MINUTES = 20
MAX_EXPIRY_MINUTES = 1440  # one day; OpenAI's own containers live far shorter
Status = Literal["pending", "running", "failed", "expired"]
"""A container's status; anything else (a status not written yet) reads as `pending`."""
STATUSES: tuple[Status, ...] = get_args(Status)


class ExpiresAfter(BaseModel):
    """When an idle container expires: `minutes` after its last activity."""

    model_config = {"extra": "forbid", "strict": True}

    anchor: Literal["last_active_at"] = Field(description="The reference point; only `last_active_at`.")
    minutes: int = Field(ge=1, le=MAX_EXPIRY_MINUTES, description="Minutes after the anchor (1–1440).")


class NetworkPolicy(BaseModel):
    """The container's outbound network policy as returned (domain secrets are write-only)."""

    type: Literal["allowlist", "disabled"] = Field(description="`disabled` (no egress) or `allowlist`.")
    allowed_domains: list[str] | None = Field(
        default=None, exclude_if=lambda v: v is None,
        description="Domains reachable when `type` is `allowlist`.",
    )


class Container(BaseModel):
    """A container, as `POST/GET /v1/containers` return it."""

    id: str = Field(description="`cntr_` + 48 lowercase hex.")
    object: Literal["container"] = "container"
    name: str = Field(description="Display name given at creation.")
    created_at: int = Field(description="Unix seconds of creation.")
    status: str = Field(description="`pending`, `running`, `failed` or `expired`.")
    last_active_at: int | None = Field(default=None, description="Unix seconds of the last activity.")
    expires_after: ExpiresAfter | None = Field(default=None, description="Idle expiry.")
    memory_limit: MemoryLimit | None = Field(default=None, description="Memory limit of the sandbox.")
    network_policy: NetworkPolicy | None = Field(default=None, description="Outbound network policy.")


class ContainerList(BaseModel):
    """One page of `GET /v1/containers`."""

    object: Literal["list"] = "list"
    data: list[Container]
    first_id: str | None = Field(description="Id of the first item of `data`, null when empty.")
    last_id: str | None = Field(description="Id of the last item of `data`, null when empty.")
    has_more: bool = Field(description="Whether another page follows `last_id`.")


class ContainerDeleted(BaseModel):
    """The reply of `DELETE /v1/containers/{id}`."""

    id: str
    object: Literal["container.deleted"] = "container.deleted"
    deleted: Literal[True] = True
