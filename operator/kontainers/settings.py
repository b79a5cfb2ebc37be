"""Settings of every process kind: one pydantic-settings object each, fed by env and flags.

Environment variables are prefixed per kind (KONTAINERS_OPERATOR_…, KONTAINERS_GATEWAY_…,
KONTAINERS_SIDECAR_…, KONTAINERS_EGRESS_…); command-line flags override them.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KONTAINERS_OPERATOR_", extra="ignore")


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KONTAINERS_GATEWAY_", extra="ignore")


class SidecarSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KONTAINERS_SIDECAR_", extra="ignore")


class EgressSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KONTAINERS_EGRESS_", extra="ignore")
