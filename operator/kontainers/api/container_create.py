"""`POST /v1/containers` request body: strict, so bad input is a 400 naming the parameter."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .container import ExpiresAfter, MemoryLimit
from .domains import domain_matches, normalize_domain

_STRICT = ConfigDict(extra="forbid", strict=True)
# The sandbox receives each domain secret as an environment variable called `name`.
Domain = Annotated[str, AfterValidator(normalize_domain)]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _printable(value: str) -> str:
    """Names are refused, not cleaned, when they hold NUL, another control character or a lone
    surrogate (a JSON `\\udXXX` escape that is no character)."""
    if _UNPRINTABLE.search(value):
        raise ValueError("must not contain NUL, other control characters or lone surrogates")
    return value


DisplayName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_printable)]


class DomainSecret(BaseModel):
    """A credential the egress proxy injects only into requests to `domain`; never returned."""

    model_config = _STRICT

    domain: Domain = Field(description="Domain the secret may be sent to (must be allowlisted).")
    name: str = Field(description="Environment variable holding a placeholder inside the sandbox.")
    value: str = Field(min_length=1, description="The secret value (write-only).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError("must be an environment variable name (letters, digits, '_'; not starting with a digit)")
        return value


class NetworkPolicyDisabled(BaseModel):
    """No outbound network access."""

    model_config = _STRICT

    type: Literal["disabled"]


class NetworkPolicyAllowlist(BaseModel):
    """Outbound access only to the listed domains, through the egress proxy."""

    model_config = _STRICT

    type: Literal["allowlist"]
    allowed_domains: list[Domain] = Field(min_length=1, max_length=256, description="DNS names or `*.` wildcards.")
    domain_secrets: list[DomainSecret] | None = Field(default=None, max_length=64)

    @field_validator("allowed_domains")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        return list(dict.fromkeys(values))

    @field_validator("domain_secrets")
    @classmethod
    def _secrets_are_allowlisted(cls, secrets: list[DomainSecret] | None, info: ValidationInfo):
        allowed = info.data.get("allowed_domains") or []
        for index, secret in enumerate(secrets or []):
            if not any(domain_matches(pattern, secret.domain) for pattern in allowed):
                raise ValueError(f"domain_secrets[{index}].domain {secret.domain!r} is not in allowed_domains")
        return secrets


NetworkPolicyParam = Annotated[NetworkPolicyDisabled | NetworkPolicyAllowlist, Field(discriminator="type")]


class SkillReference(BaseModel):
    """A skill created with the Skills API, by id."""

    model_config = _STRICT

    type: Literal["skill_reference"]
    skill_id: str = Field(min_length=1)
    version: str | None = Field(default=None, description="A positive integer or `latest`.")


class InlineSkillSource(BaseModel):
    """A skill bundle carried in the request: a base64 zip."""

    model_config = _STRICT

    type: Literal["base64"]
    media_type: Literal["application/zip"]
    data: str = Field(min_length=1, description="Base64 of a zip with one top-level folder holding SKILL.md.")

    @field_validator("data")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64-encoded zip data") from None
        return value


class InlineSkill(BaseModel):
    """A skill given inline with the request."""

    model_config = _STRICT

    type: Literal["inline"]
    name: DisplayName
    description: str
    source: InlineSkillSource


Skill = Annotated[SkillReference | InlineSkill, Field(discriminator="type")]
FileId = Annotated[str, Field(min_length=1, max_length=128)]


class ContainerCreateParams(BaseModel):
    """The body of `POST /v1/containers`."""

    model_config = _STRICT

    name: DisplayName = Field(description="Display name of the container.")
    expires_after: ExpiresAfter | None = Field(default=None, description="Idle expiry (default 20 minutes).")
    file_ids: list[FileId] | None = Field(default=None, max_length=100, description="Files API ids to copy in.")
    memory_limit: MemoryLimit | None = Field(default=None, description="`1g` (default), `4g`, `16g` or `64g`.")
    network_policy: NetworkPolicyParam | None = Field(default=None, description="Default `disabled`.")
    skills: list[Skill] | None = Field(default=None, max_length=64, description="Skills to install in the container.")
