"""The CRD file is generated from the models: drift fails here, and the schema is structural."""

from __future__ import annotations

import pytest
import yaml

from kontainers.resources import crd, names
from kontainers.resources.model import ContainerResource, ContainerSpec, MEMORY_QUANTITY


def test_crd_file_matches_models():
    assert crd.main(["--check"]) == 0, "run: python -m kontainers.resources.crd"


def test_check_mode_detects_drift(tmp_path):
    stale = tmp_path / "crd.yaml"
    stale.write_text(crd.render().replace("maxLength: 256", "maxLength: 255"))
    assert crd.main(["--check", "--output", str(stale)]) == 1
    assert crd.main(["--output", str(stale)]) == 0
    assert crd.main(["--check", "--output", str(stale)]) == 0


def _walk(node, path="$"):
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")


def test_schema_is_structural_and_described():
    schema = yaml.safe_load(crd.render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "type" in node, path
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "const"} & set(node), path
        if path != "$.metadata":
            assert node.get("description"), f"{path} has no description for kubectl explain"


def test_crd_names_columns_and_subresource():
    doc = crd.build_crd()
    assert doc["metadata"]["name"] == names.CRD_NAME
    spec = doc["spec"]
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["cntr"] and spec["names"]["categories"] == ["kontainers"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["ID", "Display-Name", "Status", "Memory", "Network", "Start", "Last-Active", "Age"]


def test_spec_defaults_and_rules():
    props = crd.openapi_schema()["properties"]["spec"]["properties"]
    assert props["memoryLimit"]["enum"] == list(MEMORY_QUANTITY) and props["memoryLimit"]["default"] == "1g"
    minutes = props["expiresAfter"]["properties"]["minutes"]
    assert (minutes["minimum"], minutes["maximum"], minutes["default"]) == (1, 1440, 20)
    policy = props["networkPolicy"]
    assert policy["default"] == {"type": "disabled"}
    assert len(policy["x-kubernetes-validations"]) == 4
    domain = policy["properties"]["allowedDomains"]["items"]
    assert domain["maxLength"] == 253 and domain["x-kubernetes-validations"]
    # domain secrets are references only: there is no field able to hold a value
    secret = policy["properties"]["domainSecrets"]["items"]["properties"]
    assert set(secret) == {"domain", "name", "secretKeyRef"}


def test_model_parses_what_the_api_server_stores():
    spec = ContainerSpec.model_validate({
        "name": "n", "memoryLimit": "4g",
        "networkPolicy": {"type": "allowlist", "allowedDomains": ["api.example.com"]},
        "expiresAfter": {"anchor": "last_active_at", "minutes": 5},
    })
    assert spec.memory_limit == "4g" and spec.network_policy.allowed_domains == ["api.example.com"]
    assert spec.wire()["networkPolicy"] == {"type": "allowlist", "allowedDomains": ["api.example.com"]}
    assert ContainerSpec.model_validate({"name": "n"}).expires_after.minutes == 20


@pytest.mark.parametrize("domain, ok", [
    ("api.example.com", True), ("*.example.com", True), ("API.Example.COM", True),
    ("https://example.com", False), ("example.com:443", False), ("example.com/path", False),
    ("1.2.3.4", False), ("localhost", False), ("*.*.example.com", False), ("-a.example.com", False),
])
def test_domain_pattern(domain, ok):
    import re

    from kontainers.resources.model import DOMAIN_RE

    assert (bool(re.fullmatch(DOMAIN_RE, domain)) and not re.search(r"[.][0-9]+$", domain)) is ok


def test_resource_model_round_trip():
    body = {"spec": {"name": "x"}, "status": {"status": "running", "podIP": "127.66.0.5"}}
    parsed = ContainerResource.model_validate(body)
    assert parsed.status.pod_ip == "127.66.0.5"
    assert parsed.wire()["status"]["podIP"] == "127.66.0.5"
