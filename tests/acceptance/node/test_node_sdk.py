"""The official `openai` npm package (pinned in package.json) against the gateway: the short containers
flow, the Skills API with a skill_reference container, and an upload in parts used as file_ids."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from fixtures.gateway import Gateway, NodeAgent, Tenant

pytestmark = pytest.mark.cluster

HERE = Path(__file__).parent
SKILL_MD = b"---\nname: node-skill\ndescription: made by the node SDK\n---\nUse it from Node.\n"


def node_and_sdk() -> str:
    """The node binary, with the pinned SDK installed from package-lock.json (`npm ci`) if needed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js 20+ and npm are needed for the Node SDK acceptance test"
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout[1:].split(".")[0])
    assert major >= 20, f"Node.js 20+ is needed, found {major}"
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"]["openai"]
    installed = HERE / "node_modules" / "openai" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != pinned:
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return node


def run_script(script: str, tenant: Tenant, gateway: Gateway, steps: list[str], **env: str) -> dict:
    """Run one script with the tenant's key; its steps' values, once it has passed every one of `steps`."""
    environment = {**os.environ, "OPENAI_BASE_URL": gateway.base_url, "OPENAI_API_KEY": tenant.api_key, **env}
    done = subprocess.run([node_and_sdk(), script], cwd=HERE, env=environment, capture_output=True, text=True,
                          timeout=600)
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, output
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert lines[-1] == {"ok": True, "sdk": "openai-node", "steps": steps}, output
    assert tenant.api_key not in output
    return {line["step"]: line["value"] for line in lines[:-1]}


def test_the_node_sdk_runs_the_containers_flow(gateway, tenant, gateway_logs):
    steps = run_script("flow.mjs", tenant, gateway, ["create", "retrieve", "list", "upload", "list_files",
                                                      "download", "delete_file", "errors", "delete"])
    assert steps["upload"]["bytes"] == steps["download"]["bytes"] == 3 * 1024 * 1024 + 17


def test_the_node_sdk_creates_and_lists_skills(gateway: Gateway, tenant: Tenant, node_agent: NodeAgent,
                                               tmp_path: Path, gateway_logs) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("node-skill/SKILL.md", SKILL_MD)
        archive.writestr("node-skill/run.mjs", b"console.log('skill')\n")
    bundle = tmp_path / "node-skill.zip"
    bundle.write_bytes(buffer.getvalue())
    steps = run_script("skills.mjs", tenant, gateway, ["create", "list", "errors", "container", "delete"],
                       SKILL_ZIP=str(bundle))
    assert steps["list"] == 2
    # The container the script made from the skill_reference has the skill's files in /mnt/skills.
    resource = json.loads(gateway.cluster.kubectl("get", "containers.kontainers.dev", "-n", tenant.namespace,
                                                  "-o", "json").stdout)["items"]
    [pod] = [item["status"]["podName"] for item in resource if item["status"].get("id") == steps["container"]]
    skill_dir = Path(node_agent.state_dir) / "pods" / tenant.namespace / pod / "skills" / "node-skill"
    assert (skill_dir / "SKILL.md").read_bytes() == SKILL_MD
    assert (skill_dir / "run.mjs").read_bytes() == b"console.log('skill')\n"


def test_the_node_sdk_uploads_in_parts_into_a_container(gateway: Gateway, tenant: Tenant, gateway_logs) -> None:
    steps = run_script("uploads.mjs", tenant, gateway, ["create", "parts", "complete", "file_ids", "cancel"])
    assert steps["parts"] == 3
    assert steps["complete"]["bytes"] == steps["file_ids"]["bytes"] == 5 * 1024 * 1024 + 321
