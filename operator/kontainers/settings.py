"""Settings of every process kind: one pydantic-settings object each, fed by env and flags.

Environment variables are prefixed per kind (KONTAINERS_OPERATOR_…, KONTAINERS_GATEWAY_…,
KONTAINERS_SIDECAR_…, KONTAINERS_EGRESS_…); command-line flags override them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KONTAINERS_OPERATOR_", extra="ignore")


class GatewaySettings(BaseSettings):
    """The OpenAI-compatible gateway (`kontainers gateway`): /v1 in front of Container resources."""

    model_config = SettingsConfigDict(env_prefix="KONTAINERS_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"  # the chart sets 0.0.0.0
    port: int = 8080
    kubeconfig: str | None = None  # else $KUBECONFIG, else in-cluster
    keys_secret: str = "kontainers-api-keys"  # data: sha256(api key) hex → tenant namespace
    keys_namespace: str | None = None  # default: the gateway's own namespace (in-cluster) or "default"
    watch_namespaces: list[str] = []  # Containers watched; empty = all namespaces
    sidecar_port: int = 8081
    sidecar_connect_timeout: float = 5.0
    create_wait_seconds: float = 30.0  # how long a create waits for status running before answering
    activity_debounce_seconds: float = 10.0  # at most one last-active-at PATCH per container per window
    retry_window_seconds: float = 300.0  # a retried create (no Idempotency-Key) matches containers this recent
    max_upload_bytes: int = 512 * 1024 * 1024  # per uploaded file, as OpenAI
    max_json_bytes: int = 32 * 1024 * 1024  # JSON bodies (inline skills are base64 zips)
    max_domain_secret_bytes: int = 1_000_000  # all values of one container; they share one Secret (≤1 MiB)
    not_ready_retry_after: int = 2  # Retry-After (s) of the 503 while a container's pod is not ready
    log_level: str = "INFO"
    log_json: bool = True


class FilesSettings(BaseSettings):
    """The Files API store (served by the gateway): where uploaded files and skill bundles live."""

    model_config = SettingsConfigDict(env_prefix="KONTAINERS_FILES_", extra="ignore")

    backend: Literal["filesystem", "s3"] = "filesystem"
    root: Path = Path(".state/files")  # filesystem backend: a directory (a PersistentVolumeClaim in the chart)
    s3_endpoint_url: str | None = None  # S3-compatible endpoint; None = AWS for the region
    s3_bucket: str = "kontainers-files"
    s3_prefix: str = ""  # key prefix inside the bucket, e.g. "prod/"
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None  # else the AWS default chain (env, IRSA, instance role)
    s3_secret_access_key: SecretStr | None = None
    s3_create_bucket: bool = False  # create the bucket at start (local/dev)
    s3_part_bytes: int = 8 * 1024 * 1024  # multipart part size: the most one upload buffers
    max_upload_bytes: int = 512 * 1024 * 1024  # per file, as OpenAI
    max_list_limit: int = 10_000  # OpenAI's maximum (and default) `limit` of GET /v1/files


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
