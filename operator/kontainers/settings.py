"""Settings of every process kind: one pydantic-settings object each, fed by env and flags.

Environment variables are prefixed per kind (KONTAINERS_OPERATOR_…, KONTAINERS_GATEWAY_…,
KONTAINERS_SIDECAR_…, KONTAINERS_EGRESS_…); command-line flags override them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KONTAINERS_OPERATOR_", extra="ignore")


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KONTAINERS_GATEWAY_", extra="ignore")


class SidecarSettings(BaseSettings):
    """The files sidecar (`kontainers sidecar`): owns the container's /mnt/data volume."""

    model_config = SettingsConfigDict(env_prefix="KONTAINERS_SIDECAR_", extra="ignore")

    host: str = "0.0.0.0"  # in a pod the gateway reaches it on the pod IP
    port: int = 8081
    root: Path = Path("/mnt/data")  # the volume shared with the sandbox
    token: SecretStr | None = None  # KONTAINERS_SIDECAR_TOKEN, from the per-container Secret
    token_file: Path | None = None  # alternative to `token`: a file holding it
    max_upload_bytes: int = 512 * 1024 * 1024  # OpenAI's per-file limit
    display_prefix: str = "/mnt/data"  # what `path` in file records starts with
    log_level: str = "INFO"


class EgressSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KONTAINERS_EGRESS_", extra="ignore")
