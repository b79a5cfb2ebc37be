"""The whole chain for an allowlist container with a domain secret, on the real control plane:
openai SDK → gateway (value into a Secret) → Container → operator (egress hook) → pod environment
→ egress proxy (identifies the pod by its IP). The value appears nowhere but in its Secret.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from kontainers.egress import placeholders
from kontainers.egress.operator_hook import ca_configmap_name
from kontainers.egress.sandbox import CA_FILE
from kontainers.resources import names

pytestmark = pytest.mark.cluster


def kubectl_json(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def test_allowlist_container_is_wired_to_the_proxy(gateway, tenant, operator, tmp_path: Path) -> None:
    cluster = gateway.cluster
    value = "sk-wiring-" + secrets.token_hex(12)
    container = tenant.client.containers.create(
        name="wired",
        network_policy={"type": "allowlist", "allowed_domains": ["api.example.com"],
                        "domain_secrets": [{"domain": "api.example.com", "name": "EXAMPLE_KEY", "value": value}]},
    )
    assert container.status == "running", container
    (resource,) = kubectl_json(cluster, "-n", tenant.namespace, "get", names.PLURAL)["items"]
    uid = resource["metadata"]["uid"]
    pod = kubectl_json(cluster, "-n", tenant.namespace, "get", "pod", resource["status"]["podName"])
    sandbox = next(c for c in pod["spec"]["containers"] if c["name"] == "sandbox")
    env = {e["name"]: e.get("value") for e in sandbox["env"]}

    # The sandbox holds a placeholder, the proxy's address and the proxy's CA; never the value.
    assert env["EXAMPLE_KEY"] == placeholders.placeholder(uid, "EXAMPLE_KEY")
    assert env["HTTPS_PROXY"] == env["http_proxy"] and env["HTTPS_PROXY"].startswith("http://")
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == env["NODE_EXTRA_CA_CERTS"] == CA_FILE
    copy_name = ca_configmap_name(resource["metadata"]["name"], uid)
    assert any(v.get("configMap", {}).get("name") == copy_name for v in pod["spec"]["volumes"])
    copy = kubectl_json(cluster, "-n", tenant.namespace, "get", "configmap", copy_name)
    assert "BEGIN CERTIFICATE" in copy["data"]["ca.crt"]

    # A client configured like that sandbox, from the pod's address: the proxy knows who it is.
    ca = tmp_path / "ca.crt"
    ca.write_text(copy["data"]["ca.crt"])
    client_env = {k: (str(ca) if v == CA_FILE else v) for k, v in env.items() if v is not None}
    pod_ip = resource["status"]["podIP"]
    deadline = time.monotonic() + 30
    while True:
        # Plain HTTP, so that the proxy's reason is readable in the body.
        done = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "--interface", pod_ip, "http://not-allowed.example.net/"],
            env={"PATH": os.environ["PATH"], **client_env}, capture_output=True, text=True)
        if "allowed_domains" in done.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # the proxy's watch may not have seen the pod IP yet
    assert "not-allowed.example.net is not in this container's allowed_domains" in done.stdout, done

    # The value is in its Secret only: not in the Container, the pod, events or the logs.
    assert value not in json.dumps(resource) and value not in json.dumps(pod)
    assert value not in cluster.kubectl("-n", tenant.namespace, "get", "events", "-o", "json").stdout
    assert value not in gateway.tail(100_000)
    assert value not in operator.tail(100_000)
