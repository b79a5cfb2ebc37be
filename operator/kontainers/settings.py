"""Settings of every process kind: one pydantic-settings object each, fed by env and flags.

Environment variables are prefixed per kind (KONTAINERS_OPERATOR_…, KONTAINERS_GATEWAY_…,
KONTAINERS_SIDECAR_…, KONTAINERS_EGRESS_…); command-line flags override them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """The Container operator (`kontainers operator`). Maps take JSON in env vars, e.g.
    KONTAINERS_OPERATOR_MEMORY_REQUESTS='{"1g": "512Mi", "4g": "2Gi", "16g": "8Gi", "64g": "32Gi"}'."""

    model_config = SettingsConfigDict(env_prefix="KONTAINERS_OPERATOR_", extra="ignore")

    kubeconfig: str | None = None  # else $KUBECONFIG, else in-cluster
    namespaces: list[str] = []  # Containers watched; empty = cluster-wide
    # The sandbox runtime container: an image that idles until the gateway or a user runs code in it.
    sandbox_image: str = "python:3.12-slim"
    sandbox_command: list[str] = ["sleep", "infinity"]
    sandbox_read_only_root: bool = True  # writable: /mnt/data and /tmp only
    # The files sidecar runs the operator's own image (`kontainers sidecar`).
    sidecar_image: str = "ghcr.io/kontainers/kontainers:0.1.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = []
    run_as_user: int = 10001  # the image's non-root uid; PodSecurity `restricted` needs non-root
    run_as_group: int = 10001
    runtime_class_name: str | None = None  # e.g. gvisor or kata, when the cluster offers one
    # Where sandbox pods may run, e.g. a dedicated node pool: {"pool": "sandboxes"} and its taint's
    # toleration [{"key": "pool", "value": "sandboxes", "effect": "NoSchedule"}].
    sandbox_node_selector: dict[str, str] = {}
    sandbox_tolerations: list[dict[str, str]] = []
    # Per memory size (1g/4g/16g/64g); the memory *limit* is always exactly the size.
    memory_requests: dict[str, str] = {"1g": "256Mi", "4g": "1Gi", "16g": "4Gi", "64g": "16Gi"}
    cpu_requests: dict[str, str] = {"1g": "100m", "4g": "250m", "16g": "500m", "64g": "1"}
    cpu_limits: dict[str, str] = {"1g": "1", "4g": "2", "16g": "4", "64g": "8"}  # a missing size: no CPU limit
    sidecar_port: int = 8081
    # Pods carry the readiness gate `kontainers.dev/sidecar-ready` (names.CONDITION_SIDECAR_READY):
    # for nodes whose files sidecar runs outside the pod (kwok with the dev node agent), so that
    # `running` waits until it answers for that pod.
    sidecar_readiness_gate: bool = False
    sidecar_requests: dict[str, str] = {"cpu": "10m", "memory": "32Mi"}
    sidecar_limits: dict[str, str] = {"cpu": "500m", "memory": "256Mi"}
    data_size_limit: str = "10Gi"  # emptyDir at /mnt/data
    tmp_size_limit: str = "1Gi"  # emptyDir at /tmp (the root filesystems are read-only)
    # NetworkPolicy peers. A namespace of None means the operator's own namespace when it runs in
    # a cluster, and any namespace when it runs outside one.
    gateway_pod_labels: dict[str, str] = {"app.kubernetes.io/name": "kontainers", "app.kubernetes.io/component": "gateway"}
    gateway_namespace: str | None = None
    egress_pod_labels: dict[str, str] = {"app.kubernetes.io/name": "kontainers", "app.kubernetes.io/component": "egress"}
    egress_namespace: str | None = None
    egress_port: int = 3128  # the egress proxy's port (EgressSettings.port)
    # An egress proxy outside the cluster (e.g. on a dedicated host): its CIDRs, allowed besides the
    # egress pods. Example: ["192.0.2.10/32"]
    egress_ip_blocks: list[str] = []
    # How allowlists are enforced: `proxy` (the egress proxy; domain_secrets work) or `cilium`
    # (a CiliumNetworkPolicy with toFQDNs per Container; no domain_secrets, no proxy hop).
    egress_mode: Literal["proxy", "cilium"] = "proxy"
    allowlist_dns: bool = False  # also allow DNS to kube-dns (only if the proxy is addressed by name)
    dns_namespace: str = "kube-system"
    dns_pod_labels: dict[str, str] = {"k8s-app": "kube-dns"}
    # Warm pool: ready, unclaimed sandbox pods per memory size, e.g. {"1g": 2}, kept in every
    # namespace that holds a live Container and in `warm_pool_namespaces` (for a first create that
    # is warm too). A create whose pod would be a pool pod claims one instead of waiting for its own.
    warm_pool: dict[Literal["1g", "4g", "16g", "64g"], int] = {}
    warm_pool_namespaces: list[str] = []
    warm_pool_interval: float = 1.0  # seconds between checks of the pools (a claim checks at once)
    # Idle expiry: how often each Container is checked, and how long an expired one is kept.
    expiry_check_interval: float = 30.0
    expired_retention: float = 3600.0
    # HA: kopf peering. Replicas with distinct priorities run active/standby (the highest works);
    # no priority given = a random one, so replicas of one Deployment never pause each other.
    standalone: bool = False  # ignore peering even if the peering object exists
    peering_name: str = "kontainers"
    peering_mandatory: bool = False  # fail instead of running standalone if the peering object is missing
    peering_priority: int | None = None
    peering_lifetime: int = 60  # seconds without a keep-alive before a standby takes over
    ops_host: str = "127.0.0.1"  # /healthz, /readyz, /metrics (the chart sets 0.0.0.0)
    ops_port: int = 8090  # 0 = no ops server
    log_level: str = "INFO"
    log_json: bool = True


class GatewaySettings(BaseSettings):
    """The OpenAI-compatible gateway (`kontainers gateway`): /v1 in front of Container resources."""

    model_config = SettingsConfigDict(env_prefix="KONTAINERS_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"  # the chart sets 0.0.0.0
    port: int = 8080
    # /metrics (and /healthz, /readyz) on `host`, never on `port`: metrics answer without a key,
    # so they get a port a Service or NetworkPolicy can keep off the API's path. 0 = no metrics.
    metrics_port: int = 9090
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
    max_json_bytes: int = 72 * 1024 * 1024  # JSON bodies: inline skills are base64 zips of up to 50 MB
    max_domain_secret_bytes: int = 1_000_000  # all values of one container; they share one Secret (≤1 MiB)
    # OperatorSettings.egress_mode: with `cilium` nothing terminates TLS to substitute domain
    # secrets, so a create carrying them is refused (400) instead of failing in the operator.
    egress_mode: Literal["proxy", "cilium"] = "proxy"
    not_ready_retry_after: int = 2  # Retry-After (s) of the 503 while a container's pod is not ready
    # POST /v1/containers/{id}/exec: timeout_ms and max_output_length when the call gives none, and
    # their maxima (larger values are lowered). The maximum timeout stays below the SDKs' default
    # request timeout (600 s), past which they would retry a call that is still running.
    exec_default_timeout_ms: int = 120_000
    exec_max_timeout_ms: int = 300_000
    exec_default_max_output_length: int = 16_384  # characters kept per stream (stdout, stderr) of a command
    exec_max_output_length: int = 1_048_576
    exec_connect_timeout: float = 10.0  # opening the pods/exec websocket through the API server
    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _metrics_port_is_not_the_api_port(self) -> "GatewaySettings":
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError(f"metrics_port must differ from port ({self.port}): /metrics is served without a key")
        return self


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
    # The Uploads API (/v1/uploads): a File assembled from parts, OpenAI's limits by default.
    upload_max_bytes: int = 8 * 1024 ** 3  # the `bytes` of one Upload (8 GB)
    upload_part_max_bytes: int = 64 * 1024 ** 2  # one part (64 MB)
    upload_expiry_seconds: int = 3600  # an unfinished Upload expires (and loses its parts) after this
    upload_sweep_seconds: float = 60.0  # how often expired Uploads' parts are looked for and removed
    # How often (and once at start) expired files and skill bundles nothing names leave the store.
    store_sweep_seconds: float = 300.0


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
    skills_root: Path = Path("/mnt/skills")  # skill bundles unpack here (read-only in the sandbox)
    skills_display_prefix: str = "/mnt/skills"
    log_level: str = "INFO"


class EgressSettings(BaseSettings):
    """The egress proxy (`kontainers egress`): allowlists and domain secrets of allowlist sandboxes."""

    model_config = SettingsConfigDict(env_prefix="KONTAINERS_EGRESS_", extra="ignore")

    host: str = "127.0.0.1"  # the chart sets 0.0.0.0
    port: int = 3128  # the proxy (HTTP_PROXY/HTTPS_PROXY of sandboxes)
    ops_port: int = 8083  # /healthz, /readyz, /metrics (the chart sets its own)
    allowed_ports: list[int] = [443, 80]  # destination ports a sandbox may reach
    kubeconfig: str | None = None  # else $KUBECONFIG, else in-cluster
    namespace: str | None = None  # where the CA Secret lives; default: own namespace, else "default"
    watch_namespaces: list[str] = []  # Containers watched; empty = all namespaces
    ca_secret: str = "kontainers-egress-ca"  # the per-install CA; its certificate is published in
    # the ConfigMap kontainers-egress-ca (fixed name, read by the operator) with advertise_url
    advertise_url: str | None = None  # how sandboxes reach the proxy, e.g. http://kontainers-egress.kontainers.svc:3128
    confdir: Path = Path("/tmp/kontainers-egress")  # mitmproxy's confdir: the CA is written here
    max_scrub_bytes: int = 10 * 1024 * 1024  # replies of secret-bearing requests up to this are scrubbed
    # Tests and local runs only: a static policy file instead of the Kubernetes watch (see
    # kontainers.egress.registry.load_policy_file), names resolved from a fixed map, loopback
    # upstreams allowed, and an extra CA trusted for upstream servers.
    policy_file: Path | None = None
    host_map: dict[str, str] = {}  # e.g. {"api.example.test": "127.0.0.1"}
    allow_loopback_upstream: bool = False
    upstream_ca_file: Path | None = None
    log_level: str = "INFO"
